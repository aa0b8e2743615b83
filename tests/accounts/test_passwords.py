"""Passwords and devices (PROTOCOL.md 3.4): the owner's change keeps their session and
device; an administrator's set revokes everything; Django's re-hashing does neither.
Each session is asked to end once, with one reason."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.hashers import make_password
from django.core.management import call_command

from accounts import devices, services
from accounts.errors import ServiceError
from accounts.models import Device, User
from tests.accounts.conftest import ADDRESS, PASSWORD
from tests.accounts.login_attempts import attempt_login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_and_fresh")]

NEW_PASSWORD = "another long passphrase 2"


def change(user: User, password: str = PASSWORD, new: str = NEW_PASSWORD, keep=None):
    services.change_password(
        user, password, new, ADDRESS, keep_session="chat.session!abc", keep_device=keep
    )


# --- the owner's change ---------------------------------------------------------------------


def test_change_keeps_the_asking_device_and_deletes_the_others(alice, ended):
    mine = devices.remember_device(alice, "laptop", ADDRESS)
    other = devices.remember_device(alice, "phone", ADDRESS)
    ended.clear()
    change(alice, keep=mine.device)
    assert list(Device.objects.filter(user=alice).values_list("pk", flat=True)) == [mine.device]
    assert ended.sent == [
        {
            "user_id": alice.pk,
            "reason": "password_changed",
            "devices": None,
            "except_session": "chat.session!abc",
        }
    ]
    assert devices.resume("alice", mine.token, ADDRESS)[1] == mine.device
    with pytest.raises(services.LoginRefused):
        devices.resume("alice", other.token, ADDRESS)
    assert attempt_login("alice", NEW_PASSWORD, ADDRESS).user is not None
    assert attempt_login("alice", PASSWORD, ADDRESS).reason == "invalid_credentials"


def test_change_from_a_session_without_a_device_deletes_them_all(alice, ended):
    devices.remember_device(alice, "laptop", ADDRESS)
    ended.clear()
    change(alice, keep=None)
    assert not Device.objects.filter(user=alice).exists()
    assert [sent["reason"] for sent in ended.sent] == ["password_changed"]


def test_a_wrong_current_password_is_invalid_credentials_counted_as_a_failed_login(
    alice, ended, settings
):
    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (2, 900)
    devices.remember_device(alice, "phone", ADDRESS)
    ended.clear()
    for _ in range(2):
        with pytest.raises(ServiceError) as refused:
            change(alice, password="wrong")
        assert refused.value.code == "invalid_credentials"
    with pytest.raises(ServiceError) as limited:
        change(alice)  # the right password, too late
    assert limited.value.code == "rate_limited" and limited.value.retry_after
    assert attempt_login("alice", PASSWORD, ADDRESS).reason == "rate_limited"
    assert User.objects.get(pk=alice.pk).check_password(PASSWORD)
    assert Device.objects.filter(user=alice).count() == 1 and ended.sent == []


def test_a_new_password_the_validators_refuse_is_invalid_password_with_the_rules(alice, ended):
    with pytest.raises(ServiceError) as refused:
        change(alice, new="short")
    assert refused.value.code == "invalid_password"
    assert "too short" in refused.value.message
    assert User.objects.get(pk=alice.pk).check_password(PASSWORD) and ended.sent == []


# --- an administrator's set -----------------------------------------------------------------


def assert_everything_revoked(user: User, ended) -> None:
    assert not Device.objects.filter(user=user).exists()
    assert ended.sent == [
        {"user_id": user.pk, "reason": "ended_by_admin", "devices": None, "except_session": None}
    ]


def test_a_password_set_in_a_shell_revokes_every_device_and_ends_every_session(alice, ended):
    devices.remember_device(alice, "laptop", ADDRESS)
    devices.remember_device(alice, "phone", ADDRESS)
    ended.clear()
    alice.set_password("set by the operator 3")
    alice.save()
    assert_everything_revoked(alice, ended)


def test_manage_py_changepassword_revokes_every_device(alice, ended, monkeypatch):
    devices.remember_device(alice, "laptop", ADDRESS)
    ended.clear()
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "set by the operator 3")
    call_command("changepassword", "alice", stdout=io.StringIO())
    assert User.objects.get(pk=alice.pk).check_password("set by the operator 3")
    assert_everything_revoked(alice, ended)


def test_a_password_made_unusable_revokes_every_device(alice, ended):
    devices.remember_device(alice, "laptop", ADDRESS)
    ended.clear()
    alice.set_unusable_password()
    alice.save()
    assert_everything_revoked(alice, ended)


def test_other_saves_of_the_account_revoke_nothing(alice, ended):
    devices.remember_device(alice, "laptop", ADDRESS)
    ended.clear()
    alice.first_name = "Alice"
    alice.save()
    alice.set_password("set but not saved 4")
    alice.save(update_fields=["first_name"])
    assert Device.objects.filter(user=alice).count() == 1 and ended.sent == []


def test_rehashing_at_login_is_not_a_password_change(alice, ended, settings):
    """Django upgrades a hash when it logs in with an older hasher; that revokes nothing."""
    settings.PASSWORD_HASHERS = [
        "tests.chat.helpers.FastArgon2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    User.objects.filter(pk=alice.pk).update(password=make_password(PASSWORD, hasher="md5"))
    devices.remember_device(alice, "laptop", ADDRESS)
    ended.clear()
    assert attempt_login("alice", PASSWORD, ADDRESS).user is not None
    assert User.objects.get(pk=alice.pk).password.startswith("argon2")  # it was re-hashed
    assert Device.objects.filter(user=alice).count() == 1 and ended.sent == []


def test_creating_an_account_revokes_nothing(transactional_db, ended):
    User.objects.create_user("carol", password=PASSWORD)
    User.objects.create_user("dave", password=None)
    assert ended.sent == []


def test_the_current_password_is_checked_against_the_saved_one_not_a_stale_copy(alice):
    """A session's User was loaded at login; the password may have changed since."""
    stale = User.objects.get(pk=alice.pk)
    change(alice)
    with pytest.raises(ServiceError) as refused:
        change(stale, password=PASSWORD, new="yet another passphrase 5")
    assert refused.value.code == "invalid_credentials"
    change(stale, password=NEW_PASSWORD, new="yet another passphrase 5")
