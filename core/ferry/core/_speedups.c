/* The serving path's per-row loops, compiled: what ferry.core.speedups runs when this
 * module was built (scripts/build_speedups.py), each function the exact counterpart of a
 * pure-Python one there (py_*), tested against the same oracle.
 *
 * Why C: at batch 100 a call spends about half its server CPU in Ferry's own Python, and
 * most of that in loops that run once per stored row or per value: cutting a row's
 * variable-width payloads out, checking which rows are of the reader's schema, writing a
 * varint per value and a tagged length per string. numpy has no cheap form for any of
 * them at a hundred rows (its cost per call is more than the loop's).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A row's varint length at *pos (at most 5 bytes, a u32's), and *pos moved past it.
 * Returns -1 where the row ends inside it or it runs longer. */
static int read_length(const unsigned char *row, Py_ssize_t size, Py_ssize_t *pos,
                       uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (*pos >= size) return -1;
        unsigned char byte = row[(*pos)++];
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

static Py_ssize_t varint_size(uint64_t value) {
    Py_ssize_t size = 1;
    while (value >= 0x80) {
        value >>= 7;
        size++;
    }
    return size;
}

static unsigned char *write_varint(unsigned char *out, uint64_t value) {
    while (value >= 0x80) {
        *out++ = (unsigned char)((value & 0x7F) | 0x80);
        value >>= 7;
    }
    *out++ = (unsigned char)value;
    return out;
}

PyDoc_STRVAR(split_var_doc,
             "split_var(rows, offset, count) -> list of count lists of bytes\n\n"
             "Each row's variable-width payloads, which start at offset, each a varint length\n"
             "and its bytes; ValueError where a row ends inside them.");

static PyObject *split_var(PyObject *self, PyObject *args) {
    PyObject *rows;
    Py_ssize_t offset, count;
    if (!PyArg_ParseTuple(args, "O!nn", &PyList_Type, &rows, &offset, &count)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *out = PyList_New(count);
    if (out == NULL) return NULL;
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *column = PyList_New(n);
        if (column == NULL) goto fail;
        PyList_SET_ITEM(out, j, column);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyBytes_Check(row)) {
            PyErr_Format(PyExc_TypeError, "row %zd is not bytes", i);
            goto fail;
        }
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(row);
        Py_ssize_t size = PyBytes_GET_SIZE(row), pos = offset;
        for (Py_ssize_t j = 0; j < count; j++) {
            uint64_t length;
            if (pos > size || read_length(data, size, &pos, &length) < 0 ||
                length > (uint64_t)(size - pos)) {
                PyErr_Format(PyExc_ValueError,
                             "stored row %zd ends inside its variable-width values", i);
                goto fail;
            }
            PyObject *payload = PyBytes_FromStringAndSize((const char *)data + pos, length);
            if (payload == NULL) goto fail;
            PyList_SET_ITEM(PyList_GET_ITEM(out, j), i, payload);
            pos += (Py_ssize_t)length;
        }
    }
    return out;
fail:
    Py_DECREF(out); /* items never set are NULL, which a list's dealloc skips */
    return NULL;
}

PyDoc_STRVAR(gather_rows_doc,
             "gather_rows(rows, version, fingerprint, missing, fixed_end)\n"
             "    -> (uniform, odd, prefixes, present)\n\n"
             "uniform: each row, missing where None; odd: the indexes of rows that are not\n"
             "of the reader's version and 4-byte fingerprint (at bytes 17..20) or shorter\n"
             "than fixed_end; prefixes: the first fixed_end bytes of every uniform row\n"
             "joined, or None where any row is odd; present: one byte per row, 1 where a\n"
             "row was stored.");

