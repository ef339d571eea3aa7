"""The Internet checksum: RFC 1071 sum, IPv4 pseudo-header, RFC 1624 update.

One API, two implementations with identical results:

- ``native``: ``netstack._checksum``, C compiled by cffi at install
  (native/checksum.c).  64-bit accumulation, unrolled, any length and
  alignment; an AVX2 kernel chosen at run time when the CPU has it.
- ``pure``: ``netstack.checksum_pure``, the pure-Python twin, used when the
  extension was not built (no C compiler at install) or when the environment
  variable ``NETSTACK_PURE_CHECKSUM=1`` forces it.

``IMPLEMENTATION`` says which one is active and ``describe()`` says it in
words (``netstack info`` prints it).

Data may be ``bytes``, ``bytearray``, a contiguous ``memoryview`` (slices
included) or any other contiguous buffer; the native path reads it in place
through ``ffi.from_buffer``, without copying.

``pseudo_header_checksum``, called for every TCP segment received and sent,
enters the native code through ``netstack._native_entry`` (native/entry.c)
when that was built: a C function taking the buffer by the buffer protocol,
with no Python frame and no ``from_buffer`` object, which calls the cffi
module's ``ns_pseudo_checksum`` (same kernels, same kernel selection).
``native_entry()`` returns that module, bound, or None (netstack.wire.tcp
takes its header prediction read from it).

All 16-bit values are the numbers as read from the wire in network byte
order: ``struct.pack_into("!H", buf, off, checksum(...))`` fills a field.

Functions:

``checksum(data)``
    RFC 1071: ``~sum & 0xFFFF``.  Over data whose checksum field is correct
    it returns 0.  All-zero data gives 0xFFFF, all-0xFF data 0x0000.
``sum16(data, initial=0)``
    The folded ones'-complement sum, not complemented, for combining pieces:
    ``sum16(b, sum16(a)) == sum16(a + b)`` when ``len(a)`` is even, and
    ``checksum == 0xFFFF - sum16``.
``pseudo_header_checksum(src, dst, proto, data)``
    RFC 9293 §3.1 (TCP) and RFC 768 (UDP): the checksum over the IPv4
    pseudo-header (src, dst, zero, proto, ``len(data)``) and ``data`` in ONE
    native call.  ``src``/``dst`` are the addresses as ints.  Put the result
    into the zeroed checksum field; over a valid segment it returns 0.  (UDP
    transmits a computed 0 as 0xFFFF, RFC 768: that is the caller's rule.)
``incremental_update(old_checksum, old_word, new_word)``
    RFC 1624 eqn. 3, ``HC' = ~(~HC + ~m + m')``: the new checksum after one
    16-bit word of the covered data changed (e.g. TTL+protocol on
    forwarding), without re-summing.  It agrees with a full recompute except
    when the new data is all zeros, where eqn. 3 yields 0x0000 and a full
    recompute 0xFFFF (RFC 1624 §3; impossible for an IPv4 header).

Native kernels (for tests and benchmarks): ``native_paths()`` lists those the
CPU supports, ``native_path()`` names the active one, ``select_native_path``
switches; ``NETSTACK_CHECKSUM_PATH=scalar|avx2`` picks one at import.
"""
from __future__ import annotations

import logging
import os

from netstack import checksum_pure as _pure

__all__ = [
    "IMPLEMENTATION", "describe", "checksum", "sum16", "pseudo_header_checksum",
    "incremental_update", "native_entry", "native_paths", "native_path", "select_native_path",
]

log = logging.getLogger("netstack.checksum")

