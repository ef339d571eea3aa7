"""The Python examples of README.md, as written, for the tests that run them."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def python_blocks() -> list[str]:
    """Every fenced ```python block of the README, in order."""
    return _BLOCK.findall(README.read_text())


def needs_root(block: str) -> bool:
    """The lab examples (a TUN in a namespace) need root; the others run anywhere."""
    return "Lab(" in block
