"""The admin's side of PROTOCOL.md 3.4, through Django's test client: a user's devices
(revoked by deleting them on the user's page), two-factor login shown and reset, passwords
set by an administrator, the one-time code at the admin's login, and no secret anywhere."""

from __future__ import annotations

import pytest
from django import forms
from django.contrib import admin
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import devices, two_factor
from accounts.admin import UserAdmin
from accounts.models import Device, User
from tests.accounts.conftest import ADDRESS, PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_and_fresh")]


@pytest.fixture
def admin_client(client, transactional_db):
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    return client


def change_page(user: User) -> str:
    return f"/admin/accounts/user/{user.pk}/change/"


def form_data(form: forms.BaseForm) -> dict:
    """What a browser would post for ``form`` as the page showed it."""
    data: dict = {}
    for bound in form:
        if bound.field.disabled:
            continue
        value = bound.value()
        widget = bound.field.widget
        if isinstance(widget, forms.MultiWidget):
            for index, part in enumerate(widget.decompress(value)):
                if part is not None:
                    data[f"{bound.html_name}_{index}"] = str(part)
        elif isinstance(widget, forms.CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(value, list | tuple):
            data[bound.html_name] = [str(item) for item in value]
        elif value is not None:
            data[bound.html_name] = str(value)
    return data


def page_data(response, *, delete: frozenset[str] = frozenset()) -> dict:
    """The user's change form and its device inline as shown, with ``delete`` ticked."""
    data = form_data(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(form_data(formset.management_form))
        for form in formset.forms:
            data.update(form_data(form))
            if form.instance.pk in delete:
                data[f"{form.prefix}-DELETE"] = "on"
    return data


def test_the_users_page_lists_devices_without_token_hashes(admin_client, alice):
    remembered = devices.remember_device(alice, "Alice's laptop", "198.51.100.23")
    response = admin_client.get(change_page(alice))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Alice&#x27;s laptop" in page and "198.51.100.23" in page
    device = Device.objects.get(pk=remembered.device)
    assert device.token_hash not in page and remembered.token not in page


def test_no_totp_secret_or_backup_code_is_shown(admin_client, alice, clock):
    setup = two_factor.otp_setup(alice)
    clock.secret = setup.secret
    codes = two_factor.otp_confirm(alice, clock.code())
    key = TOTPDevice.objects.get(user=alice).key
    pages = [admin_client.get(change_page(alice)), admin_client.get("/admin/accounts/user/")]
    for response in pages:
        page = response.content.decode().lower()
        assert key.lower() not in page and setup.secret.lower() not in page
        assert not any(code in page or code.replace("-", "") in page for code in codes)
    assert not admin.site.is_registered(TOTPDevice)
    assert admin_client.get("/admin/otp_totp/totpdevice/").status_code == 404


def test_deleting_a_device_on_the_users_page_revokes_it_and_ends_its_sessions(
    admin_client, alice, ended
):
    keep = devices.remember_device(alice, "laptop", ADDRESS)
    gone = devices.remember_device(alice, "phone", ADDRESS)
    page = admin_client.get(change_page(alice))
    ended.clear()
    response = admin_client.post(change_page(alice), page_data(page, delete={gone.device}))
    assert response.status_code == 302, response.content[:3000]
    assert list(Device.objects.values_list("pk", flat=True)) == [keep.device]
    assert ended.sent == [
        {"user_id": alice.pk, "reason": "revoked", "devices": [gone.device], "except_session": None}
    ]


def test_saving_the_users_page_unchanged_revokes_nothing(admin_client, alice, ended):
    devices.remember_device(alice, "laptop", ADDRESS)
    page = admin_client.get(change_page(alice))
    ended.clear()
    response = admin_client.post(change_page(alice), page_data(page))
    assert response.status_code == 302, response.content[:3000]
    assert Device.objects.count() == 1 and ended.sent == []


def test_devices_cannot_be_added_by_hand(admin_client, alice):
    page = admin_client.get(change_page(alice))
    (inline,) = page.context["inline_admin_formsets"]
    assert inline.formset.max_num == 0 or not inline.has_add_permission


def test_the_list_shows_who_has_two_factor_login(admin_client, alice, clock):
    User.objects.create_user("bob", password=PASSWORD)
    clock.secret = two_factor.otp_setup(alice).secret
    two_factor.otp_confirm(alice, clock.code())
    response = admin_client.get("/admin/accounts/user/")
    assert "Two-factor login" in response.content.decode()
    user_admin = admin.site.get_model_admin(User)
    shown = {
        user.username: user_admin.two_factor_login(user)
        for user in response.context["cl"].result_list
    }
    assert shown == {"alice": True, "bob": False, "root": False}
    assert "Two-factor login" in admin_client.get(change_page(alice)).content.decode()


def test_the_reset_action_turns_two_factor_login_off(admin_client, alice, clock):
    clock.secret = two_factor.otp_setup(alice).secret
    two_factor.otp_confirm(alice, clock.code())
    response = admin_client.post(
        "/admin/accounts/user/", {"action": "reset_two_factor", "_selected_action": [alice.pk]}
    )
    assert response.status_code == 302
    assert two_factor.two_factor_enabled(alice) is False


def test_setting_a_password_in_the_admin_revokes_every_device(admin_client, alice, ended):
    devices.remember_device(alice, "laptop", ADDRESS)
    devices.remember_device(alice, "phone", ADDRESS)
    ended.clear()
    response = admin_client.post(
        f"/admin/accounts/user/{alice.pk}/password/",
        {
            "password1": "a brand new passphrase 9",
            "password2": "a brand new passphrase 9",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    assert not Device.objects.filter(user=alice).exists()
    assert ended.sent == [
        {"user_id": alice.pk, "reason": "ended_by_admin", "devices": None, "except_session": None}
    ]


def test_the_admin_login_asks_for_the_one_time_code_of_two_factor_login(client, clock):
    root = User.objects.create_superuser("root", password=PASSWORD)
    clock.secret = two_factor.otp_setup(root).secret
    two_factor.otp_confirm(root, clock.code())
    clock.tick(2)
    form = {"username": "root", "password": PASSWORD, "next": "/admin/"}
    page = client.get("/admin/login/").content.decode()
    assert 'name="otp"' in page
    refused = client.post("/admin/login/", form, REMOTE_ADDR=ADDRESS)
    assert refused.status_code == 200
    assert "two-factor login" in refused.content.decode()
    accepted = client.post("/admin/login/", {**form, "otp": clock.code()}, REMOTE_ADDR=ADDRESS)
    assert accepted.status_code == 302 and accepted.url == "/admin/"


def test_the_admin_class_is_ours():
    assert isinstance(admin.site.get_model_admin(User), UserAdmin)
