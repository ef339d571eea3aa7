"""Root pytest configuration; the shared helpers live in the tests.support package."""
from __future__ import annotations

import pytest

from tests.support.nstest import require_tun


@pytest.fixture
def tun_required():
    require_tun()
