"""The consumer's request handlers: one ``handle_<type>`` per request type (PROTOCOL.md 3.2).

Each handler turns a validated request into a service call and its answer; a
refusal is a :class:`~chat.services.ServiceError`, which the consumer answers
with ``error``. ``send`` and ``pm`` go to the session's outbox, which stores
them in batches (:mod:`chat.outbox`); login and registration to
:mod:`chat.lifecycle`; ``file_*`` requests to :mod:`chat.transfers`.
:class:`RequestHandlers` is mixed into ``chat.consumers.ChatConsumer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from accounts.models import User
from chatproto.messages import Request

from . import e2e_services, lifecycle, services
from .outbox import Outbox

if TYPE_CHECKING:
    from .runtime import ChatRuntime


class RequestHandlers:
    """The handlers; what they use of the consumer is declared here."""

    outbox: Outbox
    runtime: ChatRuntime
    user: User | None
    channel_name: str
    presence_seq: int | None
    device: str | None

    async def send_message(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def send_plaintext(self, plaintext: bytes) -> bool:
        raise NotImplementedError

    def follow_rooms(self, rooms: set[str]) -> None:
        raise NotImplementedError

    async def handle_login(self, request: Request) -> None:
        await lifecycle.login(self, request)  # type: ignore[arg-type]  # the consumer that mixes these handlers in is a lifecycle.Session

    async def handle_register(self, request: Request) -> None:
        await lifecycle.register(self, request)  # type: ignore[arg-type]  # the consumer that mixes these handlers in is a lifecycle.Session

    async def handle_ping(self, request: Request) -> None:
        await self.send_message(services.answer("pong", request.id))

    async def handle_send(self, request: Request) -> None:
        r: Any = request
        e2e_services.check_e2e_device(r.e2e, self.device)
        self.outbox.write(request, services.Outgoing(r.text, room=r.room, e2e=r.e2e))

    async def handle_pm(self, request: Request) -> None:
        r: Any = request
        e2e_services.check_e2e_device(r.e2e, self.device)
        self.outbox.write(request, services.Outgoing(r.text, to=r.to, e2e=r.e2e))

    async def handle_users(self, request: Request) -> None:
        feed = self.runtime.sessions.presence
        await self.send_plaintext(await feed.snapshot(self, request.id))  # type: ignore[arg-type]

    async def handle_rooms(self, request: Request) -> None:
        rooms = await self.outbox.service(services.rooms_for, self.user, self.runtime.public_rooms)
        await self.send_message(services.answer("rooms", request.id, rooms=rooms))

    async def handle_join(self, request: Request) -> None:
        r: Any = request
        await self._change_rooms(request, services.join_room, r.room)

    async def handle_leave(self, request: Request) -> None:
        r: Any = request
        await self._change_rooms(request, services.leave_room, r.room)

    async def handle_create_room(self, request: Request) -> None:
        r: Any = request
        await self._change_rooms(
            request, services.create_room, r.room, private=r.private, members=r.members
        )

    async def handle_invite(self, request: Request) -> None:
        r: Any = request
        await self._change_rooms(request, services.invite, r.room, r.user)

    async def handle_history(self, request: Request) -> None:
        r: Any = request
        page = await self.outbox.service(
            services.history,
            self.user,
            room=r.room,
            with_=r.with_,
            before=r.before,
            limit=r.limit,
            ref=r.id,
        )
        await self.send_message(page)

    async def _change_rooms(self, request: Request, change: Any, *args: Any, **kw: Any) -> None:
        """A service that changes the user's rooms, then the ``rooms`` answer."""
        await self.outbox.service(change, self.user, *args, origin=self.channel_name, **kw)
        rooms = await self.sync_rooms()
        await self.send_message(services.answer("rooms", request.id, rooms=rooms))

    async def sync_rooms(self) -> list[dict[str, Any]]:
        """Re-read the user's rooms, follow their messages; the ``rooms`` list."""
        names, rooms = await self.outbox.service(
            services.rooms_state, self.user, self.runtime.public_rooms
        )
        self.follow_rooms(names)
        return rooms
