"""The chat admin: room edits reach live sessions; message bodies never show."""

from __future__ import annotations

import pytest

from accounts.models import User
from chat import delivery, services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pushed(monkeypatch, chat_settings):
    sent: list[set[int]] = []
    monkeypatch.setattr(
        delivery, "rooms_changed_sync", lambda ids, exclude=None: sent.append(set(ids))
    )
    return sent


@pytest.fixture
def admin_client(client, chat_settings):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def test_removing_a_member_in_the_admin_tells_their_sessions(admin_client, pushed):
    alice = User.objects.create_user("alice", password="pw")
    bob = User.objects.create_user("bob", password="pw")
    services.create_room(alice, "team", private=True, members=["bob"])
    room = Room.objects.get(name="team")
    memberships = list(Membership.objects.filter(room=room).order_by("user__username"))
    pushed.clear()
    form = {
        "name": "team",
        "private": "on",
        "owner": alice.pk,
        "memberships-TOTAL_FORMS": "2",
        "memberships-INITIAL_FORMS": "2",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": memberships[0].pk,
        "memberships-0-room": room.pk,
        "memberships-0-user": alice.pk,
        "memberships-1-id": memberships[1].pk,
        "memberships-1-room": room.pk,
        "memberships-1-user": bob.pk,
        "memberships-1-DELETE": "on",
    }
    response = admin_client.post(f"/admin/chat/room/{room.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not Membership.objects.filter(room=room, user=bob).exists()
    assert pushed == [{alice.pk, bob.pk}]


def test_deleting_a_room_in_the_admin_tells_its_members(admin_client, pushed):
    alice = User.objects.create_user("alice", password="pw")
    services.create_room(alice, "old")
    room = Room.objects.get(name="old")
    pushed.clear()
    response = admin_client.post(f"/admin/chat/room/{room.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert pushed == [{alice.pk}]


def test_admin_shows_message_metadata_but_never_bodies(admin_client):
    from chat.models import Message

    sender = User.objects.create_user("henry", password="pw")
    services.send_room_message(sender, "lobby", "the secret plan")
    message = Message.objects.get()
    listing = admin_client.get("/admin/chat/message/")
    detail = admin_client.get(f"/admin/chat/message/{message.pk}/change/")
    for response in (listing, detail):
        assert response.status_code == 200
        page = response.content.decode()
        assert "henry" in page
        assert "the secret plan" not in page
        assert message.body_encrypted not in page
    assert admin_client.get("/admin/chat/message/add/").status_code == 403


def test_admin_shows_rooms_and_members(admin_client):
    User.objects.create_user("ivy", password="pw")
    page = admin_client.get("/admin/chat/room/").content.decode()
    assert "lobby" in page


def test_admin_lists_key_backup_records_read_only_and_never_key_material(admin_client):
    from accounts.models import Device
    from chat import backups
    from chat.models import BackupRecord, UserKey
    from tests.chat.e2e_helpers import KeyedDevice, SigningKey
    from tests.chat.test_backup import Owner, blob_of

    alice = User.objects.create_user("alice", password="pw")
    device = Device.objects.create(user=alice, name="work laptop", token_hash="0" * 64)
    user_key = SigningKey()
    UserKey.objects.create(user=alice, key={"ed25519": user_key.public}, version=1)
    maker = Owner(KeyedDevice(None, "alice", device.pk, "t"), user_key)  # type: ignore[arg-type]
    backup = maker.backup()
    backups.publish_backup(alice, device.pk, backup, None, "127.0.0.1")
    session = ("A" * 42 + "E", 0, blob_of(64))
    backups.put_sessions(alice, 1, [session])
    record = BackupRecord.objects.get()
    secrets = [
        backup["public_key"],
        backup["identity"]["ciphertext"][:40],
        backup["identity"]["mac"],
        backup["signatures"]["user"],
        session[2]["ciphertext"][:40],
        session[2]["mac"],
    ]
    pages = [
        "/admin/chat/backuprecord/",
        f"/admin/chat/backuprecord/{record.pk}/change/",
        f"/admin/accounts/user/{alice.pk}/change/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        if "backuprecord" in url:
            assert "work laptop" in page and device.pk in page and "created" in page
        for secret in secrets:
            assert secret not in page, url
    assert admin_client.get("/admin/chat/backuprecord/add/").status_code == 403
    assert admin_client.post(f"/admin/chat/backuprecord/{record.pk}/delete/").status_code == 403
    for hidden in ("keybackup", "backupsession"):  # the backups themselves are not registered
        assert admin_client.get(f"/admin/chat/{hidden}/").status_code == 404
