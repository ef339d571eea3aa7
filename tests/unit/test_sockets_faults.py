"""10 MB each way, at the same time, over the fault-injecting link:
10% loss, 10% reordering, 1% duplication in both directions (seeded).

The in-memory link runs with a 9000-byte MTU (a jumbo link, like loopback's
large MTU): the fault rates are per packet, so this keeps the number of
loss-recovery episodes, and with it the run time, modest while every
recovery path (fast retransmit, RTO with go-back-N, out-of-order queue,
duplicate discard) is exercised hundreds of times.
"""
from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from netstack.sockets import open_connection, start_server
from tests.support.sockets_fixtures import B_ADDR, fast_config, stack_pair

SIZE = 10 * 1024 * 1024
MTU = 9000


def _payload(seed: int) -> bytes:
    return random.Random(seed).randbytes(SIZE)


@pytest.mark.timeout(120)
def test_10mb_both_ways_over_lossy_reordering_duplicating_link():
    faults = dict(loss=0.10, reorder=0.10, duplicate=0.01, seed=1)
    cfg = fast_config(mss=MTU - 40, rto_initial=0.05, rto_min=0.01, rto_max=0.2)
    up, down = _payload(1), _payload(2)

    async def main():
        async with stack_pair(faults=faults, config_a=cfg, config_b=cfg, mtu=MTU) as (a, b):
            got = {}

            async def handler(reader, writer):
                async def sink():
                    h, n = hashlib.sha256(), 0
                    while chunk := await reader.read(1 << 16):
                        h.update(chunk)
                        n += len(chunk)
                    got["server"] = (n, h.digest())
                sinking = asyncio.ensure_future(sink())
                writer.write(down)
                await writer.drain()
                writer.write_eof()
                await sinking
                writer.close()

            server = await start_server(b, handler, port=5001)
            reader, writer = await open_connection(a, B_ADDR, 5001)

            async def send():
                writer.write(up)
                await writer.drain()
                writer.write_eof()
            sending = asyncio.ensure_future(send())
            h, n = hashlib.sha256(), 0
            while chunk := await reader.read(1 << 16):
                h.update(chunk)
                n += len(chunk)
            await sending
            for _ in range(500):
                if "server" in got:
                    break
                await asyncio.sleep(0.01)
            writer.close()
            server.close()
            return (n, h.digest()), got["server"], a, b

    (n_down, h_down), (n_up, h_up), a, b = asyncio.run(asyncio.wait_for(main(), 110))
    assert (n_down, h_down) == (SIZE, hashlib.sha256(down).digest())
    assert (n_up, h_up) == (SIZE, hashlib.sha256(up).digest())

    stats = a.link.stats
    assert stats["tx.lost"] > 100 and stats["rx.lost"] > 100          # the link really was impaired
    assert stats["tx.reordered"] > 100 and stats["tx.duplicated"] > 5
    for stack, lost, sent in ((a, stats["tx.lost"], stats["tx.packets"]), (b, stats["rx.lost"], stats["rx.packets"])):
        retrans = stack.counters.get("tcp.retrans_segs")
        # Plausible: lost data segments must be resent (data is most of what each
        # side sends), but a sane sender does not resend a large share of its traffic.
        assert lost // 4 <= retrans <= max(3 * lost, sent // 4), (retrans, lost, sent)
