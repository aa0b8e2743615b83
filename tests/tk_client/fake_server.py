"""A small in-process chat server for the session's own tests.

It speaks the real protocol through :class:`chatproto.connection.ServerConnection`
over a real WebSocket (websockets' threaded server), but keeps everything in
memory and lets a test do what a real server only does by accident: drop every
connection at once, close with a chosen code, hold back answers, restart with
another key on the same port. The end-to-end tests use the real server
(``tests/live_server.py``); this one exists to make the failure paths
deterministic.
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


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Client:
    ws: Any
    conn: ServerConnection
    lock: threading.Lock = field(default_factory=threading.Lock)
    username: str | None = None
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
        if kind in ("login", "register"):
            username, password = request["username"], request["password"]
            if kind == "register":
                if not self.registration:
                    answer = {"type": "register_failed", "reason": "closed", "message": "closed"}
                    client.send({**answer, "ref": ref})
                    return
                self.users[username] = password
            if self.users.get(username) != password:
                failed = {"type": "login_failed", "ref": ref, "reason": "invalid_credentials"}
                client.apply(client.conn.login_failed(failed))
                return
            client.conn.login_succeeded()
            client.username = username
            self.logins += 1
            self.rooms["lobby"]["members"] = sorted(
                set(self.rooms["lobby"]["members"]) | {username}
            )
            client.send(
                {
                    "type": "login_ok",
                    "ref": ref,
                    "user": {"username": username},
                    "rooms": self._room_list(username),
                }
            )
            client.send(self._users_snapshot(client))
            self._presence_changed()
            return
        username = client.username or ""
        if kind in self.refusals:
            client.send({"type": "error", **self.refusals[kind], "ref": ref})
            return
        if kind == "send":
            message = {
                "msg_id": next(self._ids),
                "room": request["room"],
                "from": username,
                "text": request["text"],
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
            message = {
                "msg_id": next(self._ids),
                "from": username,
                "to": request["to"],
                "text": request["text"],
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
