"""Helpers shared by the test tiers (tests/unit, tests/integration), imported by package name,
e.g. ``from tests.support.tcp_script import Script``.

Two files here are scripts, not modules: ``_tcp_kernel_peer.py`` and ``_netns_send.py`` run by path
inside a lab network namespace (``ip netns exec NS python FILE``) and use the standard library only.
"""
