"""Root pytest configuration: the three tiers and the unit tier's guard.

Every test gets exactly one tier marker, from the directory it lives in:

- ``unit``        tests/unit/: pure Python in this process (no kernel socket, subprocess,
                  external tool, root or TUN); enforced by tests.support.unit_guard;
- ``system``      tests/system/: kernel sockets (loopback too: our SMTP, aiosmtpd, smtplib),
                  subprocesses and external tools (tshark, tcpdump, swaks, openssl, a C
                  compiler), scapy (it reads the host's interfaces over netlink);
- ``integration`` tests/integration/: root, /dev/net/tun and lab network namespaces.

The shared helpers live in the tests.support package.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nstest import require_tun
from tests.support.unit_guard import unit_tier_guard

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "system", "integration")


def tier_of(path) -> str | None:
    """The tier a test file belongs to: the directory under tests/ it lives in."""
    try:
        top = Path(path).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return top if top in TIERS else None


@pytest.hookimpl(tryfirst=True)          # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    misplaced = []
    for item in items:
        tier = tier_of(item.path)
        marked = {m.name for m in item.iter_markers() if m.name in TIERS}
        if tier is None or marked - {tier}:
            misplaced.append(f"{item.nodeid} (directory tier {tier}, marked {sorted(marked)})")
            continue
        item.add_marker(tier)
    if misplaced:
        raise pytest.UsageError("each test lives in tests/unit, tests/system or tests/integration and carries "
                                "only that directory's tier marker:\n  " + "\n  ".join(misplaced))


@pytest.fixture(autouse=True)
def unit_guard(request):
    """For unit tests: kernel sockets, processes and the TUN raise UnitTierViolation."""
    if request.node.get_closest_marker("unit") is None:
        yield None
        return
    with unit_tier_guard(request.node.nodeid) as guard:
        yield guard


@pytest.fixture
def tun_required():
    require_tun()
