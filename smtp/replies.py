"""SMTP replies: formatting (server side) and parsing (client side).

RFC 5321 §4.2 (reply syntax: ``code SP text`` on the last line, ``code -
text`` on the others), RFC 2034 / RFC 3463 (enhanced status codes).

Enhanced status codes exist only for the classes 2, 4 and 5 (RFC 3463 §2),
so intermediate replies (334, 354) carry none; neither do the greeting and
the replies to HELO/EHLO (RFC 2034 §4).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a three-digit code, an RFC 3463 code (or None) and its text lines."""

    code: int
    esc: str | None
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    def encode(self, use_esc: bool) -> bytes:
        """The reply as it goes on the wire (RFC 5321 §4.2.1), CRLF after every line.  The same
        replies recur in every session (``250 2.1.0 Ok``, ``354``...): the recent encodings are
        kept (an LRU of 128), so those cost a lookup."""
        return _encode(self, use_esc)

    def _wire(self, use_esc: bool) -> bytes:
        prefix = f"{self.esc} " if (use_esc and self.esc and self.code // 100 in (2, 4, 5)) else ""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            out.append(f"{self.code}{sep}{prefix}{line}\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        return self.encode(True).decode("utf-8", "replace").rstrip("\r\n")


_encode = functools.lru_cache(maxsize=128)(Reply._wire)


def reply(code: int, esc: str | None, *lines: str) -> Reply:
    return Reply(code, esc, tuple(lines) or ("",))


class ReplyParseError(ValueError):
    """The peer sent something that is not an SMTP reply."""


class ReplyParser:
    """Incremental client-side reply parser (RFC 5321 §4.2.1).

    ``feed(bytes)`` then ``replies()`` returns complete replies as
    ``(code, [text lines])``; a partial reply stays buffered.  Lines longer
    than ``max_line`` or with inconsistent codes raise ReplyParseError.
    """

    def __init__(self, max_line: int = 4096):
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None
        self._max_line = max_line
        self._done: list[tuple[int, list[str]]] = []

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > self._max_line:
                    raise ReplyParseError("reply line too long")
                return
            raw = bytes(self._buf[:i]).rstrip(b"\r")
            del self._buf[: i + 1]
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        if len(text) < 3 or not text[:3].isdigit() or (len(text) > 3 and text[3] not in " -"):
            raise ReplyParseError(f"malformed reply line: {text[:80]!r}")
        code = int(text[:3])
        if self._code is not None and code != self._code:
            raise ReplyParseError(f"reply code changed inside a multi-line reply: {text[:80]!r}")
        self._code = code
        self._lines.append(text[4:])
        if len(text) == 3 or text[3] == " ":
            self._done.append((code, self._lines))
            self._code, self._lines = None, []

    def replies(self) -> list[tuple[int, list[str]]]:
        done, self._done = self._done, []
        return done