KNOWN_PATHS = ("avx2", "scalar")   # best first
_PATH_WORDS = {"avx2": "x86-64 AVX2 kernel",
               "scalar": "portable 64-bit scalar kernel"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false", "off")


_native = None
if _env_flag("NETSTACK_PURE_CHECKSUM"):
    _why_pure = "forced by NETSTACK_PURE_CHECKSUM"
else:
    try:
        from netstack import _checksum as _native
    except ImportError as exc:
        _why_pure = "native module netstack._checksum not built: no C compiler at install?"
        log.debug("native checksum unavailable: %s", exc)


if _native is not None:
    IMPLEMENTATION = "native"
    _ffi = _native.ffi
    _lib = _native.lib
    _from_buffer = _ffi.from_buffer
    _ns_sum16 = _lib.ns_sum16
    _ns_checksum = _lib.ns_checksum
    _ns_pseudo = _lib.ns_pseudo_checksum
    incremental_update = _lib.ns_incremental_update

    # cffi passes ``bytes`` to a ``const char *`` parameter without a copy;
    # any other buffer goes through ffi.from_buffer (also no copy), a char array of its
    # bytes (an array('I') or a memoryview cast to 'H' is summed as its bytes, as natively).  The type
    # test keeps the common small-packet call to one crossing.

    def checksum(data) -> int:
        """RFC 1071 Internet checksum of ``data`` (native)."""
        if data.__class__ is bytes:
            return _ns_checksum(data, len(data))
        buf = _from_buffer(data)          # its bytes: len(buf), not len(data)
        return _ns_checksum(buf, len(buf))

    def sum16(data, initial: int = 0) -> int:
        """Folded ones'-complement sum of ``data`` plus ``initial`` (native; RFC 1071 §4.1)."""
        if data.__class__ is bytes:
            return _ns_sum16(data, len(data), initial)
        buf = _from_buffer(data)          # its bytes: len(buf), not len(data)
        return _ns_sum16(buf, len(buf), initial)

    def _pseudo_header_checksum_cffi(src: int, dst: int, proto: int, data) -> int:
        """Checksum over the IPv4 pseudo-header and ``data`` in one native call (RFC 9293 §3.1)."""
        if data.__class__ is bytes:
            return _ns_pseudo(src, dst, proto, data, len(data))
        buf = _from_buffer(data)          # its bytes: len(buf), not len(data)
        return _ns_pseudo(src, dst, proto, buf, len(buf))

    try:
        from netstack import _native_entry as _entry
    except ImportError:
        _entry = None
    if _entry is not None:
        # the entry calls ns_pseudo_checksum of THIS module (its kernels, its selection): it
        # takes its address from netstack._checksum itself when imported
        pseudo_header_checksum = _entry.pseudo_header_checksum
    else:
        pseudo_header_checksum = _pseudo_header_checksum_cffi

    def native_entry():
        """``netstack._native_entry``, bound to this module's C code; None if it was not built."""
        return _entry

    def native_paths() -> list[str]:
        """Native kernels this CPU can run, best first."""
        return [p for p in KNOWN_PATHS if _lib.ns_path_supported(p.encode())]

    def native_path() -> str | None:
        """The native kernel in use for buffers of 128 bytes and more."""
        return _ffi.string(_lib.ns_path_name()).decode()

    def select_native_path(name: str) -> None:
        """Use kernel ``name`` (one of ``native_paths()``); ValueError otherwise."""
        if _lib.ns_select_path(name.encode()) != 0:
            raise ValueError(f"checksum kernel {name!r} not available here; have {native_paths()}")

    _forced = os.environ.get("NETSTACK_CHECKSUM_PATH", "").strip()
    if _forced:
        try:
            select_native_path(_forced)
        except ValueError as exc:
            log.warning("NETSTACK_CHECKSUM_PATH ignored: %s", exc)

    def describe() -> str:
        """E.g. ``native (cffi, x86-64 AVX2 kernel)``."""
        path = native_path()
        return f"native (cffi, {_PATH_WORDS.get(path, path)}{'' if _entry is not None else '; no CPython entry'})"

else:
    IMPLEMENTATION = "pure"
    checksum = _pure.checksum
    sum16 = _pure.sum16
    pseudo_header_checksum = _pure.pseudo_header_checksum
    incremental_update = _pure.incremental_update

    def native_entry():
        """None: the pure-Python twin is active (no native entry points)."""
        return None

    def native_paths() -> list[str]:
        """No native kernels: the pure twin is active."""
        return []

    def native_path() -> str | None:
        return None

    def select_native_path(name: str) -> None:
        raise ValueError(f"checksum kernel {name!r} not available: the pure-Python twin is active")

    def describe() -> str:
        """E.g. ``pure-Python twin (forced by NETSTACK_PURE_CHECKSUM)``."""
        return f"pure-Python twin ({_why_pure})"
