"""The SMTP server session as a sans-I/O state machine.

Bytes and the current time go in; reply bytes, events and the next deadline
come out.  No socket, no clock, no sleep in here (the model is h11):

    s = SmtpSession(config, peer=("127.0.0.1", 40000), now=t)
    out = s.data_to_send()                  # the 220 greeting
    events = s.receive_data(chunk, now=t)   # may queue replies, return events
    s.poll(now=t)                           # fires the idle / DATA timeouts
    s.next_deadline()                       # when poll() must be called next

Events the driver must answer (the session stops consuming input until it
does, so pipelined input is never lost and replies stay in order):

* MessageReady(envelope)  -> ``delivered(queue_id)`` or ``delivery_failed()``
* AuthRequest(...)        -> ``auth_result(ok)``
* StartTlsRequest()       -> ``starttls_accepted()`` (220 queued, buffered plaintext
                             discarded) then ``tls_established(version, cipher)``;
                             or ``starttls_refused()`` (454)
* Close(reason)           -> flush ``data_to_send()`` and close the connection.

Protocol: RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 2920
(PIPELINING), RFC 2034/3463 (ENHANCEDSTATUSCODES), RFC 6531 (SMTPUTF8),
RFC 3030 (CHUNKING/BDAT), RFC 3207 (STARTTLS), RFC 4954 (AUTH; PLAIN RFC 4616,
LOGIN).

End of DATA and SMTP smuggling (RFC 5321 §2.3.8, §4.1.1.4, §4.5.2):
DATA ends only at <CRLF>.<CRLF>.  A bare LF or bare CR never ends a line, so
``\\n.\\n``, ``\\n.\\r\\n``, ``\\r.\\r\\n`` and ``\\r.\\r`` are message content.  With the
default ``bare_line_endings="keep"`` those bytes are delivered unchanged
inside the one message (so a smuggled "second transaction" is just text in
the first); with ``"reject"`` a message containing any bare CR or LF is
refused with ``550 5.5.2`` after its real end.  Either way exactly one
transaction results.  Dot-unstuffing applies only at the start of a
CRLF-delimited line.  Command lines also end only at CRLF; a command line
holding a bare CR or LF is answered 500 5.5.2.

Long lines inside DATA (RFC 5321 §4.5.3.1.6: a text line is at most 1000
octets with its CRLF): a message holding a longer line is read to its end and
refused with ``500 5.5.2`` (§4.5.3.1.10, "Line too long"), as an over-long
command line is.  From the first over-long line on, the rest of the message
is not kept (only the last 4 octets, to find CRLF.CRLF), so a 10 MB line
without a CRLF costs no more memory than one read.  ``max_data_line_length=0``
accepts any line length (the message is still bounded by SIZE).

Time defences against slow clients (each a ``SessionConfig`` field, 0 turns
it off), all answered ``421 4.4.2`` and the connection closed:

* ``idle_timeout``: waiting for the next command (RFC 5321 §4.5.3.2.7); only a
  completed command line restarts it, never a single byte;
* ``line_timeout``: a command line must be complete this long after its first
  byte arrived; each byte does not extend it;
* ``data_timeout``: the whole DATA phase (DATA..final dot, first BDAT..BDAT LAST);
* ``min_data_rate`` averaged over ``data_rate_window``: in DATA/BDAT, each
  window (counted from the DATA/first BDAT command) must bring at least
  ``min_data_rate * window`` octets of message;
* ``session_timeout``: the whole session, however busy.

Deadlines are checked both by ``poll`` and on every ``receive_data``, so a
client that keeps trickling bytes cannot hold them off.  While the session
waits for the driver (delivery, AUTH check, TLS) no deadline runs.

Error counting (RFC 5321 §4.5.3.1.8, §4.2.5): replies that are flow control
rather than client mistakes (452: too many recipients, insufficient storage)
do not count toward ``max_errors``; syntax errors, unknown commands and
out-of-order commands do.
"""
from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from enum import Enum

from .replies import Reply, reply

__all__ = [
    "SessionConfig", "SmtpSession", "Envelope", "MessageReady", "AuthRequest",
    "StartTlsRequest", "Close", "State", "parse_path", "AddressError",
]


# --------------------------------------------------------------------------- config


@dataclass
class SessionConfig:
    """Limits and policy for one server (shared by all its sessions)."""

    hostname: str = "localhost"
    #: domains (and address literals such as "[198.18.0.2]") we accept mail for
    local_domains: tuple[str, ...] = ("localhost", "example.test")
    max_message_size: int = 32 * 1024 * 1024
    max_recipients: int = 100
    max_errors: int = 10
    idle_timeout: float = 300.0
    #: the whole DATA phase (DATA..final dot, or first BDAT..BDAT LAST)
    data_timeout: float = 600.0
    max_line_length: int = 512          # RFC 5321 §4.5.3.1.4, CRLF included
    #: a text line in DATA, CRLF included (RFC 5321 §4.5.3.1.6); 0: any length
    max_data_line_length: int = 1000
    #: a command line must be complete this many seconds after its first byte (0: off)
    line_timeout: float = 60.0
    #: in DATA/BDAT, at least this many octets per second (0: off) ...
    min_data_rate: float = 1024.0
    #: ... averaged over windows this long (seconds)
    data_rate_window: float = 30.0
    #: the whole session, from the greeting (0: off)
    session_timeout: float = 3600.0
    max_auth_line_length: int = 12288   # RFC 4954 §4
    tls_available: bool = False
    auth_available: bool = False
    #: "keep" bare CR/LF as content, or "reject" such a message with 550 5.5.2
    bare_line_endings: str = "keep"
    #: known local parts (case-folded); None accepts any local part at a local domain
    recipients: frozenset[str] | None = None
    software: str = "netstack"

    def is_local_domain(self, domain: str) -> bool:
        d = domain.casefold().rstrip(".")
        return any(d == x.casefold().rstrip(".") for x in self.local_domains)


