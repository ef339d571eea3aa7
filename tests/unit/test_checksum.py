"""RFC 1071 / RFC 1624 checksum: native (every kernel this CPU has) vs pure twin vs a naive reference."""
from __future__ import annotations

import array
import os
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netstack import checksum, checksum_pure

# --- a deliberately naive reference: RFC 1071 §4.1, word by word ---------------


def ref_sum16(data, initial=0) -> int:
    data = bytes(data)
    if len(data) % 2:
        data += b"\0"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ref_checksum(data) -> int:
    return ~ref_sum16(data) & 0xFFFF


# The impl fixture picks an implementation (and native kernel) once per test; every
# generated example then runs against it, which is what we want.
def props(examples=200):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- the implementations under test --------------------------------------------------


class Impl:
    def __init__(self, name, module, path=None):
        self.name, self.module, self.path = name, module, path

    def __repr__(self):
        return self.name


def _native_available() -> bool:
    return checksum.IMPLEMENTATION == "native"


IMPLS = [Impl("pure", checksum_pure)]
if _native_available():
    IMPLS += [Impl(f"native-{p}", checksum, p) for p in checksum.native_paths()]


def _default_path():
    return checksum.native_path()


_DEFAULT_PATH = _default_path()


@pytest.fixture(params=IMPLS, ids=repr)
def impl(request):
    """Each implementation; for native, each kernel in turn (restored afterwards)."""
    which = request.param
    if which.path is not None:
        checksum.select_native_path(which.path)
    try:
        yield which.module
    finally:
        if which.path is not None:
            checksum.select_native_path(_DEFAULT_PATH)


def test_native_is_built():
    """CI must exercise the C code: a missing extension fails there instead of hiding behind the twin."""
    if _native_available():
        assert "scalar" in checksum.native_paths()
        assert checksum.native_path() in checksum.native_paths()
        return
    if os.environ.get("CI", "").lower() == "true" and not os.environ.get("NETSTACK_PURE_CHECKSUM"):
        pytest.fail(f"CI=true but the native checksum is not active: {checksum.describe()}")
    pytest.skip(checksum.describe())


# --- known answers -------------------------------------------------------------------

RFC1071_EXAMPLE = bytes.fromhex("0001f203f4f5f6f7")      # RFC 1071 §3: sum 0xDDF2
IPV4_HEADER = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")  # checksum field zeroed


def test_known_answers(impl):
    assert impl.checksum(b"\xff" * 1500) == 0x0000
    assert impl.checksum(b"\x00" * 1500) == 0xFFFF
    assert impl.checksum(b"") == 0xFFFF
    assert impl.sum16(b"") == 0
    assert impl.sum16(RFC1071_EXAMPLE) == 0xDDF2
    assert impl.checksum(RFC1071_EXAMPLE) == 0x220D
    assert impl.checksum(IPV4_HEADER) == 0xB861
    filled = IPV4_HEADER[:10] + b"\xb8\x61" + IPV4_HEADER[12:]
    assert impl.checksum(filled) == 0
    # Odd length: the last byte is the high byte of a zero-padded word (RFC 1071 §4.1).
    assert impl.sum16(b"\x12\x34\x56") == 0x1234 + 0x5600
    assert impl.sum16(b"\x01") == 0x0100


def test_negative_zero(impl):
    """A nonzero multiple of 0xFFFF folds to 0xFFFF, never 0 (0 means all words zero)."""
    assert impl.sum16(b"\xff\xff") == 0xFFFF
    assert impl.sum16(b"\x80\x00\x7f\xff") == 0xFFFF
    assert impl.sum16(b"\x00\x00", 0) == 0
    assert impl.sum16(b"\x00\x01", 0xFFFE) == 0xFFFF


