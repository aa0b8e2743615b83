"""The admin for accounts: create users, deactivate them, reset their passwords.

Deactivation (the "Active" box, or the action on the list) ends the user's live
chat sessions at once; the chat app's signal handlers see the saved change.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm

from . import services
from .models import User


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
        from chat import services as chat_services

        for user in queryset:
            chat_services.end_sessions_of(user.pk, "ended_by_admin")
        self.message_user(request, "Their chat sessions are being ended.", messages.SUCCESS)

    @admin.action(description="Activate selected users")
    def activate_users(self, request, queryset):
        count = 0
        for user in queryset.filter(is_active=False):
            services.set_active(user, True)
            count += 1
        self.message_user(request, f"Activated {count} user(s).", messages.SUCCESS)
