"""A small in-process chat server for the session's own tests.

It speaks the real protocol through :class:`chatproto.connection.ServerConnection`
over a real WebSocket (websockets' threaded server), but keeps everything in
memory and lets a test do what a real server only does by accident: drop every
connection at once, close with a chosen code, hold back answers, restart with
another key on the same port. The end-to-end tests use the real server
(``tests/live_server.py``); this one exists to make the failure paths
deterministic.

It also speaks PROTOCOL.md 3.4 (devices, passwords, two-factor login), with
rules a test can see through: a ``remember`` creates a device whose token is
``token-<id>``; an account in :attr:`FakeServer.otp` needs that code (or one of
its :attr:`FakeServer.backup_codes`, each once) to log in; ``otp_setup`` hands
out :data:`FAKE_SECRET` and ``otp_confirm`` accepts :attr:`FakeServer.otp_code`;
a new password of fewer than 8 characters is refused.

Like the real server (PROTOCOL.md 4.5), it refuses ``text`` in a ``pm`` or in a private
room with ``e2e_required`` and the server's words, and stores nothing; it keeps and
relays an ``e2e`` object as it came, without checking it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.server import serve

from chatproto import crypto_utils
from chatproto.connection import (
    CloseConnection,
    RequestReceived,
    SendRecord,
    ServerConnection,
)
from tk_client.address import ServerAddress, parse_address

FAKE_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # base32, 32 characters
# The real server's words (chat.services.E2E_REQUIRED; a chat test checks they are the same).
E2E_REQUIRED = "this conversation is end-to-end encrypted; update your client"
MIN_PASSWORD = 8


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _content(request: dict[str, Any]) -> dict[str, Any]:
    """A ``send`` or ``pm``'s body as stored and pushed: its ``e2e`` object, else its text."""
    if request.get("e2e") is not None:
        return {"e2e": request["e2e"]}
    return {"text": request.get("text")}


@dataclass
class _Client:
    ws: Any
    conn: ServerConnection
    lock: threading.Lock = field(default_factory=threading.Lock)
    username: str | None = None
    device: str | None = None  # the remembered device this session logged in as
    # What this session was last told of presence (PROTOCOL.md 3.2): the base of its next delta.
    told_online: frozenset[str] = frozenset()
    told_all: frozenset[str] = frozenset()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock, contextlib.suppress(Exception):
            self.ws.send(self.conn.send(message))

    def apply(self, events: list[Any]) -> bool:
        """Carry out the connection's own events; False once it must close."""
        for event in events:
            if isinstance(event, SendRecord):
                with self.lock, contextlib.suppress(Exception):
                    self.ws.send(event.data)
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(Exception):
                    self.ws.close(int(event.code))
                return False
        return True


