"""Abuse limits (chat/limits.py) through the real consumer: each limit answers ``rate_limited``,
a session that goes on is closed with 4008, a normal user never meets a limit, and one user's
limit never touches another user.

Rates are set to a few per hour in these tests, so that nothing refills while a test runs and
no assertion depends on timing.
"""

from __future__ import annotations

import asyncio

import pytest

from chat import limits
from chatsite import env
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import TIMEOUT, communicator, open_session

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = 3600
# A sliding window's count fades from the bucket before: with windows this long, no test can
# straddle a bucket boundary (one a fraction of a minute long would, now and then).
LONG = 10**7
SHA = "ab" * 32


@pytest.fixture
def limited(chat_settings):
    """Chat settings whose limits a test may lower; the 3rd refusal in a minute closes."""
    chat_settings.CHAT_RATE_LIMITED_CLOSE = (3, 60)
    return chat_settings


async def logged_in(name: str, *, remember: str | None = None):
    """``remember``: as a new device of that name, for private messages (``e2e``, 4.5)."""
    session = await open_session()
    await session.login(name, remember=remember)
    await session.drain()
    return session


async def close_all(*sessions) -> None:
    """Disconnect each session once, those the server closed too.

    A consumer runs ``disconnect`` (presence, transfers, the process's session list) only when
    the client side is gone, as daphne reports after any close; without it a closed session
    would linger in the process's state into the next test.
    """
    for session in sessions:
        if not getattr(session, "disconnected", False):
            session.disconnected = True
            await session.close()


def is_rate_limited(answer: dict, ref: str, when: str = "try again in") -> bool:
    """An ``error`` ``rate_limited`` answering ``ref``, whose message says ``when`` to retry
    and whose ``retry_after`` (revision 1.1) is whole seconds, at least 1."""
    return (
        answer["type"] == "error"
        and answer["code"] == "rate_limited"
        and answer["ref"] == ref
        and when in answer["message"]
        and type(answer.get("retry_after")) is int
        and answer["retry_after"] >= 1
    )


async def refused_then_closed(
    session, requests: list[dict], when: str = "try again in"
) -> int | None:
    """Send each request, each answered rate_limited; the close code that follows the last."""
    for number, request in enumerate(requests):
        answer = await session.request({**request, "id": f"flood{number}"})
        assert is_rate_limited(answer, f"flood{number}", when), answer
    return await session.expect_close()


def send(text: str = "hi", room: str = "lobby") -> dict:
    return {"type": "send", "room": room, "text": text}


def pm(sender, to: str, note: str = "hi") -> dict:
    """A private message from ``sender``'s device (a session logged in with ``remember``)."""
    return {"type": "pm", "to": to, "e2e": e2e_body(sender.device, note)}


def offer(transfer: int, to: str = "bob") -> dict:
    return {
        "type": "file_offer",
        "transfer": f"{transfer:032x}",
        "to": to,
        "name": "notes.txt",
        "size": 10,
        "sha256": SHA,
    }


# --- messages ------------------------------------------------------------------------------------


async def test_messages_past_the_rate_are_rate_limited_then_the_flood_is_closed_4008(
    limited, create_users
):
    limited.CHAT_MESSAGE_RATE = (3, HOUR)
    await create_users("alice", "bob")
    alice = await logged_in("alice", remember="laptop")
    for _ in range(2):
        assert (await alice.request(send()))["type"] == "ack"
    assert (await alice.request(pm(alice, "bob")))["type"] == "ack"  # send and pm share the bucket
    answer = await alice.request({**pm(alice, "bob"), "id": "fourth"})
    assert is_rate_limited(answer, "fourth"), answer
    # The session goes on: other requests are served while messages wait.
    assert (await alice.request({"type": "ping"}))["type"] == "pong"
    # Two more refusals make three within the minute: answered, then closed.
    assert await refused_then_closed(alice, [send(), pm(alice, "bob")]) == 4008
    await close_all(alice)


async def test_the_message_limit_is_the_users_across_sessions_and_not_anyone_elses(
    limited, create_users
):
    limited.CHAT_MESSAGE_RATE = (2, HOUR)
    await create_users("alice", "bob")
    laptop = await logged_in("alice")
    phone = await logged_in("alice")
    bob = await logged_in("bob")
    assert (await laptop.request(send()))["type"] == "ack"
    assert (await phone.request(send()))["type"] == "ack"
    assert is_rate_limited(await laptop.request({**send(), "id": "l"}), "l")
    assert is_rate_limited(await phone.request({**send(), "id": "p"}), "p")
    # bob is not alice: his messages go through.
    for _ in range(2):
        assert (await bob.request(send()))["type"] == "ack"
    await close_all(laptop, phone, bob)


# --- all requests --------------------------------------------------------------------------------


