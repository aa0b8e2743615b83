"""The key backup on the server (docs/protocol.md 4.13): backup_publish, backup_get,
backup_put, backup_fetch and the backup_changed push, through the real consumer.

Backups and blobs are made with the clients' own code (:mod:`chatproto.backup`), signed
by a user key that the test's device published; the server opens nothing of them.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from chat import backups
from chat.models import BackupRecord, BackupSession, KeyBackup
from chatproto.backup import (
    IDENTITY_SLOT,
    MAX_BACKUP_SESSIONS,
    BackupKey,
    backup_object,
    backup_payload,
    identity_plaintext,
    new_recovery_key,
    seal_blob,
    session_plaintext,
    session_slot,
)
from chatproto.unpadded_b64 import encode as encode_b64
from tests.chat.e2e_helpers import KeyedDevice, SigningKey, device_session
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


class Owner:
    """A user's device with a published user key, and what it needs to make backups."""

    def __init__(self, device: KeyedDevice, user_key: SigningKey) -> None:
        self.device, self.user_key = device, user_key
        self.key = BackupKey.from_recovery_key(new_recovery_key())

    @property
    def session(self):
        return self.device.session

    def backup(
        self, version: int = 1, *, key: BackupKey | None = None, signer: SigningKey | None = None
    ) -> dict[str, Any]:
        """A backup object of ``version`` for ``key`` (the owner's), signed by ``signer``."""
        key = key or self.key
        user = self.device.username
        identity = seal_blob(key, user, version, IDENTITY_SLOT, identity_plaintext("QUFB", 1))
        unsigned = backup_object(user=user, version=version, key=key, identity_blob=identity)
        signature = (signer or self.user_key).sign(backup_payload(unsigned))
        return {**unsigned, "signatures": {"user": signature}}

    def entry(self, version: int = 1, first_index: int = 0, session_id: str | None = None):
        """A session of the backup: a real blob sealed for its slot."""
        session_id = session_id or encode_b64(os.urandom(32))
        plaintext = session_plaintext(
            conversation="pm:alice:bob",
            session_id=session_id,
            session_key="QUFB",
            sender="bob",
            sender_device="d",
            sender_key=encode_b64(bytes(32)),
            sender_ed25519=encode_b64(bytes(32)),
        )
        slot = session_slot(session_id)
        blob = seal_blob(self.key, self.device.username, version, slot, plaintext)
        return {"session_id": session_id, "first_index": first_index, "blob": blob}

    async def publish(self, backup: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return await self.session.request({"type": "backup_publish", "backup": backup, **fields})

    async def put(self, sessions: list[dict[str, Any]], version: int = 1) -> dict[str, Any]:
        message = {"type": "backup_put", "version": version, "sessions": sessions}
        return await self.session.request(message)

    async def fetch(self, version: int = 1, **fields: Any) -> dict[str, Any]:
        return await self.session.request({"type": "backup_fetch", "version": version, **fields})

    async def get(self) -> dict[str, Any]:
        return await self.session.request({"type": "backup_get"})

    async def close(self) -> None:
        await self.device.close()


async def owner(name: str = "alice", device: str = "laptop", user_key: SigningKey | None = None):
    """``name`` on a new device with keys; publishes ``user_key`` (a new one if None)."""
    keyed = await device_session(name, device)
    if user_key is None:
        user_key = SigningKey()
        published = await keyed.session.request(
            {"type": "user_key_publish", "user_key": keyed.user_key(user_key)}
        )
        assert published["type"] == "ok", published
    return Owner(keyed, user_key)


def code(answer: dict[str, Any]) -> tuple[str, str]:
    return answer["type"], answer.get("code", "")


def sid(n: int) -> str:
    """Session ids whose base64 sorts as ``n`` does."""
    return encode_b64(bytes([n]) * 32)


@pytest.fixture
async def alice(create_users):
    await create_users("alice", "bob")
    keyed = await owner()
    yield keyed
    await keyed.close()


# --- publish and get -----------------------------------------------------------------------


async def test_without_a_backup_get_answers_nulls(alice):
    answer = await alice.session.request({"type": "backup_get", "id": "g"})
    assert answer == {"type": "backup", "ref": "g", "backup": None, "created": None, "device": None}


async def test_a_first_backup_is_stored_as_published_and_recorded(alice, run_sync):
    backup = alice.backup()
    assert (await alice.publish(backup))["type"] == "ok"
    answer = await alice.get()
    assert answer["backup"] == backup
    assert answer["device"] == alice.device.device
    assert answer["created"].endswith("Z")
    records = await run_sync(lambda: list(BackupRecord.objects.values()))
    assert [(r["kind"], r["version"], r["device"], r["device_name"]) for r in records] == [
        ("created", 1, alice.device.device, "laptop")
    ]


async def test_a_new_version_is_pushed_to_the_users_other_sessions_only(alice, create_users):
    phone = await owner(device="phone", user_key=alice.user_key)
    laptop_again = await open_session()
    await laptop_again.resume("alice", alice.device.token)  # the same device, another session
    bob = await device_session("bob")
    for session in (alice.session, phone.session, laptop_again, bob.session):
        await session.drain()
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    expected = {
        "type": "backup_changed",
        "version": 1,
        "device": alice.device.device,
        "name": "laptop",
    }
    assert await phone.session.find("backup_changed") == expected
    assert await laptop_again.find("backup_changed") == expected
    assert not [m for m in await alice.session.drain() if m["type"] == "backup_changed"]
    assert not [m for m in await bob.session.drain() if m["type"] == "backup_changed"]
    for session in (phone, bob):
        await session.close()
    await laptop_again.close()


async def test_the_backup_must_name_the_user_and_be_signed_by_the_current_user_key(alice):
    assert code(await alice.publish({**alice.backup(), "user": "bob"})) == ("error", "bad_request")
    forged = alice.backup(signer=SigningKey())
    assert code(await alice.publish(forged)) == ("error", "bad_request")
    altered = {
        **alice.backup(),
        "public_key": BackupKey.from_recovery_key(os.urandom(32)).public_key,
    }
    assert code(await alice.publish(altered)) == ("error", "bad_request")
    assert (await alice.get())["backup"] is None


async def test_without_a_published_user_key_a_backup_is_bad_request(create_users):
    await create_users("alice")
    keyed = await device_session("alice")
    unsigned = Owner(keyed, SigningKey())
    answer = await unsigned.publish(unsigned.backup())
    assert code(answer) == ("error", "bad_request")
    assert "user key" in answer["message"]
    await keyed.close()


async def test_a_signature_of_the_user_key_before_an_identity_reset_is_refused(alice):
    new_key = SigningKey()
    reset = {
        "type": "user_key_publish",
        "user_key": alice.device.user_key(new_key, version=2),
        "reset": True,
    }
    assert (await alice.session.request(reset))["type"] == "ok"
    assert code(await alice.publish(alice.backup())) == ("error", "bad_request")
    assert (await alice.publish(alice.backup(signer=new_key)))["type"] == "ok"


async def test_a_backup_over_4096_bytes_of_json_is_too_large(alice):
    backup = alice.backup()
    backup["identity"] = {**backup["identity"], "ciphertext": encode_b64(os.urandom(3100))}
    assert code(await alice.publish(backup)) == ("error", "too_large")


@pytest.mark.parametrize(
    "change",
    [
        {"algorithm": "chat.backup.v0"},
        {"public_key": encode_b64(bytes(31))},
        {"identity": {"ciphertext": "QUFB"}},
        {"signatures": {}},
        {"version": 0},
        {"user": ""},
    ],
    ids=["algorithm", "public_key", "identity without mac", "no signature", "version 0", "user"],
)
async def test_a_malformed_backup_is_bad_request(alice, change):
    assert code(await alice.publish({**alice.backup(), **change})) == ("error", "bad_request")


# --- versions ------------------------------------------------------------------------------


async def test_a_first_backup_is_version_1(alice):
    assert code(await alice.publish(alice.backup(2))) == ("error", "conflict")


async def test_the_current_version_with_its_public_key_is_an_update_that_keeps_the_sessions(
    alice, run_sync
):
    phone = await owner(device="phone", user_key=alice.user_key)
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    await phone.session.find("backup_changed")
    assert (await alice.put([alice.entry()]))["count"] == 1
    update = alice.backup()  # a fresh identity blob, the same key and version
    assert update != (await alice.get())["backup"]
    assert (await alice.publish(update))["type"] == "ok"
    assert (await alice.get())["backup"] == update
    assert (await alice.fetch())["sessions"] != []
    assert not [m for m in await phone.session.drain() if m["type"] == "backup_changed"]
    assert await run_sync(BackupRecord.objects.count) == 1  # an update is not recorded
    await phone.close()


async def test_the_current_version_with_another_public_key_is_conflict(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    other = BackupKey.from_recovery_key(new_recovery_key())
    assert code(await alice.publish(alice.backup(key=other))) == ("error", "conflict")


@pytest.mark.parametrize("version", [3, 7])
async def test_a_version_that_skips_is_conflict(alice, version):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    answer = await alice.publish(alice.backup(version), password="pw")
    assert code(answer) == ("error", "conflict")


async def test_an_older_version_is_conflict(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    new_key = BackupKey.from_recovery_key(new_recovery_key())
    assert (await alice.publish(alice.backup(2, key=new_key), password="pw"))["type"] == "ok"
    assert code(await alice.publish(alice.backup(1))) == ("error", "conflict")


# --- a reset -------------------------------------------------------------------------------


async def test_a_reset_needs_the_password_and_deletes_the_old_versions_sessions(alice, run_sync):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    assert (await alice.put([alice.entry(), alice.entry()]))["count"] == 2
    alice.key = BackupKey.from_recovery_key(new_recovery_key())
    no_password = await alice.publish(alice.backup(2))
    assert code(no_password) == ("error", "invalid_credentials")
    assert (await alice.publish(alice.backup(2), password="pw"))["type"] == "ok"
    assert (await alice.get())["backup"]["version"] == 2
    assert (await alice.fetch(2))["sessions"] == []
    assert await run_sync(BackupSession.objects.count) == 0
    kinds = await run_sync(
        lambda: list(BackupRecord.objects.order_by("pk").values_list("kind", "version"))
    )
    assert kinds == [("created", 1), ("reset", 2)]


async def test_a_reset_with_a_wrong_password_is_invalid_credentials_changes_nothing_and_counts(
    alice, chat_settings
):
    chat_settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (2, 600)
    first = alice.backup()
    assert (await alice.publish(first))["type"] == "ok"
    alice.key = BackupKey.from_recovery_key(new_recovery_key())
    for _ in range(2):
        answer = await alice.publish(alice.backup(2), password="nope")
        assert code(answer) == ("error", "invalid_credentials")
    assert (await alice.get())["backup"] == first
    limited = await alice.publish(alice.backup(2), password="pw")  # counted: now throttled
    assert code(limited) == ("error", "rate_limited")
    assert 1 <= limited["retry_after"] <= 600


async def test_a_reset_is_pushed_with_the_publishing_devices_name(alice):
    phone = await owner(device="phone", user_key=alice.user_key)
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    await phone.session.find("backup_changed")
    phone.key = BackupKey.from_recovery_key(new_recovery_key())
    assert (await phone.publish(phone.backup(2), password="pw"))["type"] == "ok"
    pushed = await alice.session.find("backup_changed")
    assert pushed == {
        "type": "backup_changed",
        "version": 2,
        "device": phone.device.device,
        "name": "phone",
    }
    assert (await alice.get())["device"] == phone.device.device
    await phone.close()


# --- sessions ------------------------------------------------------------------------------


async def test_sessions_are_stored_and_counted(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    answer = await alice.put([alice.entry(), alice.entry()])
    assert (answer["type"], answer["stored"], answer["count"]) == ("backup_stored", 2, 2)
    assert (await alice.put([alice.entry()]))["count"] == 3


async def test_per_session_the_lowest_first_index_is_kept(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    middle = alice.entry(first_index=5, session_id=sid(1))
    assert (await alice.put([middle]))["stored"] == 1
    higher = alice.entry(first_index=9, session_id=sid(1))
    assert (await alice.put([higher]))["stored"] == 0
    assert (await alice.fetch())["sessions"] == [middle]
    assert (await alice.put([middle]))["stored"] == 1  # a retried upload: it is the one kept
    lower = alice.entry(first_index=2, session_id=sid(1))
    answer = await alice.put([lower])
    assert (answer["stored"], answer["count"]) == (1, 1)
    assert (await alice.fetch())["sessions"] == [lower]


async def test_a_session_listed_twice_in_one_put_keeps_its_lowest_first_index(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    high, low = (alice.entry(first_index=i, session_id=sid(3)) for i in (8, 4))
    answer = await alice.put([high, low])
    assert (answer["stored"], answer["count"]) == (1, 1)
    assert (await alice.fetch())["sessions"] == [low]


async def test_an_altered_blob_is_stored_as_it_came_the_server_cannot_check_it(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    entry = alice.entry()
    mac = bytearray(os.urandom(32))
    altered = {**entry, "blob": {**entry["blob"], "mac": encode_b64(bytes(mac))}}
    assert (await alice.put([altered]))["stored"] == 1
    assert (await alice.fetch())["sessions"] == [altered]


async def test_put_and_fetch_for_a_version_that_is_not_current_are_conflict(alice):
    assert code(await alice.put([alice.entry()])) == ("error", "conflict")  # no backup yet
    assert code(await alice.fetch()) == ("error", "conflict")
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    assert code(await alice.put([alice.entry(2)], version=2)) == ("error", "conflict")
    assert code(await alice.fetch(2)) == ("error", "conflict")
    alice.key = BackupKey.from_recovery_key(new_recovery_key())
    assert (await alice.publish(alice.backup(2), password="pw"))["type"] == "ok"
    assert code(await alice.put([alice.entry()], version=1)) == ("error", "conflict")  # reset
    assert code(await alice.fetch(1)) == ("error", "conflict")


def blob_of(size: int, mac: int = 32) -> dict[str, str]:
    return {"ciphertext": encode_b64(os.urandom(size)), "mac": encode_b64(os.urandom(mac))}


@pytest.mark.parametrize(
    "sessions",
    [
        [],
        [{"session_id": sid(n), "first_index": 0, "blob": blob_of(64)} for n in range(101)],
        [{"session_id": encode_b64(bytes(31)), "first_index": 0, "blob": blob_of(64)}],
        [{"session_id": sid(1), "first_index": -1, "blob": blob_of(64)}],
        [{"session_id": sid(1), "first_index": 2**32, "blob": blob_of(64)}],
        [{"session_id": sid(1), "first_index": True, "blob": blob_of(64)}],
        [{"session_id": sid(1), "first_index": 0, "blob": blob_of(4097)}],
        [{"session_id": sid(1), "first_index": 0, "blob": blob_of(64, mac=31)}],
        [{"session_id": sid(1), "first_index": 0, "blob": {"ciphertext": "QUFB"}}],
        [{"session_id": sid(1), "first_index": 0}],
        ["not an object"],
    ],
    ids=[
        "none",
        "101",
        "session_id of 31 bytes",
        "first_index -1",
        "first_index 2^32",
        "first_index true",
        "ciphertext of 4097 bytes",
        "mac of 31 bytes",
        "no mac",
        "no blob",
        "not an object",
    ],
)
async def test_a_malformed_put_is_bad_request_and_stores_nothing(alice, run_sync, sessions):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    assert code(await alice.put(sessions)) == ("error", "bad_request")
    assert await run_sync(BackupSession.objects.count) == 0


async def test_the_limits_at_their_edges_are_accepted(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    sessions = [
        {"session_id": sid(n), "first_index": 2**32 - 1, "blob": blob_of(4096)} for n in range(100)
    ]
    assert (await alice.put(sessions))["count"] == 100


def test_a_backup_holds_at_most_100000_sessions():
    assert MAX_BACKUP_SESSIONS == 100_000


async def test_past_the_sessions_a_backup_may_hold_a_put_is_too_large_and_stores_nothing(
    alice, monkeypatch, run_sync
):
    monkeypatch.setattr(backups, "MAX_BACKUP_SESSIONS", 3)
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    assert (await alice.put([alice.entry(), alice.entry()]))["count"] == 2
    kept = (await alice.fetch())["sessions"]
    assert code(await alice.put([alice.entry(), alice.entry()])) == ("error", "too_large")
    assert (await alice.fetch())["sessions"] == kept
    lower = {**kept[0], "first_index": 0}
    assert (await alice.put([lower, alice.entry()]))["count"] == 3  # a known one does not count


# --- fetch ---------------------------------------------------------------------------------


async def test_fetch_pages_through_the_sessions_sorted_by_session_id(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    entries = [alice.entry() for _ in range(7)]
    assert (await alice.put(entries))["count"] == 7
    expected = sorted(entries, key=lambda e: e["session_id"])
    seen, after = [], None
    while True:
        page = await alice.fetch(limit=3, **({"after": after} if after else {}))
        assert (page["type"], page["version"]) == ("backup_sessions", 1)
        assert len(page["sessions"]) <= 3
        seen += page["sessions"]
        after = page["next"]
        if after is None:
            break
        assert after == page["sessions"][-1]["session_id"]
    assert seen == expected
    whole = await alice.fetch()
    assert (whole["sessions"], whole["next"]) == (expected, None)
    exact = await alice.fetch(limit=7)
    assert exact["next"] is None  # nothing follows the last
    assert (await alice.fetch(after=expected[-1]["session_id"]))["sessions"] == []


async def test_fetch_gives_500_sessions_a_page_by_default(alice, run_sync):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    user = await run_sync(lambda: KeyBackup.objects.get().user)
    entries = [(encode_b64(os.urandom(32)), 0, blob_of(48)) for _ in range(501)]
    assert await run_sync(backups.put_sessions, user, 1, entries) == (501, 501)
    page = await alice.fetch()
    assert len(page["sessions"]) == 500 and page["next"] == page["sessions"][-1]["session_id"]
    rest = await alice.fetch(after=page["next"])
    assert len(rest["sessions"]) == 1 and rest["next"] is None


@pytest.mark.parametrize(
    "fields",
    [{"limit": 0}, {"limit": 501}, {"after": "QUFB"}, {"after": 3}, {"version": 0}],
    ids=["limit 0", "limit 501", "after not a session id", "after a number", "version 0"],
)
async def test_a_malformed_fetch_is_bad_request(alice, fields):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    assert code(await alice.fetch(**fields)) == ("error", "bad_request")


# --- who may ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        {"type": "backup_publish", "backup": {}},
        {"type": "backup_get"},
        {"type": "backup_put", "version": 1, "sessions": [{}]},
        {"type": "backup_fetch", "version": 1},
    ],
    ids=lambda r: r["type"],
)
async def test_a_session_without_a_device_gets_device_required(create_users, request_):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")  # no remember: no device
    if request_["type"] == "backup_publish":
        keyed = Owner(KeyedDevice(session, "alice", "d", "t"), SigningKey())
        request_ = {**request_, "backup": keyed.backup()}
    if request_["type"] == "backup_put":
        request_ = {
            **request_,
            "sessions": [{"session_id": sid(1), "first_index": 0, "blob": blob_of(48)}],
        }
    answer = await session.request(request_)
    assert code(answer) == ("error", "device_required")
    await session.close()


async def test_a_users_backup_goes_with_the_user(alice, run_sync):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    assert (await alice.put([alice.entry()]))["count"] == 1
    await alice.close()
    user = await run_sync(lambda: KeyBackup.objects.get().user)
    await run_sync(user.delete)
    counts = await run_sync(
        lambda: (
            KeyBackup.objects.count(),
            BackupSession.objects.count(),
            BackupRecord.objects.count(),
        )
    )
    assert counts == (0, 0, 0)


async def test_another_users_backup_is_not_reachable(alice, create_users):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    bob = await owner("bob")
    assert (await bob.get())["backup"] is None
    assert code(await bob.fetch()) == ("error", "conflict")
    await bob.close()


async def test_a_blob_with_other_members_is_bad_request(alice):
    assert (await alice.publish(alice.backup()))["type"] == "ok"
    entry = alice.entry()
    padded = {**entry, "blob": {**entry["blob"], "padding": "x" * 1000}}
    assert code(await alice.put([padded])) == ("error", "bad_request")
    backup = alice.backup()
    backup["identity"] = {**backup["identity"], "note": "x"}
    assert code(await alice.publish(backup)) == ("error", "bad_request")


def test_two_devices_racing_to_publish_a_first_backup_leave_one_and_conflict(make_user):
    """The second first backup, judged before the first was stored, is conflict: it never
    replaces the first (whose key other devices may hold by then)."""
    from accounts.models import Device
    from chat.models import UserKey

    alice = make_user("alice")
    user_key = SigningKey()
    UserKey.objects.create(user=alice, key={"ed25519": user_key.public}, version=1)
    devices = [
        Device.objects.create(user=alice, name=name, token_hash=name * 32) for name in ("aa", "bb")
    ]
    makers = [Owner(KeyedDevice(None, "alice", d.pk, "t"), user_key) for d in devices]  # type: ignore[arg-type]
    first, second = (maker.backup() for maker in makers)
    judged = backups._judge(None, second)  # the second device's view, before the first is in
    assert judged is True
    backups.publish_backup(alice, devices[0].pk, first, None, "127.0.0.1")
    with pytest.raises(backups.ServiceError) as refused:
        backups._store_new_version(alice, devices[1].pk, second, replaced=False, origin=None)
    assert refused.value.code == "conflict"
    assert KeyBackup.objects.get().backup == first
