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
    e2e = models.BooleanField(
        default=False, help_text="The body is an end-to-end ciphertext object, not a text."
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


# --- end-to-end encryption: the key directory and the to-device relay (docs/protocol.md 4) ---
# The server keeps public keys and ciphertext only: no private key of a user ever reaches it.


class DeviceKeys(models.Model):
    """A remembered device's end-to-end keys, stored as uploaded and handed out unchanged.

    Deleted with its device (revoked, logged out, the admin): its one-time keys and
    its to-device queue go with it. ``to_device_seq`` is the last ``seq`` given to a
    to-device message for it (each device numbers its own queue).
    """

    device = models.OneToOneField(
        "accounts.Device", primary_key=True, on_delete=models.CASCADE, related_name="e2e_keys"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="e2e_devices"
    )
    keys = models.JSONField(help_text="The device keys object, as the device uploaded it.")
    fallback_key = models.JSONField(null=True, blank=True)
    to_device_seq = models.PositiveBigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "device keys"

    def __str__(self) -> str:
        return f"keys of device {self.device_id}"


class OneTimeKey(models.Model):
    """A signed one-time key of a device: handed out once, then deleted."""

    device = models.ForeignKey(DeviceKeys, on_delete=models.CASCADE, related_name="one_time_keys")
    key_id = models.CharField(max_length=64)
    key = models.JSONField(help_text="The one-time key object, as uploaded.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "key_id"], name="chat_one_time_key_unique")
        ]

    def __str__(self) -> str:
        return f"one-time key {self.key_id} of device {self.device_id}"


class UserKey(models.Model):
    """A user's published user key (the identity that signs their devices); ``version``
    grows by one at each identity reset, which every contact sees."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="e2e_user_key",
    )
    key = models.JSONField(help_text="The user key object, as published.")
    version = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return f"user key v{self.version} of user {self.user_id}"


class DeviceListClock(models.Model):
    """One row: the device-list version, raised by one at each change of anyone's devices
    or user key. Its row lock orders the changes, so versions commit in order."""

    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"device lists at version {self.version}"


class DeviceListChange(models.Model):
    """The change log, compacted: a user's last device-list change and its version."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="e2e_device_list_change",
    )
    version = models.PositiveBigIntegerField(db_index=True)

    def __str__(self) -> str:
        return f"user {self.user_id} changed at version {self.version}"


class DeletedAccountChange(models.Model):
    """A deleted account's last device-list change, kept for each of its former key contacts.

    Deleting an account deletes its :class:`DeviceListChange` and the rooms and messages
    that made others its contacts, so ``device_list_changes`` could no longer name it to a
    contact who was offline then: this row does, until the contact's own account goes.
    """

    contact = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    username = models.CharField(max_length=150)
    version = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "username"], name="chat_deleted_account_change_unique"
            )
        ]

    def __str__(self) -> str:
        return f"a contact of user {self.contact_id} deleted at version {self.version}"


class ToDeviceMessage(models.Model):
    """A to-device message queued for its target device until that device acknowledges it.

    The body (Olm ciphertext already) is encrypted at rest like message bodies.
    """

    device = models.ForeignKey(DeviceKeys, on_delete=models.CASCADE, related_name="to_device_queue")
    seq = models.PositiveBigIntegerField()
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    sender_device = models.CharField(max_length=64)
    body_encrypted = models.TextField(editable=False)

    class Meta:
        ordering = ["device", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["device", "seq"], name="chat_to_device_seq_unique")
        ]

    def __str__(self) -> str:  # metadata only
        return f"to-device {self.seq} for device {self.device_id}"


# --- key backup (docs/protocol.md 4.13) ------------------------------------------------------
# Opaque to the server: a backup object (its public key, a sealed identity blob, a signature)
# and sealed session blobs. Neither the recovery key nor anything that opens a blob reaches it.


class KeyBackup(models.Model):
    """A user's current key backup: the object as published, one row per user.

    A new ``version`` replaces the row's object and deletes the previous version's
    sessions; an update (same version and public key) replaces the object only.
    ``created`` and ``device`` are those of the version's first publication.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="key_backup",
    )
    version = models.PositiveBigIntegerField()
    public_key = models.CharField(max_length=64)
    backup = models.JSONField(help_text="The backup object, as published.")
    created = models.DateTimeField()
    device = models.CharField(max_length=64, help_text="The device that published this version.")

    def __str__(self) -> str:  # metadata only
        return f"key backup v{self.version} of user {self.user_id}"


class BackupSession(models.Model):
    """One Megolm session's blob in a backup: per ``session_id`` the one with the lowest
    ``first_index`` is kept (the server cannot open it to judge otherwise).

    ``session_id`` is kept as the ASCII bytes of its base64: bytes compare byte by byte on
    every database, so pages come in the order of the strings whatever the collation.
    """

    backup = models.ForeignKey(KeyBackup, on_delete=models.CASCADE, related_name="sessions")
    session_id = models.BinaryField(max_length=64)
    first_index = models.PositiveBigIntegerField()
    blob = models.JSONField(help_text="The sealed blob, as uploaded.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["backup", "session_id"], name="chat_backup_session_unique"
            )
        ]

    def __str__(self) -> str:  # metadata only
        return f"a session in the key backup of user {self.backup_id}"


class BackupRecord(models.Model):
    """For the administrator: a key backup made or reset (a new version), by which device.

    No key material: no public key, no blob, no signature. A reset by someone holding a
    stolen session and the password is what this lets an administrator see.
    """

    class Kind(models.TextChoices):
        CREATED = "created", "created"
        RESET = "reset", "reset"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="backup_records"
    )
    created = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    version = models.PositiveBigIntegerField()
    device = models.CharField(max_length=64, help_text="The id of the device that published it.")
    device_name = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        verbose_name = "key backup record"

    def __str__(self) -> str:
        return f"key backup v{self.version} {self.kind} by user {self.user_id}"
