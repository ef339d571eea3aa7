"""The virtio-net header a TUN opened with IFF_VNET_HDR puts in front of every packet."""
from __future__ import annotations

import struct

from netstack.link import GSO_TCPV4, PacketMeta
from netstack.link.tun import VNET_HDR_LEN, VnetMetaCache, meta_from_vnet, vnet_from_meta


def test_header_layout_is_struct_virtio_net_hdr():
    # flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16 (native order)
    meta = PacketMeta(gso_type=GSO_TCPV4, gso_size=1448, hdr_len=52, csum_start=20, csum_offset=16,
                      needs_csum=True)
    raw = vnet_from_meta(meta)
    assert VNET_HDR_LEN == 10 and len(raw) == 10
    assert struct.unpack("=BBHHHH", raw) == (1, 1, 52, 1448, 20, 16)
    assert meta_from_vnet(raw) == meta


def test_an_empty_header_means_a_plain_packet():
    assert vnet_from_meta(None) == bytes(10)
    assert meta_from_vnet(bytes(10)) is None


def test_data_valid_and_needs_csum_flags():
    m = meta_from_vnet(struct.pack("=BBHHHH", 2, 0, 0, 0, 0, 0))
    assert m.data_valid and not m.needs_csum and m.gso_type == 0
    m = meta_from_vnet(struct.pack("=BBHHHH", 1, 0, 0, 0, 20, 6))
    assert m.needs_csum and (m.csum_start, m.csum_offset) == (20, 6)
    assert vnet_from_meta(PacketMeta(data_valid=True))[0] == 2


def test_info_says_which_tun_mode_is_the_default(monkeypatch, capsys):
    from netstack.cli import main
    from netstack.link import tun

    monkeypatch.setattr(tun, "offload_support", lambda: (True, "IFF_VNET_HDR with TUN_F_CSUM|TUN_F_TSO4"))
    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tun offload"))
    assert "on by default" in line and "--no-offload" in line
    monkeypatch.setattr(tun, "offload_support", lambda: (False, "the TUN driver has no IFF_VNET_HDR"))
    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tun offload"))
    assert line.split(None, 2)[2].startswith("off: the TUN driver has no IFF_VNET_HDR")


def test_the_receive_cache_shares_one_meta_per_header_and_stays_bounded():
    cache = VnetMetaCache(limit=3)
    valid = bytearray(struct.pack("=BBHHHH", 2, 0, 0, 0, 0, 0))
    gso = struct.pack("=BBHHHH", 1, GSO_TCPV4, 52, 1448, 20, 16)
    first = cache.get(valid)
    assert first == meta_from_vnet(valid) and cache.get(bytearray(valid)) is first     # the same object
    assert cache.get(gso) == meta_from_vnet(gso) and cache.get(gso) is not first
    valid[0] = 1                                        # the read buffer is reused: the key is its bytes
    assert cache.get(valid) == meta_from_vnet(valid) and cache.get(valid).needs_csum
    for size in range(100, 110):                        # many GSO sizes: never more than the limit
        h = struct.pack("=BBHHHH", 1, GSO_TCPV4, 52, size, 20, 16)
        assert cache.get(h).gso_size == size
    assert len(cache) <= 3
