"""The client's end-to-end encryption core (docs/protocol.md section 4), over vodozemac.

Pure logic, shared by the desktop and the terminal client: no Tk, no sockets, no threads,
no clock (time is passed in). The formats every client shares (signed bytes, conversation
ids, the SAS commitment and info strings, names and limits, unpadded base64) are
``chatproto.e2e``'s and ``chatproto.unpadded_b64``'s; this package parses, checks and calls
vodozemac. Each module has one job:

- ``errors``: the exception tree (one opaque :class:`DecryptionFailed`);
- ``keys``: the public objects peers publish (device keys, one-time keys, user keys),
  parsed and checked;
- ``device``: this device's Olm ``Account``, its signed keys and one-time keys;
- ``identity``: the user key (cross-signing, simplified) that signs the user's devices;
- ``contacts``: pinned user keys of contacts and their trust states;
- ``olm``: Olm sessions per peer device, for to-device messages;
- ``megolm``: Megolm sessions per conversation, the rotation policy, undecryptable reasons;
- ``room_keys``: the ``room_key`` and ``forwarded_room_key`` plaintexts and their checks;
- ``sas``: short authentication strings (emoji, decimals) for device and contact checks;
- ``keyfile``, ``store``: the pickle key file and the store file (both 0600);
- ``directory``: tracked users' checked device lists and user keys, and which are stale;
- ``verification``: SAS flows in progress (device approval, contact verification);
- ``backup``, ``backup_state``: the key backup and the recovery key (section 4.13), and
  the backup key as the store keeps it (sealed under the pickle key);
- ``engine``: one logged-in device's coordinator: wire dicts in, requests and events out.

Exceptions::

    E2EError
     ├── DecryptionFailed   any Olm/Megolm failure, one message (never says why)
     ├── StoreError         the store or its key file cannot be used (says what to do)
     ├── UntrustedKeys      a key object's signature is missing or wrong: refused
     ├── SendingBlocked     a verified contact's identity changed: acknowledge first
     └── VerificationFailed SAS keys or MACs did not match
"""
