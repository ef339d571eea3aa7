/*
 * netstack._native_entry: CPython entry points to native code for what is
 * done to every datagram received: the IPv4 layer's fast-path read of a plain
 * header (netstack.wire.ipv4.read_plain_ipv4), the read of the TCP header that
 * header prediction takes (netstack.wire.tcp.predict_ts_segment), each with a
 * pure-Python twin that says exactly what it checks, and the pseudo-header
 * checksum (RFC 9293 §3.1), also computed for every segment sent.
 *
 * Through cffi the checksum call costs a Python frame (netstack.checksum's
 * wrapper), an ffi.from_buffer object for the memoryview, and cffi's argument
 * conversion: about 5x the checksum of a 1500-byte segment itself.  These
 * functions take the buffer with the buffer protocol (no copy, no object
 * made) in METH_FASTCALL functions, and call the cffi module's own
 * ns_pseudo_checksum through a pointer this module takes from that module
 * itself when it is imported (nothing from Python can set it): the sums, the
 * kernels and the run-time kernel selection (select_native_path) stay in
 * checksum.c, compiled once, in netstack._checksum.
 *
 * A buffer is taken as its bytes, whatever its items (an array('I'), a
 * memoryview cast to 'H'), as the Python twins take it.  Errors mirror the
 * Python versions': OverflowError for an address outside 0..2**32-1 or a
 * protocol outside 0..255, TypeError for a non-integer or something that is
 * not a buffer, BufferError for a buffer that is not C-contiguous.
 *
 * Stable ABI (3.11: PyObject_GetBuffer is part of it from then on).
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

typedef uint16_t (*pseudo_fn)(uint32_t, uint32_t, uint8_t, const char *, size_t);

/* ns_pseudo_checksum of netstack._checksum (find_pseudo), set once, at import */
static pseudo_fn pseudo = NULL;

/* The address of netstack._checksum's ns_pseudo_checksum, as the cffi module gives it:
 * int(ffi.cast("uintptr_t", ffi.addressof(lib, "ns_pseudo_checksum"))).  0 with an exception set
 * if that module cannot be imported or does not have it. */
static pseudo_fn
find_pseudo(void)
{
    PyObject *mod, *ffi = NULL, *lib = NULL, *fn = NULL, *cast = NULL, *num = NULL;
    unsigned long long address = 0;

    mod = PyImport_ImportModule("netstack._checksum");
    if (mod == NULL)
        return NULL;
    ffi = PyObject_GetAttrString(mod, "ffi");
    if (ffi != NULL)
        lib = PyObject_GetAttrString(mod, "lib");
    if (lib != NULL)
        fn = PyObject_CallMethod(ffi, "addressof", "Os", lib, "ns_pseudo_checksum");
    if (fn != NULL)
        cast = PyObject_CallMethod(ffi, "cast", "sO", "uintptr_t", fn);
    if (cast != NULL)
        num = PyNumber_Long(cast);
    if (num != NULL) {
        address = PyLong_AsUnsignedLongLong(num);
        if (address == (unsigned long long)-1 && PyErr_Occurred())
            address = 0;
        else if (address == 0)
            PyErr_SetString(PyExc_ImportError, "netstack._checksum has no ns_pseudo_checksum");
    }
    Py_XDECREF(num);
    Py_XDECREF(cast);
    Py_XDECREF(fn);
    Py_XDECREF(lib);
    Py_XDECREF(ffi);
    Py_DECREF(mod);
    return (pseudo_fn)(uintptr_t)address;
}

/* An int in 0..top, as cffi converts it (OverflowError outside, TypeError for a non-int). */
static int
as_field(PyObject *obj, unsigned long top, const char *name, unsigned long *out)
{
    unsigned long v = PyLong_AsUnsignedLong(obj);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > top) {
        PyErr_Format(PyExc_OverflowError, "%s=%lu does not fit in 0..%lu", name, v, top);
        return -1;
    }
    *out = v;
    return 0;
}

