"""Agent passwords: scrypt (slow, salted, memory-hard), from the standard library."""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# n=2**14, r=8: about 16 MiB and tens of milliseconds per check, fine for logins.
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(
        _N, _R, _P, base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt_b64), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


@functools.lru_cache(maxsize=1)
def dummy_hash() -> str:
    """Checked against when the agent does not exist, so a wrong email costs as much as a wrong password."""
    return hash_password(secrets.token_hex(8))