async def test_requests_past_the_rate_are_rate_limited_but_never_a_transfers_steps(
    limited, create_users
):
    limited.CHAT_REQUEST_RATE = (4, HOUR)
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    for request in ({"type": "ping"}, {"type": "users"}, {"type": "rooms"}, send()):
        assert (await alice.request(request))["type"] in ("pong", "users", "rooms", "ack")
    assert is_rate_limited(await alice.request({"type": "ping", "id": "x"}), "x")
    # A transfer's steps are paced by its window, not refused here.
    step = {"type": "file_cancel", "id": "c", "transfer": "00" * 16, "reason": "done"}
    assert (await alice.request(step))["code"] == "unknown_transfer"
    assert (await bob.request({"type": "ping"}))["type"] == "pong"
    assert await refused_then_closed(alice, [{"type": "history", "room": "lobby"}] * 2) == 4008
    await close_all(alice, bob)


async def test_a_refused_request_takes_nothing_from_the_other_limits(limited, create_users):
    limited.CHAT_MESSAGE_RATE = (1, HOUR)
    limited.CHAT_REQUEST_RATE = (3, HOUR)
    await create_users("alice")
    alice = await logged_in("alice")
    assert (await alice.request(send()))["type"] == "ack"
    assert is_rate_limited(await alice.request({**send(), "id": "s"}), "s")
    # The refused send took no request: two of the three are left.
    for _ in range(2):
        assert (await alice.request({"type": "ping"}))["type"] == "pong"
    assert is_rate_limited(await alice.request({"type": "ping", "id": "p"}), "p")
    await close_all(alice)


# --- room creations ------------------------------------------------------------------------------


async def test_room_creations_past_the_rate_are_rate_limited_in_every_session_then_4008(
    limited, create_users
):
    limited.CHAT_ROOM_CREATE_RATE = (2, LONG)
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    assert (await alice.request({"type": "create_room", "room": "one"}))["type"] == "rooms"
    # A creation that fails costs nothing.
    taken = await alice.request({"type": "create_room", "room": "one"})
    assert taken["code"] == "room_exists"
    assert (await alice.request({"type": "create_room", "room": "two"}))["type"] == "rooms"
    answer = await alice.request({"type": "create_room", "id": "third", "room": "three"})
    assert is_rate_limited(answer, "third"), answer
    # Counted in the cache, for every session of the user (and every server process).
    other = await logged_in("alice")
    answer = await other.request({"type": "create_room", "id": "again", "room": "three"})
    assert is_rate_limited(answer, "again"), answer
    bob = await logged_in("bob")
    assert (await bob.request({"type": "create_room", "room": "three"}))["type"] == "rooms"
    flood = [{"type": "create_room", "room": f"r{n}"} for n in range(2)]
    assert await refused_then_closed(alice, flood) == 4008
    await close_all(alice, other, bob)


# --- sessions ------------------------------------------------------------------------------------


async def test_a_login_past_the_users_sessions_is_rate_limited_with_retry_after(
    limited, create_users
):
    limited.CHAT_MAX_SESSIONS = 2
    await create_users("alice", "bob")
    first = await logged_in("alice")
    second = await logged_in("alice")
    third = await open_session()
    answer = await third.request(
        {"type": "login", "id": "l", "username": "alice", "password": "pw"}
    )
    assert answer == {
        "type": "login_failed",
        "ref": "l",
        "reason": "rate_limited",
        "retry_after": 3 * limited.CHAT_HEARTBEAT_SECONDS,
    }
    # The refused session may try again once a place is free; bob was never limited.
    bob = await logged_in("bob")
    await close_all(first)
    await third.login("alice")
    await close_all(second, third, bob)


async def test_refused_logins_go_on_until_the_fifth_failure_closes_4001(limited, create_users):
    limited.CHAT_MAX_SESSIONS = 1
    await create_users("alice")
    alice = await logged_in("alice")
    again = await open_session()
    for _ in range(4):
        answer = await again.request({"type": "login", "username": "alice", "password": "pw"})
        assert answer["reason"] == "rate_limited"
    await again.send({"type": "login", "id": "fifth", "username": "alice", "password": "pw"})
    assert (await again.recv())["reason"] == "rate_limited"
    assert await again.expect_close() == 4001  # PROTOCOL.md 3.1: a session's 5th failed login
    await close_all(alice, again)


