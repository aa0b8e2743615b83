"""The account actions of the controller (PROTOCOL.md 3.4): every action, every refusal in words.

No network: a fake session records the requests and the test answers them, as in
``test_controller.py``; the view records the account events it is given.
"""

from __future__ import annotations

import pytest

from tk_client.account import (
    CHANGE_PASSWORD,
    CONFIRM_OTP,
    DISABLE_OTP,
    LOG_OUT,
    REFRESH_DEVICES,
    REVOKE_DEVICE,
    START_OTP_SETUP,
    AccountActionFailed,
    DeviceInfo,
    DeviceRevoked,
    DevicesListed,
    OtpDisabled,
    OtpEnabled,
    OtpSetupStarted,
    PasswordChanged,
    devices_from_wire,
)
from tk_client.controller import ChatController, ControllerView
from tk_client.events import (
    LoggedIn,
    LoginNeeded,
    NotConnected,
    OtpRequired,
    Received,
    RequestState,
    RequestStatus,
    RequestUpdate,
)

from .test_controller import ROOMS, FakeSession

DEVICES = [
    {
        "device": "d1",
        "name": "laptop",
        "created": "2026-01-01T10:00:00.000Z",
        "last_seen": "2026-12-03T18:00:00.000Z",
        "current": True,
        "online": True,
    },
    {
        "device": "d2",
        "name": "old phone",
        "created": "2026-01-01T10:00:00.000Z",
        "last_seen": "2026-06-01T08:00:00.000Z",
        "current": False,
        "online": False,
    },
    {
        "device": "d3",
        "name": "desk",
        "created": "2026-01-01T10:00:00.000Z",
        "last_seen": "2026-05-01T08:00:00.000Z",
        "current": False,
        "online": False,
    },
]


class AccountSession(FakeSession):
    def __init__(self) -> None:
        super().__init__()
        self.logged_out = False

    def log_out(self) -> RequestStatus:
        status = self.request("logout", durable=False)
        self.logged_out = True
        return status


class AccountView(ControllerView):
    def __init__(self, can_ask: bool = True) -> None:
        self.events: list = []
        self.commands: list[tuple[str, str]] = []
        self.session_events: list = []
        self.notices: list[str] = []
        self.can_ask = can_ask

    def account_event(self, event):
        self.events.append(event)

    def account_command(self, command, args):
        self.commands.append((command, args))
        return self.can_ask

    def session_event(self, event):
        self.session_events.append(event)

    def message_added(self, key, message):
        if message.notice:
            self.notices.append(message.text)

    def failures(self) -> list[AccountActionFailed]:
        return [e for e in self.events if isinstance(e, AccountActionFailed)]


@pytest.fixture
def session():
    return AccountSession()


@pytest.fixture
def view():
    return AccountView()


@pytest.fixture
def controller(session, view):
    controller = ChatController(session, view)
    controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))
    return controller


def reply(controller, request, answer=None, **status):
    state = RequestState.FAILED if "code" in status else RequestState.DONE
    if answer is None and state is RequestState.DONE:
        answer = {"type": "ok", "ref": request["id"]}
    update = RequestStatus(request["id"], request, state, **status)
    controller.handle(RequestUpdate(update, answer))


def refuse(controller, request, code, words="the server's words"):
    reply(controller, request, code=code, error=words)


# --- each action and its result ------------------------------------------------------------------


def test_change_password_sends_both_and_reports_the_change(controller, session, view):
    controller.change_password("old-pw", "new-password")
    request = session.last("change_password")
    assert (request["password"], request["new_password"]) == ("old-pw", "new-password")
    reply(controller, request)

    assert view.events == [PasswordChanged()]


