"""Request validation: the REQUEST_FIELDS table, field by field and bound by bound."""

from __future__ import annotations

from typing import Any

import pytest

from chatproto import messages
from chatproto.codes import ErrorCode
from chatproto.errors import MessageError
from chatproto.limits import MAX_TEXT
from chatproto.messages import PRE_LOGIN_TYPES, REQUEST_FIELDS, Context, validate_request
from tests.chatproto.helpers import SHA, VALID, T


def request(kind: str, **fields: Any) -> dict[str, Any]:
    """The valid example of ``kind`` with id "r1", updated with ``fields``."""
    return {"type": kind, "id": "r1", **VALID[kind][0], **fields}


DEFAULT = Context()


def rejected(message: dict[str, Any], ctx: Context = DEFAULT) -> MessageError:
    with pytest.raises(MessageError) as info:
        validate_request(message, ctx)
    return info.value


def assert_bad_request(message: dict[str, Any], ctx: Context = DEFAULT) -> None:
    error = rejected(message, ctx)
    assert (error.code, error.ref) == (ErrorCode.BAD_REQUEST, message.get("id"))


def test_every_type_of_the_table_has_a_valid_example():
    assert set(VALID) == set(REQUEST_FIELDS)
    assert {"login", "register", "resume", "ping"} == PRE_LOGIN_TYPES


@pytest.mark.parametrize("kind", VALID)
def test_valid_example_gives_typed_fields_and_defaults(kind):
    result = validate_request(request(kind))
    assert isinstance(result, messages.Request)
    assert result.type == kind
    assert result.id == "r1"
    expected = {"id": "r1", **VALID[kind][1]}
    assert result.as_dict() == expected
    assert type(result).__name__ == "".join(p.capitalize() for p in kind.split("_")) + "Request"
    with pytest.raises(AttributeError):
        result.id = "changed"  # frozen


@pytest.mark.parametrize("kind", VALID)
def test_id_is_optional(kind):
    message = request(kind)
    del message["id"]
    assert validate_request(message).id is None


@pytest.mark.parametrize("kind", VALID)
def test_unknown_fields_are_ignored(kind):
    plain = validate_request(request(kind))
    assert validate_request(request(kind, extra=[1, {"x": None}], zz="y")) == plain


def required_fields():
    for kind, fields in REQUEST_FIELDS.items():
        for spec in fields:
            if spec.required:
                yield pytest.param(kind, spec.name, id=f"{kind}-{spec.name}")


@pytest.mark.parametrize(("kind", "name"), list(required_fields()))
def test_missing_required_field_is_bad_request_with_ref(kind, name):
    message = request(kind)
    del message[name]
    error = rejected(message)
    assert (error.code, error.ref) == (ErrorCode.BAD_REQUEST, "r1")
    assert name in error.message


WRONG_VALUES = {
    str: [1, 1.0, True, None, [], {}],
    int: ["1", 1.0, 0.0, True, False, None, [], {}],
    bool: [1, 0, "true", None, []],
    list: ["bob", {}, None, 1, True],
    dict: ["x", [], None, 1, True],
}


def wrong_types():
    for kind, fields in REQUEST_FIELDS.items():
        for spec in fields:
            for value in WRONG_VALUES[spec.kind]:
                yield pytest.param(kind, spec.name, value, id=f"{kind}-{spec.name}-{value!r}")


@pytest.mark.parametrize(("kind", "name", "value"), list(wrong_types()))
def test_field_of_the_wrong_type_is_bad_request_with_ref(kind, name, value):
    error = rejected(request(kind, **{name: value}))
    assert (error.code, error.ref) == (ErrorCode.BAD_REQUEST, "r1")


def test_every_field_kind_has_wrong_values_to_try():
    assert {spec.kind for fields in REQUEST_FIELDS.values() for spec in fields} <= set(WRONG_VALUES)


# --- ids and types -----------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [1, 1.5, True, None, [], {}, "", "x" * 65], ids=repr)
def test_invalid_id_is_bad_request_without_ref(bad_id):
    error = rejected({"type": "ping", "id": bad_id})
    assert (error.code, error.ref) == (ErrorCode.BAD_REQUEST, None)


@pytest.mark.parametrize("good_id", ["1", "x" * 64, "é", "😀" * 64])
def test_id_of_1_to_64_characters_is_accepted(good_id):
    assert validate_request({"type": "ping", "id": good_id}).id == good_id


