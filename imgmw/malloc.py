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

:func:`tune` (called by the data app at start-up, once a process) sets
three of glibc's parameters (fixing the thresholds also stops their
adjustment):

``M_MMAP_THRESHOLD`` at :data:`MMAP_THRESHOLD` (4 MiB)
    Chunks of image data, and the servers' buffers around them, come from
    the heaps, where freed memory is used again while it is still mapped.

``M_TRIM_THRESHOLD`` at :data:`TRIM_THRESHOLD` (2 MiB)
    A heap keeps up to that much free memory at its top instead of giving
    it back after each chunk and faulting it in again for the next.

``M_ARENA_MAX`` at :data:`ARENA_MAX` (2)
    The threads share two heaps besides the main one, instead of up to one
    for each thread (eight a core): each heap keeps its own free top, and
    a worker's threads, its hash threads and its stores' writer threads
    would otherwise hold one each.

:func:`release` (``malloc_trim``) gives the free memory of every heap back
to the system. imgmw-api's worker calls it from its event loop, at most
once a second and only after requests were served
(:mod:`imgmw.cmd.worker`), so that a worker at rest holds what it holds
fresh; under another server a heap keeps at most the free memory of its
busiest moment, up to 2 MiB a heap.

Measured on the development machine (two workers; a 1 GiB upload, then
three rounds of eight concurrent 256 MiB uploads), server CPU a GiB and
worker RSS in MiB, fresh and after each round::

    setting                              CPU s/GiB  fresh  1   2   3
    mmap threshold 128 KiB (before)         5.0       78   85  ..  97
    4 MiB, trim 16 MiB, arenas unbounded    4.4       78   96  98  101
    4 MiB, trim 4 MiB, arenas unbounded     4.7       78   94  97  101
    4 MiB, trim 2 MiB, 2 arenas             4.4       78   87  87  93

(the row before: 97 after the same kind of mixed run, in the table of
the previous setting's measurement). MD5 and SHA-512 are about 3.1 of
those CPU seconds.

``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
``MALLOC_ARENA_MAX`` in the environment, when set, win (the operator's
choice is kept, and nothing is touched); other C libraries than glibc are
left alone.
"""

import ctypes
import ctypes.util
import logging
import os


LOG = logging.getLogger(__name__)

#: glibc's parameters of mallopt().
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Allocations from this size on get a mapping of their own.
MMAP_THRESHOLD = 4 * 1024 * 1024

#: Free memory a heap keeps at its top before giving it back by itself.
TRIM_THRESHOLD = 2 * 1024 * 1024

#: Heaps the threads share, besides the main one.
ARENA_MAX = 2

#: The environment variables of glibc that set them instead.
ENVIRONMENT = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_',
               'MALLOC_ARENA_MAX')

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
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD, 'M_TRIM_THRESHOLD'),
            (M_ARENA_MAX, ARENA_MAX, 'M_ARENA_MAX')):
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
