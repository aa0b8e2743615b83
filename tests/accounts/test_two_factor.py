"""Two-factor login (PROTOCOL.md 3.4): TOTP codes from a real authenticator (pyotp) and
backup codes, through the accounts services."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.db import connection
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services, two_factor
from accounts.errors import ServiceError
from accounts.models import BackupCode, User
from tests.accounts.conftest import ADDRESS, PASSWORD
from tests.accounts.login_attempts import attempt_login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_and_fresh")]


def enable(user: User, clock) -> list[str]:
    """Turn two-factor login on as a client would; the backup codes."""
    setup = two_factor.otp_setup(user)
    clock.secret = setup.secret
    codes = two_factor.otp_confirm(user, clock.code())
    clock.tick(2)  # that step is used up: a test may use the step before its "now"
    return codes


def wrong_code(clock) -> str:
    """A code of six digits that none of the steps around now has."""
    taken = {clock.code(steps) for steps in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in taken)


def reason(otp: str | None, address: str = ADDRESS) -> str | None:
    return attempt_login("alice", PASSWORD, address, otp=otp).reason


# --- setting it up ----------------------------------------------------------------------------


def test_setup_gives_a_base32_secret_and_an_otpauth_uri_with_issuer_and_username(alice, settings):
    settings.CHAT_SERVER_NAME = "Acme Chat"
    setup = two_factor.otp_setup(alice)
    assert re.fullmatch(r"[A-Z2-7]{32}", setup.secret)
    parts = urlsplit(setup.uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Acme Chat:alice"
    query = parse_qs(parts.query)
    assert query["secret"] == [setup.secret] and query["issuer"] == ["Acme Chat"]


def test_a_setup_counts_only_after_it_is_confirmed(alice, clock):
    clock.secret = two_factor.otp_setup(alice).secret
    assert two_factor.two_factor_enabled(alice) is False
    assert reason(None) is None  # the password alone still logs in
    two_factor.otp_confirm(alice, clock.code())
    assert two_factor.two_factor_enabled(alice) is True


def test_a_new_setup_replaces_an_unconfirmed_one(alice, clock):
    first = two_factor.otp_setup(alice).secret
    second = two_factor.otp_setup(alice).secret
    assert first != second
    assert TOTPDevice.objects.filter(user=alice).count() == 1
    with pytest.raises(ServiceError) as refused:
        two_factor.otp_confirm(alice, clock.code(secret=first))
    assert refused.value.code == "invalid_otp"
    assert two_factor.otp_confirm(alice, clock.code(secret=second))


def test_confirm_with_a_wrong_code_or_without_setup_is_invalid_otp(alice, clock):
    with pytest.raises(ServiceError) as no_setup:
        two_factor.otp_confirm(alice, "123456")
    assert no_setup.value.code == "invalid_otp"
    clock.secret = two_factor.otp_setup(alice).secret
    wrong = f"{(int(clock.code()) + 1) % 1_000_000:06d}"
    with pytest.raises(ServiceError) as refused:
        two_factor.otp_confirm(alice, wrong)
    assert refused.value.code == "invalid_otp"
    assert two_factor.two_factor_enabled(alice) is False


def test_setup_when_two_factor_login_is_on_is_a_bad_request(alice, clock):
    enable(alice, clock)
    with pytest.raises(ServiceError) as refused:
        two_factor.otp_setup(alice)
    assert refused.value.code == "bad_request"
    assert two_factor.two_factor_enabled(alice) is True


# --- logging in -----------------------------------------------------------------------------


def test_login_needs_a_current_code_after_the_password(alice, clock):
    enable(alice, clock)
    assert reason(None) == "otp_required"
    assert reason(wrong_code(clock)) == "otp_required"
    assert reason(clock.code()) is None


def test_a_wrong_password_is_invalid_credentials_whatever_the_code(alice, clock):
    enable(alice, clock)
    assert attempt_login("alice", "wrong", ADDRESS, otp=clock.code()).reason == (
        "invalid_credentials"
    )


def test_a_code_is_accepted_once(alice, clock):
    enable(alice, clock)
    code = clock.code()
    assert reason(code) is None
    assert reason(code) == "otp_required"
    clock.tick()
    assert reason(clock.code()) is None


def test_one_step_of_drift_either_way_is_accepted(alice, clock):
    enable(alice, clock)
    assert reason(clock.code(steps=-1)) is None
    clock.tick(3)
    assert reason(clock.code(steps=+1)) is None


def test_two_steps_of_drift_are_refused(alice, clock):
    enable(alice, clock)
    clock.tick(5)
    assert reason(clock.code(steps=-2)) == "otp_required"
    assert reason(clock.code(steps=+2)) == "otp_required"


def test_an_accepted_code_ahead_does_not_move_the_window(alice, clock):
    """No drift learning: the window stays one step either way of the server's clock."""
    enable(alice, clock)
    assert reason(clock.code(steps=+1)) is None
    clock.tick(3)
    assert reason(clock.code(steps=+2)) == "otp_required"


