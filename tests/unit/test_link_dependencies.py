"""python-pytun and pyroute2 are needed by the TUN lab only (installed on Linux only): without
them trace and the in-memory stack work, and the TUN commands say what they need."""
from __future__ import annotations

import errno

import pytest

from netstack.capture.pcap import PcapWriter
from netstack.cli import main
from netstack.link import lab as lab_mod
from netstack.link import tun as tun_mod

from tests.support import capture_packets as cp


@pytest.fixture
def no_pytun(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pytun", None)     # `import pytun` now raises ImportError
    monkeypatch.setattr(tun_mod, "pytun", None)


def test_missing_pytun_is_named(no_pytun):
    assert lab_mod.missing_dependencies() == ["python-pytun"]
    with pytest.raises(lab_mod.LabError, match=r"needs python-pytun, which is not installed: pip install python-pytun"):
        lab_mod.check_privileges()


def test_missing_both(no_pytun, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyroute2", None)
    with pytest.raises(lab_mod.LabError, match=r"needs python-pytun and pyroute2, which are not installed"):
        lab_mod.check_privileges()


def test_not_linux(monkeypatch):
    monkeypatch.setattr("sys.platform", "darwin")
    with pytest.raises(lab_mod.LabError, match=r"needs Linux \(this is darwin\)"):
        lab_mod.check_privileges()


def test_tunlink_without_pytun(no_pytun):
    with pytest.raises(tun_mod.TunError) as e:
        tun_mod.TunLink("x0")
    assert e.value.errno == errno.ENOSYS and "python-pytun" in str(e.value)


@pytest.mark.parametrize("argv", [["serve"], ["bench", "tun"]])
def test_tun_commands_say_what_they_need(no_pytun, capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python-pytun" in err[0] and "pip install python-pytun" in err[0]


def test_trace_and_the_memory_stack_need_neither(no_pytun, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(__import__("sys").modules, "pyroute2", None)
    with PcapWriter(tmp_path / "c.pcap") as w:
        w.write(cp.conversation()[0], ts=1.0)
    assert main(["trace", str(tmp_path / "c.pcap")]) == 0
    assert "Flags [S]" in capsys.readouterr().out

    async def echo():
        from tests.support.sockets_fixtures import B_ADDR, stack_pair

        async with stack_pair() as (a, b):
            async def handle(reader, writer):
                writer.write(await reader.readline())
                await writer.drain()
                writer.close()
            await b.start_server(handle, port=7)
            reader, writer = await a.open_connection(B_ADDR, 7)
            writer.write(b"hello\n")
            line = await reader.readline()
            writer.close()
            return line

    import asyncio
    assert asyncio.run(asyncio.wait_for(echo(), 10)) == b"hello\n"


def test_bench_smtp_falls_back_to_the_memory_link_without_pytun(no_pytun, capsys):
    from netstack.bench import smtp as bench_smtp

    assert bench_smtp._default_netstack_transport() == "netstack-memory"
    assert "needs python-pytun" in capsys.readouterr().err
