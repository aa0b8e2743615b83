"""Every numeric limit of the protocol, each with the reason it exists."""

# A record is one whole WebSocket message; 1 MiB is also daphne's default message limit.
MAX_RECORD_SIZE = 1_048_576
# version byte + u64 seq + IV + one AES block + tag: the shortest well-formed record.
RECORD_HEADER_SIZE = 1 + 8
IV_SIZE = 16
TAG_SIZE = 32
AES_BLOCK_SIZE = 16
MIN_RECORD_SIZE = RECORD_HEADER_SIZE + IV_SIZE + AES_BLOCK_SIZE + TAG_SIZE  # 73
# The plaintext that still fits: the ciphertext is at most MAX_RECORD_SIZE - 57 bytes,
# a multiple of 16, and PKCS#7 always adds at least one byte.
MAX_PLAINTEXT_SIZE = (
    MAX_RECORD_SIZE - RECORD_HEADER_SIZE - IV_SIZE - TAG_SIZE
) // AES_BLOCK_SIZE * AES_BLOCK_SIZE - 1  # 1,048,511
# Sequence numbers are u64 on the wire, but a direction is retired after 2**32 records
# so that CBC/HMAC keys never see an unbounded amount of data.
MAX_RECORDS_PER_DIRECTION = 2**32

# Texts: the greeting announces max_text; the protocol caps it at 4,000 code points.
MAX_TEXT = 4000
MAX_ID_LENGTH = 64  # request ids are opaque client tokens, kept short
MAX_USERNAME_LENGTH = 150  # Django's AbstractUser.username
MAX_PASSWORD_LENGTH = 1024  # bounds hashing work; passwords of 64+ characters are allowed
# A one-time password: six digits, or a backup code (four groups of four, with dashes: 19).
MAX_OTP_LENGTH = 32
# Devices (PROTOCOL.md 3.4): the id the server gives and the name the client gives.
MAX_DEVICE_ID_LENGTH = 64
MAX_DEVICE_NAME_LENGTH = 64
# A device token is 43 characters; a longer one is still answered invalid_credentials, not
# bad_request, so that resume's failures look alike. This only bounds the work.
MAX_TOKEN_LENGTH = 256
MAX_ROOM_MEMBERS_AT_CREATION = 256  # create_room's members list
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 100  # more counts as 100
MAX_FILE_NAME_LENGTH = 255  # a file name on every common file system
MAX_CANCEL_REASON_LENGTH = 200
MAX_JSON_INTEGER = 2**63 - 1  # fits every database integer column
MAX_CHUNK_SIZE = 65_536  # bytes of file data per chunk record
TRANSFER_WINDOW = 16  # chunks sent and not yet acknowledged
TRANSFER_ID_SIZE = 16  # bytes; 32 hex digits in JSON
OFFER_TIMEOUT_SECONDS = 300.0  # an offer unanswered this long ends with ``expired``
MAX_OPEN_TRANSFERS = 8  # open transfers offered by one user; the 9th offer is rate_limited
# How long the relay remembers a transfer that ended, so that the chunks its sender still had in
# flight are dropped silently rather than counted as bad requests (at most a window of them).
# A full window is 1 MiB: about 8 s on a 1 Mbit/s uplink.
ENDED_TRANSFER_LINGER_SECONDS = 10.0
DEFAULT_MAX_FILE_SIZE = 4 * 2**30  # CHAT_MAX_FILE_SIZE's default: 4 GiB

# Sessions
KEY_DEADLINE_SECONDS = 10  # hello to key, else close 4000
LOGIN_DEADLINE_SECONDS = 60  # hello to login_ok, else close 4008
MAX_BAD_REQUESTS = 10  # the 10th bad_request/too_large error in a session closes it (4008)
MAX_LOGIN_FAILURES = 5  # the 5th failed login in a session is answered, then close 4001
