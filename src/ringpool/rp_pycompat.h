/* rp_pycompat.h - CPython API differences the binding papers over. */
#ifndef RP_PYCOMPAT_H
#define RP_PYCOMPAT_H
#include <Python.h>

/* Py_IsFinalizing is public from 3.13; _Py_IsFinalizing before. */
#if PY_VERSION_HEX >= 0x030D0000
#define rp_py_is_finalizing() Py_IsFinalizing()
#else
#define rp_py_is_finalizing() _Py_IsFinalizing()
#endif

/* Reference-count operations for code that Cython compiles as nogil but that
 * runs with the GIL held (the worker trampoline). */
#define rp_decref(o) Py_DECREF((PyObject *)(o))

#endif
