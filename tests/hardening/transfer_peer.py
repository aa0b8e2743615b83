"""One end of a file transfer in a process of its own, for a test to kill with SIGKILL.

::

    python -m tests.hardening.transfer_peer send URL ORIGIN FINGERPRINT USER TO TRANSFER
    python -m tests.hardening.transfer_peer receive URL ORIGIN FINGERPRINT USER FOLDER

``send`` offers a 10-chunk file and sends 3 chunks; ``receive`` accepts the next
offer and writes what comes into FOLDER with the desktop client's own
``Download`` (a hidden temporary file, renamed into place only once verified).
Each prints ``progress <n>`` as chunks are acknowledged or written, then both
wait, mid-transfer, to be killed: no close frame, no clean-up, as in a crash.
"""

from __future__ import annotations

import sys
import time

from chatproto.framing import FileChunk
from chatproto.limits import MAX_CHUNK_SIZE
from chatproto.transfer import IncomingTransfer, OutgoingTransfer, Send
from tests.hardening.helpers import PASSWORD
from tests.protocol_client.sync import connect
from tk_client.files.sink import Download

CHUNKS = 10
SENT_BEFORE_WAITING = 3


def say(line: str) -> None:
    print(line, flush=True)


def send(url: str, origin: str, fingerprint: str, user: str, to: str, transfer: str) -> None:
    client = connect(url, origin, fingerprint)
    client.login(user, PASSWORD)
    outgoing = OutgoingTransfer(
        to=to, name="report.pdf", size=CHUNKS * MAX_CHUNK_SIZE, sha256="0" * 64, transfer=transfer
    )
    assert client.request(outgoing.offer())["type"] == "ok"
    say("offered")
    outgoing.receive(client.find("file_accept"))
    for index in range(SENT_BEFORE_WAITING):
        (event,) = outgoing.chunk(bytes([index]) * MAX_CHUNK_SIZE)
        client.send_chunk(event.chunk)
        outgoing.receive(client.find("file_ack"))
        say(f"progress {index}")
    time.sleep(3600)


def receive(url: str, origin: str, fingerprint: str, user: str, folder: str) -> None:
    client = connect(url, origin, fingerprint)
    client.login(user, PASSWORD)
    say("ready")
    incoming = IncomingTransfer.from_offer(client.find("file_offer", timeout=60))
    download = Download(incoming, f"{folder}/{incoming.safe_name}")
    for event in download.accept():
        client.send(event.message)
    while True:
        item = client.recv_item(timeout=60)
        if not isinstance(item, FileChunk):
            continue
        for event in download.handle_chunk(item):  # writes the chunk, then the ack to send
            if isinstance(event, Send):
                client.send(event.message)
        say(f"progress {item.index}")


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    {"send": send, "receive": receive}[role](*arguments)