def test_a_correct_code_after_wrong_ones_is_accepted_at_once(alice, clock):
    """django-otp's own back-off is off: only the login throttles refuse (rate_limited)."""
    enable(alice, clock)
    for _ in range(3):
        assert reason(wrong_code(clock)) == "otp_required"
    assert reason(clock.code()) is None


def test_wrong_codes_count_as_failed_logins_then_rate_limited(alice, clock, settings):
    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (3, 900)
    enable(alice, clock)
    for _ in range(3):
        assert reason(None) == "otp_required"
    refused = attempt_login("alice", PASSWORD, ADDRESS, otp=clock.code())
    assert refused.reason == "rate_limited" and refused.retry_after
    assert reason(clock.code(), address="192.0.2.99") is None  # another address is not held


def test_a_backup_code_works_once_with_or_without_dashes_in_any_case(alice, clock):
    codes = enable(alice, clock)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", code) for code in codes)
    assert reason(codes[0]) is None
    assert reason(codes[0]) == "otp_required"
    assert reason(codes[1].replace("-", "").upper()) is None
    assert reason(codes[2].replace("-", " ")) is None
    assert reason(codes[1]) == "otp_required"
    assert BackupCode.objects.filter(user=alice).count() == 7


def test_backup_codes_are_stored_only_as_hashes(alice, clock):
    codes = enable(alice, clock)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_backupcode")
        rows = " ".join(str(value) for row in cursor.fetchall() for value in row).lower()
    assert len(rows) > 0
    for code in codes:
        assert code not in rows and code.replace("-", "") not in rows


def test_a_new_confirmation_replaces_the_backup_codes(alice, clock):
    old = enable(alice, clock)
    two_factor.reset_two_factor(alice)
    new = enable(alice, clock)
    assert set(old).isdisjoint(new)
    assert reason(old[0]) == "otp_required"
    assert reason(new[0]) is None


# --- turning it off --------------------------------------------------------------------------


def test_disable_needs_the_password_and_a_current_code(alice, clock):
    enable(alice, clock)
    with pytest.raises(ServiceError) as wrong_password:
        two_factor.otp_disable(alice, "wrong", clock.code(), ADDRESS)
    assert wrong_password.value.code == "invalid_credentials"
    with pytest.raises(ServiceError) as bad_code:
        two_factor.otp_disable(alice, PASSWORD, wrong_code(clock), ADDRESS)
    assert bad_code.value.code == "invalid_otp"
    assert two_factor.two_factor_enabled(alice) is True
    two_factor.otp_disable(alice, PASSWORD, clock.code(), ADDRESS)
    assert two_factor.two_factor_enabled(alice) is False
    assert not BackupCode.objects.filter(user=alice).exists()
    assert reason(None) is None


def test_disable_failures_count_as_failed_logins(alice, clock, settings):
    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (2, 900)
    enable(alice, clock)
    for _ in range(2):
        with pytest.raises(ServiceError):
            two_factor.otp_disable(alice, "wrong", clock.code(), ADDRESS)
    with pytest.raises(ServiceError) as refused:
        two_factor.otp_disable(alice, PASSWORD, clock.code(), ADDRESS)
    assert refused.value.code == "rate_limited" and refused.value.retry_after
    assert two_factor.two_factor_enabled(alice) is True


def test_reset_turns_it_off_and_forgets_the_backup_codes(alice, clock):
    codes = enable(alice, clock)
    two_factor.reset_two_factor(alice)
    assert two_factor.two_factor_enabled(alice) is False
    assert not TOTPDevice.objects.filter(user=alice).exists()
    assert reason(None) is None
    assert not two_factor.verify_second_factor(alice, codes[0])


def test_the_totp_secret_is_not_the_backup_codes_store(alice, clock):
    """Backup codes are our own hashed model, not django-otp's plain-text StaticToken."""
    enable(alice, clock)
    assert (
        "django_otp.plugins.otp_static"
        not in __import__("django.conf").conf.settings.INSTALLED_APPS
    )


def test_services_reexport_the_refusal_codes():
    assert services.OTP_REQUIRED == "otp_required"
