"""The end-to-end layer's errors (the tree is drawn in ``tk_client/e2e/__init__.py``).

Messages name what to do next and never carry a key, a plaintext or a ciphertext.
"""

from __future__ import annotations


class E2EError(Exception):
    """Base of every end-to-end error."""


class DecryptionFailed(E2EError):
    """An Olm or Megolm message could not be decrypted or failed its checks.

    One message for every cause (bad MAC, unknown session, wrong conversation or sender,
    bad encoding), so that neither a log nor an attacker learns which check failed.
    """

    def __init__(self) -> None:
        super().__init__("this message could not be decrypted")


class StoreError(E2EError):
    """The key store or its pickle key file cannot be used; the message says what to do."""


class UntrustedKeys(E2EError):
    """A device, one-time or user key object has a missing or invalid signature."""


class SendingBlocked(E2EError):
    """A verified contact's identity key changed: sending waits for the user's acknowledgement."""


class VerificationFailed(E2EError):
    """A short-authentication-string check failed: the keys or their MACs do not match."""
