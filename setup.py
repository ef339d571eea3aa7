"""Build hook for the native checksum; all metadata lives in pyproject.toml.

``cffi_modules`` makes cffi generate the C glue for ``netstack._checksum``
(native/build_checksum.py) and compile it with native/checksum.c during
``build_ext``; ``netstack._native_entry`` (native/entry.c) is a plain
extension beside it, a cheaper entry to the same C code for the per-segment
calls.  The build_ext below makes that step optional: when there is
no working C compiler (or no Python headers), the failure is reported as a
warning, the install still succeeds, and ``netstack.checksum`` falls back to
the pure-Python twin (``netstack info`` says which one is active).

Set ``NETSTACK_REQUIRE_NATIVE=1`` to turn a failed native build into an
install error instead (for CI jobs that must test the C code).
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = "netstack._checksum"

# The CPython entry points to the native code (native/entry.c): optional too; without them
# netstack.checksum calls the cffi module through its Python wrapper, and header prediction
# reads the header in Python (netstack.wire.tcp.predict_ts_segment).
ENTRY = Extension("netstack._native_entry", sources=["native/entry.c"], py_limited_api=True,
                  define_macros=[("Py_LIMITED_API", "0x030B0000")],
                  extra_compile_args=[] if sys.platform == "win32" else ["-O2", "-std=c99", "-Wall", "-Wextra"])


def _require_native() -> bool:
    return os.environ.get("NETSTACK_REQUIRE_NATIVE", "").strip().lower() not in ("", "0", "no", "false", "off")


def _warn(exc: BaseException) -> None:
    bar = "*" * 72
    print(f"\n{bar}\nWARNING: the native checksum extension {NATIVE} could not be built:\n"
          f"  {type(exc).__name__}: {exc}\n"
          "netstack is installed anyway and will use the pure-Python twin\n"
          "(identical results, slower).  Install a C compiler and the Python\n"
          "headers (Debian: apt-get install gcc python3-dev) and reinstall for speed.\n"
          f"{bar}\n", file=sys.stderr)


class optional_build_ext(build_ext):
    """build_ext that tolerates a missing or failing C compiler."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all: DistutilsPlatformError and kin
            if _require_native():
                raise
            _warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError, DistutilsExecError, OSError...
            if _require_native():
                raise
            _warn(exc)

    def copy_extensions_to_source(self):
        # Editable installs copy built modules into the tree; skip one that failed to build.
        everything = self.extensions
        inplace, self.inplace = self.inplace, False
        built = [e for e in everything if os.path.exists(self.get_ext_fullpath(e.name))]
        self.inplace = inplace
        self.extensions = built
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = everything

setup(
    cffi_modules=["native/build_checksum.py:ffibuilder"],
    ext_modules=[ENTRY],
    cmdclass={"build_ext": optional_build_ext},
)
