"""Presence in both clients (PROTOCOL.md revision 1.1, 3.2), against the fake server.

The desktop's user list moves only the rows that a delta names; after a storm of
logins and logouts both the desktop's list and the terminal's ``/users`` equal
the server's final snapshot, with revision 1.1 deltas and with a revision 1
server's pushed ``users`` alike.
"""

from __future__ import annotations

import gc
import itertools
import threading
from typing import Any

import pytest

from chatproto import crypto_utils
from tk_client.events import LoggedIn, RequestState, RequestStatus
from tk_client.known_servers import KnownServers
from tk_client.model import pm_key

from .fake_server import FakeServer
from .gui_helpers import pump
from .helpers import WAIT_SECONDS, make_session, wait_until
from .test_cli import RunningCli

pytestmark = pytest.mark.gui

BURST = [f"user{i:02d}" for i in range(24)]
ONLINE_DOT, OFFLINE_DOT = "\u25cf", "\u25cb"  # as the conversation list shows them


# --- the desktop's user list, without a server -------------------------------------------------


class _Session:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus:
        message = {"type": type_, **fields, "id": f"r{next(self._ids)}"}
        self.requests.append(message)
        return RequestStatus(message["id"], message, RequestState.QUEUED)

    def send_message(self, message: dict[str, Any]) -> None:
        pass


class _CountingTree:
    """Counts the Treeview calls that add, move or remove rows."""

    def __init__(self, tree: Any) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in ("insert", "delete", "move", "detach"):
            original = getattr(tree, name)

            def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any):
                self.calls.append((_name, args))
                return _original(*args, **kw)

            setattr(tree, name, counted)


@pytest.fixture
def user_list(display):
    import tkinter as tk

    from tk_client.controller import ChatController, ControllerView
    from tk_client.views.sidebar import UserList
    from tk_client.views.theme import apply_theme

    root = tk.Tk()
    fonts = apply_theme(root)

    class View(ControllerView):
        def users_changed(self, change):
            widget.apply(change, controller)

    controller = ChatController(_Session(), View())
    controller.handle(LoggedIn("me", [], again=False))
    widget = UserList(root, fonts, lambda user: None)
    widget.pack()
    try:
        yield controller, widget
    finally:
        root.destroy()
        gc.collect()


def rows(widget, section: str) -> list[str]:
    return [iid.removeprefix("user:") for iid in widget.tree.get_children(section)]


def push(controller, message: dict[str, Any]) -> None:
    from tk_client.events import Received

    controller.handle(Received(message))


def test_a_delta_touches_only_the_rows_of_the_users_it_names(user_list):
    controller, widget = user_list
    everyone = [f"u{i:03d}" for i in range(200)] + ["me"]
    push(
        controller,
        {"type": "users", "online": ["me", "u005"], "all": everyone, "presence_interval": 2},
    )
    assert rows(widget, "online") == ["me", "u005"]
    assert len(rows(widget, "offline")) == 199
    widget.tree.selection_set("user:u150")  # an unchanged row keeps its selection
    counting = _CountingTree(widget.tree)

    push(
        controller,
        {
            "type": "presence",
            "online": ["u010", "u100"],
            "offline": ["u005"],
            "added": ["u999"],
            "removed": ["u020"],
        },
    )

    assert rows(widget, "online") == ["me", "u010", "u100"]
    assert rows(widget, "offline")[:6] == ["u000", "u001", "u002", "u003", "u004", "u005"]
    assert "u020" not in rows(widget, "offline") and rows(widget, "offline")[-1] == "u999"
    touched = {args[0] for name, args in counting.calls if name in ("delete", "detach", "move")}
    inserted = {kw for name, args in counting.calls if name == "insert" for kw in args[:1]}
    assert touched <= {"user:u005", "user:u010", "user:u100", "user:u020"}
    assert inserted <= {"offline"}  # only u999 is new
    assert len(counting.calls) <= 2 * 5  # a few operations per named user, not 200 rows
    assert widget.tree.selection() == ("user:u150",)
    assert widget.tree.item("online", "text").endswith("3")
    assert widget.tree.item("offline", "text").endswith("198")


def test_a_snapshot_that_repeats_the_state_touches_no_row(user_list):
    controller, widget = user_list
    message = {"type": "users", "online": ["me"], "all": ["a", "b", "me"]}
    push(controller, message)
    counting = _CountingTree(widget.tree)
    push(controller, message)  # a revision 1 server pushing the same list
    assert counting.calls == []


def test_a_malformed_presence_asks_for_a_fresh_snapshot_and_keeps_the_rows(user_list):
    controller, widget = user_list
    push(controller, {"type": "users", "online": ["me"], "all": ["a", "me"]})
    push(controller, {"type": "presence", "online": ["b", "a"]})
    assert controller.session.requests[-1]["type"] == "users"
    assert rows(widget, "online") == ["me"] and rows(widget, "offline") == ["a"]


