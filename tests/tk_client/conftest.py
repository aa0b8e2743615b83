"""Fixtures of the client tests: a private X display, the client's own config folder,
accounts on the module's live server, the desktop client, and other users."""

from __future__ import annotations

import gc
import itertools
import os
import shutil
from pathlib import Path

import pytest

from tk_client.address import parse_address
from tk_client.device_tokens import DeviceTokens
from tk_client.events import LoggedIn, Stopped
from tk_client.known_servers import KnownServers

from .gui_helpers import pump
from .helpers import make_session
from .xvfb import Xvfb


def _unavailable(what: str) -> None:
    message = (
        f"{what}; install it with: apt-get install xvfb xdotool "
        "(set CHAT_REQUIRE_SERVICES=1, as CI does, to fail instead of skipping)"
    )
    if os.environ.get("CHAT_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def display():
    """An Xvfb display for the whole run, set as DISPLAY for Tk in this process.

    One for the run, not one per module: Tk keeps its connection to a display open
    after the last window closes, and exits the process when that display goes away.
    """
    for tool in ("Xvfb", "xdotool"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    server = Xvfb().start()
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = server.display
    try:
        yield server.display
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        server.stop()


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    """Every client test gets an empty config folder: never the developer's ~/.config/chat."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "chat"


@pytest.fixture(scope="module")
def accounts(live_server):
    for name in ("alice", "bob", "carol", "dave"):
        live_server.create_user(name, f"{name}-password")
    return live_server


@pytest.fixture
def address(accounts):
    return parse_address(accounts.url)


@pytest.fixture
def known(config_home):
    return KnownServers(config_home / "known_servers")


@pytest.fixture
def open_app(display, config_home, known, address):
    """Open the desktop client on the Xvfb display; closes it after the test."""
    import tkinter as tk

    from tk_client.gui import App

    opened = []

    def open_(username: str = "bob") -> App:
        root = tk.Tk()
        app = App(
            root,
            known_servers=known,
            config_folder=config_home,
            server=address.key,
            username=username,
        )
        opened.append(app)
        pump(app, lambda: True)
        return app

    yield open_
    for app in opened:
        app.close()  # does nothing for an app the test closed
    # Collect what is left of the window here, on Tk's thread: garbage collected later on
    # a session thread would make tkinter wait there for a main loop that never runs.
    gc.collect()


@pytest.fixture
def others(accounts, known, address, tmp_path):
    """Other users, as plain sessions: ``others("alice")``; ``remember``: as a new device of
    that name (``session.device``), which private messages and private rooms need. Their
    device tokens are kept apart from the window's folder (which would log in with them),
    and the devices are logged out after the test (a keyless device of alice's left on the
    module's server would stop the next test's window from encrypting to her)."""
    sessions = []
    tokens = DeviceTokens(tmp_path / "others")

    def connect(name: str, remember: str | None = None):
        session, log = make_session(
            address, known.path, expected_fingerprint=accounts.fingerprint, device_tokens=tokens
        )
        sessions.append((session, log))
        session.login(name, f"{name}-password", remember=remember)
        log.wait_for(LoggedIn)
        return session, log

    yield connect
    for session, log in sessions:
        if session.device is not None:
            session.log_out()
            log.wait_for(Stopped)
        session.close()


def pytest_collection_modifyitems(config, items):
    """A crash in a session thread, or Tk called from one, fails the client test it happens in."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(
                pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
            )
            item.add_marker(
                pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
            )


_people = itertools.count(1)


@pytest.fixture
def people(accounts, tmp_path):
    """``people("alice", "bob")``: fresh users with the usual ``NAME-password``.

    A user's encryption identity lives on the server for the whole module: a test that
    needs a user's *first* device (which sets itself up, 4.2) takes fresh users."""

    def make(*names: str) -> list[str]:
        suffix = f"{next(_people)}{tmp_path.name[-4:]}".replace("_", "")
        made = []
        for name in names:
            username = f"{name}{suffix}"
            accounts.create_user(username, f"{username}-password")
            made.append(username)
        return made

    return make
