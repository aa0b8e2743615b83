"""Remembered devices (PROTOCOL.md 3.4): tokens kept as hashes, resume and its refusals,
the list, revocation and the sessions it ends."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import devices
from accounts.errors import LoginRefused, ServiceError
from accounts.models import Device, User
from chatproto.crypto_utils import sha256
from tests.accounts.conftest import ADDRESS, PASSWORD
from tests.accounts.login_attempts import attempt_login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_and_fresh")]


def refusal(username: str, token: str, address: str = ADDRESS) -> tuple[str, int | None]:
    with pytest.raises(LoginRefused) as refused:
        devices.resume(username, token, address)
    return refused.value.code, refused.value.retry_after


# --- remembering --------------------------------------------------------------------------


def test_a_token_is_32_random_bytes_in_unpadded_base64url(alice):
    remembered = devices.remember_device(alice, "laptop", ADDRESS)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", remembered.token)
    assert len(base64.urlsafe_b64decode(remembered.token + "=")) == 32
    assert remembered.token != devices.remember_device(alice, "laptop", ADDRESS).token
    assert 1 <= len(remembered.device) <= 64


def test_only_the_tokens_sha256_is_stored(alice):
    remembered = devices.remember_device(alice, "laptop", ADDRESS)
    device = Device.objects.get(pk=remembered.device)
    assert device.token_hash == sha256(remembered.token.encode()).hex()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_device")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert remembered.token not in stored
    assert device.name == "laptop" and device.last_address == ADDRESS


# --- resume ---------------------------------------------------------------------------------


def test_resume_logs_in_with_the_token_and_notes_when_and_where(alice):
    remembered = devices.remember_device(alice, "laptop", ADDRESS)
    Device.objects.filter(pk=remembered.device).update(last_seen=timezone.now() - timedelta(days=3))
    user, device_id = devices.resume("alice", remembered.token, "198.51.100.7")
    assert (user.pk, device_id) == (alice.pk, remembered.device)
    device = Device.objects.get(pk=device_id)
    assert timezone.now() - device.last_seen < timedelta(minutes=1)
    assert device.last_address == "198.51.100.7"
    # The token stays valid: no new one at a resume.
    assert devices.resume("alice", remembered.token, ADDRESS)[1] == remembered.device


def test_every_resume_failure_is_invalid_credentials(alice, settings):
    settings.CHAT_DEVICE_LIFETIME_DAYS = 30
    bob = User.objects.create_user("bob", password=PASSWORD)
    token = devices.remember_device(alice, "laptop", ADDRESS).token
    bobs = devices.remember_device(bob, "phone", ADDRESS).token
    revoked = devices.remember_device(alice, "old", ADDRESS)
    devices.revoke_device(alice, revoked.device)
    old = devices.remember_device(alice, "forgotten", ADDRESS)
    Device.objects.filter(pk=old.device).update(last_seen=timezone.now() - timedelta(days=31))
    cases = {
        "unknown user": ("nobody", token),
        "another case of the name": ("Alice", token),
        "wrong token": ("alice", devices.new_token()),
        "revoked token": ("alice", revoked.token),
        "another user's token": ("alice", bobs),
        "expired device": ("alice", old.token),
        "not a token at all": ("alice", "x"),
    }
    for case, (username, given) in cases.items():
        assert refusal(username, given) == ("invalid_credentials", None), case
    bob.is_active = False
    bob.save()
    assert refusal("bob", bobs) == ("invalid_credentials", None)


def test_every_resume_failure_does_the_same_work(alice, settings):
    """One lookup by the token's hash, whatever the cause: no cause answers faster."""
    settings.CHAT_DEVICE_LIFETIME_DAYS = 30
    token = devices.remember_device(alice, "laptop", ADDRESS).token
    old = devices.remember_device(alice, "forgotten", ADDRESS)
    Device.objects.filter(pk=old.device).update(last_seen=timezone.now() - timedelta(days=31))
    inactive = User.objects.create_user("bob", password=PASSWORD, is_active=False)
    bobs = devices.remember_device(inactive, "phone", ADDRESS).token
    work = {}
    for case, (username, given) in {
        "unknown user": ("nobody", token),
        "wrong token": ("alice", devices.new_token()),
        "expired": ("alice", old.token),
        "inactive": ("bob", bobs),
    }.items():
        with CaptureQueriesContext(connection) as queries:
            refusal(username, given)
        work[case] = [query["sql"].split(" WHERE")[0] for query in queries.captured_queries]
    assert len({tuple(sql) for sql in work.values()}) == 1, work
    assert len(work["unknown user"]) == 1


def test_a_device_used_within_the_lifetime_still_resumes(alice, settings):
    settings.CHAT_DEVICE_LIFETIME_DAYS = 30
    remembered = devices.remember_device(alice, "laptop", ADDRESS)
    Device.objects.filter(pk=remembered.device).update(
        last_seen=timezone.now() - timedelta(days=29)
    )
    assert devices.resume("alice", remembered.token, ADDRESS)[1] == remembered.device