class FakeServer:
    """``users`` maps usernames to passwords; rooms are ``lobby`` plus what is created.

    ``presence_interval`` set: revision 1.1 presence. ``users`` (with the interval) goes once
    after login and answers a ``users`` request; then every ``presence_interval`` seconds each
    session gets the net change since it was last told, as one ``presence`` (or call
    :meth:`flush_presence`). None: revision 1, a whole ``users`` pushed on every change.
    """

    def __init__(
        self,
        private_key: Any,
        users: dict[str, str] | None = None,
        *,
        registration: bool = False,
        presence_interval: int | None = None,
        require_2fa: bool = False,
    ) -> None:
        self.private_key = private_key
        self.fingerprint = crypto_utils.fingerprint(private_key)
        self.users = dict(users or {})
        self.registration = registration
        self.rooms: dict[str, dict[str, Any]] = {
            "lobby": {"name": "lobby", "private": False, "owner": None, "members": []}
        }
        self.messages: list[dict[str, Any]] = []
        self.requests: list[tuple[str | None, dict[str, Any]]] = []  # (username, request)
        self.origins: list[str | None] = []
        self.extensions: list[str | None] = []
        self.hold_answers = threading.Event()  # set: requests are recorded but not answered
        self.login_answer: dict[str, Any] | None = None  # set: every login gets this answer
        # type -> the error (code, message, retry_after...) that every such request gets
        self.refusals: dict[str, dict[str, Any]] = {}
        self.logins = 0
        self.handshakes = 0  # connections whose client sent a valid key
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.presence_interval = presence_interval
        self.presence_sent: list[tuple[str, dict[str, Any]]] = []  # (username, presence)
        self._presence_lock = threading.Lock()  # one flush at a time: deltas stay in order
        self._stopped = threading.Event()
        # PROTOCOL.md 3.4
        self.require_2fa = require_2fa
        self.devices: dict[str, dict[str, Any]] = {}  # id -> user, name, token, created, ...
        self.otp: dict[str, str] = {}  # username -> the code that logs in (two-factor login on)
        self.otp_code = "123456"  # what otp_confirm accepts, and then the account's code
        self.backup_codes: dict[str, list[str]] = {}  # username -> unused backup codes
        self._otp_pending: set[str] = set()  # otp_setup done, not confirmed
        self.full_start_delay = 0.0  # seconds between otp_enabled and the rooms push
        self._device_ids = itertools.count(1)

    # --- control ----------------------------------------------------------------------------

    def start(self) -> FakeServer:
        self._server = serve(self._handle, "127.0.0.1", self.port, compression=None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        if self.presence_interval is not None:
            threading.Thread(target=self._presence_timer, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection (as a crashed server would)."""
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.drop_all()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def address(self) -> ServerAddress:
        return parse_address(f"ws://127.0.0.1:{self.port}")

    def drop_all(self) -> None:
        """Cut every connection without a close frame (a network failure)."""
        with self._lock:
            clients, self._clients = list(self._clients), []
        for client in clients:
            with contextlib.suppress(OSError):
                client.ws.socket.shutdown(socket.SHUT_RDWR)

    def close_all(self, code: int, before: dict[str, Any] | None = None) -> None:
        """Close every connection with ``code``, after sending ``before`` if given."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if before is not None:
                client.send(before)
            with contextlib.suppress(Exception):
                client.ws.close(code)

    def push(self, username: str, message: dict[str, Any]) -> None:
        for client in self._sessions_of(username):
            client.send(message)

    def add_account(self, username: str, password: str) -> None:
        self.users[username] = password
        self._presence_changed()

    def remove_account(self, username: str) -> None:
        self.users.pop(username, None)
        self._presence_changed()

    def flush_presence(self) -> None:
        """Revision 1.1: send each logged-in session its net change since it was last told."""
        with self._presence_lock:
            online, everyone = frozenset(self._online()), frozenset(self.users)
            with self._lock:
                clients = [c for c in self._clients if c.username]
            for client in clients:
                delta = {
                    "type": "presence",
                    "online": sorted(online - client.told_online),
                    "offline": sorted(client.told_online - online),
                    "added": sorted(everyone - client.told_all),
                    "removed": sorted(client.told_all - everyone),
                }
                if not any(delta[k] for k in ("online", "offline", "added", "removed")):
                    continue
                client.told_online, client.told_all = online, everyone
                self.presence_sent.append((client.username or "", delta))
                client.send(delta)

    def end_sessions(self, username: str, reason: str, *, device: str | None = None) -> None:
        """``session_ended`` ``reason`` then 4003, to ``username``'s sessions (of ``device``)."""
        for client in self._sessions_of(username):
            if device is None or client.device == device:
                self._end(client, reason)

    def devices_of(self, username: str) -> list[str]:
        return [d for d, info in self.devices.items() if info["user"] == username]

    def requests_of(self, kind: str) -> list[dict[str, Any]]:
        return [request for _, request in self.requests if request["type"] == kind]

    def logged_in(self, username: str) -> bool:
        return bool(self._sessions_of(username))

    # --- serving ----------------------------------------------------------------------------

    def _sessions_of(self, username: str) -> list[_Client]:
        with self._lock:
            return [c for c in self._clients if c.username == username]

    def _handle(self, ws: Any) -> None:
        self.origins.append(ws.request.headers.get("Origin"))
        self.extensions.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        client = _Client(ws, ServerConnection(self.private_key))
        with self._lock:
            self._clients.append(client)
        try:
            ws.send(client.conn.hello())
            greeted = False
            for data in ws:
                if isinstance(data, str):
                    events = client.conn.receive_text(data)
                else:
                    events = client.conn.receive_bytes(data)
                if not client.apply([e for e in events if not isinstance(e, RequestReceived)]):
                    return
                if not greeted and client.conn.session_id is not None:
                    greeted = True
                    self.handshakes += 1
                    client.send(
                        {
                            "type": "greeting",
                            "server": "Fake",
                            "text": "Welcome to the fake server",
                            "registration": self.registration,
                            "limits": {"max_text": 4000, "max_file_size": 1 << 20},
                        }
                    )
                for event in events:
                    if isinstance(event, RequestReceived):
                        request = event.request.as_dict()
                        request["type"] = event.request.type
                        self.requests.append((client.username, request))
                        if not self.hold_answers.is_set():
                            self._serve(client, request)
        except Exception:
            return
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            if client.username is not None:
                self._presence_changed()

    def _room_list(self, username: str) -> list[dict[str, Any]]:
        return [
            dict(room)
            for room in self.rooms.values()
            if not room["private"] or username in room["members"]
        ]

    def _serve(self, client: _Client, request: dict[str, Any]) -> None:
        kind, ref = request["type"], request.get("id")
        answer: dict[str, Any]
        if kind in ("login", "register") and self.login_answer is not None:
            client.apply(client.conn.login_failed({**self.login_answer, "ref": ref}))
            return
        if kind in ("login", "register", "resume"):
            self._log_in(client, request)
            return
        username = client.username or ""
        if kind in self.refusals:
            client.send({"type": "error", **self.refusals[kind], "ref": ref})
            return
        if self._enrolling(username) and kind not in ("otp_setup", "otp_confirm", "logout", "ping"):
            client.send(self._error(ref, "forbidden", "turn on two-factor login first"))
            return
        if self._serve_account(client, request):
            return
        content = _content(request)
        if kind == "send":
            room = self.rooms.get(request["room"])
            if "text" in content and room is not None and room["private"]:
                client.send(self._error(ref, "e2e_required", E2E_REQUIRED))
                return
            message = {
                "msg_id": next(self._ids),
                "room": request["room"],
                "from": username,
                **content,
                "ts": _now(),
            }
            self.messages.append(message)
            client.send(
                {"type": "ack", "ref": ref, "msg_id": message["msg_id"], "ts": message["ts"]}
            )
            with self._lock:
                clients = [c for c in self._clients if c.username]
            for other in clients:
                other.send({"type": "message", **message})
        elif kind == "pm":
            if request["to"] not in self.users:
                client.send(
                    {"type": "error", "ref": ref, "code": "unknown_user", "message": "no such user"}
                )
                return
            if "text" in content:
                client.send(self._error(ref, "e2e_required", E2E_REQUIRED))
                return
            message = {
                "msg_id": next(self._ids),
                "from": username,
                "to": request["to"],
                **content,
                "ts": _now(),
            }
            self.messages.append(message)
            client.send(
                {"type": "ack", "ref": ref, "msg_id": message["msg_id"], "ts": message["ts"]}
            )
            for name in {username, request["to"]}:
                self.push(name, {"type": "private", **message})
        elif kind == "users":
            client.send({**self._users_snapshot(client), "ref": ref})
        elif kind in ("rooms", "join", "create_room"):
            if kind == "create_room":
                self.rooms[request["room"]] = {
                    "name": request["room"],
                    "private": request["private"],
                    "owner": username,
                    "members": sorted({username, *request["members"]}),
                }
            if kind == "join":
                room = self.rooms.get(request["room"])
                if room is None or room["private"]:
                    client.send(
                        {
                            "type": "error",
                            "ref": ref,
                            "code": "unknown_room",
                            "message": "no such room",
                        }
                    )
                    return
                room["members"] = sorted(set(room["members"]) | {username})
            client.send({"type": "rooms", "ref": ref, "rooms": self._room_list(username)})
        elif kind == "history":
            room, with_ = request.get("room"), request.get("with_")
            before, limit = request.get("before"), request.get("limit") or 50
            selected = [
                m
                for m in self.messages
                if (room is not None and m.get("room") == room)
                or (with_ is not None and {m.get("from"), m.get("to")} == {username, with_})
            ]
            if before is not None:
                selected = [m for m in selected if m["msg_id"] < before]
            page = selected[-limit:]
            answer = {
                "type": "history",
                "ref": ref,
                "messages": page,
                "has_more": len(selected) > limit,
            }
            answer["room" if room is not None else "with"] = room if room is not None else with_
            client.send(answer)
        elif kind == "ping":
            client.send({"type": "pong", "ref": ref})
        else:
            client.send({"type": "error", "ref": ref, "code": "bad_request", "message": "not here"})

    # --- PROTOCOL.md 3.1 and 3.4: logging in, devices, passwords, two-factor login ---------------

    @staticmethod
    def _error(ref: Any, code: str, message: str) -> dict[str, Any]:
        return {"type": "error", "ref": ref, "code": code, "message": message}

    def _end(self, client: _Client, reason: str) -> None:
        client.send({"type": "session_ended", "reason": reason})
        with contextlib.suppress(Exception):
            client.ws.close(4003)

    def _enrolling(self, username: str) -> bool:
        return self.require_2fa and bool(username) and username not in self.otp

    def _log_in(self, client: _Client, request: dict[str, Any]) -> None:
        kind, ref, username = request["type"], request.get("id"), request["username"]
        failed = {"type": "login_failed", "ref": ref, "reason": "invalid_credentials"}
        device: str | None = None
        extra: dict[str, Any] = {}
        if kind == "resume":
            device = next(
                (
                    d
                    for d, info in self.devices.items()
                    if info["user"] == username and info["token"] == request["token"]
                ),
                None,
            )
            if device is None or username not in self.users:
                client.apply(client.conn.login_failed(failed))
                return
            self.devices[device]["last_seen"] = _now()
        else:
            password = request["password"]
            if kind == "register":
                if not self.registration:
                    answer = {"type": "register_failed", "reason": "closed", "message": "closed"}
                    client.send({**answer, "ref": ref})
                    return
                self.users[username] = password
            if self.users.get(username) != password:
                client.apply(client.conn.login_failed(failed))
                return
            if username in self.otp and not self._otp_accepted(username, request.get("otp")):
                refused = {**failed, "reason": "otp_required"}
                client.apply(client.conn.login_failed(refused))
                return
            if request.get("remember"):
                device = f"dev{next(self._device_ids)}"
                token = f"token-{device}"
                self.devices[device] = {
                    "user": username,
                    "name": request["remember"],
                    "token": token,
                    "created": _now(),
                    "last_seen": _now(),
                }
                extra["token"] = token
        if device is not None:
            extra["device"] = device
        enrolling = self._enrolling(username)
        if enrolling:
            extra["otp_enrolment_required"] = True
        client.conn.login_succeeded()
        client.username, client.device = username, device
        self.logins += 1
        self.rooms["lobby"]["members"] = sorted(set(self.rooms["lobby"]["members"]) | {username})
        client.send(
            {
                "type": "login_ok",
                "ref": ref,
                "user": {"username": username},
                "rooms": [] if enrolling else self._room_list(username),
                **extra,
            }
        )
        if not enrolling:  # else after otp_confirm, as the real server does
            client.send(self._users_snapshot(client))
            self._presence_changed()

    def _otp_accepted(self, username: str, code: Any) -> bool:
        if not isinstance(code, str):
            return False
        if code == self.otp[username]:
            return True
        unused = self.backup_codes.get(username, [])
        if code in unused:
            unused.remove(code)
            return True
        return False

    def _serve_account(self, client: _Client, request: dict[str, Any]) -> bool:
        """The 3.4 requests after login; False for any other type."""
        kind, ref, username = request["type"], request.get("id"), client.username or ""
        if kind == "devices":
            online = {c.device for c in self._sessions_of(username) if c.device}
            mine = [(d, info) for d, info in self.devices.items() if info["user"] == username]
            mine.sort(key=lambda item: item[1]["last_seen"], reverse=True)
            listed = [
                {
                    "device": d,
                    "name": info["name"],
                    "created": info["created"],
                    "last_seen": info["last_seen"],
                    "current": d == client.device,
                    "online": d in online,
                }
                for d, info in mine
            ]
            client.send({"type": "devices", "ref": ref, "devices": listed})
        elif kind == "revoke":
            device = request["device"]
            if self.devices.get(device, {}).get("user") != username:
                client.send(self._error(ref, "unknown_device", "no such device"))
                return True
            del self.devices[device]
            client.send({"type": "ok", "ref": ref})
            self.end_sessions(username, "revoked", device=device)
        elif kind == "logout":
            if client.device is not None:
                self.devices.pop(client.device, None)
            client.send({"type": "ok", "ref": ref})
            self._end(client, "logged_out")
        elif kind == "change_password":
            if request["password"] != self.users.get(username):
                client.send(self._error(ref, "invalid_credentials", "wrong password"))
            elif len(request["new_password"]) < MIN_PASSWORD:
                words = f"This password is too short. It must contain at least {MIN_PASSWORD} "
                client.send(self._error(ref, "invalid_password", words + "characters."))
            else:
                self.users[username] = request["new_password"]
                for device in self.devices_of(username):
                    if device != client.device:
                        del self.devices[device]
                client.send({"type": "ok", "ref": ref})
                for other in self._sessions_of(username):
                    if other is not client:
                        self._end(other, "password_changed")
        elif kind == "otp_setup":
            if username in self.otp:
                client.send(self._error(ref, "bad_request", "two-factor login is already on"))
                return True
            self._otp_pending.add(username)
            uri = f"otpauth://totp/Fake:{username}?secret={FAKE_SECRET}&issuer=Fake"
            client.send({"type": "otp_setup", "ref": ref, "secret": FAKE_SECRET, "uri": uri})
        elif kind == "otp_confirm":
            if username not in self._otp_pending or request["code"] != self.otp_code:
                client.send(self._error(ref, "invalid_otp", "wrong code"))
                return True
            self._otp_pending.discard(username)
            self.otp[username] = self.otp_code
            codes = [f"{i:04d}-bbbb-cccc-dddd" for i in range(10)]
            self.backup_codes[username] = list(codes)
            client.send({"type": "otp_enabled", "ref": ref, "backup_codes": codes})
            if self.require_2fa:  # the session starts in full now: rooms, then users
                self._stopped.wait(self.full_start_delay)  # a busy server is slower
                client.send({"type": "rooms", "rooms": self._room_list(username)})
                client.send(self._users_snapshot(client))
        elif kind == "otp_disable":
            if request["password"] != self.users.get(username):
                client.send(self._error(ref, "invalid_credentials", "wrong password"))
            elif username not in self.otp or request["code"] != self.otp[username]:
                client.send(self._error(ref, "invalid_otp", "wrong code"))
            else:
                del self.otp[username]
                client.send({"type": "ok", "ref": ref})
        else:
            return False
        return True

    def _users_snapshot(self, client: _Client) -> dict[str, Any]:
        with self._presence_lock:
            online, everyone = self._online(), sorted(self.users)
            client.told_online, client.told_all = frozenset(online), frozenset(everyone)
        message = {"type": "users", "online": online, "all": everyone}
        if self.presence_interval is not None:
            message["presence_interval"] = self.presence_interval
        return message

    def _presence_changed(self) -> None:
        """Someone logged in or out, or an account came or went."""
        if self.presence_interval is not None:
            return  # the timer (or flush_presence) sends the net change
        with self._lock:
            clients = [c for c in self._clients if c.username]
        for client in clients:  # revision 1: the whole list to everyone
            client.send(self._users_snapshot(client))

    def _presence_timer(self) -> None:
        assert self.presence_interval is not None
        while not self._stopped.wait(self.presence_interval):
            self.flush_presence()

    def _online(self) -> list[str]:
        with self._lock:
            return sorted({c.username for c in self._clients if c.username})