def test_otp_setup_then_confirm_reports_the_secret_then_the_backup_codes(controller, session, view):
    assert controller.two_factor is None
    controller.start_otp_setup()
    reply(
        controller,
        session.last("otp_setup"),
        {"type": "otp_setup", "secret": "S" * 32, "uri": "otpauth://totp/x:me?secret=S"},
    )
    controller.confirm_otp(" 123 456 ")
    confirm = session.last("otp_confirm")
    codes = [f"code-{i}" for i in range(10)]
    reply(controller, confirm, {"type": "otp_enabled", "backup_codes": codes})

    assert confirm["code"] == "123456"
    assert view.events == [
        OtpSetupStarted("S" * 32, "otpauth://totp/x:me?secret=S"),
        OtpEnabled(tuple(codes)),
    ]
    assert controller.two_factor is True
    assert "S" * 32 not in repr(view.events[0]) and "code-1" not in repr(view.events[1])


def test_disable_otp_reports_it_off(controller, session, view):
    controller.disable_otp("pw", "654321")
    request = session.last("otp_disable")
    assert (request["password"], request["code"]) == ("pw", "654321")
    reply(controller, request)

    assert view.events == [OtpDisabled()]
    assert controller.two_factor is False


def test_refresh_devices_lists_them_in_the_servers_order(controller, session, view):
    controller.refresh_devices()
    reply(controller, session.last("devices"), {"type": "devices", "devices": DEVICES})

    listed = view.events[0]
    assert isinstance(listed, DevicesListed)
    assert [d.device for d in listed.devices] == ["d1", "d2", "d3"]
    assert listed.devices[0] == DeviceInfo(
        "d1", "laptop", "2026-01-01T10:00:00.000Z", "2026-12-03T18:00:00.000Z", True, True
    )


def test_revoke_reports_the_device_then_a_fresh_list(controller, session, view):
    controller.revoke_device("d2")
    assert session.last("revoke")["device"] == "d2"
    reply(controller, session.last("revoke"))

    assert view.events == [DeviceRevoked("d2")]
    reply(controller, session.last("devices"), {"type": "devices", "devices": DEVICES[:1]})
    assert isinstance(view.events[-1], DevicesListed)


def test_revoking_this_device_asks_no_fresh_list(controller, session, view):
    controller.refresh_devices()
    reply(controller, session.last("devices"), {"type": "devices", "devices": DEVICES})
    controller.revoke_device("d1")
    reply(controller, session.last("revoke"))

    assert len(session.of("devices")) == 1


def test_log_out_goes_through_the_session(controller, session):
    controller.log_out()

    assert session.logged_out
    assert session.of("logout")


def test_account_requests_do_not_wait_in_the_outbox(controller, session, monkeypatch):
    seen = []
    monkeypatch.setattr(
        session, "request", lambda type_, *, durable=True, **f: seen.append(durable) or 1 / 0
    )
    with pytest.raises(ZeroDivisionError):
        controller.refresh_devices()

    assert seen == [False]


# --- refusals, in words --------------------------------------------------------------------------

REFUSALS = [
    (CHANGE_PASSWORD, "change_password", "invalid_credentials", "The current password is wrong"),
    (CHANGE_PASSWORD, "change_password", "invalid_password", "too short. Choose another one."),
    (CHANGE_PASSWORD, "change_password", "rate_limited", "The password was not changed: "),
    (START_OTP_SETUP, "otp_setup", "bad_request", "already on"),
    (CONFIRM_OTP, "otp_confirm", "invalid_otp", "That code is not right"),
    (DISABLE_OTP, "otp_disable", "invalid_credentials", "The password is wrong"),
    (DISABLE_OTP, "otp_disable", "invalid_otp", "or an unused backup code"),
    (REFRESH_DEVICES, "devices", "internal", "could not be fetched: too short"),
    (REVOKE_DEVICE, "revoke", "unknown_device", "signed out already"),
    (REFRESH_DEVICES, "devices", "forbidden", "turn it on first (/2fa on"),
]
ACTIONS = {
    CHANGE_PASSWORD: lambda c: c.change_password("old", "new-password"),
    START_OTP_SETUP: lambda c: c.start_otp_setup(),
    CONFIRM_OTP: lambda c: c.confirm_otp("123456"),
    DISABLE_OTP: lambda c: c.disable_otp("pw", "123456"),
    REFRESH_DEVICES: lambda c: c.refresh_devices(),
    REVOKE_DEVICE: lambda c: c.revoke_device("d9"),
}


