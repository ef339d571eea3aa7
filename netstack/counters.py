"""Per-layer counters in the spirit of ``netstat -s``.

A counter is named for what it counts, dotted by layer:
``ip.in.packets``, ``ip.in.drop.bad_checksum``, ``icmp.out.echo_reply``,
``udp.in.drop.bad_length``.  The first component is the layer; a dropped packet
is always counted under ``<layer>.in.drop.<reason>`` where ``reason`` is a
stable lowercase token (the same token as ``MalformedPacket.reason``), so tests
and operators can rely on the names.

The hot path is one dict lookup and an add: :meth:`Counters.inc`.
"""
from __future__ import annotations

import json
from collections import defaultdict

__all__ = ["Counters"]


class Counters:
    """A flat namespace of monotonically increasing integer counters."""

    __slots__ = ("_c",)

    def __init__(self) -> None:
        self._c: defaultdict[str, int] = defaultdict(int)

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` (default 1) to counter ``name`` (created at 0 on first use)."""
        self._c[name] += n

    def get(self, name: str) -> int:
        """The current value of ``name``; 0 if it was never incremented."""
        return self._c.get(name, 0)

    def __getitem__(self, name: str) -> int:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._c

    def snapshot(self) -> dict[str, int]:
        """A plain, sorted copy of every counter (safe to keep or serialise)."""
        return dict(sorted(self._c.items()))

    def matching(self, prefix: str) -> dict[str, int]:
        """Counters whose name starts with ``prefix`` (e.g. ``"ip.in.drop."``)."""
        return {k: v for k, v in sorted(self._c.items()) if k.startswith(prefix)}

    def reset(self) -> None:
        self._c.clear()

    def to_json(self) -> str:
        return json.dumps(self.snapshot(), indent=2, sort_keys=True)

    def format(self) -> str:
        """``netstat -s`` style text: one block per layer, one counter per line.

        Example::

            ip:
                  12 in.packets
                   1 in.drop.bad_checksum
            icmp:
                   3 out.echo_reply
        """
        by_layer: dict[str, list[tuple[str, int]]] = {}
        for name, value in sorted(self._c.items()):
            layer, _, rest = name.partition(".")
            by_layer.setdefault(layer, []).append((rest or layer, value))
        if not by_layer:
            return "(no counters)"
        lines = []
        width = max(len(str(v)) for v in self._c.values())
        width = max(width, 6)
        for layer, rows in by_layer.items():
            lines.append(f"{layer}:")
            for rest, value in rows:
                lines.append(f"    {value:>{width}} {rest}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()!r})"
