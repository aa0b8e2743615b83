"""The settings of PROTOCOL.md 3.4, read from the environment by chatsite/env.py."""

from __future__ import annotations

import pytest
from django.conf import settings

from chatsite import env


def test_devices_last_90_days_and_two_factor_login_is_optional_by_default(tmp_path):
    read = env.read({"CHAT_DATA_DIR": str(tmp_path)})
    assert read.device_lifetime_days == 90
    assert read.require_2fa is False


def test_the_operator_sets_the_device_lifetime_and_requires_two_factor_login(tmp_path):
    read = env.read(
        {
            "CHAT_DATA_DIR": str(tmp_path),
            "CHAT_DEVICE_LIFETIME_DAYS": "30",
            "CHAT_REQUIRE_2FA": "yes",
        }
    )
    assert read.device_lifetime_days == 30
    assert read.require_2fa is True


@pytest.mark.parametrize(
    ("name", "value", "advice"),
    [
        ("CHAT_DEVICE_LIFETIME_DAYS", "0", "at least 1"),
        ("CHAT_DEVICE_LIFETIME_DAYS", "ninety", "whole number"),
        ("CHAT_REQUIRE_2FA", "maybe", "use 1 or 0"),
    ],
)
def test_bad_values_stop_the_server_with_what_to_fix(tmp_path, name, value, advice):
    with pytest.raises(env.ConfigError, match=advice):
        env.read({"CHAT_DATA_DIR": str(tmp_path), name: value})


def test_django_otp_is_installed_with_its_own_throttle_and_drift_learning_off():
    assert "django_otp" in settings.INSTALLED_APPS
    assert "django_otp.plugins.otp_totp" in settings.INSTALLED_APPS
    assert settings.OTP_TOTP_THROTTLE_FACTOR == 0
    assert settings.OTP_TOTP_SYNC is False
    assert settings.CHAT_DEVICE_LIFETIME_DAYS == 90 and settings.CHAT_REQUIRE_2FA is False