static PyObject *gather_rows(PyObject *self, PyObject *args) {
    PyObject *rows, *missing;
    int version;
    const char *fingerprint;
    Py_ssize_t fingerprint_size, fixed_end;
    if (!PyArg_ParseTuple(args, "O!iy#O!n", &PyList_Type, &rows, &version, &fingerprint,
                          &fingerprint_size, &PyBytes_Type, &missing, &fixed_end))
        return NULL;
    if (fingerprint_size != 4 || PyBytes_GET_SIZE(missing) < fixed_end || fixed_end < 21) {
        PyErr_SetString(PyExc_ValueError, "a 4-byte fingerprint and a full missing row");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *uniform = PyList_New(n), *odd = PyList_New(0);
    PyObject *present = PyBytes_FromStringAndSize(NULL, n);
    PyObject *prefixes = PyBytes_FromStringAndSize(NULL, n * fixed_end);
    if (uniform == NULL || odd == NULL || present == NULL || prefixes == NULL) goto fail;
    char *flags = PyBytes_AS_STRING(present);
    char *joined = PyBytes_AS_STRING(prefixes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (row == Py_None) {
            row = missing;
            flags[i] = 0;
        } else if (!PyBytes_Check(row)) {
            PyErr_Format(PyExc_TypeError, "row %zd is neither bytes nor None", i);
            goto fail;
        } else {
            flags[i] = 1;
            const char *data = PyBytes_AS_STRING(row);
            if (PyBytes_GET_SIZE(row) < fixed_end || (unsigned char)data[0] != version ||
                memcmp(data + 17, fingerprint, 4) != 0) {
                PyObject *index = PyLong_FromSsize_t(i);
                if (index == NULL || PyList_Append(odd, index) < 0) {
                    Py_XDECREF(index);
                    goto fail;
                }
                Py_DECREF(index);
            }
        }
        Py_INCREF(row);
        PyList_SET_ITEM(uniform, i, row);
        memcpy(joined + i * fixed_end, PyBytes_AS_STRING(row),
               PyBytes_GET_SIZE(row) < fixed_end ? PyBytes_GET_SIZE(row) : fixed_end);
    }
    if (PyList_GET_SIZE(odd)) {
        Py_DECREF(prefixes);
        Py_INCREF(Py_None);
        prefixes = Py_None;
    }
    return Py_BuildValue("(NNNN)", uniform, odd, prefixes, present);
fail:
    Py_XDECREF(uniform);
    Py_XDECREF(odd);
    Py_XDECREF(present);
    Py_XDECREF(prefixes);
    return NULL;
}

PyDoc_STRVAR(varints_doc,
             "varints(values) -> bytes\n\n"
             "The varints of int64 values (a C-contiguous buffer of 8-byte integers, or a\n"
             "sequence of ints), concatenated: what a packed protobuf int field holds\n"
             "(negative values as their 10-byte two's complement).");

static PyObject *varints(PyObject *self, PyObject *values) {
    if (PyObject_CheckBuffer(values)) {
        Py_buffer view;
        if (PyObject_GetBuffer(values, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            return NULL;
        if (view.itemsize != 8 || view.format == NULL ||
            strchr("qlQL", view.format[view.format[0] == '<' || view.format[0] == '=' ? 1 : 0]) ==
                NULL) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "varints needs 8-byte integers");
            return NULL;
        }
        Py_ssize_t n = view.len / 8, total = 0;
        const int64_t *items = (const int64_t *)view.buf;
        for (Py_ssize_t i = 0; i < n; i++) total += varint_size((uint64_t)items[i]);
        PyObject *out = PyBytes_FromStringAndSize(NULL, total);
        if (out != NULL) {
            unsigned char *cursor = (unsigned char *)PyBytes_AS_STRING(out);
            for (Py_ssize_t i = 0; i < n; i++) cursor = write_varint(cursor, (uint64_t)items[i]);
        }
        PyBuffer_Release(&view);
        return out;
    }
    PyObject *sequence = PySequence_Fast(values, "varints needs integers");
    if (sequence == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence), total = 0;
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t value = PyLong_AsUnsignedLongLongMask(items[i]);
        if (value == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(sequence);
            return NULL;
        }
        total += varint_size(value);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out != NULL) {
        unsigned char *cursor = (unsigned char *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++)
            cursor = write_varint(cursor, PyLong_AsUnsignedLongLongMask(items[i]));
    }
    Py_DECREF(sequence);
    return out;
}

PyDoc_STRVAR(byte_strings_doc,
             "byte_strings(key, values) -> bytes\n\n"
             "A repeated bytes field: per value, the field's key bytes, a varint length and\n"
             "the value.");

