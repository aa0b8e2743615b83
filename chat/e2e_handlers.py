"""End-to-end encryption's requests (docs/protocol.md section 4): the key directory and
the to-device relay.

One ``handle_<type>`` per request, as in :mod:`chat.handlers`; the work is
:mod:`chat.e2e_services`'. Every one needs a device: a session logged in without
``remember`` gets ``error`` ``device_required``. Also the layer event
``chat.to_device``: the to-device pushes for this session's device. The
messages queued while the device was away go out at login, after ``login_ok``
(:func:`send_queued_to_device`, called by :mod:`chat.lifecycle`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from accounts.models import User
from chatproto.messages import Request

from . import e2e_services, services
from .outbox import Outbox

if TYPE_CHECKING:
    from .runtime import ChatRuntime


class E2EHandlers:
    """The handlers; what they use of the consumer is declared here."""

    outbox: Outbox
    runtime: ChatRuntime
    user: User | None
    user_id: int
    device: str | None

    async def send_message(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def listening(self) -> bool:
        raise NotImplementedError

    def _device(self) -> str:
        return e2e_services.require_device(self.device)

    async def handle_keys_upload(self, request: Request) -> None:
        r: Any = request
        left = await self.outbox.service(
            e2e_services.upload_keys,
            self.user,
            self._device(),
            device_keys=r.device_keys,
            one_time_keys=r.one_time_keys,
            fallback_key=r.fallback_key,
        )
        await self.send_message(services.answer("keys_uploaded", request.id, one_time_keys=left))

    async def handle_user_key_publish(self, request: Request) -> None:
        r: Any = request
        await self.outbox.service(
            e2e_services.publish_user_key, self.user, self._device(), r.user_key, reset=r.reset
        )
        await self.send_message(services.answer("ok", request.id))

    async def handle_keys_query(self, request: Request) -> None:
        r: Any = request
        self._device()
        users = await self.outbox.service(e2e_services.query_keys, r.users)
        await self.send_message(services.answer("keys", request.id, users=users))

    async def handle_keys_claim(self, request: Request) -> None:
        """``rate_limited`` past the user's claims (``e2e_services.KEYS_CLAIM_RATE``)."""
        r: Any = request
        self._device()
        now = time.monotonic()
        e2e_services.admit_claim(self.runtime.limits, self.user_id, len(r.devices), now)
        keys = await self.outbox.service(e2e_services.claim_keys, r.devices)
        await self.send_message(services.answer("keys_claimed", request.id, keys=keys))

    async def handle_device_list_changes(self, request: Request) -> None:
        r: Any = request
        self._device()
        changes = await self.outbox.service(e2e_services.device_list_changes, self.user, r.since)
        await self.send_message(services.answer("device_list_changes", request.id, **changes))

    async def handle_to_device(self, request: Request) -> None:
        """``ok`` once stored; the pushes follow the answer (the outbox sends them after it)."""
        r: Any = request
        await self.outbox.service(
            e2e_services.send_to_device, self.user, self._device(), r.messages
        )
        await self.send_message(services.answer("ok", request.id))

    async def handle_to_device_ack(self, request: Request) -> None:
        """No answer: the device's queue up to ``upto`` is deleted."""
        r: Any = request
        await self.outbox.service(e2e_services.acknowledge_to_device, self._device(), r.upto)

    async def chat_to_device(self, event: dict[str, Any]) -> None:
        """To-device pushes for the user's sessions: those of this session's device go out
        (a session still logging in gets them after its queued ones; a seq it has seen
        already it ignores, docs/protocol.md section 4)."""
        mine = [item["message"] for item in event["messages"] if item["device"] == self.device]
        if not mine or self.device is None:
            return
        async with self.outbox.lock:
            if self.listening():
                for message in mine:
                    await self.send_message(message)


async def send_queued_to_device(session: Any) -> None:
    """At login (``session``: a :class:`chat.lifecycle.Starting` with a device): the device's
    queued to-device messages, in ``seq`` order; they stay queued until acknowledged.

    Read a page (``e2e_services.TO_DEVICE_PAGE``) at a time, each page one query of its
    own, with no transaction held while the page is sent: a full queue never sits in
    memory at once. A message queued meanwhile may come in a later page and again live
    (after this, once the session's lock is released); the client ignores a ``seq`` it
    has seen.
    """
    after, page_size = 0, e2e_services.TO_DEVICE_PAGE
    while True:
        page = await session.outbox.service(
            e2e_services.queued_to_device, session.device, after, page_size
        )
        for message in page:
            await session.send_message(message)
        if len(page) < page_size:
            return
        after = page[-1]["seq"]
