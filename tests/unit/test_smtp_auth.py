"""The AUTH users file: scrypt hashes, malformed files named by line, the add/check tool."""
from __future__ import annotations

import io
import os

import pytest

from netstack.cli import smtp_users
from smtp.auth import Users, UsersFileError, hash_password, set_user, verify_password


def test_hash_and_verify():
    h = hash_password("correct horse", ln=4)
    assert h.startswith("$scrypt$ln=4,r=8,p=1$")
    assert verify_password("correct horse", h) and not verify_password("wrong", h)
    assert hash_password("x", ln=4) != hash_password("x", ln=4)          # salted
    assert not verify_password("x", "$plain$x")


def test_set_user_load_verify_and_replace(tmp_path):
    path = str(tmp_path / "users")
    set_user(path, "alice", "one", ln=4)
    set_user(path, "bob", "two", ln=4)
    set_user(path, "alice", "three", ln=4)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    users = Users.load(path)
    assert len(users) == 2
    assert users.verify("alice", "three") and not users.verify("alice", "one")
    assert users.verify("bob", "two") and not users.verify("carol", "two")


@pytest.mark.parametrize("text,where", [
    ("alice\n", ":1: expected user:$scrypt$... entry"),
    ("# c\n\nalice:$scrypt$ln=4,r=8,p=1$QUFB$QUFB\nbob:plain\n", ":4: malformed scrypt hash for user 'bob'"),
    ("a:$scrypt$ln=40,r=8,p=1$QUFB$QUFB\n", ":1: scrypt parameters out of range for user 'a'"),
    ("a:$scrypt$ln=4,r=8,p=1$QUFB$QUFB\na:$scrypt$ln=4,r=8,p=1$QUFB$QUFB\n", ":2: duplicate user 'a'"),
])
def test_malformed_file_names_the_line(tmp_path, text, where):
    path = tmp_path / "users"
    path.write_text(text)
    with pytest.raises(UsersFileError) as exc:
        Users.load(str(path))
    assert str(exc.value) == f"{path}{where}"


def test_tool_add_and_check(tmp_path, monkeypatch):
    path = str(tmp_path / "u")
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert smtp_users.main(["add", path, "alice", "--password-stdin", "--ln", "4"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert smtp_users.main(["check", path, "alice", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("nope\n"))
    assert smtp_users.main(["check", path, "alice", "--password-stdin"]) == 1
    with open(path, "a") as f:
        f.write("broken\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert smtp_users.main(["check", path, "alice", "--password-stdin"]) == 2