static PyObject *byte_strings(PyObject *self, PyObject *args) {
    const char *key;
    Py_ssize_t key_size;
    PyObject *values;
    if (!PyArg_ParseTuple(args, "y#O!", &key, &key_size, &PyList_Type, &values)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values), total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        if (!PyBytes_Check(value)) {
            PyErr_Format(PyExc_TypeError, "value %zd is not bytes", i);
            return NULL;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(value);
        total += key_size + varint_size((uint64_t)size) + size;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) return NULL;
    unsigned char *cursor = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        Py_ssize_t size = PyBytes_GET_SIZE(value);
        memcpy(cursor, key, key_size);
        cursor = write_varint(cursor + key_size, (uint64_t)size);
        memcpy(cursor, PyBytes_AS_STRING(value), size);
        cursor += size;
    }
    return out;
}

PyDoc_STRVAR(str_keys_doc,
             "str_keys(values) -> list of bytes\n\n"
             "The canonical key of each one-string entity: 0x02, a 4-byte big-endian\n"
             "length and the UTF-8 bytes.");

/* The key of one string entity (0x02, u32 big-endian length, UTF-8), or NULL. */
static PyObject *str_key(PyObject *item, Py_ssize_t i) {
    Py_ssize_t size;
    if (!PyUnicode_Check(item)) {
        PyErr_Format(PyExc_TypeError, "entity key %zd is not a string", i);
        return NULL;
    }
    const char *text = PyUnicode_AsUTF8AndSize(item, &size);
    if (text == NULL) return NULL;
    if (size > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "an entity key longer than 4 GiB");
        return NULL;
    }
    PyObject *key = PyBytes_FromStringAndSize(NULL, 5 + size);
    if (key == NULL) return NULL;
    unsigned char *cursor = (unsigned char *)PyBytes_AS_STRING(key);
    cursor[0] = 0x02;
    for (int b = 0; b < 4; b++) cursor[1 + b] = (unsigned char)(size >> (24 - 8 * b));
    memcpy(cursor + 5, text, size);
    return key;
}

/* The key of one integer entity (0x01, the int64 big-endian, sign bit flipped), or NULL. */
static PyObject *int_key(PyObject *item, Py_ssize_t i) {
    uint64_t value = PyLong_AsUnsignedLongLongMask(item);
    if (value == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    value ^= (uint64_t)1 << 63;
    PyObject *key = PyBytes_FromStringAndSize(NULL, 9);
    if (key == NULL) return NULL;
    unsigned char *cursor = (unsigned char *)PyBytes_AS_STRING(key);
    cursor[0] = 0x01;
    for (int b = 0; b < 8; b++) cursor[1 + b] = (unsigned char)(value >> (56 - 8 * b));
    return key;
}

/* One key per item of a sequence, each made by ``one``. */
static PyObject *keys_of(PyObject *values, PyObject *(*one)(PyObject *, Py_ssize_t)) {
    PyObject *sequence = PySequence_Fast(values, "entity keys need a sequence");
    if (sequence == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *key = one(items[i], i);
        if (key == NULL) Py_CLEAR(out); /* items never set are NULL, which dealloc skips */
        else PyList_SET_ITEM(out, i, key);
    }
    Py_DECREF(sequence);
    return out;
}

static PyObject *str_keys(PyObject *self, PyObject *values) { return keys_of(values, str_key); }

PyDoc_STRVAR(int_keys_doc,
             "int_keys(values) -> list of bytes\n\n"
             "The canonical key of each one-integer entity: 0x01 and the int64 big-endian\n"
             "with its sign bit flipped (values taken modulo 2**64, as the Python one does).");

static PyObject *int_keys(PyObject *self, PyObject *values) { return keys_of(values, int_key); }

static PyMethodDef methods[] = {
    {"split_var", split_var, METH_VARARGS, split_var_doc},
    {"gather_rows", gather_rows, METH_VARARGS, gather_rows_doc},
    {"varints", varints, METH_O, varints_doc},
    {"byte_strings", byte_strings, METH_VARARGS, byte_strings_doc},
    {"str_keys", str_keys, METH_O, str_keys_doc},
    {"int_keys", int_keys, METH_O, int_keys_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ferry.core._speedups",
    "The serving path's per-row loops, compiled (see ferry.core.speedups).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