async def test_simultaneous_logins_never_get_past_the_session_limit_together(limited, create_users):
    limited.CHAT_MAX_SESSIONS = 2
    limited.CHAT_PASSWORD_THREADS = 5  # the five password checks end together, not in turn
    await create_users("alice")
    sessions = [await open_session() for _ in range(5)]
    answers = await asyncio.gather(
        *(s.request({"type": "login", "username": "alice", "password": "pw"}) for s in sessions)
    )
    kinds = [answer["type"] for answer in answers]
    assert kinds.count("login_ok") <= 2, kinds
    assert all(a["reason"] == "rate_limited" for a in answers if a["type"] == "login_failed")
    refused = [s for s, a in zip(sessions, answers, strict=True) if a["type"] != "login_ok"]
    await close_all(*refused)
    # Whatever the race gave, exactly the places it left are there for the next login.
    late = await open_session()
    answer = await late.request({"type": "login", "username": "alice", "password": "pw"})
    assert answer["type"] == ("login_ok" if kinds.count("login_ok") < 2 else "login_failed")
    await close_all(*sessions, late)


# --- handshakes ----------------------------------------------------------------------------------


async def test_handshakes_past_the_rate_of_an_address_are_closed_4008_before_the_hello(
    chat_settings,
):
    chat_settings.CHAT_HANDSHAKE_RATE = (1, LONG)
    first = await open_session(client=("192.0.2.7", 1000))
    comm = communicator(client=("192.0.2.7", 1001))
    connected, _ = await comm.connect(TIMEOUT)
    assert connected
    output = await comm.receive_output(TIMEOUT)
    # No hello, so no RSA key was offered and nothing can be decrypted.
    assert (output["type"], output.get("code")) == ("websocket.close", 4008)
    await comm.disconnect()
    other_address = await open_session(client=("192.0.2.8", 1000))
    await close_all(first, other_address)


# --- file transfers ------------------------------------------------------------------------------


async def test_open_transfers_and_pending_offers_past_the_limit_are_rate_limited_then_4008(
    limited, create_users
):
    limited.CHAT_MAX_OPEN_TRANSFERS = 2
    await create_users("alice", "bob", "carol")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    carol = await logged_in("carol")
    # Two offers bob has not answered: both pending, both count.
    for n in (1, 2):
        assert (await alice.request(offer(n)))["type"] == "ok"
    answer = await alice.request({**offer(3), "id": "third"})
    assert is_rate_limited(answer, "third", when="wait until one ends"), answer
    # carol's transfers are her own.
    assert (await carol.request(offer(4)))["type"] == "ok"
    flood = [offer(5), offer(6)]
    assert await refused_then_closed(alice, flood, when="wait until one ends") == 4008
    await close_all(alice, bob, carol)


# --- a normal user -------------------------------------------------------------------------------


async def test_a_normal_user_never_meets_a_default_limit(chat_settings, create_users, tmp_path):
    defaults = env.read({"CHAT_DATA_DIR": str(tmp_path), "DJANGO_SECRET_KEY": "k" * 50})
    chat_settings.CHAT_MESSAGE_RATE = defaults.message_rate
    chat_settings.CHAT_REQUEST_RATE = defaults.request_rate
    chat_settings.CHAT_ROOM_CREATE_RATE = defaults.room_create_rate
    chat_settings.CHAT_MAX_SESSIONS = defaults.max_sessions
    chat_settings.CHAT_RATE_LIMITED_CLOSE = defaults.rate_limited_close
    await create_users("alice", "bob")
    laptop = await logged_in("alice")
    phone = await logged_in("alice", remember="phone")
    terminal = await logged_in("alice")
    answers = []
    # Catching up after login, a busy afternoon, a pasted list sent line by line.
    for request in ({"type": "rooms"}, {"type": "users"}, {"type": "history", "room": "lobby"}):
        answers.append(await laptop.request(request))
    for name in ("design", "ops", "lunch"):
        answers.append(await laptop.request({"type": "create_room", "room": name}))
        answers.append(await phone.request({"type": "history", "room": name}))
    for line in range(20):
        answers.append(await laptop.request(send(f"item {line}", room="design")))
    for line in range(5):
        answers.append(await phone.request(pm(phone, "bob", f"are you there? {line}")))
    answers.append(await terminal.request({"type": "history", "with": "bob"}))
    assert [a for a in answers if a["type"] == "error"] == []
    for session in (laptop, phone, terminal):
        assert (await session.request({"type": "ping"}))["type"] == "pong"
    await close_all(laptop, phone, terminal)


# --- the counters --------------------------------------------------------------------------------


def test_a_token_bucket_allows_bursts_then_refills_at_its_rate():
    buckets = limits.TokenBuckets(3, 3)  # bursts of 3, then one a second
    assert [buckets.take("alice", now=0.0) for _ in range(3)] == [None, None, None]
    assert buckets.take("alice", now=0.0) == 1
    assert buckets.take("bob", now=0.0) is None  # every key has its own bucket
    assert buckets.wait("alice", now=0.5) == 1  # half a token: wait the rest, rounded up
    assert buckets.take("alice", now=0.5) == 1
    assert buckets.take("alice", now=1.0) is None
    assert buckets.take("alice", now=1.0) == 1
    assert [buckets.take("alice", now=100.0) for _ in range(4)] == [None, None, None, 1]


