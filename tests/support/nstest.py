"""Helpers shared by every test directory: the TUN check and unique lab names.

Integration tests need root and /dev/net/tun.  Locally they skip when those
are missing; with ``CI=true`` in the environment they FAIL instead, so that a
CI machine that cannot open the TUN never passes by skipping everything.
"""
from __future__ import annotations

import itertools
import os

import pytest

_counter = itertools.count()



def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def tun_unavailable_reason() -> str | None:
    """Why the TUN lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "integration tests need root (CAP_NET_ADMIN)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        return f"cannot open /dev/net/tun: {exc}"
    os.close(fd)
    return None


def require_tun() -> None:
    """Skip (locally) or fail (CI=true) when the TUN lab cannot be used."""
    reason = tun_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true and the TUN lab is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def unique_lab_name(prefix: str = "nst") -> str:
    """A namespace / interface name unique to this process and call (<= 15 chars)."""
    return f"{prefix}{os.getpid() % 100000}x{next(_counter)}"[:15]
