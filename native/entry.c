/*
 * netstack._checksum_entry: a CPython entry point to the native pseudo-header
 * checksum (RFC 9293 §3.1), the one native call made for every TCP segment
 * received or sent.
 *
 * Through cffi that call costs a Python frame (netstack.checksum's wrapper),
 * an ffi.from_buffer object for the memoryview, and cffi's argument
 * conversion: about 5x the checksum of a 1500-byte segment itself.  This
 * module takes the buffer with the buffer protocol (no copy, no object made)
 * in a METH_FASTCALL function, and calls the cffi module's own
 * ns_pseudo_checksum through a pointer handed over by bind(): the sums, the
 * kernels and the run-time kernel selection (select_native_path) stay in
 * checksum.c, compiled once, in netstack._checksum.
 *
 * Errors mirror the cffi call's: OverflowError for an address outside
 * 0..2**32-1 or a protocol outside 0..255, TypeError for a non-integer or
 * something that is not a contiguous buffer.
 *
 * Stable ABI (3.11: PyObject_GetBuffer is part of it from then on).
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

typedef uint16_t (*pseudo_fn)(uint32_t, uint32_t, uint8_t, const char *, size_t);

static pseudo_fn pseudo = NULL;

static PyObject *
entry_bind(PyObject *self, PyObject *arg)
{
    (void)self;
    unsigned long long address = PyLong_AsUnsignedLongLong(arg);
    if (address == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (address == 0) {
        PyErr_SetString(PyExc_ValueError, "bind() needs the address of ns_pseudo_checksum");
        return NULL;
    }
    pseudo = (pseudo_fn)(uintptr_t)address;
    Py_RETURN_NONE;
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
    if (pseudo == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "netstack._checksum_entry is not bound to netstack._checksum");
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

static PyMethodDef entry_methods[] = {
    {"bind", entry_bind, METH_O,
     "bind(address): call ns_pseudo_checksum at this address (netstack.checksum does it at import)."},
    {"pseudo_header_checksum", (PyCFunction)(void (*)(void))entry_pseudo_header_checksum, METH_FASTCALL,
     "pseudo_header_checksum(src, dst, proto, data): netstack.checksum.pseudo_header_checksum, natively."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef entry_module = {
    PyModuleDef_HEAD_INIT, "netstack._checksum_entry",
    "CPython entry point to the native pseudo-header checksum (see native/entry.c).", -1, entry_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__checksum_entry(void)
{
    return PyModule_Create(&entry_module);
}
