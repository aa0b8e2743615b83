"""The account's requests (PROTOCOL.md 3.4): devices, password change, two-factor login.

One ``handle_<type>`` per request, as in :mod:`chat.handlers`; the work is
``accounts``' (:mod:`accounts.devices`, :mod:`accounts.services`,
:mod:`accounts.two_factor`), whose :class:`~accounts.errors.ServiceError` the
consumer answers with ``error`` (:func:`chat.services.error_code`). What hashes a
password or checks a one-time password runs in the password threads. Sessions
that a request ends (a revoked device's, the others after a password change) are
told after the commit, through :mod:`chat.signals`, once this session's answer
is out (the outbox sends its broadcasts when the session's lock is let go).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from django.conf import settings

from accounts import devices, two_factor
from accounts import services as accounts
from accounts.models import User
from chatproto.codes import ErrorCode
from chatproto.messages import Request

from . import lifecycle, services
from .outbox import Outbox

if TYPE_CHECKING:
    from chatproto.connection import ServerConnection

    from .runtime import ChatRuntime

# otp_disable where the server requires two-factor login (CHAT_REQUIRE_2FA).
TWO_FACTOR_REQUIRED = "this server requires two-factor login: it cannot be turned off"


class AccountHandlers:
    """The handlers; what they use of the consumer is declared here."""

    outbox: Outbox
    runtime: ChatRuntime
    conn: ServerConnection | None
    user: User | None
    username: str
    device: str | None
    channel_name: str
    address: str

    async def send_message(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def end(self, reason: str) -> None:
        raise NotImplementedError

    async def handle_resume(self, request: Request) -> None:
        await lifecycle.resume(self, request)  # type: ignore[arg-type]  # the consumer that mixes these handlers in is a lifecycle.Session

    async def handle_devices(self, request: Request) -> None:
        listing = await self.outbox.service(
            services.devices_answer, self.user, self.device, request.id
        )
        await self.send_message(listing)

    async def handle_revoke(self, request: Request) -> None:
        """``ok``, then the device's sessions (this one too, if it is its own) end ``revoked``."""
        r: Any = request
        await self.outbox.service(devices.revoke_device, self.user, r.device)
        await self.send_message(services.answer("ok", request.id))

    async def handle_logout(self, request: Request) -> None:
        """``ok``; the session's device is revoked (its other sessions get ``revoked``, this
        one not: they go out after the lock), then ``session_ended`` ``logged_out``."""
        await self.send_message(services.answer("ok", request.id))
        try:
            if self.device is not None:
                # Revoked meanwhile (another session, the admin): nothing left to do.
                with contextlib.suppress(services.ServiceError):
                    await self.outbox.service(devices.revoke_device, self.user, self.device)
        finally:
            await self.end("logged_out")  # whatever happened to the device

    async def handle_change_password(self, request: Request) -> None:
        """``ok``; the other devices are revoked and the other sessions end
        ``password_changed`` (accounts does both); this session and its device stay."""
        r: Any = request
        await self.outbox.password_service(
            accounts.change_password,
            self.user,
            r.password,
            r.new_password,
            self.address,
            keep_session=self.channel_name,
            keep_device=self.device,
        )
        await self.send_message(services.answer("ok", request.id))

    async def handle_otp_setup(self, request: Request) -> None:
        setup = await self.outbox.password_service(two_factor.otp_setup, self.user)
        await self.send_message(
            services.answer("otp_setup", request.id, secret=setup.secret, uri=setup.uri)
        )

    async def handle_otp_confirm(self, request: Request) -> None:
        """``otp_enabled`` with the backup codes; a session that had to enrol starts now."""
        r: Any = request
        codes = await self.outbox.password_service(two_factor.otp_confirm, self.user, r.code)
        await self.send_message(
            services.answer("otp_enabled", request.id, backup_codes=list(codes))
        )
        if self.conn is not None and self.conn.enrolment_required:
            await lifecycle.enrolled(self)  # type: ignore[arg-type]  # the consumer is a lifecycle.Starting

    async def handle_otp_disable(self, request: Request) -> None:
        r: Any = request
        if settings.CHAT_REQUIRE_2FA:
            raise services.ServiceError(ErrorCode.FORBIDDEN, TWO_FACTOR_REQUIRED)
        await self.outbox.password_service(
            two_factor.otp_disable, self.user, r.password, r.code, self.address
        )
        await self.send_message(services.answer("ok", request.id))