def test_a_costly_take_takes_all_its_tokens_or_none():
    buckets = limits.TokenBuckets(10, 10)  # ten at once, then one a second
    assert buckets.take("alice", now=0.0, cost=7) is None
    assert buckets.take("alice", now=0.0, cost=7) == 4  # 3 left: 4 more seconds, none taken
    assert buckets.take("alice", now=0.0, cost=3) is None


def test_full_buckets_are_forgotten_so_memory_follows_the_busy_users():
    buckets = limits.TokenBuckets(2, 1)
    for key in range(5000):
        buckets.take(key, now=float(key))  # each one is full again a second later
    assert len(buckets) < 1100


def test_refusals_close_the_session_only_when_they_come_within_the_window(settings):
    settings.CHAT_RATE_LIMITED_CLOSE = (3, 60)
    spread = limits.SessionLimits(limits.LimitCounters())
    assert [spread.refused(now=t) for t in (0.0, 30.0, 61.0)] == [False, False, False]
    assert spread.refused(now=62.0)  # 30, 61 and 62 are within a minute
    burst = limits.SessionLimits(limits.LimitCounters())
    assert [burst.refused(now=0.0) for _ in range(3)] == [False, False, True]


def test_wait_in_words():
    assert [limits.in_words(s) for s in (1, 45, 119, 120, 3600)] == [
        "1 second",
        "45 seconds",
        "119 seconds",
        "2 minutes",
        "60 minutes",
    ]


# --- the settings --------------------------------------------------------------------------------


def _read(tmp_path, **variables: str) -> env.Environment:
    return env.read({"CHAT_DATA_DIR": str(tmp_path), "DJANGO_SECRET_KEY": "k" * 50, **variables})


def test_every_limit_is_a_setting_with_a_default(tmp_path):
    defaults = _read(tmp_path)
    assert defaults.message_rate == (30, 10)
    assert defaults.request_rate == (200, 20)
    assert defaults.room_create_rate == (20, 3600)
    assert defaults.max_sessions == 10
    assert defaults.max_open_transfers == 8
    assert defaults.rate_limited_close == (10, 60)
    assert defaults.handshake_rate == (300, 60)
    chosen = _read(
        tmp_path,
        CHAT_MESSAGE_RATE="5/1",
        CHAT_REQUEST_RATE="50/10",
        CHAT_ROOM_CREATE_RATE="3/86400",
        CHAT_MAX_SESSIONS="3",
        CHAT_MAX_OPEN_TRANSFERS="2",
        CHAT_RATE_LIMITED_CLOSE="5/30",
    )
    assert (chosen.message_rate, chosen.request_rate, chosen.room_create_rate) == (
        (5, 1),
        (50, 10),
        (3, 86400),
    )
    assert (chosen.max_sessions, chosen.max_open_transfers) == (3, 2)
    assert chosen.rate_limited_close == (5, 30)


@pytest.mark.parametrize(
    ("name", "value", "advice"),
    [
        ("CHAT_MESSAGE_RATE", "fast", "COUNT/SECONDS"),
        ("CHAT_REQUEST_RATE", "0/10", "at least 1"),
        ("CHAT_MAX_SESSIONS", "0", "at least 1"),
        ("CHAT_MAX_OPEN_TRANSFERS", "9", "at most 8"),  # PROTOCOL.md 3.3 allows 8
        ("CHAT_RATE_LIMITED_CLOSE", "10", "COUNT/SECONDS"),
    ],
)
def test_a_bad_limit_stops_the_server_with_advice(tmp_path, name, value, advice):
    with pytest.raises(env.ConfigError, match=advice):
        _read(tmp_path, **{name: value})


async def test_sessions_still_setting_up_two_factor_login_count_toward_the_limit(
    limited, create_users
):
    """They are not in presence until enrolled (docs/protocol.md's notes), but they hold a
    place: a password alone must not open sessions without end."""
    limited.CHAT_MAX_SESSIONS = 2
    limited.CHAT_REQUIRE_2FA = True
    await create_users("alice")
    first = await open_session()
    assert (await first.login("alice"))["otp_enrolment_required"] is True
    second = await open_session()
    assert (await second.login("alice"))["otp_enrolment_required"] is True
    third = await open_session()
    answer = await third.request(
        {"type": "login", "id": "l", "username": "alice", "password": "pw"}
    )
    assert (answer["type"], answer["reason"]) == ("login_failed", "rate_limited")
    _, backup_codes = await first.enable_two_factor()  # enrolled: now in presence, once
    await close_all(second)
    assert (await third.login("alice", otp=backup_codes[0]))["type"] == "login_ok"
    await close_all(first, third)