static PyObject *
entry_pseudo_header_checksum(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    unsigned long src, dst, proto;
    Py_buffer view;
    uint16_t result;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "pseudo_header_checksum(src, dst, proto, data) takes 4 arguments, "
                     "%zd given", nargs);
        return NULL;
    }
    if (as_field(args[0], 0xFFFFFFFFul, "src", &src) < 0
            || as_field(args[1], 0xFFFFFFFFul, "dst", &dst) < 0
            || as_field(args[2], 0xFFul, "proto", &proto) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[3], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    result = pseudo((uint32_t)src, (uint32_t)dst, (uint8_t)proto, (const char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(result);
}

static inline uint32_t
be16(const unsigned char *p)
{
    return ((uint32_t)p[0] << 8) | p[1];
}

static inline uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* A tuple of n ints. */
static PyObject *
tuple_of(const uint32_t *values, int n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLong(values[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SetItem(t, i, v);       /* steals v */
    }
    return t;
}

/* netstack.wire.tcp.predict_ts_segment: see its pure-Python twin there.  None unless the
 * segment is at least 32 bytes with data offset 8, flags ACK or ACK|PSH and NOP,NOP,TS first;
 * then False when ``verify`` and the checksum does not verify; else the tuple
 * (sport, dport, seq, ack, window, tsval, tsecr). */
static PyObject *
entry_predict_ts_segment(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    unsigned long src = 0, dst = 0;
    Py_buffer view;
    const unsigned char *p;
    uint32_t offflags;
    int verify;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "predict_ts_segment(src, dst, segment, verify) takes 4 arguments, "
                     "%zd given", nargs);
        return NULL;
    }
    verify = PyObject_IsTrue(args[3]);
    if (verify < 0)
        return NULL;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    p = (const unsigned char *)view.buf;
    if (view.len < 32)
        goto not_predicted;
    offflags = be16(p + 12);
    if ((offflags != 0x8010 && offflags != 0x8018) || be32(p + 20) != 0x0101080Au)
        goto not_predicted;
    if (verify) {
        /* the addresses are read only now, as the twin passes them to the checksum only now */
        if (as_field(args[0], 0xFFFFFFFFul, "src", &src) < 0 || as_field(args[1], 0xFFFFFFFFul, "dst", &dst) < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (pseudo((uint32_t)src, (uint32_t)dst, 6, (const char *)p, (size_t)view.len) != 0) {
            PyBuffer_Release(&view);
            Py_RETURN_FALSE;
        }
    }
    {
        const uint32_t fields[7] = { be16(p), be16(p + 2), be32(p + 4), be32(p + 8), be16(p + 14),
                                     be32(p + 24), be32(p + 28) };
        PyBuffer_Release(&view);
        return tuple_of(fields, 7);
    }

not_predicted:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* netstack.wire.ipv4.read_plain_ipv4: see its pure-Python twin there.  (protocol, source, total
 * length) of a datagram to ``addr`` with a 20-byte header (version 4, IHL 5), not a fragment, whose
 * total length fits the buffer and whose header checksum verifies (RFC 791 §3.1, RFC 1071); None
 * for anything else. */
static PyObject *
entry_read_plain_ipv4(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    Py_buffer view;
    const unsigned char *p;
    uint32_t tlen, sum;
    unsigned long addr;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "read_plain_ipv4(buf, addr) takes 2 arguments, %zd given", nargs);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    p = (const unsigned char *)view.buf;
    if (view.len < 20 || p[0] != 0x45)
        goto not_plain;
    tlen = be16(p + 2);
    if (tlen < 20 || (Py_ssize_t)tlen > view.len || (be16(p + 6) & 0x3FFF) != 0)
        goto not_plain;
    addr = PyLong_AsUnsignedLong(args[1]);
    if (addr == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();                  /* not an address we can be: nothing is for it */
        goto not_plain;
    }
    if (be32(p + 16) != addr)
        goto not_plain;
    sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += be16(p + i);
    if (sum % 0xFFFF != 0)              /* RFC 1071 §2: a valid header sums to -0 (modulo 2**16 - 1) */
        goto not_plain;
    {
        const uint32_t fields[3] = { p[9], be32(p + 12), tlen };
        PyBuffer_Release(&view);
        return tuple_of(fields, 3);
    }

not_plain:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef entry_methods[] = {
    {"pseudo_header_checksum", (PyCFunction)(void (*)(void))entry_pseudo_header_checksum, METH_FASTCALL,
     "pseudo_header_checksum(src, dst, proto, data): netstack.checksum.pseudo_header_checksum, natively."},
    {"predict_ts_segment", (PyCFunction)(void (*)(void))entry_predict_ts_segment, METH_FASTCALL,
     "predict_ts_segment(src, dst, segment, verify): netstack.wire.tcp.predict_ts_segment, natively."},
    {"read_plain_ipv4", (PyCFunction)(void (*)(void))entry_read_plain_ipv4, METH_FASTCALL,
     "read_plain_ipv4(buf, addr): netstack.wire.ipv4.read_plain_ipv4, natively."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef entry_module = {
    PyModuleDef_HEAD_INIT, "netstack._native_entry",
    "CPython entry points to the native pseudo-header checksum and header prediction read (native/entry.c).",
    -1, entry_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__native_entry(void)
{
    if (pseudo == NULL) {
        pseudo = find_pseudo();
        if (pseudo == NULL)
            return NULL;
    }
    return PyModule_Create(&entry_module);
}
