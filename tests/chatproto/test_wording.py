"""One wording of a wait, for the server's refusals and the clients' countdowns."""

import pytest

from chatproto.wording import in_words, try_again


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 second"),
        (2, "2 seconds"),
        (119, "119 seconds"),
        (120, "2 minutes"),
        (121, "3 minutes"),
    ],
)
def test_a_wait_reads_in_seconds_then_in_whole_minutes_rounded_up(seconds, words):
    assert in_words(seconds) == words


def test_a_refusal_ends_with_when_to_try_again():
    assert try_again(3600) == "try again in 60 minutes."