@pytest.mark.parametrize("length", [*range(0, 300), 511, 512, 513, 1499, 1500, 9000, 65535, 65536, 65537])
def test_every_small_length_and_alignment_matches_reference(length):
    """Every length around the kernels' unroll/dispatch boundaries, at every 8-byte misalignment."""
    rnd = (bytes(range(7, 256, 3)) * (length // 83 + 2))
    big = bytearray(rnd[: length + 8])
    for offset in range(8):
        view = memoryview(big)[offset:offset + length]
        want = ref_sum16(view)
        for which in IMPLS:
            if which.path is not None:
                checksum.select_native_path(which.path)
            try:
                assert which.module.sum16(view) == want, (which, length, offset)
                assert which.module.checksum(view) == ~want & 0xFFFF, (which, length, offset)
            finally:
                if which.path is not None:
                    checksum.select_native_path(_DEFAULT_PATH)


# --- properties: native == pure == reference --------------------------------------------

buffers = st.one_of(
    st.binary(max_size=3000),
    st.integers(0, 3000).map(lambda n: b"\x00" * n),
    st.integers(0, 3000).map(lambda n: b"\xff" * n),
)


@props(200)
@given(data=buffers, kind=st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_checksum_matches_reference(impl, data, kind):
    buf = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}[kind](data)
    want = ref_sum16(data)
    assert impl.sum16(buf) == want == checksum_pure.sum16(data)
    assert impl.checksum(buf) == ~want & 0xFFFF == checksum_pure.checksum(data)


@props(200)
@given(big=st.binary(min_size=1, max_size=4000), cut=st.data())
def test_slices_of_a_larger_buffer(impl, big, cut):
    """memoryview slices at any offset/length read in place, like the stack's receive path."""
    start = cut.draw(st.integers(0, len(big)))
    stop = cut.draw(st.integers(start, len(big)))
    for buf in (memoryview(big)[start:stop], memoryview(bytearray(big))[start:stop]):
        assert impl.sum16(buf) == ref_sum16(big[start:stop])
        assert impl.checksum(buf) == ref_checksum(big[start:stop])


@props(200)
@given(a=st.binary(max_size=600), b=st.binary(max_size=600), initial=st.integers(0, 0xFFFF))
def test_sum16_combines_pieces(impl, a, b, initial):
    if len(a) % 2:
        a = a[:-1]
    assert impl.sum16(b, impl.sum16(a)) == impl.sum16(a + b)
    assert impl.sum16(a, initial) == ref_sum16(a, initial)
    assert impl.checksum(a + b) == 0xFFFF - impl.sum16(a + b)


@props(200)
@given(words=st.binary(min_size=2, max_size=400), where=st.data())
def test_filled_checksum_verifies(impl, words, where):
    """Write the checksum into a zeroed field: the checksum over the result is 0."""
    data = bytearray(words[: len(words) // 2 * 2])
    at = where.draw(st.integers(0, len(data) // 2 - 1)) * 2
    data[at:at + 2] = b"\0\0"
    struct.pack_into("!H", data, at, impl.checksum(data))
    if any(data):
        assert impl.checksum(data) == 0


# --- IPv4 pseudo-header ------------------------------------------------------------------

addresses = st.integers(0, 0xFFFFFFFF)


@props(200)
@given(src=addresses, dst=addresses, proto=st.integers(0, 255), data=buffers)
def test_pseudo_header_matches_manual(impl, src, dst, proto, data):
    """RFC 9293 §3.1: pseudo-header (src, dst, zero, PTCL, length) followed by the segment."""
    pseudo = struct.pack("!IIBBH", src, dst, 0, proto, len(data))
    # The pseudo-header is 12 bytes (even), so the segment's words keep their alignment.
    assert impl.pseudo_header_checksum(src, dst, proto, data) == ref_checksum(pseudo + data)
    assert impl.pseudo_header_checksum(src, dst, proto, memoryview(bytearray(data))) == ref_checksum(pseudo + data)


@props(100)
@given(src=addresses, dst=addresses, payload=st.binary(max_size=1500))
def test_pseudo_header_checksum_of_valid_segment_is_zero(impl, src, dst, payload):
    seg = bytearray(struct.pack("!HHIIBBHHH", 25, 40000, 1, 2, 5 << 4, 0x18, 65535, 0, 0)) + payload
    struct.pack_into("!H", seg, 16, impl.pseudo_header_checksum(src, dst, 6, seg))
    assert impl.pseudo_header_checksum(src, dst, 6, seg) == 0


def test_pseudo_header_known_segment(impl):
    """A SYN from 198.18.0.1:40000 to 198.18.0.2:25 (answer from the naive reference)."""
    src, dst = 0xC6120001, 0xC6120002
    seg = bytes.fromhex("9c4000190000000100000000500272100000" "0000")
    pseudo = struct.pack("!IIBBH", src, dst, 0, 6, len(seg))
    want = ref_checksum(pseudo + seg)
    assert impl.pseudo_header_checksum(src, dst, 6, seg) == want
    # Changing any pseudo-header field changes the result (each one is covered).
    assert impl.pseudo_header_checksum(src ^ 1, dst, 6, seg) != want
    assert impl.pseudo_header_checksum(src, dst ^ 0x100, 6, seg) != want
    assert impl.pseudo_header_checksum(src, dst, 17, seg) != want
    assert impl.pseudo_header_checksum(src, dst, 6, seg + b"\0\0") != want   # the length is covered


# --- RFC 1624 incremental update --------------------------------------------------------


@props(300)
@given(words=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=40), where=st.data())
def test_incremental_update_matches_full_recompute(impl, words, where):
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') equals the checksum recomputed from scratch."""
    field = where.draw(st.integers(0, len(words) - 1))          # the checksum field
    index = where.draw(st.integers(0, len(words) - 1).filter(lambda i: i != field))
    new_word = where.draw(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 0xFFFF])))
    data = bytearray(struct.pack(f"!{len(words)}H", *words))
    struct.pack_into("!H", data, 2 * field, 0)
    old_checksum = impl.checksum(data)
    old_word = struct.unpack_from("!H", data, 2 * index)[0]
    struct.pack_into("!H", data, 2 * index, new_word)
    updated = impl.incremental_update(old_checksum, old_word, new_word)
    full = impl.checksum(data)
    if any(data):
        assert updated == full
    else:
        # RFC 1624 §3: the one case where eqn. 3 gives +0 and a recompute -0.
        assert (updated, full) == (0x0000, 0xFFFF)
    struct.pack_into("!H", data, 2 * field, updated)
    if any(data):
        assert impl.checksum(data) == 0


def test_incremental_update_ttl_decrement(impl):
    """Forwarding: TTL 64 -> 63 in the TTL/protocol word of a real header."""
    header = bytearray(IPV4_HEADER)
    struct.pack_into("!H", header, 10, impl.checksum(header))
    old_word = struct.unpack_from("!H", header, 8)[0]
    header[8] -= 1
    new_word = struct.unpack_from("!H", header, 8)[0]
    new_checksum = impl.incremental_update(struct.unpack_from("!H", header, 10)[0], old_word, new_word)
    struct.pack_into("!H", header, 10, new_checksum)
    assert impl.checksum(header) == 0
    assert new_checksum == 0xB961   # 0xB861 + 0x0100, by hand


# --- bad arguments: both implementations refuse the same way -------------------------


@pytest.mark.parametrize("call", [
    lambda m: m.sum16(b"ab", 0x10000),
    lambda m: m.sum16(b"ab", -1),
    lambda m: m.pseudo_header_checksum(1 << 32, 0, 6, b""),
    lambda m: m.pseudo_header_checksum(0, -1, 6, b""),
    lambda m: m.pseudo_header_checksum(0, 0, 256, b""),
    lambda m: m.incremental_update(0x10000, 0, 0),
    lambda m: m.incremental_update(0, -1, 0),
])
def test_out_of_range_integers_raise_overflow(impl, call):
    with pytest.raises(OverflowError):
        call(impl)


def test_not_a_buffer_raises_type_error(impl):
    with pytest.raises(TypeError):
        impl.checksum("text is not bytes")


def test_rfc1624_example(impl):
    """RFC 1624 §3: HC 0xDD2F, m 0x5555 -> m' 0x3285: eqn. 3 gives 0x0000 (eqn. 2 would give 0xFFFF)."""
    assert impl.incremental_update(0xDD2F, 0x5555, 0x3285) == 0x0000


# --- no copies on the native path -------------------------------------------------------


def test_native_reads_buffers_in_place():
    if not _native_available():
        pytest.skip(checksum.describe())
    big = bytearray(b"\x5a" * (8 << 20))
    view = memoryview(big)[3:-5]
    want = checksum.checksum(view)           # warm up (cffi caches types on first use)
    tracemalloc.start()
    try:
        for fn in (checksum.checksum, checksum.sum16):
            fn(view)
        checksum.pseudo_header_checksum(1, 2, 6, view)
        checksum.checksum(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"peak Python allocation {peak} B: a copy of the 8 MiB buffer was made"
    assert want == checksum_pure.checksum(view)


# --- the CPython entry to the pseudo-header checksum (native/entry.c) ----------------------


def _entry():
    if not _native_available():
        pytest.skip(checksum.describe())
    try:
        from netstack import _native_entry
    except ImportError:
        if os.environ.get("NETSTACK_REQUIRE_NATIVE", "").strip().lower() not in ("", "0", "no", "false", "off"):
            raise
        pytest.skip("netstack._native_entry not built: the cffi wrapper is used")
    return _native_entry


def test_the_entry_is_what_pseudo_header_checksum_calls():
    entry = _entry()
    assert checksum.pseudo_header_checksum is entry.pseudo_header_checksum
    assert checksum.native_entry() is entry
    assert "no CPython entry" not in checksum.describe()


@props(300)
@given(src=addresses, dst=addresses, proto=st.integers(0, 255), data=st.binary(max_size=3000),
       head=st.integers(0, 9), tail=st.integers(0, 9))
def test_the_entry_and_the_cffi_call_agree_on_every_kernel(src, dst, proto, data, head, tail):
    """The entry calls the cffi module's own ns_pseudo_checksum, so the kernel selection applies to it:
    each kernel, through either door, on bytes and on views starting at any alignment."""
    entry = _entry()
    whole = memoryview(bytearray(bytes(head) + data + bytes(tail)))
    view = whole[head:head + len(data)]
    want = ref_checksum(struct.pack("!IIBBH", src, dst, 0, proto, len(data)) + data)
    default = checksum.native_path()
    try:
        for path in checksum.native_paths():
            checksum.select_native_path(path)
            for buf in (data, view):
                assert entry.pseudo_header_checksum(src, dst, proto, buf) == want
                assert checksum._pseudo_header_checksum_cffi(src, dst, proto, buf) == want
    finally:
        checksum.select_native_path(default)


def test_the_entry_refuses_what_the_cffi_call_refuses():
    entry = _entry()
    with pytest.raises(TypeError):
        entry.pseudo_header_checksum(1, 2, 6)
    with pytest.raises(TypeError):
        entry.pseudo_header_checksum(1.0, 2, 6, b"")
    with pytest.raises(TypeError):
        entry.pseudo_header_checksum(1, 2, 6, "text")
    with pytest.raises(BufferError):
        entry.pseudo_header_checksum(1, 2, 6, memoryview(bytearray(8))[::2])   # not contiguous


def test_the_entry_cannot_be_pointed_at_another_function():
    """The entry takes ns_pseudo_checksum's address from netstack._checksum itself, at import:
    nothing from Python sets it (a bind(address) taking any integer crashed the process)."""
    entry = _entry()
    assert not hasattr(entry, "bind")
    assert entry.pseudo_header_checksum(1, 2, 6, b"ab") == checksum._pseudo_header_checksum_cffi(1, 2, 6, b"ab")


# --- buffers whose items are not bytes: taken as their bytes, by every twin ---------------


def _wide_item_buffers(data: bytes) -> list:
    """``data`` (a multiple of 4 bytes long) in buffers whose items are not bytes."""
    return [memoryview(data).cast("H"), array.array("I", data)]


@pytest.mark.parametrize("length", [0, 4, 40, 1500])
def test_buffers_of_wider_items_are_taken_as_their_bytes(impl, length):
    data = bytes((7 * i + 3) & 0xFF for i in range(length))
    m = impl
    doors = [m.pseudo_header_checksum]
    if m is checksum and _native_available():
        doors.append(checksum._pseudo_header_checksum_cffi)    # the cffi call behind the entry
    for buf in _wide_item_buffers(data):
        assert m.checksum(buf) == m.checksum(data) == ref_checksum(data)
        assert m.sum16(buf, 5) == m.sum16(data, 5)
        for door in doors:
            assert door(1, 2, 6, buf) == door(1, 2, 6, data)


def test_a_buffer_that_is_not_contiguous_raises_buffer_error(impl):
    m = impl
    strided = memoryview(bytearray(range(16)))[::2]
    for call in (lambda: m.checksum(strided), lambda: m.sum16(strided), lambda: m.pseudo_header_checksum(1, 2, 6, strided)):
        with pytest.raises(BufferError):
            call()
