"""``netstack info``: which checksum implementation is active, whether the TUN offloads are
available (the mode ``serve`` and the lab use by default), and library versions."""
from __future__ import annotations

import platform
import sys
from importlib import metadata


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show the active checksum implementation, TUN offload mode and library versions",
                       description="Show which Internet-checksum implementation is active (native C via cffi, "
                                   "or the pure-Python twin), which TUN mode serve and the lab use by default "
                                   "(offloads: virtio-net header with TSO/GSO and checksum offload, or plain "
                                   "packets, and why), and the versions of Python, cffi, pytun and pyroute2.")
    p.set_defaults(func=run)


def _offload_mode() -> str:
    """The TUN mode a lab opens by default: offloads on where the kernel offers them."""
    if not sys.platform.startswith("linux"):
        return "off (no TUN here)"
    from netstack.link.tun import offload_support
    ok, why = offload_support()
    return f"on by default ({why}; --no-offload turns it off)" if ok else f"off: {why} (plain packets)"


def run(args) -> int:
    from netstack import __version__, checksum

    rows = [
        ("netstack", __version__),
        ("checksum", checksum.describe()),
        ("tun offload", _offload_mode()),
        ("python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"),
        ("cffi", _version("cffi")),
        ("python-pytun", _version("python-pytun")),
        ("pyroute2", _version("pyroute2")),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
