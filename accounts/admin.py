"""The admin for accounts: create users, deactivate them, reset their passwords.

Deactivation (the "Active" box, or the action on the list) ends the user's live
chat sessions at once; the chat app's signal handlers see the saved change. Ending
sessions without deactivating sends :data:`accounts.signals.sessions_end_requested`,
which the chat app receives: ``accounts`` never imports ``chat``.

The admin's login form checks passwords through :func:`accounts.services.authenticate`,
so the web login is throttled exactly like the chat's (per address, per
(username, address), per account) and cannot be used to guess past those limits; an
account with two-factor login types its one-time code there too.

Devices and two-factor login (PROTOCOL.md 3.4): the user's page lists their remembered
devices (name, created, last seen, last address; never the token's hash), each of which
can be deleted there, which revokes it and ends its sessions; it shows whether two-factor
login is on, and the list has an action to reset it. Setting a password here revokes all
of the user's devices and ends their sessions (accounts/receivers.py). No TOTP secret and
no backup code is ever shown: django-otp's own TOTP admin, which can show the secret and
its QR code, is unregistered.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django_otp.plugins.otp_totp import admin as otp_totp_admin
from django_otp.plugins.otp_totp.models import TOTPDevice

from chatproto.wording import in_words

from . import services, signals, two_factor
from .addresses import forwarded_client
from .models import Device, User


def request_address(request: HttpRequest) -> str:
    """The client address of an HTTP request, by the same rule as the chat's connections
    (``X-Forwarded-For`` only from ``CHAT_TRUSTED_PROXIES``)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return forwarded_client(
        request.META.get("REMOTE_ADDR") or "unknown", [forwarded] if forwarded else []
    )


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, with the chat's login throttling and its decoy hash."""

    otp = forms.CharField(
        label="One-time code",
        required=False,
        max_length=32,
        strip=True,
        help_text="Only if your account has two-factor login: the code of your "
        "authenticator app, or a backup code.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "rate_limited": "Too many failed logins for this username or from your address. "
        "Try again in %(wait)s.",
        "otp_required": "This account has two-factor login: type the code your "
        "authenticator app shows now (or an unused backup code) with your password.",
    }

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                user = services.authenticate(
                    username,
                    password,
                    request_address(self.request),
                    otp=self.cleaned_data.get("otp") or None,
                )
            except services.LoginRefused as refused:
                if refused.code == services.RATE_LIMITED:
                    raise ValidationError(
                        self.error_messages["rate_limited"],
                        code="rate_limited",
                        params={"wait": in_words(refused.retry_after or 1)},
                    ) from None
                if refused.code == services.OTP_REQUIRED:
                    raise ValidationError(
                        self.error_messages["otp_required"], code="otp_required"
                    ) from None
                raise self.get_invalid_login_error() from None
            # services.authenticate checked what ModelBackend checks (password, is_active):
            # name it as the backend, for django.contrib.auth.login and the session.
            user.backend = "django.contrib.auth.backends.ModelBackend"
            self.user_cache = user
            self.confirm_login_allowed(self.user_cache)  # staff only
        return self.cleaned_data


admin.site.login_form = ThrottledAdminAuthenticationForm
admin.site.login_template = "admin/accounts/login.html"  # Django's, with the one-time code


class UserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username",)


class UserChangeForm(DjangoUserChangeForm):
    class Meta(DjangoUserChangeForm.Meta):
        model = User


# django-otp's TOTP admin shows a device's secret when it is added and, depending on a
# setting, its QR code: an operator has no use for either, and must never see them.
if admin.site.is_registered(otp_totp_admin.TOTPDevice):
    admin.site.unregister(otp_totp_admin.TOTPDevice)


class DeviceInline(admin.TabularInline):
    """The user's remembered devices; deleting one revokes it and ends its sessions."""

    model = Device
    verbose_name = "remembered device"
    verbose_name_plural = "Remembered devices (delete one to revoke it and end its sessions)"
    fields = ("name", "created", "last_seen", "last_address")
    readonly_fields = fields
    extra = 0
    can_delete = True
    show_change_link = False
    ordering = ("-last_seen",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # devices are made by logging in with "remember", never by hand

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    inlines = [DeviceInline]
    list_display = (
        "username",
        "is_active",
        "is_staff",
        "two_factor_login",
        "last_login",
        "date_joined",
    )
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("username", "first_name", "last_name", "email")
    ordering = ("username",)
    readonly_fields = ("two_factor_login",)
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Two-factor login", {"fields": ("two_factor_login",)}),
    )
    actions = ["deactivate_users", "activate_users", "end_chat_sessions", "reset_two_factor"]

    def get_inline_instances(self, request, obj=None):
        return super().get_inline_instances(request, obj) if obj is not None else []

    def get_queryset(self, request):
        confirmed = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
        return super().get_queryset(request).annotate(_two_factor=Exists(confirmed))

    @admin.display(description="Two-factor login", boolean=True, ordering="_two_factor")
    def two_factor_login(self, user: User) -> bool:
        found = getattr(user, "_two_factor", None)
        return two_factor.two_factor_enabled(user) if found is None else bool(found)

    @admin.action(
        description="Reset two-factor login of selected users (they log in with the password "
        "alone, then may set it up again)"
    )
    def reset_two_factor(self, request, queryset):
        count = 0
        for user in queryset:
            two_factor.reset_two_factor(user)
            count += 1
        self.message_user(request, f"Two-factor login reset for {count} user(s).", messages.SUCCESS)

    @admin.action(description="Deactivate selected users (ends their chat sessions)")
    def deactivate_users(self, request, queryset):
        count = 0
        for user in queryset.filter(is_active=True):
            if user.pk == request.user.pk:
                self.message_user(request, "You cannot deactivate yourself.", messages.ERROR)
                continue
            services.set_active(user, False)
            count += 1
        self.message_user(request, f"Deactivated {count} user(s).", messages.SUCCESS)

    @admin.action(description="End the chat sessions of selected users (they may log in again)")
    def end_chat_sessions(self, request, queryset):
        for user in queryset:
            signals.request_end_of_sessions(user.pk)
        self.message_user(request, "Their chat sessions are being ended.", messages.SUCCESS)

    @admin.action(description="Activate selected users")
    def activate_users(self, request, queryset):
        count = 0
        for user in queryset.filter(is_active=False):
            services.set_active(user, True)
            count += 1
        self.message_user(request, f"Activated {count} user(s).", messages.SUCCESS)
