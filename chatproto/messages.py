"""Validation of every client message of PROTOCOL.md section 3, as one table.

Each request type maps to its fields: the Python type, whether it is required,
its default, and a check of its bounds. :func:`validate_request` turns a parsed
JSON object into a typed, frozen dataclass (``SendRequest``, ``PmRequest``...)
with exactly those fields plus ``id``, so handlers never touch raw input.
Unknown fields are ignored; an unknown type is ``bad_request``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass, replace
from typing import Any

from . import unpadded_b64
from .backup import ALGORITHM as BACKUP_ALGORITHM
from .backup import MAC_SIZE as BACKUP_MAC_BYTES
from .backup import (
    MAX_BACKUP_BYTES,
    MAX_BLOB_CIPHERTEXT_BYTES,
    MAX_FETCH_LIMIT,
    MAX_FIRST_INDEX,
    MAX_SESSIONS_PER_PUT,
)
from .codes import ErrorCode
from .crypto_utils import ED25519_SIGNATURE_SIZE
from .e2e import (
    ALGORITHM_MEGOLM,
    ALGORITHM_OLM,
    CURVE25519_KEY_SIZE,
    MAX_DEVICE_KEYS_BYTES,
    MAX_E2E_BYTES,
    MAX_KEY_ID_LENGTH,
    MAX_KEYS_CLAIM_DEVICES,
    MAX_KEYS_QUERY_USERS,
    MAX_ONE_TIME_KEYS,
    MAX_TO_DEVICE_BODY_BYTES,
    MAX_TO_DEVICE_MESSAGES,
    OLM_NORMAL,
    OLM_PRE_KEY,
)
from .errors import MessageError
from .limits import (
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    MAX_CANCEL_REASON_LENGTH,
    MAX_DEVICE_ID_LENGTH,
    MAX_DEVICE_NAME_LENGTH,
    MAX_FILE_NAME_LENGTH,
    MAX_ID_LENGTH,
    MAX_JSON_INTEGER,
    MAX_OTP_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_ROOM_MEMBERS_AT_CREATION,
    MAX_TEXT,
    MAX_TOKEN_LENGTH,
    MAX_USERNAME_LENGTH,
)

ROOM_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
USERNAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,150}")
# USERNAME_RE in the words a person reads (registration, the admin, the clients).
USERNAME_RULE = "1 to 150 characters: letters A-Z and a-z, digits and . @ + - _"
TRANSFER_RE = re.compile(r"[0-9a-f]{32}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")

_MISSING = object()


class _Bounds(Exception):
    """Raised by a field check; becomes MessageError with the request's ref."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Field:
    """One field of one message type: its JSON type, presence and bounds."""

    name: str
    kind: type | tuple[type, ...]
    required: bool = True
    default: Any = None
    check: Callable[[Any, Context], Any] | None = None  # returns the (normalised) value


@dataclass(frozen=True)
class Context:
    """Per-server settings that bounds depend on (the greeting's limits)."""

    max_text: int = MAX_TEXT


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[Any, Context], Any]:
    def check(value: str, ctx: Context) -> str:
        if not regex.fullmatch(value):
            raise _Bounds(f"invalid {what}")
        return value

    return check


def _length(low: int, high: int, what: str) -> Callable[[Any, Context], Any]:
    def check(value: str, ctx: Context) -> str:
        if not low <= len(value) <= high:
            raise _Bounds(f"{what} must be {low} to {high} characters")
        return value

    return check


def _text(value: str, ctx: Context) -> str:
    if not value or value.isspace():
        raise _Bounds("the text is empty")
    if len(value) > ctx.max_text:
        raise _Bounds(f"the text is longer than {ctx.max_text} characters", ErrorCode.TOO_LARGE)
    return value


def _non_negative(value: int, ctx: Context) -> int:
    if not 0 <= value <= MAX_JSON_INTEGER:
        raise _Bounds("a number is out of range")
    return value


