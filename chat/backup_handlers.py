"""The key backup's requests (docs/protocol.md 4.13): publish, get, put and fetch.

One ``handle_<type>`` per request, as in :mod:`chat.handlers`; the work is
:mod:`chat.backups`'. Every one needs a device (``device_required`` without one,
as the other requests of section 4). ``backup_publish`` runs in a password thread,
since a reset checks the password. Also the layer event ``chat.backup_changed``:
the push of a new backup to the user's sessions but the publisher's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from accounts.models import User
from chatproto.messages import Request

from . import backups, e2e_services, services
from .outbox import Outbox

if TYPE_CHECKING:
    from .runtime import ChatRuntime


class BackupHandlers:
    """The handlers; what they use of the consumer is declared here."""

    outbox: Outbox
    runtime: ChatRuntime
    user: User | None
    device: str | None
    channel_name: str
    address: str

    async def send_message(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def listening(self) -> bool:
        raise NotImplementedError

    async def handle_backup_publish(self, request: Request) -> None:
        """``ok``; a new version's ``backup_changed`` goes to the other sessions after it."""
        r: Any = request
        device = e2e_services.require_device(self.device)
        await self.outbox.password_service(
            backups.publish_backup,
            self.user,
            device,
            r.backup,
            r.password,
            self.address,
            origin=self.channel_name,
        )
        await self.send_message(services.answer("ok", request.id))

    async def handle_backup_get(self, request: Request) -> None:
        e2e_services.require_device(self.device)
        await self.send_message(
            await self.outbox.service(backups.backup_answer, self.user, request.id)
        )

    async def handle_backup_put(self, request: Request) -> None:
        r: Any = request
        e2e_services.require_device(self.device)
        stored, count = await self.outbox.service(
            backups.put_sessions, self.user, r.version, r.sessions
        )
        await self.send_message(
            services.answer("backup_stored", request.id, stored=stored, count=count)
        )

    async def handle_backup_fetch(self, request: Request) -> None:
        r: Any = request
        e2e_services.require_device(self.device)
        page = await self.outbox.service(
            backups.fetch_sessions, self.user, r.version, r.after, r.limit, request.id
        )
        await self.send_message(page)

    async def chat_backup_changed(self, event: dict[str, Any]) -> None:
        """``backup_changed`` for this session, unless it is the one that published."""
        if event.get("exclude") == self.channel_name:
            return
        async with self.outbox.lock:
            if self.listening():
                await self.send_message(event["message"])
