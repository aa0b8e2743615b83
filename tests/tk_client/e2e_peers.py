"""Headless clients with end-to-end encryption, against a real server.

A :class:`Peer` is what the desktop and the terminal client share, without a window: a
:class:`~tk_client.session.ChatSession` logged in with a remembered device, a
:class:`~tk_client.controller.ChatController` with the real :class:`E2ELink` (its own
client folder, so its own pickle key and store), and a view that records what the
controller shows. The test's thread drives every peer (:func:`pump`), so each
controller is used from one thread, as in the clients.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tk_client.address import parse_address
from tk_client.controller import ChatController, ControllerView
from tk_client.e2e.backup import BackupStatus
from tk_client.e2e.link import E2ELink
from tk_client.events import LoggedIn, Received
from tk_client.files import TransferManager
from tk_client.known_servers import KnownServers
from tk_client.model import ChatMessage, ConversationKey
from tk_client.session import Backoff, ChatSession

from .helpers import WAIT_SECONDS

if TYPE_CHECKING:
    from tk_client.files import TransferInfo


class RecordingView(ControllerView):
    """What a controller showed: notices, end-to-end events, changed lines."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.e2e_events: list[Any] = []

    def message_added(self, key: ConversationKey, message: ChatMessage) -> None:
        if message.notice:
            self.notices.append(message.text)

    def e2e_event(self, event: Any) -> None:
        self.e2e_events.append(event)


class Peer:
    """One device of one user: its own folder, session, controller and link."""

    def __init__(self, server: Any, folder: Path, user: str, device_name: str) -> None:
        self.user = user
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        known = KnownServers(folder / "known_servers")
        self.session = ChatSession(
            parse_address(server.url),
            known,
            backoff=Backoff(initial=0.05, maximum=0.2),
            expected_fingerprint=server.fingerprint,
        )
        self.view = RecordingView()
        self.controller = ChatController(
            self.session,
            self.view,
            autoload_history=False,
            e2e_opener=E2ELink.opener(self.session, folder),
        )
        self.device_name = device_name
        self.logged_in = False
        self.pushes: list[dict[str, Any]] = []  # every push the session received

    def log_in(self, password: str) -> None:
        self.session.login(self.user, password, remember=self.device_name)

    def resume(self) -> None:
        """Log in again as the device remembered in this folder (a client restarted)."""
        self.session.resume(self.user)

    def pump_once(self) -> bool:
        """Handle the events that are queued; True if there were any."""
        handled = False
        while True:
            try:
                event = self.session.events.get_nowait()
            except queue.Empty:
                return handled
            handled = True
            if isinstance(event, LoggedIn):
                self.logged_in = True
            if isinstance(event, Received):
                self.pushes.append(event.message)
            self.controller.handle(event)

    @property
    def link(self) -> E2ELink:
        link = self.controller.e2e
        assert link is not None, "not logged in with a device"
        return link

    def lines(self, key: ConversationKey) -> list[tuple[str, str]]:
        """(sender, text) of each message shown in ``key`` (notices left out)."""
        return [
            (m.sender, m.text) for m in self.controller.conversation(key).messages if not m.notice
        ]

    def close(self) -> None:
        self.session.close()


def pump(peers: Iterable[Peer], until: Callable[[], bool], what: str = "") -> None:
    """Drive every peer until ``until()``; fail with what they showed if it never holds."""
    peers = list(peers)
    deadline = time.monotonic() + WAIT_SECONDS
    while not until():
        if time.monotonic() > deadline:
            shown = {p.user + "/" + p.device_name: p.view.notices[-5:] for p in peers}
            raise AssertionError(f"never happened: {what}; their last notices: {shown}")
        if not any(peer.pump_once() for peer in peers):
            time.sleep(0.01)


def all_backed_up(peer: Peer) -> bool:
    """The key backup is on and every group session ``peer`` holds is uploaded to it: what a
    test that turns the backup on waits for before it counts on the backup."""
    sessions = peer.link.store.groups.inbound
    return peer.link.backup_status is BackupStatus.ON and set(peer.link.store.backup.uploaded) == {
        sid for (_, _, sid) in sessions
    }


def settle(peers: Iterable[Peer], quiet: float = 0.3) -> None:
    """Drive every peer until none has had an event for ``quiet`` seconds."""
    peers = list(peers)
    last = time.monotonic()
    deadline = last + WAIT_SECONDS
    while time.monotonic() - last < quiet and time.monotonic() < deadline:
        if any(peer.pump_once() for peer in peers):
            last = time.monotonic()
        else:
            time.sleep(0.01)


class FileView(RecordingView):
    """Records offers (and says it asks the user) and every transfer's last state."""

    def __init__(self) -> None:
        super().__init__()
        self.offers: list[TransferInfo] = []
        self.transfers: dict[str, TransferInfo] = {}

    def file_offered(self, offer: TransferInfo) -> bool:
        self.offers.append(offer)
        return True

    def transfer_changed(self, info: TransferInfo) -> None:
        self.transfers[info.transfer] = info


class FilePeer(Peer):
    """A :class:`Peer` whose controller has a transfer manager, as both clients have."""

    def __init__(self, server: Any, folder: Path, user: str, device_name: str) -> None:
        super().__init__(server, folder, user, device_name)
        self.relayed: list[dict[str, Any]] = []  # every file_* message, as the server sent it
        self.session.add_hook(self._record)  # before the manager's hook, which takes them
        self.manager = TransferManager(self.session)
        self.view = FileView()
        self.controller = ChatController(
            self.session,
            self.view,
            transfers=self.manager,
            autoload_history=False,
            e2e_opener=E2ELink.opener(self.session, folder),
        )

    def _record(self, event: Any) -> bool:
        if isinstance(event, Received) and str(event.message.get("type")).startswith("file_"):
            self.relayed.append(event.message)
        return False

    def close(self) -> None:
        self.manager.close()
        super().close()


class PeerPool:
    """The peers one test opens, logged in, and closes after it: what every ``peers``-like
    fixture yields is :meth:`open`, and its teardown is :meth:`close`.

    Each user's password is their name and ``suffix`` (``alice-pw``); ``folder(user,
    device)`` names each peer's client folder under ``root``.
    """

    def __init__(
        self,
        server: Any,
        root: Path,
        suffix: str = "-pw",
        *,
        kind: type[Peer] = Peer,
        folder: Callable[[str, str], str] = lambda user, device: f"{user}-{device}",
    ) -> None:
        self.server = server
        self.root = root
        self.suffix = suffix
        self.kind = kind
        self.folder = folder
        self.opened: list[Peer] = []

    def open(self, user: str, device: str, password: str | None = None) -> Any:
        """A device ``device`` of ``user``, logged in (with ``password`` if given)."""
        peer = self.kind(self.server, self.root / self.folder(user, device), user, device)
        self.opened.append(peer)
        peer.log_in(password if password is not None else f"{user}{self.suffix}")
        return peer

    def close(self) -> None:
        for peer in self.opened:
            peer.close()
