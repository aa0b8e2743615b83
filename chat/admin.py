"""The admin for rooms and messages: names, members and message metadata, never texts.

Message bodies are stored encrypted (chat.storage) and the admin neither shows
nor decrypts them; it cannot create or edit messages either.

Key backups (docs/protocol.md 4.13): only the record of their creations and resets
(who, when, from which device), read-only. The backups themselves (a public key,
sealed blobs) are not registered: nothing of a key reaches an admin page.
"""

from __future__ import annotations

from django.contrib import admin

from . import services
from .models import BackupRecord, Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "private", "owner", "member_count", "created")
    list_filter = ("private",)
    search_fields = ("name",)
    readonly_fields = ("created",)
    autocomplete_fields = ["owner"]
    inlines = [MembershipInline]

    @admin.display(description="members")
    def member_count(self, room: Room) -> int:
        return room.memberships.count()

    # Members added or removed here must gain or lose the room's messages in their live
    # sessions at once, so every change tells the members' sessions to re-read their rooms.

    def save_related(self, request, form, formsets, change) -> None:
        room = form.instance
        before = set(room.memberships.values_list("user_id", flat=True)) if change else set()
        super().save_related(request, form, formsets, change)
        after = set(room.memberships.values_list("user_id", flat=True))
        services.rooms_changed_for(before | after)

    def delete_model(self, request, obj: Room) -> None:
        members = list(obj.memberships.values_list("user_id", flat=True))
        super().delete_model(request, obj)
        services.rooms_changed_for(members)

    def delete_queryset(self, request, queryset) -> None:
        members = list(
            Membership.objects.filter(room__in=queryset).values_list("user_id", flat=True)
        )
        super().delete_queryset(request, queryset)
        services.rooms_changed_for(members)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Metadata only: who wrote where and when. No body, no way to add or change one."""

    list_display = ("id", "sender", "room", "recipient", "created", "delivered")
    list_filter = ("delivered", "room")
    search_fields = ("sender__username", "recipient__username", "room__name")
    fields = ("id", "sender", "room", "recipient", "created", "delivered")
    readonly_fields = fields
    list_select_related = ("sender", "room", "recipient")
    date_hierarchy = "created"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BackupRecord)
class BackupRecordAdmin(admin.ModelAdmin):
    """Who made or reset a key backup, when, from which device: read-only, no key material.

    A reset the user did not make (a stolen session that knew the password) shows here."""

    list_display = ("created", "user", "kind", "version", "device_name", "device")
    list_filter = ("kind",)
    search_fields = ("user__username", "device", "device_name")
    fields = ("created", "user", "kind", "version", "device", "device_name")
    readonly_fields = fields
    list_select_related = ("user",)
    date_hierarchy = "created"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