def test_resume_failures_are_counted_by_the_login_throttles(alice, settings):
    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (3, 900)
    remembered = devices.remember_device(alice, "laptop", ADDRESS)
    for _ in range(3):
        assert refusal("alice", devices.new_token())[0] == "invalid_credentials"
    code, wait = refusal("alice", remembered.token)  # the right token, too late
    assert code == "rate_limited" and wait and wait > 0
    # The same count as a password login: that is refused too, and the other way round.
    assert attempt_login("alice", PASSWORD, ADDRESS).reason == "rate_limited"
    assert devices.resume("alice", remembered.token, "198.51.100.1")[0].pk == alice.pk


def test_failed_password_logins_count_against_resume(alice, settings):
    settings.CHAT_LOGIN_THROTTLE_ADDRESS = (2, 900)
    remembered = devices.remember_device(alice, "laptop", ADDRESS)
    attempt_login("nobody", "x", ADDRESS)
    attempt_login("alice", "wrong", ADDRESS)
    assert refusal("alice", remembered.token)[0] == "rate_limited"


def test_resume_with_an_unknown_name_is_counted_like_a_known_one(alice, settings):
    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (2, 900)
    for name in ("alice", "ghost"):
        for _ in range(2):
            refusal(name, devices.new_token())
    assert refusal("alice", devices.new_token())[0] == "rate_limited"
    assert refusal("ghost", devices.new_token())[0] == "rate_limited"


# --- the list and revocation ----------------------------------------------------------------


def test_devices_of_lists_the_users_devices_most_recently_used_first(alice):
    bob = User.objects.create_user("bob", password=PASSWORD)
    names = ["desk", "laptop", "phone"]
    ids = [devices.remember_device(alice, name, ADDRESS).device for name in names]
    devices.remember_device(bob, "bobs", ADDRESS)
    now = timezone.now()
    for age, device_id in zip((5, 1, 3), ids, strict=True):
        Device.objects.filter(pk=device_id).update(last_seen=now - timedelta(hours=age))
    assert [device.name for device in devices.devices_of(alice)] == ["laptop", "phone", "desk"]


def test_revoking_a_device_stops_its_token_and_ends_its_sessions(alice, ended):
    keep = devices.remember_device(alice, "laptop", ADDRESS)
    gone = devices.remember_device(alice, "phone", ADDRESS)
    ended.clear()
    devices.revoke_device(alice, gone.device)
    assert ended.sent == [
        {"user_id": alice.pk, "reason": "revoked", "devices": [gone.device], "except_session": None}
    ]
    assert refusal("alice", gone.token)[0] == "invalid_credentials"
    assert devices.resume("alice", keep.token, ADDRESS)[1] == keep.device


def test_a_logout_revokes_with_its_own_reason(alice, ended):
    remembered = devices.remember_device(alice, "laptop", ADDRESS)
    devices.revoke_device(alice, remembered.device, reason="logged_out")
    assert [(sent["reason"], sent["devices"]) for sent in ended.sent] == [
        ("logged_out", [remembered.device])
    ]


def test_revoking_a_device_that_is_not_the_users_is_unknown_device(alice, ended):
    bob = User.objects.create_user("bob", password=PASSWORD)
    bobs = devices.remember_device(bob, "phone", ADDRESS)
    for device_id in (bobs.device, "no-such-device"):
        with pytest.raises(ServiceError) as refused:
            devices.revoke_device(alice, device_id)
        assert refused.value.code == "unknown_device"
    assert Device.objects.filter(pk=bobs.device).exists()
    assert ended.sent == []


def test_a_device_deleted_any_other_way_also_ends_its_sessions(alice, ended):
    one = devices.remember_device(alice, "one", ADDRESS)
    two = devices.remember_device(alice, "two", ADDRESS)
    three = devices.remember_device(alice, "three", ADDRESS)
    Device.objects.get(pk=one.device).delete()
    Device.objects.filter(pk__in=[two.device, three.device]).delete()
    assert sorted((sent["reason"], tuple(sent["devices"])) for sent in ended.sent) == sorted(
        [("revoked", (one.device,)), ("revoked", (two.device,)), ("revoked", (three.device,))]
    )


def test_deleting_an_account_sends_no_revocation_of_its_devices(alice, ended):
    """The chat ends every session of a deleted account itself (ended_by_admin)."""
    devices.remember_device(alice, "laptop", ADDRESS)
    alice.delete()
    assert not Device.objects.exists()
    assert ended.sent == []
    bob = User.objects.create_user("bob", password=PASSWORD)
    devices.remember_device(bob, "phone", ADDRESS)
    User.objects.filter(pk=bob.pk).delete()
    assert ended.sent == []
