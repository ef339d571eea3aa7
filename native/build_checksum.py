"""cffi builder for ``netstack._checksum`` (API / out-of-line mode).

setup.py names this file in ``cffi_modules``; cffi then generates the C glue
at ``build_ext`` time and compiles it together with ``native/checksum.c``.
The declarations given to cffi are read from ``native/checksum.h`` (the block
between the ``NS_CDEF_BEGIN``/``NS_CDEF_END`` markers), so the header is the
single source of truth for the native API.

Compiler flags are portable on purpose: ``-O3`` only, never ``-march=native``.
The AVX2 kernel carries its own ``target`` attribute in
checksum.c and are chosen at run time, so a wheel built here runs on any
x86-64.  Set ``NETSTACK_CFLAGS`` to add flags for an experiment.

Build by hand (for a quick look, without pip)::

    python native/build_checksum.py      # writes netstack/_checksum*.so in place
"""
from __future__ import annotations

import os
import re
import shlex
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _rel(path: str) -> str:
    # setuptools wants source paths relative to the project root (its cwd).
    try:
        return os.path.relpath(path)
    except ValueError:  # a different drive on Windows
        return path


def read_cdef(header: str = os.path.join(HERE, "checksum.h")) -> str:
    with open(header, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"/\* NS_CDEF_BEGIN \*/(.*)/\* NS_CDEF_END \*/", text, re.S)
    if match is None:
        raise RuntimeError(f"{header}: missing NS_CDEF_BEGIN/NS_CDEF_END markers")
    return match.group(1)


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    return ["-O3", "-std=c99", "-Wall", "-Wextra"] + shlex.split(os.environ.get("NETSTACK_CFLAGS", ""))


# Code placed by cffi after <Python.h> and before its generated wrappers.
#
# cffi wraps every call in Py_BEGIN_ALLOW_THREADS / Py_END_ALLOW_THREADS.
# Handing the GIL over and back costs more than a 1500-byte checksum itself
# (tens of ns of the ~150 ns a call costs here), and this module's calls are
# short and never block: 64 KiB take about a microsecond.  So the wrappers of
# THIS module keep the GIL, like most of CPython's own small builtins.  (The
# macros are redefined only inside this generated file.)
_PRELUDE = """\
#include "checksum.h"

#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
"""


def make_builder(*, absolute_paths: bool = False) -> FFI:
    """The FFI builder; paths relative to the project root unless ``absolute_paths``."""
    path = (lambda p: p) if absolute_paths else _rel
    builder = FFI()
    builder.cdef(read_cdef())
    builder.set_source(
        "netstack._checksum",
        _PRELUDE,
        sources=[path(os.path.join(HERE, "checksum.c"))],
        include_dirs=[path(HERE)],
        # depends: rebuild when these change, and setuptools puts them in the sdist
        # (this builder must travel with it: setup.py's cffi_modules names it).
        depends=[path(os.path.join(HERE, "checksum.h")), path(os.path.abspath(__file__))],
        extra_compile_args=_compile_args(),
    )
    return builder


ffibuilder = make_builder()


if __name__ == "__main__":
    import glob
    import shutil

    tmpdir = os.path.join(ROOT, "build", "cffi")
    make_builder(absolute_paths=True).compile(tmpdir=tmpdir, verbose=True)
    for built in glob.glob(os.path.join(tmpdir, "netstack", "_checksum*")):
        if built.endswith((".so", ".pyd")):
            shutil.copy2(built, os.path.join(ROOT, "netstack"))
            print("copied", os.path.relpath(built, ROOT), "-> netstack/")
