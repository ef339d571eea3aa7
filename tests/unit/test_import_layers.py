"""The dependency rules, checked by walking the imports of every module of netstack/ and smtp/.

Every ``import`` and ``from ... import`` counts, wherever it is written (module
level, inside a function, under ``if TYPE_CHECKING``), and so does a literal
``importlib.import_module("...")`` or ``__import__("...")``.  Relative imports
are resolved; ``from package import name`` also counts ``package.name`` when
that is a module.

The rules:

1. The library (netstack minus ``netstack.cli`` and ``netstack.bench``)
   imports neither ``smtp`` nor ``argparse``, nor ``netstack.cli`` or
   ``netstack.bench``.
2. ``smtp`` imports the library only: never ``netstack.cli``,
   ``netstack.bench`` or ``argparse``.
3. The layers, bottom up: the leaves (checksum, counters, the transport
   contract) <- wire <- ip, tcp, capture <- link <- stack <- sockets <-
   services <- (smtp, cli, bench); beside them the teaching tools: statelog
   (on tcp), pictures and scenarios (on capture, tcp and statelog).  Each library package imports from
   netstack only what :data:`ALLOWED` lists for it: nothing above it, and ip
   and tcp nothing of each other.

A deliberate exception is listed in :data:`EXCEPTIONS` with its reason; an
exception that is no longer needed fails the test too, so the list stays true.
"""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]

_LEAVES = {"netstack", "netstack.checksum", "netstack.checksum_pure", "netstack._checksum", "netstack.counters",
           "netstack.transport"}

#: library layer -> the netstack layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "netstack": set(),                   # the package's __init__ alone
    "netstack.__main__": set(),
    "netstack._checksum": set(),         # the compiled C checksum (cffi)
    "netstack.checksum": {"netstack", "netstack._checksum", "netstack.checksum_pure"},
    "netstack.checksum_pure": set(),
    "netstack.counters": set(),
    "netstack.transport": set(),
    "netstack.wire": {"netstack", "netstack.checksum", "netstack.checksum_pure"},
    "netstack.capture": _LEAVES | {"netstack.wire"},
    "netstack.ip": _LEAVES | {"netstack.wire"},
    "netstack.tcp": _LEAVES | {"netstack.wire"},
    "netstack.link": _LEAVES | {"netstack.wire", "netstack.capture"},
    "netstack.stack": _LEAVES | {"netstack.wire", "netstack.capture", "netstack.ip", "netstack.tcp", "netstack.link"},
    "netstack.sockets": _LEAVES | {"netstack.wire", "netstack.capture", "netstack.ip", "netstack.tcp", "netstack.link",
                                   "netstack.stack"},
    "netstack.services": _LEAVES | {"netstack.wire", "netstack.capture", "netstack.ip", "netstack.tcp",
                                    "netstack.link", "netstack.stack", "netstack.sockets"},
    # Teaching tools: observers and readers beside the stack, never imported by it.
    "netstack.statelog": _LEAVES | {"netstack.wire", "netstack.tcp"},
    "netstack.pictures": _LEAVES | {"netstack.wire", "netstack.capture", "netstack.tcp", "netstack.statelog"},
    "netstack.scenarios": _LEAVES | {"netstack.wire", "netstack.capture", "netstack.tcp", "netstack.statelog"},
    # the gauges and MIB names of a stack's counters; the control socket that serves them
    "netstack.mib": _LEAVES,
    "netstack.control": _LEAVES | {"netstack.wire", "netstack.sockets", "netstack.mib"},
}

#: (importing module, imported module or package) -> why this import is allowed anyway
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("netstack.stack", "netstack.sockets"):
        "Stack.open_connection/start_server/socket are asyncio-shaped conveniences that delegate, when "
        "called, to netstack.sockets (imported inside the method); the socket layer builds on Stack, and "
        "the stack's packet paths never touch it",
    ("netstack", "netstack.stack"):
        "`from netstack import Stack`: the package's __getattr__ imports it on first use (PEP 562), so "
        "`import netstack.wire` and the layers below never load it",
    ("netstack", "netstack.link"):
        "`from netstack import MemoryLink`, imported on first use like Stack",
    ("netstack.__main__", "netstack.cli"):
        "`python -m netstack`: the command line's entry point, which nothing in the library imports",
}

_FORBIDDEN_IN_LIBRARY = ("smtp", "argparse", "netstack.cli", "netstack.bench")
_FORBIDDEN_IN_SMTP = ("netstack.cli", "netstack.bench", "argparse")


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_library(module: str) -> bool:
    return _within(module, "netstack") and not _within(module, "netstack.cli") and not _within(module, "netstack.bench")


def layer_of(module: str) -> str | None:
    """The entry of ALLOWED a netstack module belongs to (``netstack`` itself: only the package)."""
    if module == "netstack":
        return module
    best = None
    for layer in ALLOWED:
        if layer != "netstack" and _within(module, layer) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool, known: frozenset[str] = frozenset()) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, anywhere in it.

    ``known``: the modules that exist, to tell ``from pkg import submodule``
    from ``from pkg import name``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.add(node.args[0].value)
    return found