@pytest.mark.parametrize("kind", ["no_such", "", "PING", "error", "greeting", "login_ok"])
def test_unknown_type_is_bad_request_with_ref(kind):
    assert_bad_request({"type": kind, "id": "r9"})


def test_unknown_type_without_id_has_no_ref():
    assert_bad_request({"type": "nope"})


@pytest.mark.parametrize("kind", [None, 1, ["ping"]])
def test_non_string_type_is_bad_request(kind):
    assert_bad_request({"type": kind, "id": "r1"})


# --- text --------------------------------------------------------------------------------

TEXT_TYPES = [("send", {"room": "lobby"}), ("pm", {"to": "bob"})]


@pytest.mark.parametrize(("kind", "extra"), TEXT_TYPES)
@pytest.mark.parametrize("text", ["", " ", "\n\t ", "\u3000", "\u2003\u00a0"], ids=repr)
def test_empty_or_blank_text_is_bad_request(kind, extra, text):
    assert_bad_request({"type": kind, "id": "r1", **extra, "text": text})


@pytest.mark.parametrize(("kind", "extra"), TEXT_TYPES)
@pytest.mark.parametrize("char", ["a", "é", "😀", "\u4e16"])
def test_text_limit_counts_code_points(kind, extra, char):
    at_limit = {"type": kind, "id": "r1", **extra, "text": char * MAX_TEXT}
    assert validate_request(at_limit).text == char * MAX_TEXT
    error = rejected({**at_limit, "text": char * (MAX_TEXT + 1)})
    assert (error.code, error.ref) == (ErrorCode.TOO_LARGE, "r1")


def test_text_limit_follows_the_servers_max_text():
    ctx = Context(max_text=10)
    assert validate_request(request("send", text="a" * 10), ctx).text == "a" * 10
    assert rejected(request("send", text="a" * 11), ctx).code == ErrorCode.TOO_LARGE


def test_text_with_surrounding_spaces_is_kept_as_sent():
    assert validate_request(request("send", text="  hi \n")).text == "  hi \n"


def test_error_messages_do_not_repeat_the_offending_value():
    secret = "S3cr3t-Value-do-not-log"
    for message in [
        request("send", text=secret * 400),
        request("send", room=secret),
        request("pm", to=secret + " "),
        request("login", password=secret * 100),
        request("file_offer", name=secret * 20),
    ]:
        error = rejected(message)
        assert secret not in error.message and secret not in str(error)


# --- names -------------------------------------------------------------------------------

GOOD_ROOMS = ["a", "0", "lobby", "a-b_c", "9" * 32, "a" + "-" * 31]
BAD_ROOMS = ["", "A", "Lobby", "-a", "_a", "a" * 33, "a b", "é", "a\n", "a.b", "a/b", "\u0430"]


def room_cases():
    for kind in ("send", "join", "leave", "create_room", "invite", "history"):
        for room in GOOD_ROOMS:
            yield pytest.param(kind, room, True, id=f"{kind}-ok-{room!r}")
        for room in BAD_ROOMS:
            yield pytest.param(kind, room, False, id=f"{kind}-bad-{room!r}")


@pytest.mark.parametrize(("kind", "room", "ok"), list(room_cases()))
def test_room_names(kind, room, ok):
    message = request(kind, room=room)
    if ok:
        assert validate_request(message).room == room
    else:
        assert_bad_request(message)


GOOD_USERS = ["a", "Alice", "a.b@c+d-e_f", "0", "x" * 150]
BAD_USERS = ["", "x" * 151, "a b", "al/ice", "ü", "a\n", "a:b", "\u0430lice"]


def user_cases():
    fields = [("pm", "to"), ("invite", "user"), ("history", "with"), ("file_offer", "to")]
    for kind, name in fields:
        for user in GOOD_USERS:
            yield pytest.param(kind, name, user, True, id=f"{kind}.{name}-ok-{user[:8]!r}")
        for user in BAD_USERS:
            yield pytest.param(kind, name, user, False, id=f"{kind}.{name}-bad-{user[:8]!r}")


