"""``netstack info``: which checksum implementation is active, and library versions."""
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
    p = sub.add_parser("info", help="show the active checksum implementation and library versions",
                       description="Show which Internet-checksum implementation is active (native C via cffi, "
                                   "or the pure-Python twin) and the versions of Python, cffi, pytun and pyroute2.")
    p.set_defaults(func=run)


def run(args) -> int:
    from netstack import __version__, checksum

    rows = [
        ("netstack", __version__),
        ("checksum", checksum.describe()),
        ("python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"),
        ("cffi", _version("cffi")),
        ("python-pytun", _version("python-pytun")),
        ("pyroute2", _version("pyroute2")),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