def walk_tree() -> dict[str, set[str]]:
    """module -> what it imports, for every .py file under netstack/ and smtp/."""
    paths = sorted([*ROOT.glob("netstack/**/*.py"), *ROOT.glob("smtp/**/*.py")])
    known = frozenset(module_name(p) for p in paths)
    return {module_name(p): imports_of(p.read_text(encoding="utf-8"), module_name(p),
                                       is_package=p.name == "__init__.py", known=known)
            for p in paths}


def violations(graph: dict[str, set[str]], exceptions=EXCEPTIONS) -> tuple[list[str], set]:
    """The broken rules, one line each, and the exceptions that were used."""
    out: list[str] = []
    used: set = set()

    def excused(module: str, imported: str) -> bool:
        for key in exceptions:
            if module == key[0] and _within(imported, key[1]):
                used.add(key)
                return True
        return False

    for module, imported in sorted(graph.items()):
        for name in sorted(imported):
            if is_library(module):
                bad = next((p for p in _FORBIDDEN_IN_LIBRARY if _within(name, p)), None)
                if bad is None and _within(name, "netstack"):
                    layer, own = layer_of(name), layer_of(module)
                    if layer is None or own is None:
                        bad = f"{name if layer is None else module} is in no layer of ALLOWED"
                    elif layer != own and layer not in ALLOWED[own]:
                        bad = f"layer {layer} above or beside {own}"
                if bad is not None and not excused(module, name):
                    out.append(f"{module} imports {name} ({bad})")
            elif _within(module, "smtp"):
                bad = next((p for p in _FORBIDDEN_IN_SMTP if _within(name, p)), None)
                if bad is not None and not excused(module, name):
                    out.append(f"{module} imports {name} (smtp must not import {bad})")
    return out, used


def test_every_rule_holds_for_every_module():
    graph = walk_tree()
    assert len(graph) > 80 and "netstack.stack" in graph and "smtp.server" in graph
    broken, used = violations(graph)
    assert not broken, "\n".join(["the dependency rules are broken:", *broken])
    assert used == set(EXCEPTIONS), f"exceptions no longer needed: {set(EXCEPTIONS) - used}"


def test_every_library_module_has_a_layer():
    for module in walk_tree():
        if is_library(module):
            assert layer_of(module) is not None, f"{module} belongs to no layer of ALLOWED"


def test_the_walker_resolves_what_the_tree_really_imports():
    graph = walk_tree()
    assert "netstack.cli.serve_smtp" in graph["netstack.cli.serve"]       # from netstack.cli import serve_smtp
    assert "netstack.checksum" in graph["netstack.capture.dissect"]       # from netstack import checksum
    assert "smtp.delivery" in graph["smtp.server"]                         # from .delivery import ...
    assert "netstack.sockets" in graph["netstack.stack"]                   # inside a method
    assert "netstack.transport" in graph["netstack.ip.layer"]              # under if TYPE_CHECKING


SYNTHETIC = '''
import asyncio
from typing import TYPE_CHECKING

from netstack.wire.ipv4 import parse_ipv4
from ..stack import Stack

if TYPE_CHECKING:
    from netstack.link.base import Link


def lazily():
    import argparse
    from smtp import server
    importlib.import_module("netstack.cli.serve")
    return __import__("netstack.bench.report")
'''


def test_the_walker_catches_a_violation():
    """Self-test: a synthetic TCP module with an import of each forbidden kind."""
    known = frozenset({"smtp.server"})
    found = imports_of(SYNTHETIC, "netstack.tcp.fake", is_package=False, known=known)
    assert found == {"asyncio", "typing", "netstack.wire.ipv4", "netstack.stack", "netstack.link.base", "argparse",
                     "smtp", "smtp.server", "netstack.cli.serve", "netstack.bench.report"}
    broken, _ = violations({"netstack.tcp.fake": found})
    assert broken == [
        "netstack.tcp.fake imports argparse (argparse)",
        "netstack.tcp.fake imports netstack.bench.report (netstack.bench)",
        "netstack.tcp.fake imports netstack.cli.serve (netstack.cli)",
        "netstack.tcp.fake imports netstack.link.base (layer netstack.link above or beside netstack.tcp)",
        "netstack.tcp.fake imports netstack.stack (layer netstack.stack above or beside netstack.tcp)",
        "netstack.tcp.fake imports smtp (smtp)",
        "netstack.tcp.fake imports smtp.server (smtp)",
    ]
    # the same imports are fine from the command line, and smtp may not make them either
    assert violations({"netstack.cli.fake": found})[0] == []
    smtp_broken, _ = violations({"smtp.fake": found})
    assert [line.split(" (")[0] for line in smtp_broken] == [
        "smtp.fake imports argparse", "smtp.fake imports netstack.bench.report", "smtp.fake imports netstack.cli.serve"]


def test_a_module_outside_the_layers_is_reported():
    broken, _ = violations({"netstack.tcp.fake": {"netstack.newthing"}, "netstack.newthing": set()})
    assert broken == ["netstack.tcp.fake imports netstack.newthing (netstack.newthing is in no layer of ALLOWED)"]


def test_an_exception_covers_only_its_own_import():
    graph = {"netstack.stack": {"netstack.sockets.streams", "netstack.services"}}
    broken, used = violations(graph)
    assert broken == ["netstack.stack imports netstack.services "
                      "(layer netstack.services above or beside netstack.stack)"]
    assert used == {("netstack.stack", "netstack.sockets")}
