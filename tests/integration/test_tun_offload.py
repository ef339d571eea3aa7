"""TUN offloads against the real kernel: the virtio-net header, GSO super-segments, partial checksums.

`netstack serve` with ``--offload`` (the default) and ``--no-offload``; the
kernel side is plain Python sockets in the lab namespace, which check what they receive.  The capture that
serve records crosses the TUN as tcpdump's on a GSO device does: super-segments
larger than the MTU, TCP checksums partial; tshark must read it cleanly.
"""
from __future__ import annotations

import re

import pytest

from tests.support.labkit import PEER_ADDR, STACK_ADDR
from tests.support.tcp_fixtures import kernel_peer, tshark_fields, tshark_problems, tun_drops

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MB = 1024 * 1024


def test_lab_opens_the_tun_with_offloads_or_without(lab):
    from netstack.link.lab import Lab
    from netstack.link.tun import offload_support
    from tests.support.nstest import unique_lab_name

    assert offload_support()[0], "this kernel's TUN offers IFF_VNET_HDR"
    for want in (True, False):
        name = unique_lab_name("nso")
        with Lab(netns=name, ifname=name, kernel_addr=f"{PEER_ADDR}/24", stack_addr=STACK_ADDR,
                 offload=want) as other:
            assert other.offload is want and other.link.offload is want


def test_kernel_to_stack_super_segments_and_the_capture_reads_clean(serve_factory):
    serve = serve_factory("--offload")
    assert re.search(r"offloads on", serve.stdout), serve.stdout
    d = kernel_peer(serve.netns, "discard", STACK_ADDR, 9, 20 * MB)
    assert d["ok"] and d["bytes"] == 20 * MB, d
    e = kernel_peer(serve.netns, "echo", STACK_ADDR, 7, 4 * MB, 1)      # content checked by the peer
    assert e["ok"] and e["bytes"] == 4 * MB, e
    c = kernel_peer(serve.netns, "chargen", STACK_ADDR, 19, 20 * MB)    # TSO: the kernel cuts our segments
    assert c["ok"] and c["bytes"] == 20 * MB, c
    drops = tun_drops(serve.netns, serve.ifname)
    serve.stop()
    counters = serve.counters()
    assert counters.get("link.in.gso_packets", 0) > 0, counters
    assert counters.get("ip.in.csum_trusted", 0) > 0
    assert not counters.get("tcp.in.drop.bad_checksum") and not counters.get("ip.in.drop.bad_checksum")
    assert counters.get("tcp.out_tso_segs", 0) > 0
    # super-segments cross the TUN as one packet each, recorded whole
    big = tshark_fields(serve.pcap, "ip.len > 1500 && tcp.dstport == 9", "ip.len")
    assert big and max(int(r[0]) for r in big) > 32000, big[:5]
    sent = tshark_fields(serve.pcap, "ip.len > 1500 && tcp.srcport == 19", "ip.len")
    assert sent and max(int(r[0]) for r in sent) > 32000, sent[:5]
    assert tshark_problems(serve.pcap, gaps=(drops == 0)) == []
    # tshark reassembles the whole 20 MB discard stream from the capture
    lens = tshark_fields(serve.pcap, "tcp.dstport == 9 && tcp.len > 0", "tcp.len")
    assert sum(int(r[0]) for r in lens) >= 20 * MB


def test_no_offload_is_one_packet_per_segment_every_checksum_verified(serve_factory):
    serve = serve_factory("--no-offload")
    assert re.search(r"offloads off", serve.stdout), serve.stdout
    d = kernel_peer(serve.netns, "discard", STACK_ADDR, 9, 4 * MB)
    assert d["ok"] and d["bytes"] == 4 * MB, d
    serve.stop()
    counters = serve.counters()
    assert counters.get("link.in.gso_packets", 0) == 0 and counters.get("ip.in.csum_trusted", 0) == 0
    assert not tshark_fields(serve.pcap, "ip.len > 1500", "ip.len")
    assert tshark_problems(serve.pcap, gaps=False) == []


def test_a_kernel_without_offloads_gets_a_clean_fallback_with_one_log_line(monkeypatch, caplog):
    import logging

    from netstack.link import tun
    from netstack.link.lab import Lab
    from tests.support.nstest import require_tun, unique_lab_name

    require_tun()
    monkeypatch.setattr(tun, "offload_support", lambda: (False, "the TUN driver has no IFF_VNET_HDR"))
    name = unique_lab_name("nsf")
    with caplog.at_level(logging.WARNING, logger="netstack.link.tun"):
        with Lab(netns=name, ifname=name, kernel_addr=f"{PEER_ADDR}/24", stack_addr=STACK_ADDR) as lab:
            assert lab.offload is False and lab.link.offload_note == "the TUN driver has no IFF_VNET_HDR"
    warnings = [r for r in caplog.records if r.name == "netstack.link.tun"]
    assert len(warnings) == 1 and "plain packets" in warnings[0].getMessage()


def test_tunsetoffload_refused_falls_back_to_a_plain_device(monkeypatch, caplog):
    import fcntl
    import logging

    from netstack.link import tun
    from netstack.link.lab import Lab
    from tests.support.nstest import require_tun, unique_lab_name

    require_tun()
    real = fcntl.ioctl

    def refusing(fd, request, *args):
        if request == tun.TUNSETOFFLOAD:
            raise OSError(22, "Invalid argument")
        return real(fd, request, *args)

    monkeypatch.setattr(tun.fcntl, "ioctl", refusing)
    name = unique_lab_name("nsf")
    with caplog.at_level(logging.WARNING, logger="netstack.link.tun"):
        with Lab(netns=name, ifname=name, kernel_addr=f"{PEER_ADDR}/24", stack_addr=STACK_ADDR) as lab:
            assert lab.offload is False and "TUNSETOFFLOAD failed" in lab.link.offload_note
            from netstack.stack import Stack
            assert Stack(lab.link, STACK_ADDR).tcp.offload is False
    assert len([r for r in caplog.records if r.name == "netstack.link.tun"]) == 1
