"""The sans-I/O SMTP session, driven byte by byte with a fake clock.

Every reply path is checked against its exact wire text.
"""
from __future__ import annotations

import base64

import pytest

from smtp.session import (AuthRequest, Close, MessageReady, SessionConfig, SmtpSession, StartTlsRequest,
                          parse_path, AddressError)

PEER = ("192.0.2.7", 40000)
EHLO_LINES = [
    "250-mx.example.test Hello client.test [192.0.2.7]",
    "250-SIZE 1000",
    "250-8BITMIME",
    "250-PIPELINING",
    "250-ENHANCEDSTATUSCODES",
    "250-SMTPUTF8",
    "250-CHUNKING",
]


def make(**kw) -> SmtpSession:
    kw.setdefault("hostname", "mx.example.test")
    kw.setdefault("max_message_size", 1000)
    s = SmtpSession(SessionConfig(**kw), peer=PEER, now=0.0)
    assert s.data_to_send() == b"220 mx.example.test ESMTP netstack ready\r\n"
    return s


def talk(s: SmtpSession, data: bytes, now: float = 1.0):
    events = s.receive_data(data, now)
    return s.data_to_send().decode("utf-8").split("\r\n")[:-1], events


def ehlo(s, name="client.test"):
    lines, ev = talk(s, f"EHLO {name}\r\n".encode())
    assert lines[0].startswith("250-") and lines[-1] == "250 HELP" and ev == []
    return lines


def txn(s, rcpts=("bob@example.test",), sender="alice@remote.test"):
    out, ev = talk(s, f"MAIL FROM:<{sender}>\r\n".encode() + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts))
    assert out == ["250 2.1.0 Ok"] + ["250 2.1.5 Ok"] * len(rcpts), out
    return out


def one(s, line: str) -> str:
    out, _ = talk(s, line.encode("utf-8") + b"\r\n")
    assert len(out) == 1, out
    return out[0]


def messages(events):
    return [e for e in events if isinstance(e, MessageReady)]


# ------------------------------------------------------------------ greeting, EHLO, HELO


def test_ehlo_advertises_extensions_without_starttls_or_auth_by_default():
    s = make()
    assert ehlo(s) == EHLO_LINES + ["250 HELP"]


def test_ehlo_advertises_starttls_when_a_certificate_is_configured_and_auth_only_after_tls():
    s = make(tls_available=True, auth_available=True)
    lines = ehlo(s)
    assert "250-STARTTLS" in lines and not any("AUTH" in x for x in lines)
    talk(s, b"STARTTLS\r\n")
    s.starttls_accepted(1.0)
    s.data_to_send()
    s.tls_established("TLSv1.3", "TLS_AES_256_GCM_SHA384", 1.0)
    lines = ehlo(s)
    assert "250-AUTH PLAIN LOGIN" in lines and "250-STARTTLS" not in lines


def test_helo_is_always_accepted_and_gets_no_enhanced_codes():
    s = make()
    assert one(s, "HELO client.test") == "250 mx.example.test Hello client.test [192.0.2.7]"
    assert one(s, "MAIL FROM:<a@remote.test>") == "250 Ok"
    assert one(s, "RCPT TO:<b@localhost>") == "250 Ok"


def test_enhanced_codes_only_after_ehlo():
    s = make()
    assert one(s, "MAIL FROM:<a@b.test>") == "503 Error: send HELO/EHLO first"
    ehlo(s)
    assert one(s, "NOOP") == "250 2.0.0 Ok"


def test_ehlo_and_helo_need_a_name():
    s = make()
    assert one(s, "EHLO") == "501 Syntax: EHLO hostname"
    assert one(s, "HELO ") == "501 Syntax: HELO hostname"
    for bad in ("a\tb", "a\x7fb", "a\x01", "a b"):
        assert one(s, f"EHLO {bad}") == "501 Syntax: EHLO hostname", bad
    assert one(s, "HELO h\u00e9llo.test").startswith("250 ")          # non-ASCII is not a control


def test_recurring_paths_are_parsed_once_and_a_bad_path_is_refused_every_time():
    from smtp import session as session_mod

    session_mod._parse_path_cached.cache_clear()
    for _ in range(3):
        s = make()
        ehlo(s)
        txn(s, rcpts=("bob@example.test", "carol@example.test"))
    info = session_mod._parse_path_cached.cache_info()
    assert info.misses == 3 and info.hits == 6            # the sender and two recipients, parsed once each
    s = make()
    ehlo(s)
    for _ in range(2):
        assert one(s, "MAIL FROM:<a..b@remote.test>") == "501 5.1.7 Bad sender address syntax: bad local part"


