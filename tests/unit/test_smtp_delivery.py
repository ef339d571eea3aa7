"""Maildir delivery: safe names, durability order, rollback on error, trace headers."""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, strategies as st

from smtp import delivery as delivery_mod
from smtp.delivery import DeliveryError, MaildirDelivery, mailbox_name, trace_headers
from smtp.session import Envelope


def env(rcpts=("bob@example.test",), content=b"Subject: hi\r\n\r\nbody\r\n", **kw) -> Envelope:
    base = dict(mail_from="alice@remote.test", rcpt_tos=list(rcpts), content=content, helo="client.test",
                esmtp=True, peer=("192.0.2.7", 40000))
    base.update(kw)
    return Envelope(**base)


def files(root, sub):
    out = []
    for box in sorted(os.listdir(root)):
        d = os.path.join(root, box, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in os.listdir(d)]
    return out


# ------------------------------------------------------------------ names


@pytest.mark.parametrize("local,name", [
    ("Bob", "bob"), ("bob.smith+tag", "bob.smith+tag"), ("../../etc/passwd", "=2E.=2F..=2Fetc=2Fpasswd"),
    (".profile", "=2Eprofile"), ("..", "=2E."), ("a/b", "a=2Fb"), ("a=b", "a=3Db"), ("Jörg", "j=C3=B6rg"),
    ("a b", "a=20b"), ("\x00", "=00"),
])
def test_mailbox_names_are_safe(local, name):
    assert mailbox_name(local) == name


