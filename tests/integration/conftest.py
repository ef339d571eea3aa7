"""Integration fixtures: a lab namespace, and `netstack serve` as a subprocess.

The helpers they use (constants, ServeProcess) are in labkit.py.  Every name is
unique per process and call (nstest.unique_lab_name()), because several
developers may run the suite on one machine at the same time.  Teardown runs on
every path and touches only what these fixtures created.
"""
from __future__ import annotations

import os

import pytest

from tests.support.labkit import OFFLOAD, PEER_ADDR, STACK_ADDR, ServeProcess, remove_netns_we_created
from tests.support.nstest import require_tun, unique_lab_name


@pytest.fixture
def lab():
    """An up Lab (namespace + TUN) with unique names; torn down afterwards."""
    require_tun()
    from netstack.link.lab import Lab
    name = unique_lab_name()
    the_lab = Lab(netns=name, ifname=name, kernel_addr=f"{PEER_ADDR}/24", stack_addr=STACK_ADDR, mtu=1500,
                  offload=OFFLOAD)
    the_lab.up()
    try:
        yield the_lab
    finally:
        the_lab.down()
        remove_netns_we_created(name)


@pytest.fixture
def serve_factory(tmp_path):
    """Start `netstack serve` with extra options: ``srv = serve_factory("--mtu", "1500")``."""
    require_tun()
    started: list[ServeProcess] = []

    def factory(*extra_args, start=True, env=None) -> ServeProcess:
        srv = ServeProcess(tmp_path, extra_args, env=env)
        started.append(srv)
        return srv.start() if start else srv

    yield factory
    for srv in started:
        try:
            srv.stop()
        finally:
            remove_netns_we_created(srv.netns)


@pytest.fixture
def serve(serve_factory):
    """A running `netstack serve` with default options."""
    return serve_factory()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the integration suite: no namespace or TUN device named by this test process is left."""
    yield
    prefix = unique_lab_name().rsplit("x", 1)[0] + "x"      # "nst<pid>x": only this process's names
    leftovers = []
    for d in ("/run/netns", "/var/run/netns"):
        if os.path.isdir(d):
            leftovers += [f"netns {n}" for n in os.listdir(d) if n.startswith(prefix)]
    leftovers += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(prefix)]
    for entry in leftovers:                                        # clean up, then report
        kind, name = entry.split()
        if kind == "netns":
            remove_netns_we_created(name)
    assert not sorted(set(leftovers)), f"left behind by the tests: {sorted(set(leftovers))}"
