from netstack.counters import Counters


def test_inc_get_and_default_zero():
    c = Counters()
    assert c.get("ip.in.packets") == 0
    c.inc("ip.in.packets")
    c.inc("ip.in.packets", 4)
    assert c.get("ip.in.packets") == 5
    assert c["ip.in.packets"] == 5
    assert "ip.in.packets" in c and "ip.out.packets" not in c


def test_snapshot_is_a_sorted_copy():
    c = Counters()
    c.inc("tcp.in.segments")
    c.inc("ip.in.drop.bad_checksum", 2)
    snap = c.snapshot()
    assert list(snap) == ["ip.in.drop.bad_checksum", "tcp.in.segments"]
    c.inc("tcp.in.segments")
    assert snap["tcp.in.segments"] == 1          # a copy, not a live view


def test_matching_prefix():
    c = Counters()
    c.inc("ip.in.drop.bad_checksum")
    c.inc("ip.in.drop.not_for_us", 3)
    c.inc("ip.in.packets", 9)
    assert c.matching("ip.in.drop.") == {"ip.in.drop.bad_checksum": 1, "ip.in.drop.not_for_us": 3}


def test_format_groups_by_layer_like_netstat_s():
    c = Counters()
    c.inc("ip.in.packets", 12)
    c.inc("ip.in.drop.bad_checksum")
    c.inc("icmp.out.echo_reply", 3)
    text = c.format()
    lines = text.splitlines()
    assert lines[0] == "icmp:"
    assert lines[1].split() == ["3", "out.echo_reply"]
    assert "ip:" in lines
    ip_block = lines[lines.index("ip:") + 1:]
    assert [l.split() for l in ip_block] == [["1", "in.drop.bad_checksum"], ["12", "in.packets"]]
    assert Counters().format() == "(no counters)"


def test_to_json_roundtrip():
    import json
    c = Counters()
    c.inc("udp.in.no_port", 2)
    assert json.loads(c.to_json()) == {"udp.in.no_port": 2}