def _decode(name: str) -> bytes:
    return re.sub(rb"=([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), name.encode())


@given(st.text(min_size=1, max_size=64))
def test_mailbox_name_never_traverses_never_hidden_and_is_injective(local):
    name = mailbox_name(local)
    assert "/" not in name and not name.startswith(".") and name not in (".", "..") and "\x00" not in name
    assert _decode(name) == local.casefold().encode("utf-8")   # decodable, hence no two names collide


# ------------------------------------------------------------------ delivery


def test_delivers_one_copy_per_mailbox_with_trace_headers(tmp_path):
    d = MaildirDelivery(str(tmp_path), hostname="mx.example.test")
    e = env(rcpts=("Bob@example.test", "bob@localhost", "carol@example.test"))
    paths = d.deliver(e, "QID1")
    assert len(paths) == 2                                  # bob once, carol once
    assert sorted(os.listdir(tmp_path)) == ["bob", "carol"]
    for box in ("bob", "carol"):
        assert sorted(os.listdir(tmp_path / box)) == ["cur", "new", "tmp"]
        assert os.listdir(tmp_path / box / "tmp") == []
        (name,) = os.listdir(tmp_path / box / "new")
        data = (tmp_path / box / "new" / name).read_bytes()
        head, sep, body = data.partition(b"\r\n\r\n")
        assert data.endswith(e.content)
        assert data.startswith(b"Return-Path: <alice@remote.test>\r\nReceived: from client.test ([192.0.2.7])\r\n")
        assert b"id QID1" in data and b"by mx.example.test (netstack) with ESMTP" in data
        assert b"for <" not in data          # several recipients: no "for" clause (privacy)
        assert oct(os.stat(tmp_path / box / "new" / name).st_mode & 0o777) == "0o600"


def test_trace_headers_exact():
    e = env(tls=("TLSv1.3", "TLS_AES_256_GCM_SHA384"), auth_user="alice", mail_from="")
    when = 1_700_000_000.0
    text = trace_headers(e, "ABC", "mx.example.test", when=when).decode()
    from email.utils import formatdate
    assert text == ("Return-Path: <>\r\n"
                    "Received: from client.test ([192.0.2.7])\r\n"
                    "\tby mx.example.test (netstack) with ESMTPSA (version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384)\r\n"
                    "\tid ABC\r\n"
                    "\tfor <bob@example.test>; " + formatdate(when, localtime=True) + "\r\n")


def test_trace_header_neutralises_hostile_helo():
    e = env(helo="evil)\r\nX-Injected: 1 (")
    text = trace_headers(e, "Q", "mx").decode()
    assert "\r\nX-Injected" not in text and "\nX" not in text and "evil???X-Injected:?1??" in text


def test_fsync_file_before_rename_and_directory_after(tmp_path, monkeypatch):
    d = MaildirDelivery(str(tmp_path))
    d.deliver(env(), "warmup")              # directories exist now
    calls = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("fsync", os.path.basename(os.path.dirname(target)) + "/" + os.path.basename(target)))
        return real_fsync(fd)

    def rename(a, b):
        calls.append(("rename", os.path.basename(os.path.dirname(b))))
        return real_rename(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    d.deliver(env(), "Q")
    kinds = [c[0] + ":" + c[1].split("/")[0] for c in calls]
    assert kinds == ["fsync:tmp", "rename:new", "fsync:bob"], calls   # file in tmp/, rename, then new/ itself
    assert calls[2][1] == "bob/new"


def test_write_error_rolls_back_every_copy(tmp_path, monkeypatch):
    d = MaildirDelivery(str(tmp_path))
    real = d._write_tmp
    n = {"calls": 0}

    def flaky(path, data):
        n["calls"] += 1
        if n["calls"] == 2:
            real(path, data[:10])        # a partial file, then the disk fills up
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(d, "_write_tmp", flaky)
    with pytest.raises(DeliveryError):
        d.deliver(env(rcpts=("a@localhost", "b@localhost", "c@localhost")), "Q")
    assert files(tmp_path, "new") == [] and files(tmp_path, "tmp") == []


def test_rename_error_after_some_copies_removes_them_from_new(tmp_path, monkeypatch):
    d = MaildirDelivery(str(tmp_path))
    real = os.rename
    n = {"calls": 0}

    def flaky(a, b):
        n["calls"] += 1
        if n["calls"] == 2:
            raise OSError(5, "Input/output error")
        return real(a, b)

    monkeypatch.setattr(delivery_mod.os, "rename", flaky)
    with pytest.raises(DeliveryError):
        d.deliver(env(rcpts=("a@localhost", "b@localhost")), "Q")
    assert files(tmp_path, "new") == [] and files(tmp_path, "tmp") == []


def test_unique_names_and_base_created(tmp_path):
    base = tmp_path / "deep" / "mail"
    d = MaildirDelivery(str(base))
    for i in range(20):
        d.deliver(env(content=b"n%d\r\n" % i), f"Q{i}")
    names = os.listdir(base / "bob" / "new")
    assert len(names) == 20 and not any(n.startswith(".") for n in names)


# ------------------------------------------------------------------ group commit of the directory fsync


def _wait_for(cond, what: str) -> None:
    import time
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_one_directory_fsync_covers_every_rename_made_before_it_started():
    import threading

    from smtp.delivery import GroupSync

    release = threading.Event()
    started = []

    def fsync_dir(path):
        started.append(len(started) + 1)
        if len(started) == 1:
            assert release.wait(10)     # the first fsync is slow; others queue behind it

    g = GroupSync("/x/new", fsync_dir)
    done = []

    def deliverer(name):
        g.sync()                        # called after this deliverer's rename
        done.append(name)

    a = threading.Thread(target=deliverer, args=("a",))
    a.start()
    _wait_for(lambda: started == [1], "first fsync did not start")
    others = [threading.Thread(target=deliverer, args=(n,)) for n in "bcd"]
    for t in others:
        t.start()
    _wait_for(lambda: g.requests == 4, "renames b, c, d did not ask for their fsync")
    # b, c, d renamed after fsync 1 began: it does not cover them, so none of them may return yet
    assert done == []
    release.set()
    for t in (a, *others):
        t.join(10)
    assert sorted(done) == ["a", "b", "c", "d"]
    assert g.fsyncs == 2                # fsync 1 for a, one shared fsync for b, c and d


def test_a_failed_directory_fsync_raises_in_its_thread_and_covers_nobody():
    import threading

    from smtp.delivery import GroupSync

    calls = []
    release = threading.Event()

    def fsync_dir(path):
        calls.append(path)
        if len(calls) == 1:
            assert release.wait(10)
            raise OSError(5, "EIO")

    g = GroupSync("/x/new", fsync_dir)
    errors, done = [], []

    def deliverer(name):
        try:
            g.sync()
            done.append(name)
        except OSError as exc:
            errors.append((name, exc.errno))

    a = threading.Thread(target=deliverer, args=("a",))
    a.start()
    _wait_for(lambda: len(calls) == 1, "first fsync did not start")
    b = threading.Thread(target=deliverer, args=("b",))
    b.start()
    _wait_for(lambda: g.requests == 2, "b did not ask")
    release.set()
    a.join(10)
    b.join(10)
    assert errors == [("a", 5)] and done == ["b"] and len(calls) == 2   # b ran its own fsync


def test_concurrent_deliveries_share_directory_fsyncs_and_all_arrive(tmp_path):
    import concurrent.futures

    d = MaildirDelivery(str(tmp_path))
    d.deliver(env(), "warmup")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda i: d.deliver(env(), f"Q{i}"), range(40)))
    assert len({p for ps in paths for p in ps}) == 40
    assert len(os.listdir(tmp_path / "bob" / "new")) == 41 and os.listdir(tmp_path / "bob" / "tmp") == []
    fsyncs, renames = d.sync_stats()
    assert renames == 41 and 1 <= fsyncs <= 41
