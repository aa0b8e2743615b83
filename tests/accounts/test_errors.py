"""One error model for the services: login and registration refuse the same way."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from accounts import services
from accounts.errors import LoginRefused, RegistrationRefused, ServiceError
from accounts.usernames import USERNAME_RULE, username_problem
from chatproto.wording import try_again

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["tests.chat.helpers.FastArgon2PasswordHasher"]
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": str(tmp_path),
        }
    }
    cache.clear()


def test_a_wrong_password_is_a_login_refused_with_its_reason():
    services.create_user("alice", "pw", validate=False)
    with pytest.raises(LoginRefused) as refused:
        services.authenticate("alice", "wrong", "192.0.2.1")
    assert isinstance(refused.value, ServiceError)
    assert (refused.value.code, refused.value.retry_after) == ("invalid_credentials", None)
    assert refused.value.message


def test_a_throttled_login_says_when_to_try_again(settings):
    settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (1, 10**7)
    with pytest.raises(LoginRefused):
        services.authenticate("ghost", "wrong", "192.0.2.2")
    with pytest.raises(LoginRefused) as refused:
        services.authenticate("ghost", "wrong", "192.0.2.2")
    wait = refused.value.retry_after
    assert refused.value.code == "rate_limited" and wait
    assert refused.value.message.endswith(try_again(wait))


def test_a_login_that_succeeds_returns_the_user():
    services.create_user("bob", "pw", validate=False)
    assert services.authenticate("bob", "pw", "192.0.2.3").username == "bob"


def test_registration_refusals_are_service_errors_with_answer_fields(settings):
    settings.CHAT_OPEN_REGISTRATION = True
    with pytest.raises(RegistrationRefused) as refused:
        services.register("no spaces", "a long enough password 1", "192.0.2.4")
    assert isinstance(refused.value, ServiceError)
    assert refused.value.fields() == {
        "reason": "invalid_username",
        "message": username_problem("no spaces"),
    }


def test_a_throttled_registration_words_its_wait_like_every_other_wait(settings):
    settings.CHAT_OPEN_REGISTRATION = True
    settings.CHAT_REGISTER_THROTTLE_ADDRESS = (1, 10**7)
    services.register("carol", "a long enough password 1", "192.0.2.5")
    with pytest.raises(RegistrationRefused) as refused:
        services.register("dave", "a long enough password 1", "192.0.2.5")
    wait = refused.value.retry_after
    assert refused.value.fields() == {
        "reason": "rate_limited",
        "message": f"Too many registrations; {try_again(wait)}",
        "retry_after": wait,
    }


def test_the_username_rule_is_said_once():
    assert username_problem("alice") is None
    assert USERNAME_RULE in username_problem("al ice")
    with pytest.raises(ValueError, match="1 to 150 characters"):
        services.create_user("al ice", "pw", validate=False)


def test_the_chat_uses_the_same_error_class():
    from chat import services as chat_services

    assert chat_services.ServiceError is ServiceError
