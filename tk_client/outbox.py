"""The session's outbox: every request with its state, so nothing typed is lost.

Pure bookkeeping (no sockets, no threads): the session holds it under its
lock, hands requests to connections, and emits the :class:`RequestUpdate`
events that each method returns. The rules:

- a request waits (QUEUED) until a logged-in connection takes it;
- it is SENT when the writer is about to put it on the wire, DONE or FAILED
  when the server's direct answer (matched by ``ref``) arrives;
- when its connection goes, a request not yet on the wire, or an idempotent
  one (sending it twice does nothing twice), is queued again; a ``send`` or
  ``pm`` that was on the wire may or may not have arrived, so it is failed
  with ``uncertain=True`` instead of being sent twice. A request that is not
  ``durable`` (a file offer) fails with its connection.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .events import RequestState, RequestStatus, RequestUpdate, refusal_words

# Requests that can be sent again after a dropped connection without doing anything twice.
IDEMPOTENT_TYPES = frozenset({"users", "rooms", "join", "leave", "history", "ping"})


@dataclass
class Request:
    id: str
    message: dict[str, Any]
    durable: bool  # survives a dropped connection (queued and sent again)
    state: RequestState = RequestState.QUEUED
    link: object | None = None  # the connection it was handed to

    def status(self, **changes: Any) -> RequestStatus:
        return RequestStatus(self.id, dict(self.message), self.state, **changes)


class Outbox:
    """The requests that are neither answered nor failed, oldest first."""

    def __init__(self) -> None:
        self._requests: OrderedDict[str, Request] = OrderedDict()

    def add(self, message: dict[str, Any], *, durable: bool) -> Request:
        """Track ``message`` (it carries its ``id``) as QUEUED."""
        request = Request(message["id"], message, durable)
        self._requests[request.id] = request
        return request

    def waiting(self) -> list[Request]:
        """Queued requests that no connection has taken yet, oldest first."""
        return [
            r for r in self._requests.values() if r.state is RequestState.QUEUED and r.link is None
        ]

    def mark_sent(self, request: Request, link: object) -> RequestUpdate | None:
        """``link``'s writer is about to send ``request``; None if it no longer may."""
        if request.link is not link or request.state is not RequestState.QUEUED:
            return None
        request.state = RequestState.SENT
        return RequestUpdate(request.status())

    def answer(self, message: dict[str, Any]) -> RequestUpdate | None:
        """The server's direct answer to a request (by ``ref``); None if it answers none."""
        ref = message.get("ref")
        request = self._requests.get(ref) if isinstance(ref, str) else None
        if request is None:
            return None
        if message.get("type") != "error":
            return self._finish(request, RequestState.DONE, message)
        code = message.get("code")
        return self._finish(
            request,
            RequestState.FAILED,
            message,
            error=refusal_words(message),
            code=code if isinstance(code, str) else None,
        )

    def requeue(self, link: object) -> list[RequestUpdate]:
        """``link`` is gone: queue again what it carried, or fail what is uncertain."""
        updates = []
        for request in list(self._requests.values()):
            if request.link is not link:
                continue
            if request.state is RequestState.QUEUED or (
                request.durable and request.message["type"] in IDEMPOTENT_TYPES
            ):
                request.state = RequestState.QUEUED
                request.link = None
            else:
                error = (
                    "the connection was lost before the server confirmed it; "
                    "it may or may not have been delivered"
                    if request.durable
                    else "the connection was lost"
                )
                updates.append(
                    self._finish(request, RequestState.FAILED, error=error, uncertain=True)
                )
        return updates

    def fail_all(self, reason: str) -> list[RequestUpdate]:
        """The session ends: fail everything; what was on the wire is uncertain."""
        return [
            self._finish(
                request,
                RequestState.FAILED,
                error=reason,
                uncertain=request.state is RequestState.SENT,
            )
            for request in list(self._requests.values())
        ]

    def pending(self) -> list[RequestStatus]:
        return [request.status() for request in self._requests.values()]

    def _finish(
        self,
        request: Request,
        state: RequestState,
        answer: dict[str, Any] | None = None,
        **changes: Any,
    ) -> RequestUpdate:
        request.state = state
        request.link = None
        self._requests.pop(request.id, None)
        return RequestUpdate(request.status(**changes), answer)
