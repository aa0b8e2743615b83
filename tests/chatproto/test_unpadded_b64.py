"""unpadded_b64: the one spelling of section 4's keys and signatures."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatproto import unpadded_b64


@given(st.binary(max_size=80))
def test_decode_reverses_encode_and_nothing_is_padded(data):
    text = unpadded_b64.encode(data)
    assert "=" not in text
    assert unpadded_b64.decode(text) == data
    assert text == base64.b64encode(data).decode("ascii").rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "AAE=",  # padding
        "AA E",  # white space
        "AA-_",  # the URL-safe alphabet
        "AAAAA",  # a length no encoding has
        "AB",  # leftover bits set: "AA" is the spelling of b"\0"
    ],
)
def test_decode_refuses_every_other_spelling(text):
    with pytest.raises(ValueError):
        unpadded_b64.decode(text)