def _history_limit(value: int, ctx: Context) -> int:
    if value < 1 or value > MAX_JSON_INTEGER:
        raise _Bounds(f"limit must be 1 to {HISTORY_MAX_LIMIT}")
    return min(value, HISTORY_MAX_LIMIT)


def _members(value: list[Any], ctx: Context) -> tuple[str, ...]:
    if len(value) > MAX_ROOM_MEMBERS_AT_CREATION:
        raise _Bounds(f"at most {MAX_ROOM_MEMBERS_AT_CREATION} members")
    for name in value:
        if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
            raise _Bounds("members must be usernames")
    return tuple(value)


# --- end-to-end encryption's objects (docs/protocol.md section 4) ----------------------------
# The server stores and relays them as they came; it checks only their shape and size, so
# that what it hands out is well formed and bounded. Keys are 32 bytes and signatures 64,
# in unpadded base64 (chatproto.unpadded_b64).
KEY_BYTES = CURVE25519_KEY_SIZE  # an ed25519 public key is 32 bytes too
SIGNATURE_BYTES = ED25519_SIGNATURE_SIZE


def _json_size(value: Any, limit: int, what: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
    """Refuse ``value`` if its compact JSON is over ``limit`` bytes (``code``, with ``what``)."""
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise _Bounds(f"{what} is not valid UTF-8") from None
    if size > limit:
        raise _Bounds(f"{what} is larger than {limit} bytes of JSON", code)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bounds(f"{what} must be an object")
    return value


def _member_string(obj: dict[str, Any], name: str, what: str, low: int, high: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise _Bounds(f"{what}.{name} must be a string of {low} to {high} characters")
    return value


def _member_username(obj: dict[str, Any], name: str, what: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not USERNAME_RE.fullmatch(value):
        raise _Bounds(f"{what}.{name} must be a username")
    return value


def _member_b64(obj: dict[str, Any], name: str, what: str, size: int | None = None) -> str:
    """A base64 member; of exactly ``size`` bytes when given, else of at least one."""
    try:
        raw: bytes | None = unpadded_b64.decode(obj.get(name))  # type: ignore[arg-type]
    except ValueError:
        raw = None
    if raw is None or (len(raw) != size if size is not None else not raw):
        length = f"{size} bytes" if size is not None else "bytes"
        raise _Bounds(f"{what}.{name} must be {length} in unpadded base64")
    value: str = obj[name]
    return value


def _member_device(obj: dict[str, Any], what: str) -> str:
    return _member_string(obj, "device", what, 1, MAX_DEVICE_ID_LENGTH)


def _device_keys(value: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """``{"user", "device", "curve25519", "ed25519", "signatures": {"device", "user"?}}``."""
    _json_size(value, MAX_DEVICE_KEYS_BYTES, "device_keys", ErrorCode.TOO_LARGE)
    _member_username(value, "user", "device_keys")
    _member_device(value, "device_keys")
    _member_b64(value, "curve25519", "device_keys", KEY_BYTES)
    _member_b64(value, "ed25519", "device_keys", KEY_BYTES)
    signatures = _object(value.get("signatures"), "device_keys.signatures")
    _member_b64(signatures, "device", "device_keys.signatures", SIGNATURE_BYTES)
    if "user" in signatures:
        _member_b64(signatures, "user", "device_keys.signatures", SIGNATURE_BYTES)
    return value


def _one_time_key(value: Any, what: str) -> dict[str, Any]:
    """``{"key_id", "key", "signature"}``: a one-time or fallback key."""
    key = _object(value, what)
    _member_string(key, "key_id", what, 1, MAX_KEY_ID_LENGTH)
    _member_b64(key, "key", what, KEY_BYTES)
    _member_b64(key, "signature", what, SIGNATURE_BYTES)
    return key


def _fallback_key(value: dict[str, Any], ctx: Context) -> dict[str, Any]:
    return _one_time_key(value, "fallback_key")


def _one_time_keys(value: list[Any], ctx: Context) -> tuple[dict[str, Any], ...]:
    if len(value) > MAX_ONE_TIME_KEYS:
        raise _Bounds(f"at most {MAX_ONE_TIME_KEYS} one-time keys at once")
    return tuple(_one_time_key(key, "one_time_keys[]") for key in value)


def _user_key(value: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """``{"user", "ed25519", "version", "signatures": {"device"}}``."""
    _json_size(value, MAX_DEVICE_KEYS_BYTES, "user_key", ErrorCode.TOO_LARGE)
    _member_username(value, "user", "user_key")
    _member_b64(value, "ed25519", "user_key", KEY_BYTES)
    version: Any = value.get("version")
    if not _is_kind(version, int) or not 1 <= version <= MAX_JSON_INTEGER:
        raise _Bounds("user_key.version must be a positive integer")
    signatures = _object(value.get("signatures"), "user_key.signatures")
    _member_b64(signatures, "device", "user_key.signatures", SIGNATURE_BYTES)
    return value


def _key_users(value: list[Any], ctx: Context) -> tuple[str, ...]:
    if not 1 <= len(value) <= MAX_KEYS_QUERY_USERS:
        raise _Bounds(f"users must list 1 to {MAX_KEYS_QUERY_USERS} usernames")
    for name in value:
        if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
            raise _Bounds("users must be usernames")
    return tuple(dict.fromkeys(value))


def _claimed_devices(value: list[Any], ctx: Context) -> tuple[tuple[str, str], ...]:
    """``[{"user", "device"}]`` as ``(user, device)`` pairs, each once."""
    if not 1 <= len(value) <= MAX_KEYS_CLAIM_DEVICES:
        raise _Bounds(f"devices must list 1 to {MAX_KEYS_CLAIM_DEVICES} devices")
    pairs = []
    for item in value:
        target = _object(item, "devices[]")
        pairs.append(
            (_member_username(target, "user", "devices[]"), _member_device(target, "devices[]"))
        )
    return tuple(dict.fromkeys(pairs))


def _to_device_messages(
    value: list[Any], ctx: Context
) -> tuple[tuple[str, str, dict[str, Any]], ...]:
    """``[{"user", "device", "body": {...}}]`` as ``(user, device, body)``."""
    if not 1 <= len(value) <= MAX_TO_DEVICE_MESSAGES:
        raise _Bounds(f"messages must list 1 to {MAX_TO_DEVICE_MESSAGES} messages")
    messages = []
    for item in value:
        message = _object(item, "messages[]")
        user = _member_username(message, "user", "messages[]")
        device = _member_device(message, "messages[]")
        body = _object(message.get("body"), "messages[].body")
        _json_size(body, MAX_TO_DEVICE_BODY_BYTES, "a to-device body", ErrorCode.TOO_LARGE)
        messages.append((user, device, _olm_envelope(body)))
    return tuple(messages)


def _olm_envelope(body: dict[str, Any]) -> dict[str, Any]:
    """A to-device body is exactly section 4.4's Olm envelope: ``{"algorithm": "olm.v1",
    "sender_key", "type": 0 or 1, "ciphertext"}``. The server cannot read it, but it stores
    it and replays it at every login of the target: nothing else (deep nesting, other
    fields) gets that far."""
    if set(body) != {"algorithm", "sender_key", "type", "ciphertext"}:
        raise _Bounds("a to-device body has exactly algorithm, sender_key, type and ciphertext")
    if body["algorithm"] != ALGORITHM_OLM:
        raise _Bounds(f"a to-device body's algorithm must be {ALGORITHM_OLM!r}")
    if type(body["type"]) is not int or body["type"] not in (OLM_PRE_KEY, OLM_NORMAL):
        raise _Bounds("a to-device body's type is 0 (pre-key) or 1 (normal)")
    _member_b64(body, "sender_key", "messages[].body", KEY_BYTES)
    _member_b64(body, "ciphertext", "messages[].body")
    return body


def _e2e(value: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A Megolm message: ``{"algorithm": "megolm.v1", "sender_key", "device", "session_id",
    "ciphertext"}``, stored and returned as it came."""
    _json_size(value, MAX_E2E_BYTES, "the e2e object", ErrorCode.TOO_LARGE)
    if value.get("algorithm") != ALGORITHM_MEGOLM:
        raise _Bounds(f"e2e.algorithm must be {ALGORITHM_MEGOLM!r}")
    _member_b64(value, "sender_key", "e2e", KEY_BYTES)
    _member_device(value, "e2e")
    _member_b64(value, "session_id", "e2e", KEY_BYTES)
    _member_b64(value, "ciphertext", "e2e")
    return value


# --- key backup (docs/protocol.md 4.13): shapes and sizes only; the server cannot open a blob.


def _blob(value: Any, what: str) -> dict[str, Any]:
    """Exactly ``{"ciphertext", "mac"}``: base64 of 1 to 4,096 bytes, and of 32 bytes (nothing
    else: the server keeps up to 100,000 of them per user, each bounded)."""
    blob = _object(value, what)
    if set(blob) != {"ciphertext", "mac"}:
        raise _Bounds(f"{what} has exactly ciphertext and mac")
    ciphertext = _member_b64(blob, "ciphertext", what)
    if len(unpadded_b64.decode(ciphertext)) > MAX_BLOB_CIPHERTEXT_BYTES:
        raise _Bounds(f"{what}.ciphertext is longer than {MAX_BLOB_CIPHERTEXT_BYTES} bytes")
    _member_b64(blob, "mac", what, BACKUP_MAC_BYTES)
    return blob


def _version(value: Any, what: str) -> int:
    if not _is_kind(value, int) or not 1 <= value <= MAX_JSON_INTEGER:
        raise _Bounds(f"{what} must be a positive integer")
    result: int = value
    return result


def _backup(value: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """``{"user", "version", "algorithm", "public_key", "identity", "signatures": {"user"}}``;
    the signature is the server's to check against the user's key."""
    _json_size(value, MAX_BACKUP_BYTES, "the backup", ErrorCode.TOO_LARGE)
    _member_username(value, "user", "backup")
    _version(value.get("version"), "backup.version")
    if value.get("algorithm") != BACKUP_ALGORITHM:
        raise _Bounds(f"backup.algorithm must be {BACKUP_ALGORITHM!r}")
    _member_b64(value, "public_key", "backup", KEY_BYTES)
    _blob(value.get("identity"), "backup.identity")
    signatures = _object(value.get("signatures"), "backup.signatures")
    _member_b64(signatures, "user", "backup.signatures", SIGNATURE_BYTES)
    return value


def _backup_version(value: int, ctx: Context) -> int:
    return _version(value, "version")


def _session_id(value: str, ctx: Context) -> str:
    return _member_b64({"after": value}, "after", "backup_fetch", KEY_BYTES)


def _backup_sessions(value: list[Any], ctx: Context) -> tuple[tuple[str, int, dict[str, Any]], ...]:
    """``[{"session_id", "first_index", "blob"}]`` as ``(session_id, first_index, blob)``."""
    if not 1 <= len(value) <= MAX_SESSIONS_PER_PUT:
        raise _Bounds(f"sessions must list 1 to {MAX_SESSIONS_PER_PUT} sessions")
    sessions = []
    for item in value:
        entry = _object(item, "sessions[]")
        session_id = _member_b64(entry, "session_id", "sessions[]", KEY_BYTES)
        first_index: Any = entry.get("first_index")
        if not _is_kind(first_index, int) or not 0 <= first_index <= MAX_FIRST_INDEX:
            raise _Bounds(f"sessions[].first_index must be an integer from 0 to {MAX_FIRST_INDEX}")
        sessions.append((session_id, first_index, _blob(entry.get("blob"), "sessions[].blob")))
    return tuple(sessions)


def _fetch_limit(value: int, ctx: Context) -> int:
    if not 1 <= value <= MAX_FETCH_LIMIT:
        raise _Bounds(f"limit must be 1 to {MAX_FETCH_LIMIT}")
    return value


_room = _pattern(ROOM_NAME_RE, "room name")
_username = _pattern(USERNAME_RE, "username")
_transfer = _pattern(TRANSFER_RE, "transfer id (32 lowercase hex digits)")

ROOM = Field("room", str, check=_room)
TEXT = Field("text", str, check=_text)
# send and pm carry exactly one of them (checked in validate_request): text, or the e2e object
# of an end-to-end conversation (docs/protocol.md section 4).
MESSAGE_TEXT = Field("text", str, required=False, check=_text)
E2E = Field("e2e", dict, required=False, check=_e2e)
TRANSFER = Field("transfer", str, check=_transfer)
PASSWORD = Field("password", str, check=_length(0, MAX_PASSWORD_LENGTH, "password"))
LOGIN_USERNAME = Field("username", str, check=_length(1, MAX_USERNAME_LENGTH, "username"))
# login or register "remember": the name of the device to create (PROTOCOL.md 3.4).
REMEMBER = Field(
    "remember", str, required=False, check=_length(1, MAX_DEVICE_NAME_LENGTH, "remember")
)
OTP_CODE = _length(1, MAX_OTP_LENGTH, "code")

# The table: every request a client may send, and its fields (``id`` is implicit).
REQUEST_FIELDS: dict[str, tuple[Field, ...]] = {
    "login": (
        LOGIN_USERNAME,
        PASSWORD,
        Field("otp", str, required=False, check=_length(1, MAX_OTP_LENGTH, "otp")),
        REMEMBER,
    ),
    # register's username is judged by the server, which answers invalid_username with advice.
    "register": (
        Field("username", str, check=_length(0, 1000, "username")),
        PASSWORD,
        REMEMBER,
    ),
    # A token of any length up to the bound is the server's to judge: every resume failure
    # is login_failed invalid_credentials (PROTOCOL.md 3.4), never bad_request.
    "resume": (LOGIN_USERNAME, Field("token", str, check=_length(1, MAX_TOKEN_LENGTH, "token"))),
    "devices": (),
    "revoke": (Field("device", str, check=_length(1, MAX_DEVICE_ID_LENGTH, "device")),),
    "logout": (),
    "change_password": (
        PASSWORD,
        Field("new_password", str, check=_length(0, MAX_PASSWORD_LENGTH, "new_password")),
    ),
    "otp_setup": (),
    "otp_confirm": (Field("code", str, check=OTP_CODE),),
    "otp_disable": (PASSWORD, Field("code", str, check=OTP_CODE)),
    "send": (ROOM, MESSAGE_TEXT, E2E),
    "pm": (Field("to", str, check=_username), MESSAGE_TEXT, E2E),
    "users": (),
    "rooms": (),
    "join": (ROOM,),
    "leave": (ROOM,),
    "create_room": (
        ROOM,
        Field("private", bool, required=False, default=False),
        Field("members", list, required=False, default=(), check=_members),
    ),
    "invite": (ROOM, Field("user", str, check=_username)),
    "history": (
        Field("room", str, required=False, check=_room),
        Field("with", str, required=False, check=_username),
        Field("before", int, required=False, check=_non_negative),
        Field("limit", int, required=False, default=HISTORY_DEFAULT_LIMIT, check=_history_limit),
    ),
    "ping": (),
    # A 3.3 offer carries name and sha256; an end-to-end one (section 4.12) carries e2e
    # instead, and its size is the encrypted stream's (checked in validate_request).
    "file_offer": (
        TRANSFER,
        Field("to", str, check=_username),
        Field("name", str, required=False, check=_length(1, MAX_FILE_NAME_LENGTH, "name")),
        Field("size", int, check=_non_negative),
        Field(
            "sha256",
            str,
            required=False,
            check=_pattern(SHA256_RE, "sha256 (64 lowercase hex digits)"),
        ),
        E2E,
    ),
    "file_accept": (TRANSFER,),
    "file_reject": (TRANSFER,),
    "file_ack": (TRANSFER, Field("index", int, check=_non_negative)),
    "file_end": (TRANSFER,),
    "file_done": (TRANSFER, Field("ok", bool)),
    "file_cancel": (
        TRANSFER,
        Field(
            "reason",
            str,
            required=False,
            default="",
            check=_length(0, MAX_CANCEL_REASON_LENGTH, "reason"),
        ),
    ),
    # docs/protocol.md section 4: the key directory and the to-device relay.
    "keys_upload": (
        Field("device_keys", dict, required=False, check=_device_keys),
        Field("one_time_keys", list, required=False, default=(), check=_one_time_keys),
        Field("fallback_key", dict, required=False, check=_fallback_key),
    ),
    "user_key_publish": (
        Field("user_key", dict, check=_user_key),
        Field("reset", bool, required=False, default=False),
    ),
    "keys_query": (Field("users", list, check=_key_users),),
    "keys_claim": (Field("devices", list, check=_claimed_devices),),
    "device_list_changes": (Field("since", int, check=_non_negative),),
    "to_device": (Field("messages", list, check=_to_device_messages),),
    "to_device_ack": (Field("upto", int, check=_non_negative),),
    # docs/protocol.md 4.13: the key backup.
    "backup_publish": (
        Field("backup", dict, check=_backup),
        Field("password", str, required=False, check=_length(0, MAX_PASSWORD_LENGTH, "password")),
    ),
    "backup_get": (),
    "backup_put": (
        Field("version", int, check=_backup_version),
        Field("sessions", list, check=_backup_sessions),
    ),
    "backup_fetch": (
        Field("version", int, check=_backup_version),
        Field("after", str, required=False, check=_session_id),
        Field("limit", int, required=False, default=MAX_FETCH_LIMIT, check=_fetch_limit),
    ),
}

# Requests served before login; every other known type is not_authenticated then.
PRE_LOGIN_TYPES = frozenset({"login", "register", "resume", "ping"})
# The requests that start a session (each has login_ok or login_failed as its answer).
LOGIN_TYPES = frozenset({"login", "register", "resume"})
# What a session may send while the server requires two-factor login and the account has
# none (login_ok with otp_enrolment_required); anything else is error forbidden (3.4).
ENROLMENT_TYPES = frozenset({"otp_setup", "otp_confirm", "logout", "ping"})


class Request:
    """Base of the generated request classes: ``type`` and the optional ``id``."""

    type: str
    id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}  # type: ignore[attr-defined]  # the generated classes are dataclasses


def _class_name(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_")) + "Request"


def _python_name(name: str) -> str:
    return "with_" if name == "with" else name


REQUEST_CLASSES: dict[str, type[Request]] = {
    kind: make_dataclass(
        _class_name(kind),
        [("id", "str | None", field(default=None))]
        + [(_python_name(f.name), "Any", field(default=None)) for f in fields],
        bases=(Request,),
        frozen=True,
        namespace={"type": kind},
    )
    for kind, fields in REQUEST_FIELDS.items()
}


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    # JSON true/false are Python bools, which are ints too: keep them apart.
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, kind)


def answer(kind: str, ref: str | None, **fields: Any) -> dict[str, Any]:
    """A direct answer of type ``kind``: ``ref`` only where the request had an ``id``
    (PROTOCOL.md 3.0), for the server's answers and errors alike."""
    message: dict[str, Any] = {"type": kind, **fields}
    if ref is not None:
        message["ref"] = ref
    return message


def validate_request(message: Mapping[str, Any], ctx: Context = Context()) -> Request:
    """A typed request from a parsed JSON object, or MessageError with code and ref.

    An ``id`` that is not a string of 1 to 64 characters is ``bad_request``
    without ``ref``; every later error carries the id as ``ref``.
    """
    ref = message.get("id", _MISSING)
    if ref is _MISSING:
        ref = None
    elif not isinstance(ref, str) or not 1 <= len(ref) <= MAX_ID_LENGTH:
        raise MessageError(
            ErrorCode.BAD_REQUEST, f"id must be a string of 1 to {MAX_ID_LENGTH} characters"
        )
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in REQUEST_FIELDS:
        raise MessageError(ErrorCode.BAD_REQUEST, "unknown message type", ref)
    fields = REQUEST_FIELDS[kind]
    values: dict[str, Any] = {"id": ref}
    for spec in fields:
        values[_python_name(spec.name)] = _field_value(spec, message, ctx, ref)
    if kind == "history" and (values["room"] is None) == (values["with_"] is None):
        raise MessageError(
            ErrorCode.BAD_REQUEST, "history needs exactly one of 'room' and 'with'", ref
        )
    if kind in ("send", "pm") and (values["text"] is None) == (values["e2e"] is None):
        raise MessageError(
            ErrorCode.BAD_REQUEST, f"{kind} needs exactly one of 'text' and 'e2e'", ref
        )
    if kind == "file_offer":
        _check_offer_kind(values, ref)
    return REQUEST_CLASSES[kind](**values)


def _check_offer_kind(values: Mapping[str, Any], ref: str | None) -> None:
    """A file offer is a 3.3 one (``name`` and ``sha256``) or an end-to-end one (``e2e``,
    section 4.12): both or neither is ``bad_request``."""
    plain = [name for name in ("name", "sha256") if values[name] is not None]
    if values["e2e"] is not None:
        if plain:
            raise MessageError(
                ErrorCode.BAD_REQUEST,
                "an end-to-end file_offer carries e2e without 'name' and 'sha256'",
                ref,
            )
    elif len(plain) < 2:
        missing = "name" if values["name"] is None else "sha256"
        raise MessageError(
            ErrorCode.BAD_REQUEST,
            f"missing field '{missing}' (file_offer needs 'name' and 'sha256', or 'e2e')",
            ref,
        )


def _field_value(spec: Field, message: Mapping[str, Any], ctx: Context, ref: str | None) -> Any:
    """The checked value of ``spec`` in ``message``; MessageError if it breaks a rule."""
    value = message.get(spec.name, _MISSING)
    if value is _MISSING:
        if spec.required:
            raise MessageError(ErrorCode.BAD_REQUEST, f"missing field '{spec.name}'", ref)
        return spec.default
    if not _is_kind(value, spec.kind):
        raise MessageError(ErrorCode.BAD_REQUEST, f"field '{spec.name}' has the wrong type", ref)
    if spec.check is not None:
        try:
            return spec.check(value, ctx)
        except _Bounds as exc:
            raise MessageError(exc.code, str(exc), ref) from None
    return value


# The facts of a file offer that both clients' ends hold: checked by the one table's rules.
OFFER_FACTS = ("transfer", "name", "size", "sha256")


def check_offer_facts(offer: Mapping[str, Any]) -> None:
    """Check an offer's ``transfer``, ``name``, ``size`` and ``sha256`` by ``file_offer``'s rules.

    The clients' ends (:mod:`chatproto.transfer.endpoint`) call this for the
    offers they make and receive, so a client and the server judge an offer
    by the same table. Raises MessageError (``bad_request``) naming the field.
    """
    for spec in REQUEST_FIELDS["file_offer"]:
        if spec.name in OFFER_FACTS:
            _field_value(replace(spec, required=True), offer, Context(), None)
