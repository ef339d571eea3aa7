"""`netstack bench tun` against the real kernel: structure and behaviour only, never timings.

Every run uses a lab with a name unique to the process (the benchmark's
own ``unique_name()`` or one given here) and must leave no namespace or
device behind, on success, on failure and on SIGTERM.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.labkit import remove_netns_we_created
from tests.support.nstest import require_tun, unique_lab_name

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(mb=1, repeat=1, flood_packets=8000, flood_seconds=2.0)


def _gone(name: str) -> bool:
    return not os.path.exists(f"/run/netns/{name}") and not os.path.exists(f"/sys/class/net/{name}")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture
def name():
    require_tun()
    n = unique_lab_name("nsb")
    yield n
    if not _gone(n):                      # last resort, only for the name this test made
        from pyroute2 import netns
        try:
            netns.remove(n)
        except Exception:
            pass


def test_measures_all_three_paths_and_cleans_up(name):
    from netstack.bench import tun as T

    result = T.measure(mtu=1500, name=name, **SMALL)
    assert _gone(name)
    by = {r["path"]: r for r in result["rows"]}
    assert list(by) == list(T.PATHS)
    ceiling, k2s, s2k = by["read ceiling"], by["kernel -> stack"], by["stack -> kernel"]
    ref = by["ACK-only loop"]

    (c,) = ceiling["runs"]
    assert c["packets"] >= 8000 and c["bursts"] >= 2
    assert c["bytes"] / c["packets"] > 1400                    # MTU-sized fragments
    assert ceiling["of_ceiling"] == pytest.approx(1.0)

    (k,) = k2s["runs"]
    assert k["bytes"] == 1_000_000
    # every byte in MSS-sized segments (1448 payload bytes with timestamps), a few more for small tails
    assert 1_000_000 / 1448 <= k["segments"] <= 1_000_000 / 1448 + 60
    assert k["acks_per_segment"] == pytest.approx(0.5, abs=0.05)   # delayed ACK, every second segment
    assert k2s["of_ceiling"] == pytest.approx(k2s["packets_per_s"] / ceiling["packets_per_s"])
    assert k2s["mb_per_s"] == pytest.approx(1.0 / k["seconds"])

    (a,) = ref["runs"]
    assert a["bytes"] == 1_000_000 and a["acks_per_segment"] == pytest.approx(0.5, abs=0.05)
    assert 1_000_000 / 1448 <= a["segments"] <= 1_000_000 / 1448 + 60
    assert ref["of_ack_only"] == pytest.approx(1.0) and s2k["of_ack_only"] is None
    assert k2s["of_ack_only"] == pytest.approx(k2s["mb_per_s"] / ref["mb_per_s"])

    (s,) = s2k["runs"]
    assert s["bytes"] == 1_000_000 and s["segments"] >= 1_000_000 / 1448
    assert s2k["mb_per_s"] == pytest.approx(1.0 / s["seconds"])

    (t,) = result["targets"]
    assert t.name == "kernel -> stack bulk" and t.value == k2s["mb_per_s"] and t.met == (t.value >= 60)


def test_offload_rows_move_super_segments_both_ways(name, tmp_path):
    import pstats

    from netstack.bench import tun as T

    prof = tmp_path / "buffered.prof"
    result = T.measure(mtu=1500, name=name, offload=True, profile_path=str(prof),
                       profile_row=T.BUFFERED_ROW, **SMALL)
    assert _gone(name)
    by = {r["path"]: r for r in result["rows"]}
    assert list(by) == list(T.PATHS + T.OFFLOAD_PATHS)
    for path in T.OFFLOAD_PATHS:
        (run,) = by[path]["runs"]
        assert run["bytes"] == 1_000_000
        # super-segments: far fewer packets than MSS-sized segments
        assert run["segments"] < 1_000_000 / 1448 / 4, (path, run)
    ok2s, oref = by["kernel -> stack, offloads"], by["ACK-only loop, offloads"]
    assert ok2s["of_ack_only"] == pytest.approx(ok2s["mb_per_s"] / oref["mb_per_s"])
    assert ok2s["of_ceiling"] is None
    bp = by[T.BUFFERED_ROW]                    # the same transfer into a BufferedProtocol sink
    assert bp["of_ack_only"] == pytest.approx(bp["mb_per_s"] / oref["mb_per_s"])
    names = [t.name for t in result["targets"]]
    assert names == ["kernel -> stack bulk", "kernel -> stack, offloads vs without",
                     "kernel -> stack, offloads of the offload ACK-only loop",
                     "kernel -> stack, BufferedProtocol, offloads of the offload ACK-only loop",
                     "stack -> kernel, offloads vs without"]
    t = result["targets"][1]
    assert t.value == pytest.approx(ok2s["mb_per_s"] / by["kernel -> stack"]["mb_per_s"]) and t.met == (t.value >= 5)
    # --profile-row: the profiled transfer is the BufferedProtocol one
    assert result["profiled_run"]["bytes"] == 1_000_000
    names = {f[2] for f in pstats.Stats(str(prof)).stats}
    assert {"_pull_into", "buffer_updated", "get_buffer"} <= names


def test_mtu_sets_the_segment_size(name):
    from netstack.bench import tun as T

    result = T.measure(mtu=4000, name=name, **SMALL)
    assert _gone(name)
    by = {r["path"]: r["runs"][0] for r in result["rows"]}
    assert by["read ceiling"]["bytes"] / by["read ceiling"]["packets"] > 3000
    assert by["ACK-only loop"]["segments"] <= 1_000_000 / 3948 + 60
    # MSS 3960 minus 12 bytes of timestamps: far fewer segments than at MTU 1500
    assert by["kernel -> stack"]["segments"] <= 1_000_000 / 3948 + 60
    assert by["stack -> kernel"]["segments"] <= 1_000_000 / 3948 + 60


def test_failure_tears_the_lab_down(name, monkeypatch):
    from netstack.bench import tun as T

    monkeypatch.setattr(T, "KERNEL_CLIENT", "import sys; sys.exit('refusing to send')")
    with pytest.raises(T.BenchError, match="refusing to send"):
        T.measure(mtu=1500, name=name, **SMALL)
    assert _gone(name)


def test_cli_json(tmp_path):
    require_tun()
    path = tmp_path / "tun.json"
    prof = tmp_path / "k2s.prof"
    proc = subprocess.run([sys.executable, "-m", "netstack", "bench", "tun", "--mb", "1", "--repeat", "1",
                           "--flood-packets", "5000", "--flood-seconds", "2", "--json", str(path),
                           "--profile", str(prof)],
                          capture_output=True, text=True, timeout=120, env=_env(), cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    assert "bench tun: [1/9]" in proc.stderr and "bench tun:" not in proc.stdout
    for row in ("read ceiling", "ACK-only loop", "kernel -> stack", "stack -> kernel", "targets:",
                "kernel -> stack, offloads", "with offloads (packets are super-segments)",
                "kernel -> stack, BufferedProtocol, offloads", "into an asyncio.BufferedProtocol sink"):
        assert row in proc.stdout
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "tun"
    assert doc["settings"]["mtu"] == 1500 and doc["settings"]["bytes"] == 1_000_000
    assert [r["path"] for r in doc["rows"]] == ["read ceiling", "ACK-only loop", "kernel -> stack", "stack -> kernel",
                                                "ACK-only loop, offloads", "kernel -> stack, offloads",
                                                "kernel -> stack, BufferedProtocol, offloads",
                                                "stack -> kernel, offloads"]
    assert doc["settings"]["offload"] is True
    assert doc["targets"][0]["goal"] == ">= 60 MB/s"
    assert [t["goal"] for t in doc["targets"][1:]] == [">= 5x", ">= 0.6x", ">= 0.6x", ">= 3x"]
    lab = next(line for line in proc.stdout.splitlines() if "lab " in line).split("lab ")[1].split()[0]
    assert lab.startswith("nsb") and _gone(lab)
    # --profile: an extra, profiled kernel -> stack transfer; its top functions, and the raw profile
    import pstats
    assert "profiling kernel -> stack" in proc.stderr and "function (own time, cProfile)" in proc.stdout
    names = {f[2] for f in pstats.Stats(str(prof)).stats}
    assert {"_on_readable", "on_datagram", "recv_batch"} <= names
    assert doc["profile"] and all(r["ns_per_packet"] > 0 for r in doc["profile"])
    assert len(doc["rows"][2]["runs"]) == 1                  # the profiled transfer is not among the runs


def test_sigterm_removes_the_lab():
    require_tun()
    proc = subprocess.Popen([sys.executable, "-m", "netstack", "bench", "tun", "--mb", "200", "--repeat", "1",
                             "--flood-packets", "20000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=str(REPO))
    prefix = f"nsb{proc.pid % 100000}x"
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "kernel -> stack" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        assert "kernel -> stack" in line, "the benchmark never reached the transfer"
        assert any(n.startswith(prefix) for n in os.listdir("/run/netns"))
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)          # our own child, by PID
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()                           # it did not stop: ours, by PID
            proc.wait(5)
            for n in os.listdir("/run/netns"):    # last resort, only the labs it named after its PID
                if n.startswith(prefix):
                    remove_netns_we_created(n)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not any(n.startswith(prefix) for n in os.listdir("/run/netns"))
    assert not any(n.startswith(prefix) for n in os.listdir("/sys/class/net"))


def test_loss_matrix_three_setups_both_directions_and_cleans_up(name):
    from netstack.bench import _loss
    from netstack.bench import tun as T

    result = T.measure_loss(rates=[0.0, 5.0], mb=0.5, mtu=1500, repeat=1, name=name)
    assert _gone(name)
    rows = result["rows"]
    assert [(r["loss"], r["setup"]) for r in rows] == [(p, s) for p in (0.0, 5.0) for s in _loss.SETUPS]
    for r in rows:
        for d in ("k2s", "s2k"):
            (run,) = r["runs"][d]
            assert run["bytes"] == 500_000 and r[f"{d}_mb_per_s"] > 0
        assert r["setup"] != _loss.REFERENCE or r["s2k_x"] == pytest.approx(1.0)
    lossy = [r for r in rows if r["loss"] == 5.0]
    assert all(r["s2k_retrans"] > 0 for r in lossy)              # the fault link did drop
    (target,) = result["targets"]
    assert target.value == pytest.approx(lossy[0]["s2k_x"])


def test_loss_option_rejects_bad_rates():
    from netstack.bench import _loss

    assert _loss.parse_rates("0, 1,5%") == [0.0, 1.0, 5.0]
    for bad in ("x", "60", "-1", ""):
        with pytest.raises(ValueError):
            _loss.parse_rates(bad)
