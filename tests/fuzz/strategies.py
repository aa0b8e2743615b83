"""Hypothesis strategies for hostile input: plaintexts, damaged records, handshake texts.

Requests are built from chatproto's table (``REQUEST_FIELDS``), so every type and
field is reached, with values chosen to sit on and past every bound (lengths,
integers around 2**63, empty and blank texts, lone surrogates, NUL characters,
right-to-left overrides) or to have the wrong JSON type. Plaintexts wrap them
in every encoding the server must survive: plain, escaped, CESU-8 surrogates,
byte-level mutations, deep nesting, huge numbers, other kind bytes, chunks.
"""

from __future__ import annotations

import json
import struct

from hypothesis import strategies as st

from chatproto.limits import MAX_TEXT
from chatproto.messages import REQUEST_FIELDS, ROOM_NAME_RE, USERNAME_RE
from chatproto.unpadded_b64 import encode as encode_b64
from tests.fuzz.harness import PRIVATE_ROOM, mutate


def weighted(*options: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Choose among strategies by weight (``st.one_of`` weighs its distinct branches equally)."""
    total = sum(weight for weight, _ in options)

    @st.composite
    def pick(draw):
        n = draw(st.integers(0, total - 1))
        for weight, strategy in options:
            if n < weight:
                return draw(strategy)
            n -= weight
        raise AssertionError("unreachable")

    return pick()


def spread(choices: list) -> st.SearchStrategy:
    """Like ``st.sampled_from``, but evenly spread over the choices.

    Hypothesis favours the first elements of ``sampled_from`` (and small integers)
    while generating, which left some request types almost unvisited in a short run.
    """
    return st.integers(0, 2**24).map(lambda n: choices[n % len(choices)])


# --- values -----------------------------------------------------------------------------------

INTEGERS = [-1, 0, 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63)]
USERNAMES = ["fuzzer", "bystander", "Fuzzer", "nobody", "a" * 150, "a" * 151, "", " ", "x\x00y"]
ROOMS = ["lobby", "dev", "a" * 32, "a" * 33, "Lobby", "-x", "", "a b", "caf\u00e9", "r\x00"]
TEXTS = [
    "hi",
    "",
    " ",
    "\t\n\u3000",
    "x" * MAX_TEXT,
    "x" * (MAX_TEXT + 1),
    "\U0001f642" * MAX_TEXT,
    "\U0001f642" * (MAX_TEXT + 1),
    "\x00",
    "\u202eevil.exe",
    "a\ud800b",
    "<script>alert(1)</script>",
]
PASSWORDS = ["pw", "", "x" * 64, "x" * 1024, "x" * 1025, "\x00", "p\u00e4ss"]
IDS = ["a", "x" * 64, "x" * 65, "", 7, None, ["id"], "\u2020barrier", "\ud800"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(INTEGERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

usernames = st.one_of(
    st.sampled_from(USERNAMES), st.from_regex(USERNAME_RE, fullmatch=True), st.text(max_size=12)
)
rooms = st.one_of(
    st.sampled_from(ROOMS), st.from_regex(ROOM_NAME_RE, fullmatch=True), st.text(max_size=12)
)
hex32 = st.one_of(
    st.binary(min_size=16, max_size=16).map(bytes.hex),
    st.sampled_from(["0" * 32, "A" * 32, "0" * 31, "g" * 32]),
)

ACCOUNTS = ["fuzzer", "bystander", "witness"]

# End-to-end encryption's objects (docs/protocol.md section 4): well shaped (their signatures
# are random bytes, so the services refuse most of them), or broken in one member.
b64_key = st.binary(min_size=32, max_size=32).map(encode_b64)
b64_signature = st.binary(min_size=64, max_size=64).map(encode_b64)
b64_bytes = st.binary(min_size=1, max_size=64).map(encode_b64)
device_ids = st.text(alphabet="abcdefABCDEF0123456789-_", min_size=1, max_size=16)
device_keys = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["fuzzer", "bystander"]),
        "device": device_ids,
        "curve25519": b64_key,
        "ed25519": b64_key,
        "signatures": st.fixed_dictionaries(
            {"device": b64_signature}, optional={"user": b64_signature}
        ),
    }
)
one_time_key = st.fixed_dictionaries(
    {"key_id": st.text(min_size=1, max_size=12), "key": b64_key, "signature": b64_signature}
)
user_key = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["fuzzer", "bystander"]),
        "ed25519": b64_key,
        "version": st.integers(1, 3),
        "signatures": st.fixed_dictionaries({"device": b64_signature}),
    }
)
e2e_object = st.fixed_dictionaries(
    {
        "algorithm": st.just("megolm.v1"),
        "sender_key": b64_key,
        "device": device_ids,
        "session_id": b64_key,
        "ciphertext": b64_bytes,
    }
)
targets = st.fixed_dictionaries({"user": st.sampled_from(ACCOUNTS), "device": device_ids})
# The key backup (docs/protocol.md 4.13): random signatures, so most publishes are refused.
blob = st.fixed_dictionaries(
    {"ciphertext": st.binary(min_size=1, max_size=128).map(encode_b64), "mac": b64_key}
)
backup_object = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["fuzzer", "bystander"]),
        "version": st.integers(1, 3),
        "algorithm": st.just("chat.backup.v1"),
        "public_key": b64_key,
        "identity": blob,
        "signatures": st.fixed_dictionaries({"user": b64_signature}),
    }
)
backup_entry = st.fixed_dictionaries(
    {"session_id": b64_key, "first_index": st.integers(0, 2**32 - 1), "blob": blob}
)
olm_body = st.fixed_dictionaries(
    {"algorithm": st.just("olm.v1"), "type": st.sampled_from([0, 1]), "ciphertext": b64_bytes}
)


def broken(objects: st.SearchStrategy) -> st.SearchStrategy:
    """A shaped object with one member replaced by any JSON value, or dropped."""

    @st.composite
    def edit(draw):
        obj = dict(draw(objects))
        name = draw(st.sampled_from(sorted(obj)))
        if draw(st.booleans()):
            obj[name] = draw(json_values)
        else:
            del obj[name]
        return obj

    return edit()


# Values a well-behaved client would send: requests that reach the services.
GOOD_VALUES = {
    "username": st.sampled_from([*ACCOUNTS, "newcomer"])
    | st.from_regex(USERNAME_RE, fullmatch=True),
    "to": st.sampled_from(ACCOUNTS),
    "user": st.sampled_from(ACCOUNTS),
    "with": st.sampled_from(ACCOUNTS),
    "password": st.sampled_from(["pw", "a long passphrase 42", "wrong"]),
    "otp": st.just("123456"),
    "new_password": st.sampled_from(["a new passphrase 43", "short"]),
    "remember": st.sampled_from(["laptop", "fuzz device"]),
    "token": st.text(alphabet="ABCDEFabcdef0123456789-_", min_size=43, max_size=43),
    "device": st.text(alphabet="abcdef0123456789", min_size=1, max_size=32),
    "code": st.sampled_from(["123456", "000000", "abcd-efgh-ijkl-mnop"]),
    "room": st.sampled_from(["lobby", "dev", "fuzz-room", PRIVATE_ROOM])
    | st.from_regex(ROOM_NAME_RE, fullmatch=True),
    "text": st.text(min_size=1, max_size=40).filter(lambda t: not t.isspace()),
    "private": st.booleans(),
    "members": st.lists(st.sampled_from(ACCOUNTS), max_size=3),
    "before": st.integers(0, 10_000),
    "limit": st.integers(1, 120),
    "size": st.integers(0, 10_000),
    "index": st.integers(0, 20),
    "transfer": st.binary(min_size=16, max_size=16).map(bytes.hex),
    "name": st.sampled_from(["a.txt", "notes.pdf"]),
    "sha256": st.just("e3" * 32),
    "ok": st.booleans(),
    "reason": st.text(max_size=30),
    "device_keys": device_keys,
    "one_time_keys": st.lists(one_time_key, max_size=3),
    "fallback_key": one_time_key,
    "user_key": user_key,
    "reset": st.booleans(),
    "users": st.lists(st.sampled_from([*ACCOUNTS, "nobody"]), min_size=1, max_size=4),
    "devices": st.lists(targets, min_size=1, max_size=3),
    "since": st.integers(0, 50),
    "messages": st.lists(
        st.fixed_dictionaries(
            {"user": st.sampled_from(ACCOUNTS), "device": device_ids, "body": olm_body}
        ),
        min_size=1,
        max_size=3,
    ),
    "upto": st.integers(0, 50),
    "e2e": e2e_object,
    "backup": backup_object,
    "version": st.integers(1, 3),
    "sessions": st.lists(backup_entry, min_size=1, max_size=3),
    "after": b64_key,
}
# Values on and past the bounds.
HOSTILE_VALUES = {
    "username": usernames,
    "to": usernames,
    "user": usernames,
    "with": usernames,
    "password": st.one_of(st.sampled_from(PASSWORDS), st.text(max_size=80)),
    "otp": st.one_of(st.sampled_from(["123456", "", "x" * 33]), st.text(max_size=40)),
    "new_password": st.one_of(st.sampled_from(PASSWORDS), st.text(max_size=80)),
    "remember": st.one_of(st.sampled_from(["", "x" * 65, "\u202e"]), st.text(max_size=70)),
    "token": st.one_of(st.sampled_from(["", "x" * 257]), st.text(max_size=60)),
    "device": st.one_of(st.sampled_from(["", "x" * 65]), st.text(max_size=70)),
    "code": st.one_of(st.sampled_from(["", "x" * 33, "12345"]), st.text(max_size=40)),
    "room": rooms,
    "text": st.one_of(st.sampled_from(TEXTS), st.text(min_size=1, max_size=60)),
    "private": st.booleans(),
    "members": st.lists(usernames, max_size=5) | st.just(["u"] * 257),
    "before": st.one_of(st.sampled_from(INTEGERS), st.integers()),
    "limit": st.one_of(st.sampled_from([*INTEGERS, 50, 100, 101]), st.integers()),
    "size": st.one_of(st.sampled_from(INTEGERS), st.integers(min_value=0)),
    "index": st.one_of(st.sampled_from(INTEGERS), st.integers()),
    "transfer": hex32,
    "name": st.one_of(st.sampled_from(["a.txt", "", "x" * 256, "../../etc/passwd"]), st.text()),
    "sha256": st.one_of(st.just("e3" * 32), st.text(max_size=70)),
    "ok": st.booleans(),
    "reason": st.one_of(st.just("x" * 201), st.text(max_size=30)),
    "device_keys": broken(device_keys),
    "one_time_keys": st.lists(broken(one_time_key), min_size=1, max_size=3)
    | st.just([{"key_id": "k", "key": "A" * 43, "signature": "A" * 86}] * 101),
    "fallback_key": broken(one_time_key),
    "user_key": broken(user_key),
    "reset": st.booleans(),
    "users": st.lists(usernames, max_size=5) | st.just(["u"] * 257),
    "devices": st.lists(broken(targets), max_size=3),
    "since": st.one_of(st.sampled_from(INTEGERS), st.integers()),
    "messages": st.lists(
        st.fixed_dictionaries({"user": usernames, "device": device_ids, "body": json_values}),
        max_size=3,
    )
    | st.just([{"user": "witness", "device": "d", "body": {"x": "A" * 16_400}}]),
    "upto": st.one_of(st.sampled_from(INTEGERS), st.integers()),
    "e2e": broken(e2e_object) | st.just({"algorithm": "megolm.v1", "ciphertext": "A" * 70_000}),
    "backup": broken(backup_object) | st.just({"user": "fuzzer", "pad": "A" * 5_000}),
    "version": st.one_of(st.sampled_from(INTEGERS), st.integers()),
    "sessions": st.lists(broken(backup_entry), max_size=3)
    | st.just([{"session_id": "A" * 43, "first_index": 0, "blob": {"ciphertext": "A"}}] * 101),
    "after": st.one_of(st.sampled_from(["", "A" * 42, "A" * 44]), st.text(max_size=50)),
}
WEIRD_TYPES = ["", "LOGIN", "hello", "key", "greeting", "login_ok", "error", "message", "__init__"]


@st.composite
def requests(draw) -> dict:
    """A JSON object shaped like a request: mostly a known type with plausible or hostile fields."""
    kind = draw(
        weighted(
            (12, spread(sorted(REQUEST_FIELDS))),
            (1, st.sampled_from(WEIRD_TYPES)),
            (1, json_values),
        )
    )
    # Hypothesis leans towards the first branch of every choice: it is the ordinary one.
    message: dict = (
        {"type": kind} if draw(weighted((19, st.just(True)), (1, st.just(False)))) else {}
    )
    fields = REQUEST_FIELDS.get(kind, ()) if isinstance(kind, str) else ()
    # Half of the requests are well formed throughout; the others break some fields.
    hostile = draw(st.booleans())
    for spec in fields:
        how = draw(
            weighted((12, st.just("good")), (6, st.just("hostile")), (1, st.just("wrong type")))
            | st.just("missing")
            if hostile
            else st.just("good")
        )
        if how == "good":
            if spec.required or draw(st.booleans()):
                message[spec.name] = draw(GOOD_VALUES[spec.name])
        elif how == "hostile":
            message[spec.name] = draw(HOSTILE_VALUES[spec.name])
        elif how == "wrong type":
            message[spec.name] = draw(json_values)
    if kind == "history" and not hostile:  # exactly one of room and with
        keep = draw(st.sampled_from(["room", "with"]))
        message.pop("with" if keep == "room" else "room", None)
        message.setdefault(keep, draw(GOOD_VALUES[keep]))
    if kind in ("send", "pm") and not hostile:  # exactly one of text and e2e
        keep = draw(weighted((3, st.just("text")), (1, st.just("e2e"))))
        message.pop("e2e" if keep == "text" else "text", None)
        message.setdefault(keep, draw(GOOD_VALUES[keep]))
    if kind == "file_offer" and not hostile:  # name and sha256, or e2e (4.12)
        kept = draw(weighted((3, st.just(("name", "sha256"))), (1, st.just(("e2e",)))))
        for name in ("name", "sha256", "e2e"):
            if name in kept:
                message.setdefault(name, draw(GOOD_VALUES[name]))
            else:
                message.pop(name, None)
    ident = draw(
        weighted(
            (12, st.text(min_size=1, max_size=10)),
            (3, st.just(None)),  # no id
            (2, st.sampled_from(IDS)),
        )
    )
    if ident is not None:
        message["id"] = ident
    extra = draw(weighted((3, st.just({})), (1, st.dictionaries(st.text(max_size=8), json_values))))
    for key, value in extra.items():
        message.setdefault(key, value)
    return message


# --- plaintexts ------------------------------------------------------------------------------


def _encode(message: dict, ensure_ascii: bool, surrogatepass: bool) -> bytes:
    text = json.dumps(message, ensure_ascii=ensure_ascii, separators=(",", ":"))
    return b"\x01" + text.encode("utf-8", "surrogatepass" if surrogatepass else "strict")


@st.composite
def encoded_requests(draw) -> bytes:
    message = draw(requests())
    ensure_ascii = draw(st.booleans())
    try:
        return _encode(message, ensure_ascii, surrogatepass=False)
    except UnicodeEncodeError:  # a lone surrogate in a string: CESU-8 bytes, invalid UTF-8
        return _encode(message, ensure_ascii, surrogatepass=True)


byte_edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=3,
)

SPECIAL_JSON = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b'"ping"',
    b"1",
    b'{"type":1}',
    b'{"type":null}',
    b'{"type":["ping"]}',
    b'{"type":"ping","type":"ping"}',
    b'{"type":"ping","x":NaN}',
    b'{"type":"ping","x":-Infinity}',
    b'{"type":"ping","x":1e400}',
    b'{"type":"ping","x":"\\ud800"}',
    b'{"type":"ping","x":"\\udfff\\ud800"}',
    b'{"type":"ping","id":"\\u0000"}',
    b'{"type":"ping",}',
    b'{"type":"ping"} {}',
    b'\xef\xbb\xbf{"type":"ping"}',
    b'{"type":"ping"}\x00',
    b'{"type":"p\xc3\x28ng"}',
    b'{"type":"ping","x":"\xed\xa0\x80"}',
    b'{"type":"ping","n":' + b"9" * 5000 + b"}",
    b'{"type":"history","room":"lobby","before":' + b"9" * 30 + b"}",
    b'{"type":"history","room":"lobby","limit":1.0}',
    b'{"type":"ping","deep":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"type":"ping","deep":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    b'{"type":"ping","deep":' + b"[" * 200 + b"]" * 200 + b"}",
]


def _chunk(transfer: bytes, index: int, data: bytes) -> bytes:
    return b"\x02" + transfer + struct.pack(">I", index) + data


chunks = st.builds(
    _chunk,
    st.binary(min_size=16, max_size=16),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=40),
) | st.binary(max_size=20).map(lambda tail: b"\x02" + tail)

plaintexts = weighted(
    (8, encoded_requests()),
    (1, st.tuples(encoded_requests(), byte_edits).map(lambda p: b"\x01" + mutate(p[0][1:], p[1]))),
    (1, st.sampled_from(SPECIAL_JSON).map(lambda body: b"\x01" + body)),
    (
        1,
        st.builds(lambda k, rest: bytes([k]) + rest, st.integers(0, 255), st.binary(max_size=30))
        | st.just(b""),
    ),
    (1, chunks),
)


# --- damaged records and wrong frames --------------------------------------------------------

record_damage = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=40)),
    st.tuples(st.just("random"), st.binary(max_size=300)),
    st.tuples(st.just("replay")),
    st.tuples(st.just("wrong_direction")),
    st.tuples(st.just("version"), st.integers(0, 255).filter(lambda v: v != 1)),
    st.tuples(st.just("seq"), st.sampled_from([1, 2, 2**32, 2**64 - 1])),
    st.tuples(st.just("bad_padding")),
    st.tuples(st.just("mutate"), st.just(b'\x01{"type":"ping","id":"m"}'), byte_edits),
    st.tuples(st.just("mutate"), plaintexts, byte_edits),
)

# Hostile frames after the handshake: mostly valid records with hostile plaintexts.
session_frames = st.lists(
    weighted(
        (12, st.tuples(st.just("plaintext"), plaintexts)),
        (1, st.tuples(st.just("damage"), record_damage)),
    ),
    min_size=3,
    max_size=20,
)

# --- before the handshake --------------------------------------------------------------------

first_frames = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=200)),
    st.tuples(st.just("text"), json_values.map(json.dumps)),
    st.tuples(st.just("binary"), st.binary(max_size=300)),
)


@st.composite
def key_edits(draw) -> list:
    """Edits of a valid ``key`` message: JSON-level (fields) or character-level."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "drop", "extra", "chars", "b64", "spaces", "reorder"]))
        if kind == "set":
            edits.append(
                (
                    "set",
                    draw(st.sampled_from(["type", "version", "key", "eph"])),
                    draw(
                        st.one_of(
                            json_values,
                            st.sampled_from([1, 1.0, True, "1", 2, "key", "hello", "", "AAAA"]),
                        )
                    ),
                )
            )
        elif kind == "drop":
            edits.append(("drop", draw(st.sampled_from(["type", "version", "key", "eph"]))))
        elif kind == "extra":
            edits.append(("extra", draw(st.text(max_size=6)), draw(json_values)))
        elif kind == "chars":
            edits.append(("chars", draw(byte_edits)))
        elif kind == "b64":
            edits.append(
                (
                    "b64",
                    draw(st.sampled_from(["key", "eph"])),
                    draw(
                        st.sampled_from(
                            ["strip_padding", "newline", "urlsafe", "extra_padding", "zero_eph"]
                        )
                    ),
                )
            )
        else:
            edits.append((kind,))
    return edits
