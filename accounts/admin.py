"""The admin for accounts: create users, deactivate them, reset their passwords.

Deactivation (the "Active" box, or the action on the list) ends the user's live
chat sessions at once; the chat app's signal handlers see the saved change. Ending
sessions without deactivating sends :data:`accounts.signals.sessions_end_requested`,
which the chat app receives: ``accounts`` never imports ``chat``.

The admin's login form checks passwords through :func:`accounts.services.authenticate`,
so the web login is throttled exactly like the chat's (per address, per
(username, address), per account) and cannot be used to guess past those limits.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from chatproto.wording import in_words

from . import services, signals
from .addresses import forwarded_client
from .models import User


def request_address(request: HttpRequest) -> str:
    """The client address of an HTTP request, by the same rule as the chat's connections
    (``X-Forwarded-For`` only from ``CHAT_TRUSTED_PROXIES``)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return forwarded_client(
        request.META.get("REMOTE_ADDR") or "unknown", [forwarded] if forwarded else []
    )


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, with the chat's login throttling and its decoy hash."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "rate_limited": "Too many failed logins for this username or from your address. "
        "Try again in %(wait)s.",
    }

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                user = services.authenticate(username, password, request_address(self.request))
            except services.LoginRefused as refused:
                if refused.code == services.RATE_LIMITED:
                    raise ValidationError(
                        self.error_messages["rate_limited"],
                        code="rate_limited",
                        params={"wait": in_words(refused.retry_after or 1)},
                    ) from None
                raise self.get_invalid_login_error() from None
            # services.authenticate checked what ModelBackend checks (password, is_active):
            # name it as the backend, for django.contrib.auth.login and the session.
            user.backend = "django.contrib.auth.backends.ModelBackend"
            self.user_cache = user
            self.confirm_login_allowed(self.user_cache)  # staff only
        return self.cleaned_data


admin.site.login_form = ThrottledAdminAuthenticationForm


class UserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username",)


class UserChangeForm(DjangoUserChangeForm):
    class Meta(DjangoUserChangeForm.Meta):
        model = User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    list_display = ("username", "is_active", "is_staff", "last_login", "date_joined")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("username", "first_name", "last_name", "email")
    ordering = ("username",)
    actions = ["deactivate_users", "activate_users", "end_chat_sessions"]

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
