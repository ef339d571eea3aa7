"""Lab.up() interrupted while it creates the namespace: down() still removes it.

A SIGTERM that lands inside pyroute2's ``netns.create`` (after the namespace exists, before
create() returns) raises out of up() before up() could record anything; the namespace is
marked ours before the call, so the caller's ``down()`` (serve's teardown) removes it.
"""
from __future__ import annotations

import os

import pytest

from netstack.link.lab import Lab
from tests.support.nstest import require_tun, unique_lab_name

pytestmark = pytest.mark.integration


class _Interrupted(BaseException):
    """Stands for the signal handler's exception (not an Exception: up() does not catch it)."""


@pytest.mark.parametrize("after_create", [True, False], ids=["after-create", "before-create"])
def test_an_interrupt_inside_namespace_creation_leaves_nothing(monkeypatch, after_create):
    require_tun()
    from pyroute2 import netns as pr_netns
    name = unique_lab_name("nsi")
    real = pr_netns.create

    def create(ns, *a, **kw):
        if after_create:
            real(ns, *a, **kw)                         # the namespace exists ...
        raise _Interrupted()                           # ... and the "signal" lands before create() returns

    monkeypatch.setattr(pr_netns, "create", create)
    lab = Lab(netns=name, ifname=name)
    left = None
    try:
        with pytest.raises(_Interrupted):
            lab.up()
        assert os.path.exists(f"/run/netns/{name}") == after_create
        lab.down()                                      # what serve's teardown does
        left = os.path.exists(f"/run/netns/{name}")
    finally:
        if os.path.exists(f"/run/netns/{name}"):        # last resort, so a failure leaves nothing
            pr_netns.remove(name)
    assert left is False, "down() left the namespace behind"
    assert not os.path.exists(f"/sys/class/net/{name}")
