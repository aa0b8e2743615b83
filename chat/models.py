"""Rooms, memberships and messages.

A message's text is stored only encrypted (``body_encrypted``, with the storage
key kept in the data dir, not in the database; see :mod:`chat.storage`), so a
database dump alone reveals no text. ``Message.pk`` is the protocol's
``msg_id``: unique and increasing across the whole server.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

LOBBY = "lobby"


class Room(models.Model):
    name = models.CharField(max_length=32, unique=True)
    private = models.BooleanField(default=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_rooms",
        help_text="Empty for lobby.",
    )
    created = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="chat_rooms"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    joined = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="chat_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"


class Message(models.Model):
    """A room message (``room`` set) or a private message (``recipient`` set), never both."""

    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sent_messages"
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="received_messages",
    )
    body_encrypted = models.TextField(editable=False)
    created = models.DateTimeField(db_index=True)
    delivered = models.BooleanField(
        default=True, help_text="Private messages: false while queued for an offline recipient."
    )

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(room__isnull=False, recipient__isnull=True)
                | Q(room__isnull=True, recipient__isnull=False),
                name="chat_message_room_xor_recipient",
            )
        ]
        indexes = [
            # The offline queue: a recipient's undelivered private messages.
            models.Index(
                fields=["recipient", "id"],
                condition=Q(delivered=False),
                name="chat_message_queued",
            ),
            models.Index(fields=["room", "id"], name="chat_message_room_id"),
            models.Index(fields=["sender", "recipient", "id"], name="chat_message_pair_id"),
        ]

    def __str__(self) -> str:  # metadata only: never the text
        where = f"#{self.room_id}" if self.room_id else f"to user {self.recipient_id}"
        return f"message {self.pk} {where}"
