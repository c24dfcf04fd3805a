"""Verify-then-sendfile: a file's bytes sent to a socket by the kernel, each
block checked against its digest just before it goes.

:func:`send_verified` serves bytes ``offset`` to ``offset + length - 1`` of
an open file whose block digests are known (:class:`imgmw.hashing.
BlockDigests`, blocks aligned from the first byte of the file). For each
block holding some of those bytes, in order, it

1. reads the whole block with ``os.preadv`` into one buffer of one block,
   reused for the whole download (no Python object per block, memory flat);
2. computes its XXH3-64 over that buffer and compares it with the recorded
   digest;
3. only when it matches, sends the part of the block inside the range with
   ``os.sendfile`` from the file to the socket: the bytes on the wire are
   copied by the kernel from the page cache, not from the buffer.

A block that does not match, or that the file ends inside, is never sent:
:class:`BadBlock` is raised with the number of bytes sent before it, so the
caller cuts the response there (short of its ``Content-Length``).

Why ``preadv`` and not ``mmap``: measured on the 2-core development machine
over a 512 MiB file in tmpfs (process CPU per GiB, three runs, shared
machine), ``preadv`` into a reused buffer and XXH3 cost 0.21-0.22 s, an
``mmap`` of each block and XXH3 over a ``memoryview`` of it 0.23-0.28 s,
one ``mmap`` of the whole file 0.24-0.26 s. ``preadv`` is as cheap or
cheaper, and a file truncated while mapped would kill the worker with
``SIGBUS``, where ``preadv`` just returns fewer bytes.

Between the check and the send the file could change under the server
(the file store never rewrites an image's file: uploads go to a new file,
renamed): the window is one block's check, as for any verify-then-serve.
"""

import os
import selectors
import socket
import typing

from imgmw import hashing


class BadBlock(Exception):
    """Block ``index`` does not match its digest or is short.

    :ivar index: the block (counted from 0 at the start of the file).
    :ivar sent: bytes sent to the socket before it, by this call.
    :ivar what: why, for the log (``does not match its digest``).
    """

    def __init__(self, index: int, sent: int, what: str):
        super().__init__('block %d %s' % (index, what))
        self.index = index
        self.sent = sent
        self.what = what


def send_verified(sock: socket.socket, fd: int,
                  blocks: hashing.BlockDigests, size: int, offset: int,
                  length: int,
                  buffer: typing.Optional[bytearray] = None) -> int:
    """Send ``length`` bytes of ``fd`` from ``offset``, verified by block.

    :param size: the size of the whole file the digests describe.
    :param buffer: a buffer of at least one block to reuse.
    :returns: the bytes sent (``length``).
    :raises BadBlock: before sending any byte of a bad block.
    :raises OSError: from the socket (the client went away).
    """
    block_size = blocks.block_size
    if buffer is None or len(buffer) < block_size:
        buffer = bytearray(block_size)
    view = memoryview(buffer)
    sent = 0
    end = offset + length
    index = offset // block_size
    try:
        while offset < end:
            start = index * block_size
            want = min(block_size, size - start)
            if want <= 0:
                raise BadBlock(index, sent, 'is beyond the data')
            got = _read_block(fd, view[:want], start)
            if got != want:
                raise BadBlock(index, sent, 'ends after %d of its %d bytes'
                               % (got, want))
            if hashing.block_digest(view[:want]) != blocks.digest(index):
                raise BadBlock(index, sent, 'does not match its digest')
            count = min(start + want, end) - offset
            sendfile_all(sock, fd, offset, count)
            sent += count
            offset += count
            index += 1
    finally:
        view.release()
    return sent


def _read_block(fd: int, view: memoryview, start: int) -> int:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], start + got)
        if n == 0:
            break
        got += n
    return got


def sendfile_all(sock: socket.socket, fd: int, offset: int,
                 count: int) -> None:
    """``os.sendfile`` ``count`` bytes of ``fd`` from ``offset``, all of them.

    Honours a socket timeout the way :meth:`socket.socket.sendall` does
    (waiting for the socket to be writable).
    """
    timeout = sock.gettimeout()
    out = sock.fileno()
    selector = None
    try:
        while count > 0:
            try:
                n = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                if timeout == 0.0:
                    raise
                if selector is None:
                    selector = selectors.DefaultSelector()
                    selector.register(out, selectors.EVENT_WRITE)
                if not selector.select(timeout):
                    raise socket.timeout('timed out')
                continue
            if n == 0:
                # The file ended: cannot happen after a full read of the
                # block, unless it was truncated meanwhile.
                raise BrokenPipeError('the file ended during sendfile')
            offset += n
            count -= n
    finally:
        if selector is not None:
            selector.close()
