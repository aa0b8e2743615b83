"""sanitize_filename: the name an offered file is saved under is never a path."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatproto.transfer import (
    is_reserved_name,
    sanitize_filename,
)
from tests.chatproto.transfer_harness import (
    HOSTILE_NAMES,
)


@pytest.mark.parametrize(("offered", "saved"), HOSTILE_NAMES.items())
def test_sanitize_filename_makes_a_safe_base_name(offered, saved):
    assert sanitize_filename(offered) == saved


def test_reserved_names_are_recognised_with_any_extension_in_any_case():
    assert all(is_reserved_name(n) for n in ("CON", "con", "Prn.x", "aUx.a.b", "LPT1.txt"))
    assert not any(is_reserved_name(n) for n in ("CONS", "COM0", "LPT", "file", "xcon"))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_sanitized_names_are_never_paths_controls_hidden_or_reserved(name):
    saved = sanitize_filename(name)
    assert saved
    assert "/" not in saved and "\\" not in saved
    assert all(unicodedata.category(c) not in ("Cc", "Cf") for c in saved)
    assert not saved.startswith(".")
    assert not saved.endswith((".", " "))
    assert not is_reserved_name(saved)
    assert sanitize_filename(saved) == saved


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["..", "/", "\\", ".", " ", "\x00", "\u202e", "con", "a"]), max_size=12
    )
)
def test_sanitize_filename_is_idempotent_on_adversarial_pieces(pieces):
    once = sanitize_filename("".join(pieces))
    assert sanitize_filename(once) == once
    assert once not in (".", "..") and not ({"/", "\\", "\x00", "\u202e"} & set(once))