def test_ehlo_in_a_transaction_resets_it():
    s = make()
    ehlo(s)
    txn(s)
    ehlo(s)
    assert one(s, "RCPT TO:<b@localhost>") == "503 5.5.1 Error: need MAIL command"


# ------------------------------------------------------------------ 500 / 501 / 503


def test_unknown_command_is_500():
    s = make()
    ehlo(s)
    assert one(s, "FOO bar") == "500 5.5.2 Error: command not recognized"
    assert one(s, "") == "500 5.5.2 Error: command not recognized"


def test_command_line_of_512_octets_is_accepted_513_is_500():
    s = make()
    ehlo(s)
    ok = "NOOP " + "x" * (512 - 2 - 5)
    assert len(ok) + 2 == 512
    assert one(s, ok) == "250 2.0.0 Ok"
    assert one(s, ok + "y") == "500 5.5.2 Error: line too long"
    assert one(s, "NOOP") == "250 2.0.0 Ok"


def test_very_long_line_without_crlf_is_discarded_then_answered_once():
    s = make()
    ehlo(s)
    out, _ = talk(s, b"X" * 5000)
    assert out == []
    assert len(s._buf) <= 1             # bounded memory
    out, _ = talk(s, b"Y" * 5000 + b"\r")
    assert out == []
    out, _ = talk(s, b"\nNOOP\r\n")
    assert out == ["500 5.5.2 Error: line too long", "250 2.0.0 Ok"]


def test_bare_lf_does_not_end_a_command_and_bare_cr_or_lf_in_a_command_is_500():
    s = make()
    ehlo(s)
    out, _ = talk(s, b"NOOP\n")
    assert out == []
    out, _ = talk(s, b"NOOP\r\n")
    assert out == ["500 5.5.2 Error: bare CR or LF in command line"]
    assert one(s, "NOOP\rNOOP") == "500 5.5.2 Error: bare CR or LF in command line"


def test_non_utf8_command_is_500():
    s = make()
    ehlo(s)
    out, _ = talk(s, b"NOOP \xff\xfe\r\n")
    assert out == ["500 5.5.2 Error: command line is not valid UTF-8"]