# --------------------------------------------------------------------------- events


@dataclass
class Envelope:
    """One accepted transaction, handed to delivery (RFC 5321 §2.3.1)."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    helo: str
    esmtp: bool
    peer: tuple
    tls: tuple[str, str] | None = None      # (version, cipher)
    auth_user: str | None = None
    body: str = "7BIT"
    smtputf8: bool = False
    declared_size: int | None = None
    chunking: bool = False

    @property
    def protocol(self) -> str:
        """The Received "with" keyword (RFC 3848, RFC 6531 §3.7.3)."""
        if self.smtputf8:
            base = "UTF8SMTP"
        else:
            base = "ESMTP" if self.esmtp else "SMTP"
        if base == "SMTP":
            return base
        return base + ("S" if self.tls else "") + ("A" if self.auth_user else "")


@dataclass
class MessageReady:
    envelope: Envelope


@dataclass
class AuthRequest:
    mechanism: str
    authzid: str
    username: str
    password: str


@dataclass
class StartTlsRequest:
    pass


@dataclass
class Close:
    reason: str


class State(Enum):
    COMMAND = "command"
    DATA = "data"
    BDAT = "bdat"
    AUTH = "auth"
    WAIT = "wait"          # waiting for the driver (delivery, auth check, TLS)
    CLOSED = "closed"


# --------------------------------------------------------------------------- addresses


class AddressError(ValueError):
    pass


_ATEXT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


def _is_atext(ch: str, utf8: bool) -> bool:
    return ch in _ATEXT or (utf8 and ord(ch) > 127)


def _check_dot_string(s: str) -> None:
    if not s or s.startswith(".") or s.endswith(".") or ".." in s:
        raise AddressError("bad local part")
    for ch in s:
        if ch != "." and not _is_atext(ch, True):
            raise AddressError("bad character in local part")


_LABEL = re.compile(r"^(?:[A-Za-z0-9]|[^\x00-\x7f])(?:[A-Za-z0-9-]|[^\x00-\x7f])*$")


def _check_domain(d: str) -> None:
    if d.startswith("["):
        if not d.endswith("]") or len(d) < 3:
            raise AddressError("bad address literal")
        inner = d[1:-1]
        if inner.lower().startswith("ipv6:"):
            if not re.fullmatch(r"[0-9A-Fa-f:.]+", inner[5:]):
                raise AddressError("bad IPv6 literal")
            return
        parts = inner.split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
            raise AddressError("bad IPv4 literal")
        return
    if len(d.encode("utf-8")) > 255:
        raise AddressError("domain too long")
    labels = d.split(".")
    for lab in labels:
        if not lab or len(lab) > 63 or not _LABEL.match(lab) or lab.endswith("-"):
            raise AddressError("bad domain")


def parse_path(text: str, *, allow_null: bool) -> tuple[str, str]:
    """Parse ``<path>`` at the start of ``text`` (RFC 5321 §4.1.2).

    Returns (address, rest of the line).  The address is "" for the null path
    ``<>``; a source route (``<@a,@b:user@c>``) is dropped (RFC 5321 §4.1.1.3).
    "postmaster" without a domain is allowed (§4.1.1.3).
    """
    if not text.startswith("<"):
        raise AddressError("path must be enclosed in <>")
    i, n, quoted = 1, len(text), False
    while i < n:
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ">":
            break
        i += 1
    else:
        raise AddressError("missing >")
    inner, rest = text[1:i], text[i + 1:]
    if rest and not rest.startswith(" "):
        raise AddressError("junk after path")
    if len(inner.encode("utf-8")) > 256:
        raise AddressError("path too long")
    if inner.startswith("@"):
        colon = inner.find(":")
        if colon < 0:
            raise AddressError("bad source route")
        inner = inner[colon + 1:]
    if inner == "":
        if not allow_null:
            raise AddressError("null path not allowed here")
        return "", rest.strip()
    if inner.casefold() == "postmaster":
        return inner, rest.strip()
    at = inner.rfind("@")
    if at <= 0:
        raise AddressError("address needs local-part@domain")
    local, domain = inner[:at], inner[at + 1:]
    if local.startswith('"'):
        if len(local) < 2 or not local.endswith('"'):
            raise AddressError("bad quoted local part")
        body = local[1:-1]
        j = 0
        while j < len(body):
            c = body[j]
            if c == "\\":
                j += 1
                if j >= len(body):
                    raise AddressError("bad quoted pair")
            elif c == '"' or ord(c) < 32 or ord(c) == 127:
                raise AddressError("bad quoted local part")
            j += 1
    else:
        _check_dot_string(local)
    if len(local.encode("utf-8")) > 64:
        raise AddressError("local part too long")
    _check_domain(domain)
    return inner, rest.strip()


#: recurring paths (the same senders and recipients, message after message) parse once; a
#: path that fails raises AddressError every time (exceptions are not cached)
_parse_path_cached = functools.lru_cache(maxsize=1024)(lambda text, allow_null: parse_path(text, allow_null=allow_null))


def split_address(address: str) -> tuple[str, str]:
    """(local part with quotes removed, domain); ("postmaster", "") for bare postmaster."""
    at = address.rfind("@")
    if at < 0:
        return address, ""
    local, domain = address[:at], address[at + 1:]
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return local, domain


def _parse_params(text: str) -> dict[str, str | None]:
    """ESMTP parameters ``KEY[=VALUE]`` (RFC 5321 §4.1.2 Mail-parameters)."""
    params: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not key or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", key):
            raise ValueError(f"bad parameter {word!r}")
        k = key.upper()
        if k in params:
            raise ValueError(f"duplicate parameter {k}")
        params[k] = value if eq else None
    return params


# --------------------------------------------------------------------------- the session

_CRLF = b"\r\n"
_END_OF_DATA = b"\r\n.\r\n"


def _wire(r: Reply) -> tuple[bytes, bytes]:
    """A fixed reply's wire forms, indexed by whether enhanced status codes are on."""
    return (r.encode(False), r.encode(True))


