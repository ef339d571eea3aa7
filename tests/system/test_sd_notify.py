"""sd_notify(3)'s protocol, against a Unix datagram socket standing in for systemd."""
from __future__ import annotations

import os
import socket

import pytest

from netstack.cli import sdnotify


@pytest.fixture
def listener(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    s.bind(path)
    s.settimeout(5)
    yield s, path
    s.close()


def test_sends_the_fields_in_one_datagram(listener, monkeypatch):
    s, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.notify(READY=1, STATUS="serving", MAINPID=42)
    assert s.recv(4096) == b"READY=1\nSTATUS=serving\nMAINPID=42"


def test_abstract_namespace_socket(monkeypatch):
    name = f"netstack-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify(READY=1)
        assert s.recv(4096) == b"READY=1"


def test_nothing_without_notify_socket_and_failure_is_not_fatal(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify(READY=1) is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.notify(READY=1) is False
    assert "sd_notify" in caplog.text