@pytest.mark.parametrize(("action", "kind", "code", "words"), REFUSALS)
def test_each_refusal_is_reported_in_words_that_say_what_to_do(
    controller, session, view, action, kind, code, words
):
    ACTIONS[action](controller)
    refuse(controller, session.last(kind), code, "too short")

    assert view.failures()[0].action == action
    assert view.failures()[0].code == code
    assert words in view.failures()[0].message


def test_an_older_server_that_lacks_the_request_says_so(controller, session, view):
    controller.refresh_devices()
    refuse(controller, session.last("devices"), "bad_request", "unknown message type")

    assert "older version" in view.failures()[0].message


def test_an_unknown_device_refreshes_the_list(controller, session, view):
    controller.revoke_device("d9")
    refuse(controller, session.last("revoke"), "unknown_device")

    assert session.of("devices")


@pytest.mark.parametrize("action", list(ACTIONS))
def test_offline_every_action_is_refused_at_once(controller, session, view, action):
    session.ended = True
    ACTIONS[action](controller)

    failure = view.failures()[0]
    assert (failure.action, failure.code) == (action, "offline")
    assert "Not connected" in failure.message


def test_log_out_offline_is_refused(controller, session, view):
    session.ended = True
    controller.log_out()

    assert [(f.action, f.code) for f in view.failures()] == [(LOG_OUT, "offline")]


@pytest.mark.parametrize(
    ("call", "action"),
    [
        (lambda c: c.change_password("", "new"), CHANGE_PASSWORD),
        (lambda c: c.change_password("same-one", "same-one"), CHANGE_PASSWORD),
        (lambda c: c.confirm_otp("  "), CONFIRM_OTP),
        (lambda c: c.disable_otp("", "123456"), DISABLE_OTP),
        (lambda c: c.revoke_device(""), REVOKE_DEVICE),
    ],
)
def test_what_cannot_be_right_is_refused_before_sending(controller, session, view, call, action):
    call(controller)

    assert view.failures()[0].action == action
    assert view.failures()[0].message
    assert [r["type"] for r in session.requests] == ["history"]  # the lobby's, at login


def test_a_malformed_setup_answer_is_a_refusal_not_a_crash(controller, session, view):
    controller.start_otp_setup()
    reply(controller, session.last("otp_setup"), {"type": "otp_setup"})

    assert view.failures()[0].action == START_OTP_SETUP


def test_malformed_devices_are_left_out():
    devices = devices_from_wire([DEVICES[0], {"device": 3}, "x", {"name": "no id"}])

    assert [d.device for d in devices] == ["d1"]


# --- what the client knows of two-factor login ---------------------------------------------------


def test_a_login_with_a_code_means_two_factor_login_is_on(session, view):
    controller = ChatController(session, view)
    controller.handle(LoggedIn("me", ROOMS, again=False, with_otp=True))

    assert controller.two_factor is True
    assert controller.otp_enrolment_required is False


def test_enrolment_required_is_told_and_names_the_way_to_turn_it_on(session, view):
    controller = ChatController(session, view)
    controller.handle(LoggedIn("me", ROOMS, again=False, otp_enrolment_required=True))

    assert controller.otp_enrolment_required is True
    assert controller.two_factor is False
    assert any("/2fa on" in n and "Account window" in n for n in view.notices)


def test_confirming_ends_the_enrolment_requirement(session, view):
    controller = ChatController(session, view)
    controller.handle(LoggedIn("me", ROOMS, again=False, otp_enrolment_required=True))
    controller.confirm_otp("123456")
    reply(controller, session.last("otp_confirm"), {"type": "otp_enabled", "backup_codes": []})

    assert controller.otp_enrolment_required is False


def test_code_and_login_requests_reach_the_view(controller, view):
    controller.handle(OtpRequired("me", retry=False))
    controller.handle(LoginNeeded("log in again"))

    assert view.session_events == [OtpRequired("me", retry=False), LoginNeeded("log in again")]


# --- the commands --------------------------------------------------------------------------------


