/* Durable file writes for a batch of payloads, with the GIL released once.
 *
 * Why C: a payload put is about ten system calls (open, write, fsync, close,
 * rename, open/fsync/close of the directory). From a Python worker thread each
 * of them releases the GIL and must win it back from the busy event loop,
 * which under load made a batch of twenty puts take 20-25 ms for 2-5 ms of
 * I/O (bench/README.md). Here a whole batch runs without the GIL.
 *
 * write_files(items, fsync, make_dirs=False) -> list[int]
 *   items: sequence of (directory: bytes, temp_name: bytes, final_name: bytes,
 *          data: bytes-like); names are single path components in directory.
 *   With make_dirs, a missing directory and its missing parent are created
 *   (mode 0700; the staged-payload path, whose syncfs makes them durable).
 *   For each item: create temp_name exclusively (mode 0600), write all of data,
 *   fsync it (if fsync), rename it onto final_name, fsync the directory (if
 *   fsync). The result holds 0 or the errno of the step that failed, per item;
 *   a failed item leaves no temp file behind. storage/durable.py has the same
 *   recipe in Python for installs without a compiler.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *dir;
    const char *tmp;
    const char *final;
    Py_buffer data;
    int error;
} item_t;

/* mkdir that counts an existing directory as success; 0 or errno. */
static int make_one(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return errno;
}

/* The directory's parent, then the directory (the store's two shard levels). */
static int make_dir_and_parent(const char *dir)
{
    size_t len = strlen(dir);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return ENOMEM;
    memcpy(copy, dir, len + 1);
    char *slash = strrchr(copy, '/');
    int e = 0;
    if (slash != NULL && slash != copy) {
        *slash = '\0';
        e = make_one(copy);
    }
    free(copy);
    return e ? e : make_one(dir);
}

static int write_one(item_t *it, int do_fsync, int make_dirs)
{
    int dirfd = open(it->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 && errno == ENOENT && make_dirs) {
        int e = make_dir_and_parent(it->dir);
        if (e)
            return e;
        dirfd = open(it->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dirfd < 0)
        return errno;
    int fd = openat(dirfd, it->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        close(dirfd);
        return e;
    }
    const char *p = (const char *)it->data.buf;
    Py_ssize_t left = it->data.len;
    int e = 0;
    while (left > 0) {
        ssize_t n = write(fd, p, (size_t)left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            e = errno;
            break;
        }
        p += n;
        left -= n;
    }
    if (!e && do_fsync && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e && errno != EINTR)
        e = errno;
    if (!e && renameat(dirfd, it->tmp, dirfd, it->final) != 0)
        e = errno;
    if (e) {
        unlinkat(dirfd, it->tmp, 0);
        close(dirfd);
        return e;
    }
    if (do_fsync && fsync(dirfd) != 0)
        e = errno;
    close(dirfd);
    return e;
}

static PyObject *write_files(PyObject *self, PyObject *args)
{
    PyObject *seq_arg;
    int do_fsync;
    int make_dirs = 0;
    if (!PyArg_ParseTuple(args, "Op|p:write_files", &seq_arg, &do_fsync, &make_dirs))
        return NULL;
    PyObject *seq = PySequence_Fast(seq_arg, "items must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    item_t *items = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(item_t));
    if (items == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t ready = 0;
    PyObject *result = NULL;
    for (; ready < n; ready++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, ready);
        item_t *it = &items[ready];
        /* y: bytes only (no NUL inside); y*: any contiguous buffer. The tuple keeps
         * the bytes objects alive until seq is released. */
        if (!PyArg_ParseTuple(t, "yyyy*:write_files item", &it->dir, &it->tmp, &it->final,
                              &it->data))
            goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        items[i].error = write_one(&items[i], do_fsync, make_dirs);
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *code = PyLong_FromLong(items[i].error);
        if (code == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, code);
    }
done:
    for (Py_ssize_t i = 0; i < ready; i++)
        PyBuffer_Release(&items[i].data);
    PyMem_Free(items);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"write_files", write_files, METH_VARARGS,
     "Write, fsync and rename a batch of files with the GIL released once."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "storage._durable", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__durable(void)
{
    return PyModule_Create(&module);
}