@pytest.mark.parametrize("line,expected", [
    ("MAIL FROM:a@b.test", "501 5.1.7 Bad sender address syntax: path must be enclosed in <>"),
    ("MAIL TO:<a@b.test>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ("MAIL FROM:<a@@b.test>", "501 5.1.7 Bad sender address syntax: bad character in local part"),
    ("MAIL FROM:<a@b.test> SIZE=abc", "501 5.5.4 Bad SIZE parameter"),
    ("MAIL FROM:<a@b.test> BODY=BINARYMIME", "501 5.5.4 Unsupported BODY type"),
    ("MAIL FROM:<a@b.test> FOO=1", "555 5.5.4 Unsupported parameter FOO"),
    ("MAIL FROM:<a@b.test> SIZE=1 SIZE=2", "501 5.5.4 Syntax error in parameters: duplicate parameter SIZE"),
    ("MAIL FROM:<a@b.test> SMTPUTF8=yes", "501 5.5.4 SMTPUTF8 takes no value"),
    ("MAIL FROM:<.a@b.test>", "501 5.1.7 Bad sender address syntax: bad local part"),
    ("MAIL FROM:<a@-b.test>", "501 5.1.7 Bad sender address syntax: bad domain"),
    ("RSET now", "501 5.5.4 Syntax: RSET"),
    ("QUIT now", "501 5.5.4 Syntax: QUIT"),
    ("VRFY", "501 5.5.4 Syntax: VRFY address"),
    ("EXPN list", "502 5.5.1 Error: EXPN not implemented"),
    ("STARTTLS", "502 5.5.1 Error: command not implemented"),
    ("AUTH PLAIN", "502 5.5.1 Error: authentication not enabled"),
])
def test_argument_errors(line, expected):
    s = make()
    ehlo(s)
    assert one(s, line) == expected


@pytest.mark.parametrize("line,expected", [
    ("RCPT TO:bob@example.test", "501 5.1.3 Bad recipient address syntax: path must be enclosed in <>"),
    ("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax: null path not allowed here"),
    ("RCPT TO:<bob@example.test> NOTIFY=NEVER", "555 5.5.4 Unsupported parameter NOTIFY"),
    ("RCPT FROM:<bob@example.test>", "501 5.5.4 Syntax: RCPT TO:<address>"),
    ("DATA now", "501 5.5.4 Syntax: DATA"),
])
def test_argument_errors_in_a_transaction(line, expected):
    s = make()
    ehlo(s)
    assert one(s, "MAIL FROM:<a@b.test>") == "250 2.1.0 Ok"
    assert one(s, line) == expected


def test_bad_sequence_503():
    s = make()
    assert one(s, "MAIL FROM:<a@b.test>") == "503 Error: send HELO/EHLO first"
    ehlo(s)
    assert one(s, "RCPT TO:<b@localhost>") == "503 5.5.1 Error: need MAIL command"
    assert one(s, "DATA") == "503 5.5.1 Error: need MAIL command"
    assert one(s, "MAIL FROM:<a@b.test>") == "250 2.1.0 Ok"
    assert one(s, "MAIL FROM:<a@b.test>") == "503 5.5.1 Error: nested MAIL command"
    assert one(s, "DATA") == "503 5.5.1 Error: need RCPT command"
    assert one(s, "RCPT TO:<x@remote.test>") == "550 5.7.1 <x@remote.test>: Relay access denied"
    assert one(s, "DATA") == "503 5.5.1 Error: need RCPT command"   # no *accepted* recipient


def test_null_sender_source_route_and_space_after_colon():
    s = make()
    ehlo(s)
    assert one(s, "MAIL FROM: <>") == "250 2.1.0 Ok"
    assert one(s, "RCPT TO:<@relay.test,@other.test:bob@example.test>") == "250 2.1.5 Ok"
    assert s.rcpt_tos == ["bob@example.test"]


def test_simple_commands():
    s = make()
    ehlo(s)
    assert one(s, "NOOP anything") == "250 2.0.0 Ok"
    assert one(s, "VRFY bob") == "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"
    out, _ = talk(s, b"HELP\r\n")
    assert out == ["214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
                   "214 2.0.0 See RFC 5321"]
    txn(s)
    assert one(s, "RSET") == "250 2.0.0 Ok"
    assert one(s, "DATA") == "503 5.5.1 Error: need MAIL command"
    out, ev = talk(s, b"QUIT\r\nNOOP\r\n")
    assert out == ["221 2.0.0 mx.example.test Bye"] and isinstance(ev[0], Close) and s.closed
    assert talk(s, b"NOOP\r\n") == ([], [])


# ------------------------------------------------------------------ policy


def test_relay_is_refused_and_local_domains_and_postmaster_accepted():
    s = make(local_domains=("localhost", "example.test", "[198.18.0.2]"))
    ehlo(s)
    assert one(s, "MAIL FROM:<a@remote.test>") == "250 2.1.0 Ok"
    assert one(s, "RCPT TO:<victim@gmail.example>") == "550 5.7.1 <victim@gmail.example>: Relay access denied"
    assert one(s, "RCPT TO:<bob@EXAMPLE.TEST>") == "250 2.1.5 Ok"
    assert one(s, "RCPT TO:<bob@localhost>") == "250 2.1.5 Ok"
    assert one(s, "RCPT TO:<bob@[198.18.0.2]>") == "250 2.1.5 Ok"
    assert one(s, "RCPT TO:<bob@[198.18.0.3]>") == "550 5.7.1 <bob@[198.18.0.3]>: Relay access denied"
    assert one(s, "RCPT TO:<Postmaster>") == "250 2.1.5 Ok"
    assert one(s, "RCPT TO:<postmaster@remote.test>") == "550 5.7.1 <postmaster@remote.test>: Relay access denied"


def test_known_recipients_list_still_accepts_postmaster():
    s = make(recipients=frozenset({"bob"}))
    ehlo(s)
    assert one(s, "MAIL FROM:<a@remote.test>") == "250 2.1.0 Ok"
    assert one(s, "RCPT TO:<Bob@localhost>") == "250 2.1.5 Ok"
    assert one(s, "RCPT TO:<eve@localhost>") == "550 5.1.1 <eve@localhost>: Recipient address rejected: user unknown"
    assert one(s, "RCPT TO:<POSTMASTER@localhost>") == "250 2.1.5 Ok"
    assert one(s, "RCPT TO:<postmaster>") == "250 2.1.5 Ok"


def test_recipient_limit_452():
    s = make(max_recipients=3)
    ehlo(s)
    txn(s, rcpts=("a@localhost", "b@localhost", "c@localhost"))
    assert one(s, "RCPT TO:<d@localhost>") == "452 4.5.3 Error: too many recipients"


def test_default_recipient_limit_is_100():
    s = make()
    ehlo(s)
    txn(s, rcpts=[f"u{i}@localhost" for i in range(100)])
    assert one(s, "RCPT TO:<u100@localhost>") == "452 4.5.3 Error: too many recipients"


def test_non_ascii_address_needs_smtputf8():
    s = make()
    ehlo(s)
    assert one(s, "MAIL FROM:<jörg@remote.test>") == "553 5.6.7 Non-ASCII sender address needs SMTPUTF8"
    assert one(s, "MAIL FROM:<a@remote.test>") == "250 2.1.0 Ok"
    assert one(s, "RCPT TO:<björn@localhost>") == "553 5.6.7 Non-ASCII recipient address needs SMTPUTF8"
    assert one(s, "RSET") == "250 2.0.0 Ok"
    assert one(s, "MAIL FROM:<jörg@bücher.test> SMTPUTF8 BODY=8BITMIME") == "250 2.1.0 Ok"
    assert one(s, "RCPT TO:<björn@localhost>") == "250 2.1.5 Ok"
    out, ev = talk(s, "DATA\r\nSubject: grüße\r\n\r\nok\r\n.\r\n".encode())
    env = messages(ev)[0].envelope
    assert env.smtputf8 and env.body == "8BITMIME" and env.mail_from == "jörg@bücher.test"
    assert env.protocol == "UTF8SMTP"


# ------------------------------------------------------------------ size


def test_declared_size_over_limit_is_552_at_mail():
    s = make()
    ehlo(s)
    assert one(s, "MAIL FROM:<a@b.test> SIZE=1001") == "552 5.3.4 Message size exceeds fixed maximum message size"
    assert one(s, "MAIL FROM:<a@b.test> SIZE=1000") == "250 2.1.0 Ok"


def test_undeclared_oversize_message_is_read_to_the_end_then_refused():
    s = make()
    ehlo(s)
    txn(s)
    out, _ = talk(s, b"DATA\r\n")
    assert out == ["354 End data with <CR><LF>.<CR><LF>"]
    for _ in range(50):
        out, ev = talk(s, b"x" * 100 + b"\r\n")
        assert out == [] and ev == []
    assert len(s._data) < 2000    # the excess is not buffered
    out, ev = talk(s, b".\r\nNOOP\r\n")
    assert out == ["552 5.3.4 Error: message size exceeds fixed maximum message size", "250 2.0.0 Ok"]
    assert messages(ev) == []
    txn(s)   # the session goes on


# ------------------------------------------------------------------ DATA


def deliver_one(s, body: bytes, now=1.0):
    txn(s)
    out, ev = talk(s, b"DATA\r\n" + body, now)
    return out, ev


def test_data_dot_unstuffing_and_queue_id_in_250():
    s = make()
    ehlo(s)
    out, ev = deliver_one(s, b"..leading\r\n.x\r\nmid.dle\r\n..\r\n.\r\n")
    assert out == ["354 End data with <CR><LF>.<CR><LF>"]
    (m,) = messages(ev)
    assert m.envelope.content == b".leading\r\nx\r\nmid.dle\r\n.\r\n"
    assert m.envelope.rcpt_tos == ["bob@example.test"] and m.envelope.mail_from == "alice@remote.test"
    assert s.waiting == "deliver"
    s.delivered("ABC123", 2.0)
    assert s.data_to_send() == b"250 2.0.0 Ok: queued as ABC123\r\n"


def test_empty_message():
    s = make()
    ehlo(s)
    _, ev = deliver_one(s, b".\r\n")
    assert messages(ev)[0].envelope.content == b""


def test_end_of_data_split_across_every_byte_boundary():
    body = b"Subject: x\r\n\r\nline\r\n..dot\r\n"
    wire = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n" + body + b".\r\nNOOP\r\n"
    s = make()
    ehlo(s)
    outs, evs = [], []
    for i in range(len(wire)):
        out, ev = talk(s, wire[i:i + 1])
        outs += out
        evs += ev
    assert outs == ["250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"]
    assert [m.envelope.content for m in messages(evs)] == [b"Subject: x\r\n\r\nline\r\n.dot\r\n"]
    s.delivered("Q1", 2.0)
    assert s.data_to_send() == b"250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n"


SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
            b"From: ceo@example.test\r\n\r\nsmuggled\r\n")