# --- a storm, against the fake server ----------------------------------------------------------


@pytest.fixture(scope="module")
def server_key():
    return crypto_utils.generate_private_key()


@pytest.fixture(params=[1, None], ids=["revision-1.1-deltas", "revision-1-pushes"])
def storm_server(request, server_key):
    accounts = {name: f"{name}-password" for name in ["alice", "bob", "carol", *BURST]}
    server = FakeServer(server_key, accounts, presence_interval=request.param).start()
    yield server
    server.stop()


def open_desktop(known: KnownServers, config_home, server: FakeServer):
    import tkinter as tk

    from tk_client.gui import App

    root = tk.Tk()
    return App(
        root,
        known_servers=known,
        config_folder=config_home,
        server=server.address.key,
        username="bob",
    )


def storm(server: FakeServer, known_path) -> list[Any]:
    """Everyone of BURST logs in at once; half of them leave again; accounts come and go."""
    sessions = {}
    threads = []
    for name in BURST:
        session, log = make_session(server.address, known_path)
        sessions[name] = (session, log)
        threads.append(threading.Thread(target=session.login, args=(name, f"{name}-password")))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in BURST[::2]:
        sessions[name][1].wait_for(LoggedIn)
        sessions[name][0].close()
    server.add_account("zoe", "zoe-password")
    server.remove_account("carol")
    for name in BURST[1::2]:
        sessions[name][1].wait_for(LoggedIn)
    return [session for session, _ in sessions.values()]


def test_both_clients_lists_equal_the_final_snapshot_after_a_storm(
    display, storm_server, config_home
):
    server = storm_server
    known = KnownServers(config_home / "known_servers")
    known.trust(server.address, server.fingerprint)
    app = open_desktop(known, config_home, server)
    terminal = RunningCli(
        ["--server", server.address.key, "--user", "alice", "--trust", server.fingerprint],
        "alice-password",
    )
    sessions: list[Any] = []
    try:
        pump(app, lambda: app.controller.server_name == "Fake", "the greeting")
        app.login_view.password.set("bob-password")
        app.login_view.password_entry.event_generate("<Return>", when="tail")
        pump(app, lambda: app.main_view is not None, "the main window")
        terminal.wait_for_error("* logged in as alice")
        users = app.main_view.users
        pump(app, lambda: "user:carol" in users.tree.get_children("offline"), "carol's row")
        users.tree.selection_set("user:bob")  # bob stays online throughout: never rebuilt
        app.controller.select(pm_key("user01"))  # a private chat: its dot follows presence
        chats = app.main_view.conversations.tree
        pump(app, lambda: chats.exists("pm:user01"), "the private chat in the list")
        assert chats.item("pm:user01", "text").startswith(OFFLINE_DOT)

        sessions = storm(server, known.path)
        wait_until(lambda: all(not server.logged_in(name) for name in BURST[::2]))
        server.flush_presence()  # the timer would, within a second
        online = sorted(["alice", "bob", *BURST[1::2]])
        offline = sorted(set(server.users) - set(online))

        pump(
            app,
            lambda: (rows(users, "online"), rows(users, "offline")) == (online, offline),
            "the desktop's list to equal the final snapshot",
        )
        assert users.tree.selection() == ("user:bob",)
        assert chats.item("pm:user01", "text").startswith(ONLINE_DOT)
        assert sorted(app.controller.candidates("user")) == sorted(set(server.users) - {"bob"})

        expected = f"Online ({len(online)}): {', '.join(online)}"
        deadline_lines = []
        for _attempt in range(int(WAIT_SECONDS)):
            terminal.process.stdin.write("/users\n")
            terminal.process.stdin.flush()
            line = terminal.stdout.get(timeout=WAIT_SECONDS)
            deadline_lines.append(line)
            if line == expected:
                break
            terminal.stdout.get(timeout=WAIT_SECONDS)  # its Offline line (there is one)
            pump(app, lambda: True)
            threading.Event().wait(0.5)
        else:
            raise AssertionError(f"the terminal's /users never said {expected!r}: {deadline_lines}")
        assert terminal.stdout.get(timeout=WAIT_SECONDS).strip() == (
            f"Offline ({len(offline)}): {', '.join(offline)}"
        )
        if server.presence_interval is not None:
            # Deltas, not lists: nobody was sent a users message after the one at login.
            assert server.presence_sent
    finally:
        for session in sessions:
            session.close()
        assert terminal.finish() == 0
        if not app.closed:
            app.close()
        gc.collect()
