"""Keeping a worker's memory flat and its data moves cheap: glibc's allocator.

Image data moves through a worker in chunks of about 1 MiB, allocated and
freed by several threads at once. glibc's ``malloc`` serves a request of
that size with ``mmap`` at first, but raises its threshold each time such a
block is freed (up to 32 MiB), after which 1 MiB chunks come from the
per-thread heaps ("arenas"), where they fragment and are seldom given back:
a worker grew from about 84 to 119 MiB of RSS after a mixed run of uploads,
downloads, ranges and small requests, and kept it. Giving every chunk a
mapping of its own (a threshold fixed at 128 KiB) kept the memory flat but
made every chunk cost its page faults and the kernel's clearing of each
page: a third of a 1 GiB upload's CPU, beside MD5 and SHA-512.

:func:`tune` (called by the data app at start-up, once a process) fixes
both of glibc's thresholds, which also stops their adjustment:

``M_MMAP_THRESHOLD`` at :data:`MMAP_THRESHOLD` (4 MiB)
    Chunks of image data, and the servers' buffers around them, come from
    the heaps, where freed memory is used again while it is still mapped.

``M_TRIM_THRESHOLD`` at :data:`TRIM_THRESHOLD` (16 MiB)
    A heap keeps up to that much free memory at its top instead of giving
    it back after each chunk and faulting it in again for the next.

:func:`release` (``malloc_trim``) gives the free memory of every heap back
to the system. imgmw-api's worker calls it from its event loop, at most
once a second and only after requests were served
(:mod:`imgmw.cmd.worker`), so that a worker at rest holds what it holds
fresh; under another server a heap keeps at most the free memory of its
busiest moment, up to 16 MiB, and never grows past it.

Measured on the development machine with ``tools/bench.py`` (one worker,
1 GiB uploads): server CPU a GiB went from 7.9 to about 4 s, MD5 and
SHA-512 being 3 of them, and the worker's RSS at rest after the whole
benchmark stayed under 100 MiB (``doc/source/benchmark.rst``).

``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in the
environment, when set, win (the operator's choice is kept, and neither
threshold is touched); other C libraries than glibc are left alone.
"""

import ctypes
import ctypes.util
import logging
import os


LOG = logging.getLogger(__name__)

#: glibc's parameters of mallopt().
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Allocations from this size on get a mapping of their own.
MMAP_THRESHOLD = 4 * 1024 * 1024

#: Free memory a heap keeps at its top before giving it back by itself.
TRIM_THRESHOLD = 16 * 1024 * 1024

#: The environment variables of glibc that set them instead.
ENVIRONMENT = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_')

_done = False
_libc = None


def _glibc():
    """The C library when it is glibc (``mallopt``, ``malloc_trim``)."""
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or None)
            libc.mallopt, libc.malloc_trim
        except (OSError, AttributeError):
            libc = False
        _libc = libc
    return _libc or None


def tune() -> bool:
    """Fix glibc's thresholds (see the module); once a process.

    :returns: whether the settings were made now.
    """
    global _done
    if _done or any(name in os.environ for name in ENVIRONMENT):
        return False
    _done = True
    libc = _glibc()
    if libc is None:
        return False
    for param, value, name in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD, 'M_MMAP_THRESHOLD'),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD, 'M_TRIM_THRESHOLD')):
        if not libc.mallopt(param, value):
            LOG.warning('mallopt(%s) refused; worker memory may grow with '
                        'fragmentation', name)
            return False
    return True


def release() -> bool:
    """Give the free memory of every heap back to the system.

    :returns: whether any was given back.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