@pytest.mark.parametrize("seq", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r.\r"])
def test_smuggling_sequences_yield_exactly_one_message_kept_as_content(seq):
    s = make(max_message_size=100000)
    ehlo(s)
    body = b"Subject: legit\r\n\r\nhello" + seq + SMUGGLED + b".\r\n"
    # one chunk, and again byte by byte: same result
    for chunks in ([body], [body[i:i + 1] for i in range(len(body))]):
        txn(s)
        talk(s, b"DATA\r\n")
        evs, outs = [], []
        for c in chunks:
            out, ev = talk(s, c)
            evs += ev
            outs += out
        msgs = messages(evs)
        assert len(msgs) == 1 and outs == []
        assert msgs[0].envelope.rcpt_tos == ["bob@example.test"]
        assert msgs[0].envelope.content == b"Subject: legit\r\n\r\nhello" + seq + SMUGGLED
        s.delivered("Q", 2.0)
        assert s.data_to_send() == b"250 2.0.0 Ok: queued as Q\r\n"   # no replies to smuggled commands
        assert s.mail_from is None and s.rcpt_tos == []


@pytest.mark.parametrize("seq", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r.\r"])
def test_smuggling_sequences_rejected_with_550_in_reject_mode(seq):
    s = make(max_message_size=100000, bare_line_endings="reject")
    ehlo(s)
    out, ev = deliver_one(s, b"hello" + seq + SMUGGLED + b".\r\n")
    assert messages(ev) == []
    assert out == ["354 End data with <CR><LF>.<CR><LF>",
                   "550 5.5.2 Error: bare CR or LF in message; lines must end with CRLF"]
    _, ev = deliver_one(s, b"clean\r\n.\r\n")
    assert len(messages(ev)) == 1


def test_bare_lf_dot_is_not_unstuffed():
    s = make()
    ehlo(s)
    _, ev = deliver_one(s, b"a\n..b\r\n.\r\n")
    assert messages(ev)[0].envelope.content == b"a\n..b\r\n"


def test_delivery_failure_is_451():
    s = make()
    ehlo(s)
    deliver_one(s, b"x\r\n.\r\n")
    s.delivery_failed(2.0)
    assert s.data_to_send() == b"451 4.3.0 Error: local delivery failed, try again later\r\n"
    txn(s)


# ------------------------------------------------------------------ PIPELINING


def test_pipelined_transactions_replies_in_order_and_input_held_during_delivery():
    s = make()
    ehlo(s)
    wire = (b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@localhost>\r\nRCPT TO:<y@remote.test>\r\nDATA\r\none\r\n.\r\n"
            b"MAIL FROM:<c@d.test>\r\nRCPT TO:<z@localhost>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n")
    out, ev = talk(s, wire)
    assert out == ["250 2.1.0 Ok", "250 2.1.5 Ok", "550 5.7.1 <y@remote.test>: Relay access denied",
                   "354 End data with <CR><LF>.<CR><LF>"]
    assert [m.envelope.content for m in messages(ev)] == [b"one\r\n"]
    assert s.next_deadline() is None     # our own work is not timed against the client
    assert s.receive_data(b"", 5.0) == []  # nothing processed while waiting
    ev = s.delivered("Q1", 3.0)
    out = s.data_to_send().decode().split("\r\n")[:-1]
    assert out == ["250 2.0.0 Ok: queued as Q1", "250 2.1.0 Ok", "250 2.1.5 Ok",
                   "354 End data with <CR><LF>.<CR><LF>"]
    assert [m.envelope.content for m in messages(ev)] == [b"two\r\n"]
    ev = s.delivered("Q2", 4.0)
    assert s.data_to_send() == b"250 2.0.0 Ok: queued as Q2\r\n221 2.0.0 mx.example.test Bye\r\n"
    assert isinstance(ev[0], Close)


# ------------------------------------------------------------------ BDAT


def test_bdat_chunks_exact_counts_no_dot_stuffing():
    s = make()
    ehlo(s)
    txn(s)
    chunk1 = b"a\r\n.\r\nQUIT\r\n"        # looks like end-of-data and a command: it is content
    chunk2 = b"..x\r\n"
    out, ev = talk(s, b"BDAT %d\r\n" % len(chunk1) + chunk1 + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
    assert out == [f"250 2.0.0 {len(chunk1)} octets received"]
    (m,) = messages(ev)
    assert m.envelope.content == chunk1 + chunk2 and m.envelope.chunking
    s.delivered("B1", 2.0)
    assert s.data_to_send() == b"250 2.0.0 Ok: queued as B1\r\n"


def test_bdat_split_over_many_reads_and_bdat_0_last():
    s = make()
    ehlo(s)
    txn(s)
    talk(s, b"BDAT 10\r\n01234")
    out, ev = talk(s, b"56789BDAT 0 LAST\r\n")
    assert out == ["250 2.0.0 10 octets received"]
    assert messages(ev)[0].envelope.content == b"0123456789"


def test_refused_bdat_still_consumes_its_bytes():
    s = make()
    ehlo(s)
    out, _ = talk(s, b"BDAT 6\r\nNOOP\r\n")
    assert out == ["503 5.5.1 Error: need MAIL command"]
    assert one(s, "MAIL FROM:<a@b.test>") == "250 2.1.0 Ok"
    out, _ = talk(s, b"BDAT 6 LAST\r\nRSET\r\nNOOP\r\n")
    assert out == ["503 5.5.1 Error: need RCPT command", "250 2.0.0 Ok"]
    assert s.mail_from == "a@b.test"     # the RSET inside the chunk was not executed


def test_bdat_and_data_do_not_mix():
    s = make()
    ehlo(s)
    txn(s)
    out, _ = talk(s, b"BDAT 3\r\nabc")
    assert out == ["250 2.0.0 3 octets received"]
    assert one(s, "DATA") == "503 5.5.1 Error: DATA cannot be mixed with BDAT"


def test_bdat_over_size_is_552_and_later_chunks_are_discarded_with_503():
    s = make()
    ehlo(s)
    txn(s)
    out, ev = talk(s, b"BDAT 600\r\n" + b"x" * 600 + b"BDAT 600\r\n" + b"y" * 600 + b"BDAT 1 LAST\r\nzNOOP\r\n")
    assert out == ["250 2.0.0 600 octets received",
                   "552 5.3.4 Error: message size exceeds fixed maximum message size",
                   "503 5.5.1 Error: need MAIL command", "250 2.0.0 Ok"]
    assert messages(ev) == []


def test_bdat_bad_syntax_501():
    s = make()
    ehlo(s)
    txn(s)
    assert one(s, "BDAT x") == "501 5.5.4 Syntax: BDAT size [LAST]"
    assert one(s, "BDAT 5 NOTLAST") == "501 5.5.4 Syntax: BDAT size [LAST]"


# ------------------------------------------------------------------ timeouts and errors


def test_idle_timeout_421_with_fake_clock():
    s = make()
    assert s.next_deadline() == 300.0
    talk(s, b"EHLO c\r\n", now=100.0)
    assert s.next_deadline() == 400.0
    assert s.poll(399.9) == [] and s.data_to_send() == b""
    ev = s.poll(400.0)
    assert isinstance(ev[0], Close) and s.closed
    assert s.data_to_send() == b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n"
    assert s.next_deadline() is None


def test_data_phase_deadline_against_slow_senders():
    s = make(idle_timeout=300.0, data_timeout=600.0, max_message_size=10**6, min_data_rate=0)
    ehlo(s)
    txn(s)
    talk(s, b"DATA\r\n", now=10.0)
    for t in (210.0, 410.0, 609.0):       # a byte every 200 s keeps the idle timer happy
        talk(s, b"x", now=t)
        assert s.poll(t) == []
    assert s.next_deadline() == 610.0
    ev = s.poll(610.0)
    assert isinstance(ev[0], Close)
    assert s.data_to_send() == b"421 4.4.2 mx.example.test Error: timeout exceeded during data transfer\r\n"


def test_data_deadline_cleared_after_the_transaction():
    s = make(data_timeout=50.0)
    ehlo(s)
    txn(s)
    talk(s, b"DATA\r\nx\r\n.\r\n", now=10.0)
    s.delivered("Q", 11.0)
    assert s.next_deadline() == 311.0        # idle restarts when we answer: delivery time is not the client's


def test_too_many_errors_421_470():
    s = make(max_errors=3)
    ehlo(s)
    out, ev = talk(s, b"BAD\r\nBAD\r\nBAD\r\nNOOP\r\n")
    assert out == ["500 5.5.2 Error: command not recognized"] * 3 + ["421 4.7.0 mx.example.test Error: too many errors"]
    assert isinstance(ev[-1], Close) and s.closed


# ------------------------------------------------------------------ STARTTLS


def test_starttls_discards_pipelined_plaintext_and_forgets_state():
    s = make(tls_available=True)
    assert one(s, "STARTTLS") == "503 Error: send EHLO first"
    ehlo(s)
    out, ev = talk(s, b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
    assert out == [] and isinstance(ev[0], StartTlsRequest)
    assert s.starttls_accepted(2.0) == []
    assert s.data_to_send() == b"220 2.0.0 Ready to start TLS\r\n"
    s.tls_established("TLSv1.3", "TLS_AES_128_GCM_SHA256", 3.0)
    assert s.helo is None and s.mail_from is None
    assert one(s, "MAIL FROM:<a@b.test>") == "503 Error: send HELO/EHLO first"
    ehlo(s)
    assert one(s, "STARTTLS") == "503 5.5.1 Error: TLS already active"
    txn(s)
    _, ev = talk(s, b"DATA\r\nx\r\n.\r\n")
    assert messages(ev)[0].envelope.tls == ("TLSv1.3", "TLS_AES_128_GCM_SHA256")
    assert messages(ev)[0].envelope.protocol == "ESMTPS"


def test_starttls_454_when_it_cannot_start_and_503_in_transaction():
    s = make(tls_available=True)
    ehlo(s)
    talk(s, b"STARTTLS\r\n")
    s.starttls_refused(2.0)
    assert s.data_to_send() == b"454 4.7.0 TLS not available due to temporary reason\r\n"
    assert one(s, "STARTTLS now") == "501 5.5.4 Syntax: STARTTLS"
    txn(s)
    assert one(s, "STARTTLS") == "503 5.5.1 Error: MAIL transaction in progress"


# ------------------------------------------------------------------ AUTH


def tls_session(**kw):
    s = make(tls_available=True, auth_available=True, **kw)
    ehlo(s)
    talk(s, b"STARTTLS\r\n")
    s.starttls_accepted(1.0)
    s.data_to_send()
    s.tls_established("TLSv1.3", "C", 1.0)
    ehlo(s)
    return s


def b64(x: str) -> str:
    return base64.b64encode(x.encode()).decode()


def test_auth_refused_before_tls():
    s = make(tls_available=True, auth_available=True)
    ehlo(s)
    assert one(s, "AUTH PLAIN " + b64("\0u\0p")) == "538 5.7.11 Encryption required for requested authentication mechanism"


def test_auth_plain_success_and_protocol_esmtpsa():
    s = tls_session()
    out, ev = talk(s, f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + 'secret')}\r\n".encode())
    assert out == [] and ev == [AuthRequest("PLAIN", "", "alice", "secret")]
    s.auth_result(True, 2.0, "alice")
    assert s.data_to_send() == b"235 2.7.0 Authentication successful\r\n"
    assert one(s, "AUTH PLAIN " + b64("\0alice\0secret")) == "503 5.5.1 Error: already authenticated"
    txn(s)
    _, ev = talk(s, b"DATA\r\nx\r\n.\r\n")
    env = messages(ev)[0].envelope
    assert env.auth_user == "alice" and env.protocol == "ESMTPSA"


def test_auth_plain_without_initial_response_and_failure_535():
    s = tls_session()
    assert one(s, "AUTH PLAIN") == "334 "
    out, ev = talk(s, (b64("\0alice\0wrong") + "\r\n").encode())
    assert ev == [AuthRequest("PLAIN", "", "alice", "wrong")]
    s.auth_result(False, 2.0)
    assert s.data_to_send() == b"535 5.7.8 Error: authentication failed\r\n"
    assert s.auth_user is None


def test_auth_login_flow_and_abort():
    s = tls_session()
    assert one(s, "AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert one(s, b64("bob")) == "334 UGFzc3dvcmQ6"
    _, ev = talk(s, (b64("pw") + "\r\n").encode())
    assert ev == [AuthRequest("LOGIN", "", "bob", "pw")]
    s.auth_result(False, 2.0)
    s.data_to_send()
    assert one(s, "AUTH LOGIN " + b64("bob")) == "334 UGFzc3dvcmQ6"
    assert one(s, "*") == "501 5.7.0 Authentication aborted"
    assert one(s, "AUTH PLAIN !!!") == "501 5.5.2 Error: cannot decode response"
    assert one(s, "AUTH CRAM-MD5") == "504 5.5.4 Error: unsupported authentication mechanism"
    assert one(s, "AUTH PLAIN " + b64("admin\0bob\0pw")) == "535 5.7.8 Error: authentication failed (no proxy authorization)"


# ------------------------------------------------------------------ address parser


@pytest.mark.parametrize("text,addr", [
    ("<a@b.test>", "a@b.test"),
    ('<"john doe"@b.test>', '"john doe"@b.test'),
    ('<"a>b"@b.test>', '"a>b"@b.test'),
    ("<a@[127.0.0.1]>", "a@[127.0.0.1]"),
    ("<Postmaster>", "Postmaster"),
])
def test_parse_path_accepts(text, addr):
    assert parse_path(text, allow_null=False)[0] == addr


@pytest.mark.parametrize("text", ["<a>", "<a@b..test>", "<a@[300.1.1.1]>", "<" + "a" * 65 + "@b.test>",
                                  "<a@b.test>x", "<a b@c.test>", "<a@b.test"])
def test_parse_path_rejects(text):
    with pytest.raises(AddressError):
        parse_path(text, allow_null=False)


# ------------------------------------------------------------------ hostile input


from hypothesis import given, settings, strategies as st  # noqa: E402

_TOKENS = [b"EHLO x\r\n", b"HELO y\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<c@localhost>\r\n", b"DATA\r\n",
           b"BDAT 5\r\n", b"BDAT 0 LAST\r\n", b"RSET\r\n", b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\r", b"\n", b"..",
           b"STARTTLS\r\n", b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n", b"*\r\n", b"NOOP\r\n", b"\xff\xfe", b"x" * 600]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=40)), max_size=40),
       st.integers(min_value=1, max_value=64))
def test_any_input_gives_well_formed_replies_and_never_raises(parts, chunk):
    s = SmtpSession(SessionConfig(tls_available=True, auth_available=True, max_message_size=2000, max_errors=1000),
                    peer=PEER, now=0.0)
    wire = b"".join(parts)
    out = s.data_to_send()
    for i in range(0, len(wire), chunk):
        events = s.receive_data(wire[i:i + chunk], 1.0)
        while events:           # answer like a driver would; answers may produce more events
            ev = events.pop(0)
            if isinstance(ev, MessageReady):
                events += s.delivered("Q", 1.0)
            elif isinstance(ev, AuthRequest):
                events += s.auth_result(False, 1.0)
            elif isinstance(ev, StartTlsRequest):
                events += s.starttls_refused(1.0)
        assert s.waiting is None or s.closed
        out += s.data_to_send()
    assert out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        assert len(line) >= 4 and line[:3].isdigit() and line[3:4] in (b" ", b"-"), line
    assert len(s._buf) <= 12288 + 64 * 2          # bounded, whatever the input


def test_a_recurring_reply_is_encoded_once_and_every_encoding_stays_exact():
    from smtp.replies import reply

    first = reply(250, "2.1.0", "Ok").encode(True)
    assert first == b"250 2.1.0 Ok\r\n"
    assert reply(250, "2.1.0", "Ok").encode(True) is first          # from the cache, not built again
    assert reply(250, "2.1.0", "Ok").encode(False) == b"250 Ok\r\n"
    assert reply(250, None, "a", "b").encode(True) == b"250-a\r\n250 b\r\n"
    for i in range(300):                                             # unique replies do not grow it
        assert reply(250, "2.0.0", f"Ok: queued as {i:010X}").encode(True) == \
            f"250 2.0.0 Ok: queued as {i:010X}\r\n".encode()
