"""Users file for SMTP AUTH (RFC 4954) with scrypt password hashes.

File format, one user per line (blank lines and ``#`` comments ignored)::

    alice:$scrypt$ln=14,r=8,p=1$<salt, base64>$<hash, base64>

``ln`` is log2 of the scrypt cost N.  Create or update entries with
:func:`set_user`, or from the command line (``netstack.cli.smtp_users``)::

    python -m netstack.cli.smtp_users add USERS_FILE alice            # asks for the password
    printf 'secret\\n' | python -m netstack.cli.smtp_users add USERS_FILE alice --password-stdin
    python -m netstack.cli.smtp_users check USERS_FILE alice          # exit 0 if the password matches

A malformed file raises UsersFileError with "path:line: reason" (the command
prints that one line and exits 2).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

DEFAULT_LN, DEFAULT_R, DEFAULT_P = 14, 8, 1
_HASH_LEN = 32
_ENTRY = re.compile(r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_USER = re.compile(r"^[^\s:#][^\s:]*$")


class UsersFileError(ValueError):
    """A users file that cannot be used; str() is "path:line: reason"."""


def hash_password(password: str, *, ln: int = DEFAULT_LN, r: int = DEFAULT_R, p: int = DEFAULT_P,
                  salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << ln, r=r, p=p,
                            maxmem=_maxmem(ln, r), dklen=_HASH_LEN)
    return f"$scrypt$ln={ln},r={r},p={p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _maxmem(ln: int, r: int) -> int:
    return 256 * r * (1 << ln) + 16 * 1024 * 1024


def verify_password(password: str, encoded: str) -> bool:
    m = _ENTRY.match(encoded)
    if not m:
        return False
    ln, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    salt, want = base64.b64decode(m.group(4)), base64.b64decode(m.group(5))
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << ln, r=r, p=p,
                         maxmem=_maxmem(ln, r), dklen=len(want))
    return hmac.compare_digest(got, want)


class Users:
    """The parsed users file. ``verify`` takes about as long for unknown users as for known ones."""

    def __init__(self, entries: dict[str, str] | None = None):
        self.entries = dict(entries or {})
        self._dummy = hash_password("x" * 16, ln=DEFAULT_LN)

    @classmethod
    def load(cls, path: str) -> "Users":
        entries: dict[str, str] = {}
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise UsersFileError(f"{path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsersFileError(f"{path}: not UTF-8 text") from exc
        for n, line in enumerate(lines, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            user, sep, encoded = s.partition(":")
            if not sep or not _USER.match(user):
                raise UsersFileError(f"{path}:{n}: expected user:$scrypt$... entry")
            m = _ENTRY.match(encoded)
            if not m:
                raise UsersFileError(f"{path}:{n}: malformed scrypt hash for user {user!r}")
            ln, r, p = (int(m.group(i)) for i in (1, 2, 3))
            if not (1 <= ln <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
                raise UsersFileError(f"{path}:{n}: scrypt parameters out of range for user {user!r}")
            if user in entries:
                raise UsersFileError(f"{path}:{n}: duplicate user {user!r}")
            entries[user] = encoded
        return cls(entries)

    def verify(self, user: str, password: str) -> bool:
        encoded = self.entries.get(user)
        if encoded is None:
            verify_password(password, self._dummy)   # same cost, no user enumeration by timing
            return False
        return verify_password(password, encoded)

    def __len__(self) -> int:
        return len(self.entries)


def set_user(path: str, user: str, password: str, **kw) -> None:
    """Add or replace ``user`` in the users file (created 0600 if missing)."""
    if not _USER.match(user):
        raise UsersFileError(f"{path}: bad user name {user!r}")
    lines: list[str] = []
    if os.path.exists(path):
        Users.load(path)   # refuse to rewrite a malformed file
        with open(path, encoding="utf-8") as f:
            lines = [ln for ln in f.read().splitlines() if ln.partition(":")[0].strip() != user]
    lines.append(f"{user}:{hash_password(password, **kw)}")
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