@pytest.mark.parametrize(("kind", "name", "user", "ok"), list(user_cases()))
def test_usernames(kind, name, user, ok):
    message = request(kind, **{name: user})
    if kind == "history":
        del message["room"]
    if ok:
        attribute = "with_" if name == "with" else name  # ``with`` is a Python keyword
        assert getattr(validate_request(message), attribute) == user
    else:
        assert_bad_request(message)


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"username": "x" * 150}, True),
        ({"username": "any thing/é"}, True),  # login does not judge the form: invalid_credentials
        ({"username": ""}, False),
        ({"username": "x" * 151}, False),
        ({"password": ""}, True),
        ({"password": "p" * 1024}, True),
        ({"password": "p" * 1025}, False),
        ({"otp": "123456"}, True),
        ({"otp": "1" * 16}, True),
        ({"otp": ""}, False),
        ({"otp": "1" * 33}, False),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_login_field_bounds(fields, ok):
    message = request("login", **fields)
    if ok:
        validate_request(message)
    else:
        assert_bad_request(message)


def test_register_leaves_username_rules_to_the_server():
    # The server answers register_failed/invalid_username with advice instead.
    assert validate_request(request("register", username="not valid!")).username == "not valid!"
    assert validate_request(request("register", username="")).username == ""
    assert_bad_request(request("register", password="p" * 1025))


# --- create_room -------------------------------------------------------------------------


def test_create_room_members_become_a_tuple_and_private_is_kept():
    result = validate_request(request("create_room", private=True, members=["bob", "carol"]))
    assert (result.private, result.members) == (True, ("bob", "carol"))


def test_create_room_takes_256_members_and_not_257():
    names = [f"user{i}" for i in range(257)]
    assert len(validate_request(request("create_room", members=names[:256])).members) == 256
    assert_bad_request(request("create_room", members=names))


@pytest.mark.parametrize("member", [1, None, "", "a b", "x" * 151, ["bob"]], ids=repr)
def test_create_room_member_that_is_not_a_username_is_bad_request(member):
    assert_bad_request(request("create_room", members=["bob", member]))


# --- history -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "expected"), [(1, 1), (50, 50), (100, 100), (101, 100), (10**9, 100)]
)
def test_history_limit_is_capped_at_100(limit, expected):
    assert validate_request(request("history", limit=limit)).limit == expected


@pytest.mark.parametrize("limit", [0, -1, 2**63])
def test_history_limit_out_of_range_is_bad_request(limit):
    assert_bad_request(request("history", limit=limit))


def test_history_with_a_user_instead_of_a_room():
    result = validate_request({"type": "history", "id": "r1", "with": "bob", "before": 7})
    assert (result.room, result.with_, result.before, result.limit) == (None, "bob", 7, 50)


@pytest.mark.parametrize("fields", [{"room": "lobby", "with": "bob"}, {}], ids=["both", "neither"])
def test_history_needs_exactly_one_of_room_and_with(fields):
    assert_bad_request({"type": "history", "id": "r1", **fields})


@pytest.mark.parametrize(
    ("before", "ok"), [(0, True), (2**63 - 1, True), (-1, False), (2**63, False)]
)
def test_history_before_bounds(before, ok):
    message = request("history", before=before)
    if ok:
        assert validate_request(message).before == before
    else:
        assert_bad_request(message)


# --- file transfer -----------------------------------------------------------------------

BAD_TRANSFERS = ["", T[:-1], T + "0", T.upper(), "g" * 32, " " + T[1:], T[:-1] + "\n"]


@pytest.mark.parametrize("kind", [k for k in VALID if k.startswith("file_")])
@pytest.mark.parametrize("transfer", BAD_TRANSFERS, ids=repr)
def test_transfer_id_must_be_32_lowercase_hex_digits(kind, transfer):
    assert_bad_request(request(kind, transfer=transfer))


@pytest.mark.parametrize("sha", ["", SHA[:-1], SHA + "0", SHA.upper(), "z" * 64], ids=repr)
def test_file_offer_sha256_must_be_64_lowercase_hex_digits(sha):
    assert_bad_request(request("file_offer", sha256=sha))


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"name": "n"}, True),
        ({"name": "n" * 255}, True),
        ({"name": ""}, False),
        ({"name": "n" * 256}, False),
        ({"size": 0}, True),
        ({"size": 2**63 - 1}, True),
        ({"size": -1}, False),
        ({"size": 2**63}, False),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_file_offer_bounds(fields, ok):
    message = request("file_offer", **fields)
    if ok:
        validate_request(message)
    else:
        assert_bad_request(message)


def test_file_ack_index_must_not_be_negative():
    assert validate_request(request("file_ack", index=5)).index == 5
    assert_bad_request(request("file_ack", index=-1))


def test_file_cancel_reason_is_at_most_200_characters():
    assert validate_request(request("file_cancel", reason="r" * 200)).reason == "r" * 200
    assert_bad_request(request("file_cancel", reason="r" * 201))