def test_password_and_2fa_commands_are_left_to_the_view_to_ask(controller, view):
    assert controller.submit("/password")
    assert controller.submit("/2fa ON")
    assert controller.submit("/2fa off")

    assert view.commands == [("password", ""), ("2fa", "on"), ("2fa", "off")]


def test_a_view_that_cannot_ask_says_where_to_do_it(session):
    view = AccountView(can_ask=False)
    controller = ChatController(session, view)

    assert not controller.submit("/password")
    assert "Open the Account window to change your password." in view.notices


def test_2fa_without_on_or_off_shows_the_usage(controller, view):
    assert not controller.submit("/2fa")
    assert view.notices[-1].startswith("Usage: /2fa on|off")


def test_devices_command_asks_the_list(controller, session):
    controller.submit("/devices")

    assert session.of("devices")


def test_revoke_by_name_fetches_the_list_first_then_revokes_by_id(controller, session, view):
    controller.submit("/revoke Old Phone")
    assert session.of("revoke") == []
    reply(controller, session.last("devices"), {"type": "devices", "devices": DEVICES})

    assert session.last("revoke")["device"] == "d2"


def test_revoke_by_id_with_a_known_list(controller, session):
    controller.refresh_devices()
    reply(controller, session.last("devices"), {"type": "devices", "devices": DEVICES})
    controller.submit("/revoke d3")

    assert session.last("revoke")["device"] == "d3"


def test_revoke_of_an_ambiguous_name_asks_for_the_id(controller, session, view):
    twins = [dict(DEVICES[1]), {**DEVICES[2], "name": "old phone"}]
    controller.refresh_devices()
    reply(controller, session.last("devices"), {"type": "devices", "devices": twins})
    controller.submit("/revoke old phone")

    assert session.of("revoke") == []
    assert "name one by its id: d2, d3" in view.failures()[0].message


def test_logout_command_logs_out(controller, session):
    controller.submit("/logout")

    assert session.logged_out


def test_device_names_and_ids_complete_after_revoke(controller, session):
    controller.refresh_devices()
    reply(controller, session.last("devices"), {"type": "devices", "devices": DEVICES})

    completion = controller.complete("/revoke l", len("/revoke l"))
    assert completion is not None
    assert "laptop" in completion.candidates
    assert "old phone" not in controller.candidates("device")  # a space would split it
    assert {"d1", "d2", "d3"} <= set(controller.candidates("device"))


def test_log_out_raising_not_connected_is_a_refusal(controller, session, view, monkeypatch):
    def offline():
        raise NotConnected("offline")

    monkeypatch.setattr(session, "log_out", offline)
    controller.log_out()

    assert view.failures()[0].action == LOG_OUT


def test_secrets_never_show_in_the_repr_of_a_request_or_its_answer():
    request = {"type": "change_password", "id": "r1", "password": "old-pw", "new_password": "np"}
    setup = {"type": "otp_setup", "ref": "r2", "secret": "S" * 32, "uri": "otpauth://x?secret=S"}
    enabled = {"type": "otp_enabled", "ref": "r3", "backup_codes": ["aaaa-bbbb"]}
    shown = repr(
        [
            RequestUpdate(RequestStatus("r1", request, RequestState.SENT), None),
            RequestUpdate(RequestStatus("r2", {"type": "otp_setup"}, RequestState.DONE), setup),
            RequestUpdate(RequestStatus("r3", {"code": "123456"}, RequestState.DONE), enabled),
        ]
    )

    for secret in ("old-pw", "'np'", "S" * 32, "otpauth", "aaaa-bbbb", "123456"):
        assert secret not in shown
    assert "change_password" in shown and "otp_enabled" in shown


def test_an_enrolling_session_loads_nothing_until_the_server_starts_it(session, view):
    controller = ChatController(session, view, autoload_history=True)
    controller.handle(LoggedIn("me", [], again=False, otp_enrolment_required=True))
    assert session.of("history") == []

    controller.confirm_otp("123456")
    reply(controller, session.last("otp_confirm"), {"type": "otp_enabled", "backup_codes": []})
    controller.handle(Received({"type": "rooms", "rooms": ROOMS}))

    assert session.last("history")["room"] == "lobby"
    assert "dev" in controller.rooms
