"""How a session logs in, and again after each reconnect: a password, or a remembered device.

:class:`SignIn` keeps what the next ``login`` or ``resume`` needs (PROTOCOL.md 3.1,
3.4) and nothing longer than that:

- a password only in memory, only while it is the way back in: once a login with
  ``remember`` stored the device's token (:mod:`tk_client.device_tokens`), the
  password is dropped and reconnects send ``resume`` with the token;
- a one-time code for one login only (a reconnect without a remembered device
  asks for a fresh one);
- the token only on disk (mode 0600), read when a ``resume`` is sent, and only
  for the server key it was issued by.

No sockets, threads or locks here: :class:`tk_client.session.ChatSession` calls
it under its own lock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatproto.connection import LoggedIn

from .device_tokens import DeviceTokens

if TYPE_CHECKING:
    from .transport import Link

NO_STORED_DEVICE = (
    "This computer keeps no sign-in for {username} on this server (or it was forgotten). "
    "Log in with your password."
)


@dataclass
class _Credentials:
    """How to log in (again): with ``password``, or when it is None with the stored token."""

    username: str
    password: str | None = field(default=None, repr=False)
    otp: str | None = field(default=None, repr=False)
    register: bool = False
    remember: str | None = None  # the device name to send with the next password login


class SignIn:
    """The way this session logs in; the tokens of remembered devices in ``tokens``."""

    def __init__(self, tokens: DeviceTokens) -> None:
        self.tokens = tokens
        self._credentials: _Credentials | None = None
        # The login on the wire: a resume (with a token), and whether it carried a code.
        self.resuming = False
        self.otp_sent = False

    def __repr__(self) -> str:
        return f"<SignIn {self._credentials!r}>"

    @property
    def ready(self) -> bool:
        """True while there is a way to log in (again)."""
        return self._credentials is not None

    @property
    def username(self) -> str | None:
        return self._credentials.username if self._credentials is not None else None

    def use_password(
        self,
        username: str,
        password: str,
        *,
        register: bool = False,
        otp: str | None = None,
        remember: str | None = None,
    ) -> None:
        self._credentials = _Credentials(username, password, otp or None, register, remember)

    def use_token(self, username: str) -> None:
        self._credentials = _Credentials(username)

    def give_otp(self, code: str) -> bool:
        """The code for the login waiting for one; False if none waits (no password kept)."""
        creds = self._credentials
        if creds is None or creds.password is None:
            return False
        creds.otp = code.strip() or None
        return True

    def drop(self) -> None:
        """Forget everything: no login will be sent until the user gives one."""
        self._credentials = None

    def drop_password(self) -> None:
        """Keep the username, forget the password (a logout on its way: no login after a drop)."""
        if self._credentials is not None:
            self._credentials.password = None

    def send(self, link: Link, login_id: str, fingerprint: str) -> str | None:
        """Queue the login on ``link``; None if sent, else why not (no token stored).

        Without a stored token for this server the credentials are dropped: the words
        returned say to log in with the password.
        """
        creds = self._credentials
        assert creds is not None
        if creds.password is None:
            stored = self.tokens.get(fingerprint, creds.username)
            if stored is None:
                self._credentials = None
                return NO_STORED_DEVICE.format(username=creds.username)
            self.resuming, self.otp_sent = True, False
            link.put_resume(login_id, creds.username, stored.token)
            return None
        self.resuming, self.otp_sent = False, creds.otp is not None
        link.put_login(
            login_id,
            creds.username,
            creds.password,
            otp=creds.otp,
            register=creds.register,
            remember=creds.remember,
        )
        return None

    def logged_in(self, event: LoggedIn, fingerprint: str | None) -> bool:
        """``login_ok``: store a new device's token (then drop the password); one-time codes
        are spent. True if this login carried a code (the account has two-factor login)."""
        with_otp, creds = self.otp_sent, self._credentials
        if creds is None:
            return with_otp
        creds.register = False  # reconnects log in to the new account
        creds.otp = None  # one-time codes are one-time
        token = event.token
        if creds.remember and event.device and token and fingerprint is not None:
            if self._store(fingerprint, event.username, event.device, token):
                creds.password = None  # from now on the token logs in: resume
            creds.remember = None  # one device per login with remember
        return with_otp

    def code_refused(self) -> None:
        """``otp_required``: the code (if any) is spent; the password waits for the next."""
        if self._credentials is not None:
            self._credentials.otp = None

    def password_changed(self, new_password: str) -> None:
        """The password was changed: reconnects that log in with one use the new one."""
        creds = self._credentials
        if creds is not None and creds.password is not None:
            creds.password = new_password

    def forget_token(self, fingerprint: str | None, username: str | None) -> None:
        """The server no longer honours this user's token (revoked, logged out, refused)."""
        username = self.username or username
        if username is not None and fingerprint is not None:
            with contextlib.suppress(OSError):  # nothing to lose: it no longer works
                self.tokens.forget(fingerprint, username)

    def stored(self, fingerprint: str, username: str) -> bool:
        return self.tokens.get(fingerprint, username) is not None

    def _store(self, fingerprint: str, username: str, device: str, token: str) -> bool:
        try:
            self.tokens.put(fingerprint, username, device, token)
        except OSError:
            return False  # the password stays in memory: reconnects still work
        return True
