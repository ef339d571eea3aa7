"""Root pytest configuration: the shared helpers live in tests/nstest.py."""
from __future__ import annotations

import pytest

from nstest import require_tun


@pytest.fixture
def tun_required():
    require_tun()