#: a character an EHLO/HELO name may not hold: controls, space, DEL
_BAD_HELO = re.compile(r"[\x00-\x20\x7f]")

_OK = _wire(reply(250, "2.0.0", "Ok"))
_MAIL_OK = _wire(reply(250, "2.1.0", "Ok"))
_RCPT_OK = _wire(reply(250, "2.1.5", "Ok"))
_DATA_GO = _wire(reply(354, None, "End data with <CR><LF>.<CR><LF>"))


class SmtpSession:
    """One SMTP server conversation (RFC 5321 §4), sans-I/O."""

    def __init__(self, config: SessionConfig, *, peer=("unknown", 0), now: float = 0.0,
                 tls: tuple[str, str] | None = None):
        self.config = config
        self.peer = peer
        self.state = State.COMMAND
        self.tls = tls                       # (version, cipher) once TLS is up
        self.errors = 0
        self._out: list[bytes] = []
        self._buf = bytearray()
        self._discarding = False             # inside an over-long command line
        self._wait_kind: str | None = None
        self._pending = None
        self._idle_deadline = now + config.idle_timeout if config.idle_timeout > 0 else None
        self._line_deadline: float | None = None
        self._session_deadline = now + config.session_timeout if config.session_timeout > 0 else None
        self._data_deadline: float | None = None
        self._progress_at = now
        self._shutting_down = False
        self._reset_session()
        self._send(reply(220, None, f"{config.hostname} ESMTP {config.software} ready"))

    # ----------------------------------------------------------------- public API

    def data_to_send(self) -> bytes:
        """Reply bytes queued so far (empties the queue)."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def waiting(self) -> str | None:
        """What the driver must answer before input is consumed again, or None."""
        return self._wait_kind

    def receive_data(self, data: bytes, now: float) -> list:
        """Feed received bytes; returns the events that resulted."""
        if self.state is State.CLOSED:
            return []
        events = self.poll(now)          # a trickling client must not hold off a passed deadline
        if self.state is State.CLOSED:
            return events
        if data:
            if self.state is State.DATA or self.state is State.BDAT:
                self._touch_idle(now)
            self._buf += data
        return events + self._process(now)

    def connection_lost(self) -> None:
        """The peer went away; an unfinished transaction is dropped (nothing delivered)."""
        self.state = State.CLOSED
        self._buf.clear()
        self._data = None

    def next_deadline(self) -> float | None:
        """The instant ``poll`` must run, or None (closed, or waiting for the driver)."""
        if self.state in (State.CLOSED, State.WAIT):
            return None
        best = None
        for d in (self._idle_deadline, self._line_deadline, self._session_deadline, self._data_deadline,
                  self._rate_deadline):
            if d is not None and (best is None or d < best):
                best = d
        return best

    @property
    def stalled_since(self) -> float | None:
        """When the client last made progress (a complete command line, the session's start, a
        message phase keeping up with ``min_data_rate``); None while the session waits for the
        driver or is closed.  A server that is full sheds the longest-stalled session first."""
        if self.state in (State.CLOSED, State.WAIT):
            return None
        return self._progress_at

    def poll(self, now: float) -> list:
        """Fire due deadlines, each with 421 4.4.2 and Close: the session, the DATA phase, the
        minimum data rate, the command line, idle (see the module doc)."""
        if self.state in (State.CLOSED, State.WAIT):
            return []
        host = self.config.hostname
        if self._session_deadline is not None and now >= self._session_deadline:
            return self._close(reply(421, "4.4.2", f"{host} Error: session time limit exceeded"), "session timeout")
        if self._data_deadline is not None and now >= self._data_deadline:
            return self._close(reply(421, "4.4.2", f"{host} Error: timeout exceeded during data transfer"),
                               "data timeout")
        if self._rate_deadline is not None and now >= self._rate_deadline:
            cfg = self.config
            if self._rate_bytes < cfg.min_data_rate * (now - self._rate_from):
                return self._close(reply(421, "4.4.2", f"{host} Error: minimum data rate not met "
                                                       f"({cfg.min_data_rate:g} octets/s)"), "data rate")
            self._rate_from, self._rate_bytes = now, 0
            self._rate_deadline = now + cfg.data_rate_window
        if self._line_deadline is not None and now >= self._line_deadline:
            return self._close(reply(421, "4.4.2", f"{host} Error: command line not completed in time"),
                               "line timeout")
        if self._idle_deadline is not None and now >= self._idle_deadline:
            return self._close(reply(421, "4.4.2", f"{host} Error: timeout exceeded"), "idle timeout")
        return []

    def shed(self, now: float) -> list:
        """The server is full and gives this session's slot to a newcomer: 421 4.3.2 and Close
        (RFC 5321 §3.8: a server may close with 421 when it must)."""
        if self.state is State.CLOSED:
            return []
        return self._close(reply(421, "4.3.2", f"{self.config.hostname} Error: server busy, closing a stalled "
                                               "session"), "shed")

    def begin_shutdown(self, now: float) -> list:
        """The server is shutting down.  Between transactions: 421 4.3.2 and Close at once
        (RFC 5321 §3.8).  Inside one (DATA or BDAT under way, or waiting for the driver): the
        transaction may finish, and every later command but QUIT is answered 421 4.3.2 and closes."""
        if self.state is State.CLOSED:
            return []
        self._shutting_down = True
        in_transaction = (self.state in (State.DATA, State.BDAT, State.WAIT)
                          or (self.state is State.COMMAND and self._bdat_used))
        if in_transaction:
            return []
        return self._close(self._shutdown_reply(), "shutdown")

    def _shutdown_reply(self) -> Reply:
        return reply(421, "4.3.2", f"{self.config.hostname} Service shutting down, closing the connection")

    # driver answers ----------------------------------------------------------

    def delivered(self, queue_id: str, now: float) -> list:
        """Every recipient's copy is durable: 250 with the queue id."""
        self._end_wait("deliver", now)
        self._send(reply(250, "2.0.0", f"Ok: queued as {queue_id}"))
        return self._process(now)

    def delivery_failed(self, now: float, failure: Reply | None = None) -> list:
        """Delivery did not happen: 451 4.3.0 unless the driver gives another reply (e.g. 452 4.3.1
        for a full disk).  Never counted as a client error."""
        self._end_wait("deliver", now)
        self._send(failure or reply(451, "4.3.0", "Error: local delivery failed, try again later"))
        return self._process(now)

    def auth_result(self, ok: bool, now: float, username: str | None = None) -> list:
        """RFC 4954 §6: 235 2.7.0 or 535 5.7.8."""
        req = self._end_wait("auth", now)
        if ok:
            self.auth_user = username or req
            self._send(reply(235, "2.7.0", "Authentication successful"))
        else:
            self._error(reply(535, "5.7.8", "Error: authentication failed"))
        return self._process(now)

    def starttls_accepted(self, now: float) -> list:
        """Queue 220 and drop plaintext pipelined after STARTTLS (RFC 3207 §4.2)."""
        self._end_wait("starttls", now)
        self._send(reply(220, "2.0.0", "Ready to start TLS"))
        self._buf.clear()
        self._wait("handshake")
        return []

    def starttls_refused(self, now: float) -> list:
        self._end_wait("starttls", now)
        self._send(reply(454, "4.7.0", "TLS not available due to temporary reason"))
        return self._process(now)

    def tls_established(self, version: str, cipher: str, now: float) -> list:
        """RFC 3207 §4.2: forget everything learned before TLS, EHLO name included."""
        self._end_wait("handshake", now)
        self.tls = (version, cipher)
        self._reset_session()
        self._buf.clear()
        return self._process(now)

    # ----------------------------------------------------------------- internals

    def _reset_session(self) -> None:
        self.helo: str | None = None
        self.esmtp = False
        self._esc = False
        self.auth_user: str | None = None
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        self.mail_from: str | None = None
        self.rcpt_tos: list[str] = []
        self._mail_params: dict = {}
        self._data: bytearray | None = None
        self._too_big = False
        self._bdat_used = False
        self._bdat_failed = False
        self._data_deadline = None
        self._rate_deadline: float | None = None
        self._rate_from = 0.0
        self._rate_bytes = 0
        self._refusal: Reply | None = None      # DATA: the reply for the final dot, once known

    def _touch_idle(self, now: float) -> None:
        if self.config.idle_timeout > 0:
            self._idle_deadline = now + self.config.idle_timeout

    def _start_message_phase(self, now: float) -> None:
        """DATA or the first BDAT: the phase deadline and the first data-rate window."""
        cfg = self.config
        self._data_deadline = now + cfg.data_timeout if cfg.data_timeout > 0 else None
        if cfg.min_data_rate > 0 and cfg.data_rate_window > 0:
            self._rate_from, self._rate_bytes = now, 0
            self._rate_deadline = now + cfg.data_rate_window

    def _message_bytes(self, n: int, now: float) -> None:
        """``n`` octets of message arrived: count them for the rate; progress if it keeps up."""
        self._rate_bytes += n
        rate = self.config.min_data_rate
        if self._rate_deadline is None or rate <= 0 or self._rate_bytes >= rate * (now - self._rate_from):
            self._progress_at = now

    def _send(self, r: Reply) -> None:
        self._out.append(r.encode(self._esc))

    def _error(self, r: Reply) -> list:
        """Queue an error reply; too many of them end the session with 421 4.7.0.  A 452
        (too many recipients, insufficient storage) is flow control and is not counted."""
        self._send(r)
        if r.code == 452:               # flow control (RFC 5321 §4.5.3.1.8), not a client mistake
            return []
        self.errors += 1
        if self.errors >= self.config.max_errors:
            return self._close(reply(421, "4.7.0", f"{self.config.hostname} Error: too many errors"), "too many errors")
        return []

    def _close(self, r: Reply, reason: str) -> list:
        self._send(r)
        self.state = State.CLOSED
        self._buf.clear()
        self._data = None
        return [Close(reason)]

    def _wait(self, kind: str) -> None:
        self.state = State.WAIT
        self._wait_kind = kind

    def _end_wait(self, kind: str, now: float):
        if self._wait_kind != kind:
            raise RuntimeError(f"session is not waiting for {kind} (waiting for {self._wait_kind})")
        self._wait_kind = None
        self.state = State.COMMAND
        # time spent waiting for us is not the client's: its clocks restart now
        self._touch_idle(now)
        self._line_deadline = None
        self._progress_at = now
        req, self._pending = getattr(self, "_pending", None), None
        return req

    def _process(self, now: float) -> list:
        events: list = []
        while True:
            st = self.state
            if st is State.COMMAND or st is State.AUTH:
                line = self._take_line()
                if line is None:
                    break
                self._line_deadline = None
                self._touch_idle(now)
                self._progress_at = now
                if st is State.AUTH:
                    events += self._auth_line(line)
                else:
                    events += self._command(line, now)
            elif st is State.DATA:
                if not self._consume_data(events, now):
                    break
            elif st is State.BDAT:
                if not self._consume_bdat(events, now):
                    break
            else:   # WAIT or CLOSED
                break
        st = self.state
        if st is State.COMMAND or st is State.AUTH:
            if not (self._buf or self._discarding):
                self._line_deadline = None
            elif self._line_deadline is None and self.config.line_timeout > 0:
                self._line_deadline = now + self.config.line_timeout     # a command line has begun
        return events

    def _take_line(self) -> bytes | None:
        """Next CRLF-terminated line without the CRLF, or None. Handles over-long lines."""
        limit = self.config.max_auth_line_length if self.state is State.AUTH else self.config.max_line_length
        buf = self._buf
        i = buf.find(_CRLF)
        if self._discarding:
            if i < 0:
                keep = 1 if buf.endswith(b"\r") else 0
                del buf[: len(buf) - keep]
                return None
            del buf[: i + 2]
            self._discarding = False
            return b"\x00too-long"   # sentinel: reply 500 for the whole line now
        if i < 0:
            if len(buf) > limit:
                self._discarding = True
                keep = 1 if buf.endswith(b"\r") else 0
                del buf[: len(buf) - keep]
            return None
        line = bytes(buf[:i])
        del buf[: i + 2]
        if i + 2 > limit:
            return b"\x00too-long"
        return line

    # ----------------------------------------------------------------- commands

    def _command(self, raw: bytes, now: float) -> list:
        if self._shutting_down and not (raw[:4].upper() == b"QUIT" and not raw[4:].strip()) \
                and not (self._bdat_used and raw[:4].upper() == b"BDAT"):
            return self._close(self._shutdown_reply(), "shutdown")
        if raw == b"\x00too-long":
            return self._error(reply(500, "5.5.2", "Error: line too long"))
        if b"\r" in raw or b"\n" in raw:
            return self._error(reply(500, "5.5.2", "Error: bare CR or LF in command line"))
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._error(reply(500, "5.5.2", "Error: command line is not valid UTF-8"))
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        handler = _COMMANDS.get(verb)
        if handler is None or not verb.isascii():
            return self._error(reply(500, "5.5.2", "Error: command not recognized"))
        return handler(self, arg, now)

    def _cmd_ehlo(self, arg: str, now: float, esmtp: bool = True) -> list:
        name = arg.strip()
        verb = "EHLO" if esmtp else "HELO"
        if not name or _BAD_HELO.search(name):
            return self._error(reply(501, "5.5.4", f"Syntax: {verb} hostname"))
        self._reset_transaction()
        self.helo = name
        self.esmtp = esmtp
        self._esc = False   # not applied to the EHLO reply itself (RFC 2034 §4)
        greet = f"{self.config.hostname} Hello {name} [{self.peer[0]}]"
        if not esmtp:
            self._send(reply(250, None, greet))
            return []
        lines = [greet, f"SIZE {self.config.max_message_size}", "8BITMIME", "PIPELINING",
                 "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"]
        if self.config.tls_available and self.tls is None:
            lines.append("STARTTLS")
        if self.config.auth_available and self.tls is not None:
            lines.append("AUTH PLAIN LOGIN")
        lines.append("HELP")
        self._send(reply(250, None, *lines))
        self._esc = True
        return []

    def _cmd_helo(self, arg: str, now: float) -> list:
        return self._cmd_ehlo(arg, now, esmtp=False)

    def _cmd_mail(self, arg: str, now: float) -> list:
        if self.helo is None:
            return self._error(reply(503, "5.5.1", "Error: send HELO/EHLO first"))
        if self.mail_from is not None:
            return self._error(reply(503, "5.5.1", "Error: nested MAIL command"))
        if not arg[:5].upper() == "FROM:":
            return self._error(reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        try:
            address, rest = _parse_path_cached(arg[5:].lstrip(" "), True)
        except AddressError as exc:
            return self._error(reply(501, "5.1.7", f"Bad sender address syntax: {exc}"))
        try:
            params = _parse_params(rest)
        except ValueError as exc:
            return self._error(reply(501, "5.5.4", f"Syntax error in parameters: {exc}"))
        if params and not self.esmtp:
            return self._error(reply(555, "5.5.4", "MAIL parameters need EHLO"))
        declared = None
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    return self._error(reply(501, "5.5.4", "Bad SIZE parameter"))
                declared = int(value)
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    return self._error(reply(501, "5.5.4", "Unsupported BODY type"))
            elif key == "SMTPUTF8":
                if value is not None:
                    return self._error(reply(501, "5.5.4", "SMTPUTF8 takes no value"))
            elif key == "AUTH" and self.config.auth_available:
                pass   # RFC 4954 §5: accepted, not trusted (we never relay)
            else:
                return self._error(reply(555, "5.5.4", f"Unsupported parameter {key}"))
        if not address.isascii() and "SMTPUTF8" not in params:
            return self._error(reply(553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8"))
        if declared is not None and declared > self.config.max_message_size:
            return self._error(reply(552, "5.3.4", "Message size exceeds fixed maximum message size"))
        self.mail_from = address
        self._mail_params = params
        self._out.append(_MAIL_OK[self._esc])
        return []

    def _cmd_rcpt(self, arg: str, now: float) -> list:
        if self.mail_from is None:
            return self._error(reply(503, "5.5.1", "Error: need MAIL command"))
        if not arg[:3].upper() == "TO:":
            return self._error(reply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
        try:
            address, rest = _parse_path_cached(arg[3:].lstrip(" "), False)
        except AddressError as exc:
            return self._error(reply(501, "5.1.3", f"Bad recipient address syntax: {exc}"))
        if rest:
            try:
                params = _parse_params(rest)
            except ValueError as exc:
                return self._error(reply(501, "5.5.4", f"Syntax error in parameters: {exc}"))
            return self._error(reply(555, "5.5.4", f"Unsupported parameter {next(iter(params))}"))
        if not address.isascii() and "SMTPUTF8" not in self._mail_params:
            return self._error(reply(553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8"))
        if len(self.rcpt_tos) >= self.config.max_recipients:
            return self._error(reply(452, "4.5.3", "Error: too many recipients"))
        local, domain = split_address(address)
        is_postmaster = local.casefold() == "postmaster"
        if domain == "" and is_postmaster:
            pass   # RFC 5321 §4.5.1: <Postmaster> without a domain is always accepted
        elif not self.config.is_local_domain(domain):
            return self._error(reply(550, "5.7.1", f"<{address}>: Relay access denied"))
        elif (self.config.recipients is not None and not is_postmaster
              and local.casefold() not in self.config.recipients):
            return self._error(reply(550, "5.1.1", f"<{address}>: Recipient address rejected: user unknown"))
        self.rcpt_tos.append(address)
        self._out.append(_RCPT_OK[self._esc])
        return []

    def _cmd_data(self, arg: str, now: float) -> list:
        if arg.strip():
            return self._error(reply(501, "5.5.4", "Syntax: DATA"))
        if self.mail_from is None:
            return self._error(reply(503, "5.5.1", "Error: need MAIL command"))
        if self._bdat_used:
            return self._error(reply(503, "5.5.1", "Error: DATA cannot be mixed with BDAT"))
        if not self.rcpt_tos:
            return self._error(reply(503, "5.5.1", "Error: need RCPT command"))
        self.state = State.DATA
        self._data = bytearray(_CRLF)   # the CRLF that ended "DATA": ".\r\n" at once is an empty message
        self._scan_from = 0
        self._too_big = False
        self._line_start = 2
        self._start_message_phase(now)
        self._out.append(_DATA_GO[self._esc])
        return []

    def _consume_data(self, events: list, now: float) -> bool:
        """Move input into the message until CRLF.CRLF (RFC 5321 §4.1.1.4). True when done.

        Once the message is known to fail (over SIZE, RFC 1870; a line over
        ``max_data_line_length``, RFC 5321 §4.5.3.1.6) only its last 4 octets are
        kept, to find the end: memory stays bounded whatever the client sends."""
        data = self._data
        self._message_bytes(len(self._buf), now)
        data += self._buf
        self._buf.clear()
        end = data.find(_END_OF_DATA, self._scan_from)
        if self._refusal is None:
            self._check_data_lines(data, len(data) if end < 0 else end + 2)
        if end < 0:
            limit = self.config.max_message_size + 2
            if self._refusal is None and len(data) > limit:
                self._refusal = reply(552, "5.3.4", "Error: message size exceeds fixed maximum message size")
            if self._refusal is not None:
                # refused: keep reading to the end, but keep only the tail
                del data[: max(0, len(data) - 4)]
            self._scan_from = max(0, len(data) - 4)
            return False
        # the input after the terminator goes back to the command buffer
        self._buf += memoryview(data)[end + 5:]
        del data[end + 2:]
        self.state = State.COMMAND
        if self._refusal is None and len(data) - 2 > self.config.max_message_size:
            self._refusal = reply(552, "5.3.4", "Error: message size exceeds fixed maximum message size")
        if self._refusal is not None:
            self._send_transaction_failure(self._refusal)
            return True
        if self.config.bare_line_endings == "reject" and _has_bare_cr_or_lf(data):
            self._send_transaction_failure(reply(550, "5.5.2", "Error: bare CR or LF in message; lines must end with CRLF"))
            return True
        content = bytes(data).replace(b"\r\n.", b"\r\n")[2:]   # dot-unstuffing (RFC 5321 §4.5.2)
        events.append(self._message_ready(content))
        return True

    def _check_data_lines(self, data: bytearray, stop: int) -> None:
        """RFC 5321 §4.5.3.1.6: every CRLF-delimited line in ``data[line_start:stop]`` (the
        last one possibly still partial) is at most ``max_data_line_length`` octets with
        its CRLF; refuse the message (500 5.5.2, §4.5.3.1.10) at the first that is not."""
        limit = self.config.max_data_line_length
        if limit <= 0:
            return
        start = self._line_start
        if stop <= start:
            return
        lines = bytes(memoryview(data)[start:stop]).split(_CRLF)
        partial = lines.pop()
        longest = max(map(len, lines)) if lines else 0
        plen = len(partial) - (1 if partial.endswith(b"\r") else 0)      # a CR whose LF is still to come
        if longest + 2 > limit or plen + 2 > limit:
            self._refusal = reply(500, "5.5.2", f"Error: line too long in message (at most {limit} octets "
                                                "with CRLF, RFC 5321 4.5.3.1.6)")
            return
        self._line_start = stop - len(partial)

    def _send_transaction_failure(self, r: Reply) -> None:
        self._reset_transaction()
        self._error(r)

    def _message_ready(self, content: bytes) -> MessageReady:
        declared = self._mail_params.get("SIZE")
        env = Envelope(
            mail_from=self.mail_from or "", rcpt_tos=list(self.rcpt_tos), content=content,
            helo=self.helo or "", esmtp=self.esmtp, peer=self.peer, tls=self.tls,
            auth_user=self.auth_user, body=(self._mail_params.get("BODY") or "7BIT").upper(),
            smtputf8="SMTPUTF8" in self._mail_params,
            declared_size=int(declared) if declared else None, chunking=self._bdat_used,
        )
        self._reset_transaction()
        self._wait("deliver")
        return MessageReady(env)

    _BDAT_RE = re.compile(r"^([0-9]{1,18})(?: +(LAST))? *$", re.IGNORECASE)

    def _cmd_bdat(self, arg: str, now: float) -> list:
        """RFC 3030 §2: exactly ``size`` octets follow; they are consumed even if refused."""
        m = self._BDAT_RE.match(arg)
        if not m:
            return self._error(reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
        self._bdat_remaining = int(m.group(1))
        self._bdat_last = m.group(2) is not None
        self._bdat_refusal: Reply | None = None
        if self.mail_from is None:
            self._bdat_refusal = reply(503, "5.5.1", "Error: need MAIL command")
        elif not self.rcpt_tos:
            self._bdat_refusal = reply(503, "5.5.1", "Error: need RCPT command")
        elif not self._bdat_used:
            self._bdat_used = True
            self._data = bytearray()
            self._too_big = False
            self._start_message_phase(now)
        self.state = State.BDAT
        return []

    def _consume_bdat(self, events: list, now: float) -> bool:
        n = min(self._bdat_remaining, len(self._buf))
        if n:
            self._message_bytes(n, now)
            if self._bdat_refusal is None and not self._too_big:
                if len(self._data) + n > self.config.max_message_size:
                    self._too_big = True
                    self._data = bytearray()
                else:
                    self._data += memoryview(self._buf)[:n]
            del self._buf[:n]
            self._bdat_remaining -= n
        if self._bdat_remaining:
            return False
        self.state = State.COMMAND
        if self._bdat_refusal is not None:
            events += self._error(self._bdat_refusal)
            return True
        if self._too_big:
            # RFC 3030 §3: a failed chunk fails the transaction; later chunks get 503
            self._send_transaction_failure(reply(552, "5.3.4", "Error: message size exceeds fixed maximum message size"))
            return True
        if self._bdat_last:
            events.append(self._message_ready(bytes(self._data)))
        else:
            self._send(reply(250, "2.0.0", f"{len(self._data)} octets received"))
        return True

    def _cmd_rset(self, arg: str, now: float) -> list:
        if arg.strip():
            return self._error(reply(501, "5.5.4", "Syntax: RSET"))
        self._reset_transaction()
        self._out.append(_OK[self._esc])
        return []

    def _cmd_noop(self, arg: str, now: float) -> list:
        self._out.append(_OK[self._esc])
        return []

    def _cmd_quit(self, arg: str, now: float) -> list:
        if arg.strip():
            return self._error(reply(501, "5.5.4", "Syntax: QUIT"))
        return self._close(reply(221, "2.0.0", f"{self.config.hostname} Bye"), "quit")

    def _cmd_vrfy(self, arg: str, now: float) -> list:
        if not arg.strip():
            return self._error(reply(501, "5.5.4", "Syntax: VRFY address"))
        self._send(reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"))
        return []

    def _cmd_expn(self, arg: str, now: float) -> list:
        return self._error(reply(502, "5.5.1", "Error: EXPN not implemented"))

    def _cmd_help(self, arg: str, now: float) -> list:
        self._send(reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
                         "See RFC 5321"))
        return []

    def _cmd_starttls(self, arg: str, now: float) -> list:
        """RFC 3207 §4."""
        if not self.config.tls_available:
            return self._error(reply(502, "5.5.1", "Error: command not implemented"))
        if self.tls is not None:
            return self._error(reply(503, "5.5.1", "Error: TLS already active"))
        if arg.strip():
            return self._error(reply(501, "5.5.4", "Syntax: STARTTLS"))
        if self.helo is None or not self.esmtp:
            return self._error(reply(503, "5.5.1", "Error: send EHLO first"))
        if self.mail_from is not None:
            return self._error(reply(503, "5.5.1", "Error: MAIL transaction in progress"))
        self._wait("starttls")
        return [StartTlsRequest()]

    def _cmd_auth(self, arg: str, now: float) -> list:
        """RFC 4954 §4 with PLAIN (RFC 4616) and LOGIN, only under TLS."""
        if not self.config.auth_available:
            return self._error(reply(502, "5.5.1", "Error: authentication not enabled"))
        if self.helo is None or not self.esmtp:
            return self._error(reply(503, "5.5.1", "Error: send EHLO first"))
        if self.tls is None:
            return self._error(reply(538, "5.7.11", "Encryption required for requested authentication mechanism"))
        if self.auth_user is not None:
            return self._error(reply(503, "5.5.1", "Error: already authenticated"))
        if self.mail_from is not None:
            return self._error(reply(503, "5.5.1", "Error: MAIL transaction in progress"))
        parts = arg.split()
        if not parts or len(parts) > 2:
            return self._error(reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"))
        mech = parts[0].upper()
        initial = parts[1] if len(parts) == 2 else None
        if mech == "PLAIN":
            self._auth_mech, self._auth_step = "PLAIN", 0
            if initial is None:
                self.state = State.AUTH
                self._send(reply(334, None, ""))
                return []
            return self._auth_response(initial)
        if mech == "LOGIN":
            self._auth_mech, self._auth_step = "LOGIN", 0
            self.state = State.AUTH
            if initial is None:
                self._send(reply(334, None, "VXNlcm5hbWU6"))   # "Username:"
                return []
            self.state = State.COMMAND
            return self._auth_response(initial)
        return self._error(reply(504, "5.5.4", "Error: unsupported authentication mechanism"))

    def _auth_line(self, raw: bytes) -> list:
        self.state = State.COMMAND
        if raw == b"\x00too-long":
            return self._error(reply(500, "5.5.6", "Error: authentication line too long"))
        return self._auth_response(raw.decode("ascii", "replace"))

    def _auth_response(self, text: str) -> list:
        if text.strip() == "*":
            return self._error(reply(501, "5.7.0", "Authentication aborted"))
        try:
            decoded = base64.b64decode(text.strip(), validate=True) if text.strip() != "=" else b""
            value = decoded.decode("utf-8")
        except (binascii.Error, ValueError):
            return self._error(reply(501, "5.5.2", "Error: cannot decode response"))
        if self._auth_mech == "PLAIN":
            fields = value.split("\x00")
            if len(fields) != 3 or not fields[1]:
                return self._error(reply(501, "5.5.2", "Error: malformed PLAIN response"))
            return self._auth_request("PLAIN", fields[0], fields[1], fields[2])
        # LOGIN
        if self._auth_step == 0:
            self._auth_login_user = value
            self._auth_step = 1
            self.state = State.AUTH
            self._send(reply(334, None, "UGFzc3dvcmQ6"))       # "Password:"
            return []
        return self._auth_request("LOGIN", "", self._auth_login_user, value)

    def _auth_request(self, mech: str, authzid: str, user: str, password: str) -> list:
        if authzid and authzid != user:
            return self._error(reply(535, "5.7.8", "Error: authentication failed (no proxy authorization)"))
        self._wait("auth")
        self._pending = user
        return [AuthRequest(mech, authzid, user, password)]


def _has_bare_cr_or_lf(data: bytes | bytearray) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


_COMMANDS = {
    "EHLO": SmtpSession._cmd_ehlo, "HELO": SmtpSession._cmd_helo, "MAIL": SmtpSession._cmd_mail,
    "RCPT": SmtpSession._cmd_rcpt, "DATA": SmtpSession._cmd_data, "BDAT": SmtpSession._cmd_bdat,
    "RSET": SmtpSession._cmd_rset, "NOOP": SmtpSession._cmd_noop, "QUIT": SmtpSession._cmd_quit,
    "VRFY": SmtpSession._cmd_vrfy, "EXPN": SmtpSession._cmd_expn, "HELP": SmtpSession._cmd_help,
    "STARTTLS": SmtpSession._cmd_starttls, "AUTH": SmtpSession._cmd_auth,
}
