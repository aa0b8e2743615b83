"""The admin's web login (/admin/login/) is throttled like the chat's login.

Through Django's test client: per (username, address), per address and per
account, each answered with a form error that says how long to wait, and the
owner's known address exempt from the per-account limit as in the chat.
"""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache

from accounts.admin import request_address
from accounts.models import User
from chatproto.wording import in_words
from tests.accounts.login_attempts import attempt_login

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "/admin/login/"
PASSWORD = "a long admin passphrase 9"


@pytest.fixture(autouse=True)
def _fast_and_fresh(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["tests.chat.helpers.FastArgon2PasswordHasher"]
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"
    cache.clear()


@pytest.fixture
def root(transactional_db):
    return User.objects.create_superuser("root", password=PASSWORD)


def log_in(client, username: str, password: str, address: str):
    client.logout()
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response.url == "/admin/"


def form_errors(response) -> list[str]:
    return list(response.context["form"].non_field_errors())


def seconds_to_wait(response) -> int:
    """The wait the refusal tells, in seconds (it fails the test if there is none)."""
    (error,) = form_errors(response)
    found = re.fullmatch(
        r"Too many failed logins .*\. Try again in (\d+) (second|seconds|minutes)\.", error
    )
    assert found, error
    return int(found.group(1)) * (60 if found.group(2) == "minutes" else 1)


def test_the_admin_logs_in_with_the_right_password(client, root):
    assert logged_in(log_in(client, "root", PASSWORD, "192.0.2.1"))
    assert client.get("/admin/").status_code == 200


def test_a_wrong_password_and_a_non_staff_user_are_refused_as_before(client, root):
    User.objects.create_user("alice", password=PASSWORD)
    for username, password in (("root", "wrong"), ("alice", PASSWORD), ("ghost", PASSWORD)):
        response = log_in(client, username, password, "192.0.2.1")
        assert response.status_code == 200
        assert "correct username and password" in form_errors(response)[0]


def test_failures_per_username_and_address_are_limited_with_a_wait_in_the_error(
    client, root, settings
):
    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (3, 900)
    for _ in range(3):
        assert not logged_in(log_in(client, "root", "wrong", "192.0.2.1"))
    refused = log_in(client, "root", PASSWORD, "192.0.2.1")  # the right password, too late
    assert not logged_in(refused)
    assert 1 <= seconds_to_wait(refused) <= 16 * 60  # the pair's window: 15 minutes, rounded up
    # Another address is not affected by that pair's count.
    assert logged_in(log_in(client, "root", PASSWORD, "192.0.2.2"))


def test_failures_per_address_are_limited_across_usernames(client, root, settings):
    settings.CHAT_LOGIN_THROTTLE_ADDRESS = (3, 900)
    for name in ("a", "b", "c"):
        log_in(client, name, "wrong", "192.0.2.1")
    refused = log_in(client, "root", PASSWORD, "192.0.2.1")
    assert "Try again in" in form_errors(refused)[0]


def test_failures_per_account_are_limited_across_addresses_except_known_ones(
    client, root, settings
):
    settings.CHAT_LOGIN_THROTTLE_ACCOUNT = (3, 3600)
    assert logged_in(log_in(client, "root", PASSWORD, "192.0.2.200"))  # the admin's office
    for n in range(3):
        log_in(client, "root", "wrong", f"198.51.100.{n}")
    refused = log_in(client, "root", PASSWORD, "198.51.100.50")
    assert not logged_in(refused)
    assert 59 * 60 <= seconds_to_wait(refused) <= 61 * 60  # an hour, to within a minute
    assert logged_in(log_in(client, "root", PASSWORD, "192.0.2.200"))


def test_the_chat_and_the_admin_share_their_counts(client, root, settings):
    """Guesses cannot be spread over both doors to get twice the tries."""

    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (4, 900)
    for _ in range(2):
        attempt_login("root", "wrong", "192.0.2.1")
        log_in(client, "root", "wrong", "192.0.2.1")
    assert attempt_login("root", PASSWORD, "192.0.2.1").reason == "rate_limited"
    assert "Try again in" in form_errors(log_in(client, "root", PASSWORD, "192.0.2.1"))[0]


def test_the_admin_believes_x_forwarded_for_only_from_a_trusted_proxy(rf, settings):
    settings.CHAT_TRUSTED_PROXIES = ["10.0.0.1"]
    forged = rf.post(LOGIN, REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert request_address(forged) == "192.0.2.9"
    proxied = rf.post(LOGIN, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.1")
    assert request_address(proxied) == "203.0.113.1"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (119, "119 seconds"),
        (120, "2 minutes"),
        (121, "3 minutes"),
        (3600, "60 minutes"),
    ],
)
def test_waits_read_as_seconds_or_minutes(seconds, text):
    assert in_words(seconds) == text
