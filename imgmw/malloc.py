"""Keeping a worker's memory flat: glibc's allocator, told once at start-up.

Image data moves through a worker in chunks of about 1 MiB, allocated and
freed by several threads at once. glibc's ``malloc`` serves a request of
that size with ``mmap`` at first, but raises its threshold each time such a
block is freed (up to 32 MiB), after which 1 MiB chunks come from the
per-thread heaps ("arenas"), where they fragment and are seldom given back:
a worker grew from about 84 to 119 MiB of RSS after a mixed run of uploads,
downloads, ranges and small requests, and kept it.

:func:`tune` fixes the threshold at :data:`MMAP_THRESHOLD` (glibc's own
starting value) with ``mallopt(M_MMAP_THRESHOLD)``, which also stops its
adjustment: every chunk of image data is its own mapping, returned to the
system when freed. Measured on the development machine (one gthread worker
of 8 threads, three rounds of four concurrent 256 MiB uploads, each
followed by a full and a ranged download and 50 image shows, then a 1 GiB
upload), worker RSS in MiB::

    setting                          fresh  round 1  round 2  round 3  1 GiB
    glibc's default                     84       94      113      119    119
    MALLOC_ARENA_MAX=2                  84      105      107      115    114
    threshold fixed at 4 MiB            85       92       98      106    106
    threshold fixed at 128 KiB          84       88       92       96     97

The price is a mapping and its page faults per chunk, a few per cent of
the CPU an upload spends hashing. ``MALLOC_MMAP_THRESHOLD_`` in the
environment, when set, wins (the operator's choice is kept); other C
libraries than glibc are left alone.
"""

import ctypes
import ctypes.util
import logging
import os


LOG = logging.getLogger(__name__)

#: glibc's M_MMAP_THRESHOLD parameter of mallopt().
M_MMAP_THRESHOLD = -3

#: Allocations from this size on get a mapping of their own.
MMAP_THRESHOLD = 128 * 1024

_done = False


def tune() -> bool:
    """Fix glibc's mmap threshold (see module); once a process.

    :returns: whether the setting was made now.
    """
    global _done
    if _done or 'MALLOC_MMAP_THRESHOLD_' in os.environ:
        return False
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        LOG.warning('mallopt(M_MMAP_THRESHOLD) refused; worker memory may '
                    'grow with fragmentation')
        return False
    return True
