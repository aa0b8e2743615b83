"""Accounts: the user model's rules, the services, the chatuser command and the admin."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from accounts import services, signals
from accounts.models import User
from chat import delivery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["tests.chat.helpers.FastArgon2PasswordHasher"]
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"


@pytest.fixture
def broadcasts(monkeypatch):
    """What the services asked delivery to broadcast (after commit), in order."""
    sent = []
    monkeypatch.setattr(
        delivery, "end_sessions_sync", lambda user_id, reason: sent.append(("end", user_id, reason))
    )
    monkeypatch.setattr(
        delivery,
        "accounts_changed_sync",
        lambda added=(), removed=(): sent.append(("accounts", list(added), list(removed))),
    )
    return sent


def test_argon2_hashes_passwords_in_production_settings():
    from chatsite import settings as production

    assert production.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_usernames_differing_only_in_case_cannot_coexist():
    User.objects.create_user("Alice", password="pw")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("alice", password="pw")
    with pytest.raises(ValueError, match="taken"):
        services.create_user("ALICE", "pw", validate=False)


def test_usernames_outside_the_protocol_alphabet_are_refused():
    with pytest.raises(ValueError, match="letters"):
        services.create_user("jos\u00e9", "pw", validate=False)


def test_every_new_user_is_in_lobby():
    from chat.models import Membership

    user = services.create_user("alice", "pw", validate=False)
    assert Membership.objects.filter(user=user, room__name="lobby").exists()


def test_deactivation_ends_sessions_then_announces_the_account_removed(broadcasts):
    """Revision 1.1: the other sessions learn of it as ``removed`` in their ``presence``."""
    alice = services.create_user("alice", "pw", validate=False)
    services.create_user("bob", "pw", validate=False)
    broadcasts.clear()
    services.set_active(alice, False)
    assert broadcasts == [("end", alice.pk, "deactivated"), ("accounts", [], ["alice"])]


def test_deactivation_by_a_plain_save_also_ends_sessions(broadcasts):
    alice = services.create_user("alice", "pw", validate=False)
    broadcasts.clear()
    alice = User.objects.get(pk=alice.pk)
    alice.is_active = False
    alice.save()
    assert ("end", alice.pk, "deactivated") in broadcasts


def test_nothing_is_broadcast_when_the_transaction_rolls_back(broadcasts):
    alice = services.create_user("alice", "pw", validate=False)
    broadcasts.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        alice.is_active = False
        alice.save()
        raise RuntimeError("rolled back")
    assert broadcasts == []


def test_chatuser_command_creates_lists_and_deactivates(broadcasts, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a good long passphrase 7\n"))
    out = io.StringIO()
    call_command("chatuser", "create", "carol", "--password-stdin", stdout=out)
    assert "created carol" in out.getvalue()
    assert User.objects.get(username="carol").check_password("a good long passphrase 7")
    call_command("chatuser", "deactivate", "carol", stdout=out)
    assert User.objects.get(username="carol").is_active is False
    listing = io.StringIO()
    call_command("chatuser", "list", stdout=listing)
    assert "carol\tinactive" in listing.getvalue()


def test_chatuser_command_applies_password_validators(monkeypatch):
    from django.core.management import CommandError

    monkeypatch.setattr("sys.stdin", io.StringIO("123\n"))
    with pytest.raises(CommandError, match="too short"):
        call_command("chatuser", "create", "dave", "--password-stdin")


# --- admin ---------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    admin = User.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    return client


def test_admin_creates_a_user(admin_client):
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "username": "erin",
            "password1": "a good long passphrase 7",
            "password2": "a good long passphrase 7",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert User.objects.get(username="erin").check_password("a good long passphrase 7")


def test_admin_refuses_a_username_taken_in_another_case(admin_client):
    User.objects.create_user("Erin", password="pw")
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "username": "erin",
            "password1": "a good long passphrase 7",
            "password2": "a good long passphrase 7",
            "usable_password": "true",
        },
    )
    assert response.status_code == 200
    assert User.objects.filter(username__iexact="erin").count() == 1


def test_admin_deactivate_action_ends_sessions(admin_client, broadcasts):
    frank = User.objects.create_user("frank", password="pw")
    broadcasts.clear()
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "deactivate_users", "_selected_action": [frank.pk]},
    )
    assert response.status_code == 302
    assert User.objects.get(pk=frank.pk).is_active is False
    assert ("end", frank.pk, "deactivated") in broadcasts


def test_admin_resets_a_password(admin_client):
    grace = User.objects.create_user("grace", password="old password 1")
    response = admin_client.post(
        f"/admin/accounts/user/{grace.pk}/password/",
        {
            "password1": "a brand new passphrase 9",
            "password2": "a brand new passphrase 9",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    assert User.objects.get(pk=grace.pk).check_password("a brand new passphrase 9")


def test_admin_can_end_a_users_sessions_without_deactivating(admin_client, broadcasts):
    kim = User.objects.create_user("kim", password="pw")
    response = admin_client.post(
        "/admin/accounts/user/", {"action": "end_chat_sessions", "_selected_action": [kim.pk]}
    )
    assert response.status_code == 302
    assert ("end", kim.pk, "ended_by_admin") in broadcasts
    assert User.objects.get(pk=kim.pk).is_active is True


def test_chatuser_end_sessions(broadcasts):
    lee = User.objects.create_user("lee", password="pw")
    call_command("chatuser", "end-sessions", "lee", stdout=io.StringIO())
    assert ("end", lee.pk, "ended_by_admin") in broadcasts


def test_ending_sessions_is_a_request_that_accounts_sends_without_knowing_the_chat(
    admin_client,
):
    """accounts never imports chat: the admin and chatuser send a signal, chat receives it."""
    received = []

    def receiver(sender, user_id, reason, **kwargs):
        received.append((user_id, reason))

    mia = User.objects.create_user("mia", password="pw")
    signals.sessions_end_requested.connect(receiver)
    try:
        admin_client.post(
            "/admin/accounts/user/", {"action": "end_chat_sessions", "_selected_action": [mia.pk]}
        )
        call_command("chatuser", "end-sessions", "mia", stdout=io.StringIO())
    finally:
        signals.sessions_end_requested.disconnect(receiver)
    assert received == [(mia.pk, "ended_by_admin"), (mia.pk, "ended_by_admin")]
