"""Pinned server keys, server addresses and the config folder."""

from __future__ import annotations

import stat

import pytest

from tk_client.address import AddressError, parse_address
from tk_client.config import Settings, config_dir, load_settings, save_settings
from tk_client.known_servers import KnownServers, Trust, normalise_fingerprint

FP_A = "SHA256:" + "A" * 43
FP_B = "SHA256:" + "B" * 43


@pytest.fixture
def known(tmp_path):
    return KnownServers(tmp_path / "chat" / "known_servers")


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "key", "url", "origin"),
    [
        (
            "127.0.0.1:8000",
            "ws://127.0.0.1:8000",
            "ws://127.0.0.1:8000/ws/chat/",
            "http://127.0.0.1:8000",
        ),
        (
            "ws://LocalHost:8000/ws/chat/",
            "ws://localhost:8000",
            "ws://localhost:8000/ws/chat/",
            "http://localhost:8000",
        ),
        (
            "https://chat.example.org",
            "wss://chat.example.org:443",
            "wss://chat.example.org:443/ws/chat/",
            "https://chat.example.org",
        ),
        (
            "wss://chat.example.org:8443/",
            "wss://chat.example.org:8443",
            "wss://chat.example.org:8443/ws/chat/",
            "https://chat.example.org:8443",
        ),
        ("ws://[::1]:9000", "ws://[::1]:9000", "ws://[::1]:9000/ws/chat/", "http://[::1]:9000"),
        (
            "  example.org  ",
            "ws://example.org:80",
            "ws://example.org:80/ws/chat/",
            "http://example.org",
        ),
    ],
)
def test_addresses_are_normalised(typed, key, url, origin):
    address = parse_address(typed)
    assert (address.key, address.url, address.origin) == (key, url, origin)


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("", "Enter the server address"),
        ("ftp://example.org", "Unknown scheme 'ftp'"),
        ("ws://example.org/other", "always at /ws/chat/"),
        ("ws://user:pw@example.org", "does not name a server"),
        ("ws://exa mple.org", "does not name a server"),
        ("ws://example.org:99999", "is not a server address"),
    ],
)
def test_bad_addresses_say_what_a_good_one_looks_like(typed, words):
    with pytest.raises(AddressError, match=words):
        parse_address(typed)


# --- known servers -------------------------------------------------------------------------


def test_unknown_server_then_trusted_after_pinning(known):
    address = parse_address("127.0.0.1:8000")
    assert known.check(address, FP_A).trust is Trust.UNKNOWN

    known.trust(address, FP_A)

    assert known.check(parse_address("ws://127.0.0.1:8000/ws/chat/"), FP_A).trust is Trust.TRUSTED
    assert known.path.read_text() == "ws://127.0.0.1:8000 " + FP_A + "\n"


def test_changed_key_is_reported_with_both_fingerprints(known):
    address = parse_address("127.0.0.1:8000")
    known.trust(address, FP_A)

    check = known.check(address, FP_B)

    assert (check.trust, check.expected, check.received) == (Trust.CHANGED, FP_A, FP_B)


def test_trust_never_replaces_a_pinned_key(known):
    address = parse_address("127.0.0.1:8000")
    known.trust(address, FP_A)

    with pytest.raises(ValueError, match="forget it first"):
        known.trust(address, FP_B)
    assert known.get(address) == FP_A


def test_forget_then_trust_accepts_a_new_key(known):
    address = parse_address("127.0.0.1:8000")
    other = parse_address("127.0.0.1:9000")
    known.trust(address, FP_A)
    known.trust(other, FP_A)

    assert known.forget(address) == FP_A
    known.trust(address, FP_B)

    assert known.get(address) == FP_B and known.get(other) == FP_A
    assert known.forget(parse_address("127.0.0.1:1")) is None


def test_replace_accepts_only_the_change_that_was_shown(known):
    address = parse_address("127.0.0.1:8000")
    known.trust(address, FP_A)

    with pytest.raises(ValueError, match="changed in the meantime"):
        known.replace(address, FP_B, FP_B)
    known.replace(address, FP_A, FP_B)
    assert known.get(address) == FP_B


def test_file_and_folder_are_private(known):
    known.trust(parse_address("127.0.0.1:8000"), FP_A)
    assert mode(known.path) == 0o600
    assert mode(known.path.parent) == 0o700


def test_comments_and_other_lines_survive_edits(known):
    known.path.parent.mkdir(mode=0o700)
    known.path.write_text("# my servers\nws://a:1 " + FP_A + "\n")

    known.trust(parse_address("ws://b:2"), FP_B)
    known.forget(parse_address("ws://a:1"))

    assert known.path.read_text() == "# my servers\nws://b:2 " + FP_B + "\n"


def test_trust_refuses_what_is_not_a_fingerprint(known):
    with pytest.raises(ValueError):
        known.trust(parse_address("127.0.0.1:8000"), "SHA256:short")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (FP_A, FP_A),
        ("  " + FP_A + "\n", FP_A),
        ("A" * 43, FP_A),
        ("sha256:" + "A" * 43, FP_A),
        ("SHA256:" + "A" * 42, None),
        ("", None),
    ],
)
def test_typed_fingerprints_are_normalised(typed, expected):
    assert normalise_fingerprint(typed) == expected


# --- config --------------------------------------------------------------------------------


def test_config_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_dir() == tmp_path / "chat"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/path")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_dir() == tmp_path / "home" / ".config" / "chat"


def test_settings_remember_server_and_username_only(tmp_path):
    folder = tmp_path / "chat"
    assert load_settings(folder) == Settings()

    save_settings(Settings(server="ws://example.org:8000", username="alice"), folder)

    assert load_settings(folder) == Settings(server="ws://example.org:8000", username="alice")
    assert mode(folder / "settings.json") == 0o600
    assert "password" not in (folder / "settings.json").read_text()


def test_unreadable_settings_fall_back_to_defaults(tmp_path):
    folder = tmp_path / "chat"
    folder.mkdir()
    (folder / "settings.json").write_text("{not json")
    assert load_settings(folder) == Settings()
