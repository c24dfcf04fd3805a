"""Block-verified reads: every byte a download serves, checked as it leaves
the store.

Each location of an image recorded since block digests exist carries the
XXH3-64 digest of every 1 MiB block of the data (computed in the same pass
as MD5 and the multihash, see :mod:`imgmw.hashing`; older images get them
from ``imgmw-manage backfill-blocks``). The data app reads a download from
the store in whole blocks, checks each against its digest and only then
hands its bytes on:

* a full download is verified as it streams, at the speed of the store
  (XXH3 runs at over 20 GiB/s on one core, so it costs about 45 ms of CPU
  per GiB, against one to two seconds for SHA-512);
* a range is read from the start of its first block to the end of its last
  one, every block is verified whole, and the edges are trimmed to the
  range, so partial downloads are verified too;
* a block that does not match (or data that ends early) is never sent: the
  body raises :class:`CorruptBlock`, logged at ERROR with the image, the
  store and the block, and the WSGI server cuts the connection. The client
  gets fewer bytes than ``Content-Length``: every byte it got was verified,
  and it never gets a complete corrupt body;
* the first block is read and verified before the response starts: when it
  is bad, the next location of the image is tried, and when none is good
  the answer is 503 ``Image data for <id> is unavailable`` (contract 5.7),
  as for data missing from every store.

When the app serves a body verified so, it says so in
``environ['imgmw.verified']``, and the checksum filter does not hash
it again. Locations without block digests (an image recorded before them,
until the backfill) are served as before, and the checksum filter verifies
full downloads of them against the image's multihash.

How a verified body reaches the socket depends on the server. Under
``imgmw-api``'s worker, a download from the file store (full or a range)
goes out with verify-then-sendfile (:mod:`imgmw.cmd.sendfile`,
:mod:`imgmw.verified_sendfile`): each block is read into one reused buffer
of a block, checked, then sent by the kernel from the file, only the part
inside the range; the worker's CPU per GiB is about that of the check plus
``sendfile``. Under any other WSGI server (uWSGI, mod_wsgi, gunicorn's own
workers), and for the s3 store, the body is iterated in Python, one
verified block at a time. Either way memory stays flat (one block per
download) and a bad block is never sent.

``verify_downloads = false`` (in ``[DEFAULT]`` or the app's section; it
also turns off the checksum filter's fallback when set in ``[DEFAULT]``)
serves the store's bytes unchecked.
"""

import logging
import typing

from imgmw.app import stores
from imgmw import environ as keys
from imgmw import hashing
from imgmw import verified_sendfile


LOG = logging.getLogger(__name__)


class CorruptBlock(stores.StoreError):
    """A block of a download does not match its digest, or is short.

    Raised from the body before any byte of that block is handed on, so
    that the WSGI server cuts the connection short of ``Content-Length``.
    Raised by :meth:`VerifyingStore.open` for the first block, it is a
    store error like any: the next location is tried.
    """


class VerifiedSlice:
    """``length`` bytes from ``offset`` of an image, verified block by block.

    :param body: the store's reader, positioned at the start of the block
        holding ``offset`` and giving at least the blocks up to the one
        holding the last byte.
    :param blocks: the location's digests.
    :param size: the image's size.
    :param where: names the image and location in the log.
    """

    #: What the download layer looks for (see module docstring).
    block_verified = True

    def __init__(self, body, blocks: hashing.BlockDigests, size: int,
                 offset: int, length: int, where: str):
        self._body = body
        self._blocks = blocks
        self._size = size
        self._index = offset // blocks.block_size
        self._skip = offset - self._index * blocks.block_size
        self._left = length
        self._where = where
        self._current = b''
        self._position = 0
        self.bytes_verified = 0

    def prefetch(self) -> None:
        """Read and verify the first block now (see :meth:`read`)."""
        if self._left > 0 and not self._current:
            self._current = self._next_block()
            self._position = 0

    def read(self, size: int = -1) -> bytes:
        if self._position >= len(self._current):
            if self._left <= 0:
                return b''
            self._current = self._next_block()
            self._position = 0
        current, start = self._current, self._position
        if start == 0 and (size is None or size < 0
                           or size >= len(current)):
            self._position = len(current)
            return current
        end = len(current) if size is None or size < 0 else start + size
        self._position = min(end, len(current))
        return current[start:self._position]

    def _next_block(self) -> bytes:
        block_size = self._blocks.block_size
        start = self._index * block_size
        want = min(block_size, self._size - start)
        data = self._read_exact(want)
        if len(data) != want:
            self._fail('ends after %d of its %d bytes' % (len(data), want))
        if hashing.block_digest(data) != self._blocks.digest(self._index):
            self._fail('does not match its digest')
        self._index += 1
        if self._skip or len(data) > self._left:
            data = data[self._skip:self._skip + self._left]
            self._skip = 0
        self._left -= len(data)
        self.bytes_verified += len(data)
        return data

    def _read_exact(self, want: int) -> bytes:
        data = self._body.read(want)
        if len(data) == want or not data:
            return data
        parts = [data]
        got = len(data)
        while got < want:
            more = self._body.read(want - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b''.join(parts)

    def _fail(self, what: str) -> typing.NoReturn:
        block_size = self._blocks.block_size
        LOG.error('%s: block %d (bytes %d-%d) %s; download cut after %d '
                  'bytes', self._where, self._index,
                  self._index * block_size,
                  min((self._index + 1) * block_size, self._size) - 1, what,
                  self.bytes_verified)
        raise CorruptBlock('%s: block %d is corrupt' % (self._where,
                                                        self._index))

    def can_sendfile(self) -> bool:
        """Whether :meth:`sendfile` can send the rest of the slice.

        True when the store's reader is a local file.
        """
        return hasattr(self._body, 'file_descriptor')

    def sendfile(self, sock) -> int:
        """Send the rest of the slice to ``sock``, verify-then-sendfile.

        The block already read and verified (:meth:`prefetch`) is sent from
        memory; every later one is checked in a reused buffer and sent by
        the kernel from the file (:func:`imgmw.verified_sendfile.
        send_verified`). A bad block is logged and raises
        :class:`CorruptBlock` exactly as :meth:`read` does, after every
        byte before it and none of it.

        :returns: the bytes sent.
        """
        sent = 0
        if self._position < len(self._current):
            rest = self._current[self._position:]
            sock.sendall(rest)
            sent += len(rest)
        self._current = b''
        self._position = 0
        if self._left <= 0:
            return sent
        block_size = self._blocks.block_size
        offset = self._index * block_size + self._skip
        try:
            done = verified_sendfile.send_verified(
                sock, self._body.file_descriptor(), self._blocks,
                self._size, offset, self._left)
        except verified_sendfile.BadBlock as err:
            self._index = err.index
            self._left -= err.sent
            self.bytes_verified += err.sent
            self._fail(err.what)
        self._index = -(-(offset + done) // block_size)
        self._skip = 0
        self._left -= done
        self.bytes_verified += done
        return sent + done

    def close(self) -> None:
        self._body.close()


def aligned(blocks: hashing.BlockDigests, size: int, offset: int,
            length: int) -> typing.Tuple[int, int]:
    """``(start, length)`` of the whole blocks holding the given bytes."""
    block_size = blocks.block_size
    start = offset // block_size * block_size
    end = min(size, -(-(offset + length) // block_size) * block_size)
    return start, max(end - start, 0)


class VerifyingStore:
    """A store as the download sees it, for one location with digests.

    ``open`` reads whole blocks and verifies them (:class:`VerifiedSlice`),
    and records the fact in the request's environ; everything else is the
    store's.
    """

    def __init__(self, store: stores.Store, blocks: hashing.BlockDigests,
                 record: typing.Mapping, environ: dict):
        self.store = store
        self.store_id = store.store_id
        self.blocks = blocks
        self.record = record
        self.environ = environ

    def size(self, url: str) -> int:
        return self.store.size(url)

    def open(self, url: str, offset: int = 0,
             length: typing.Optional[int] = None) -> VerifiedSlice:
        size = self.record['size'] or 0
        if length is None:
            length = max(size - offset, 0)
        start, span = aligned(self.blocks, size, offset, length)
        body = self.store.open(url, start, span)
        where = 'Image %s, store %s' % (self.record['id'], self.store_id)
        verified = VerifiedSlice(body, self.blocks, size, offset, length,
                                 where)
        try:
            verified.prefetch()
        except BaseException:
            verified.close()
            raise
        self.environ[keys.BLOCKS_VERIFIED] = True
        return verified


Locate = typing.Callable[[typing.Mapping], typing.Optional[stores.Store]]


def verifying_locator(locate: Locate, registry, record: typing.Mapping,
                      environ: dict,
                      digests: typing.Optional[
                          typing.Dict[str, hashing.BlockDigests]] = None
                      ) -> Locate:
    """``locate`` for a download of ``record``, verifying where it can.

    A location with usable block digests is read through
    :class:`VerifyingStore`; any other through its store as it is. The
    digests are ``digests`` (by location URL) when the caller read them
    with the record, else read from the registry once, at the first
    location.
    """
    found: typing.List[typing.Dict[str, hashing.BlockDigests]] = (
        [] if digests is None else [digests])

    def locate_verified(location: typing.Mapping
                        ) -> typing.Optional[stores.Store]:
        store = locate(location)
        if store is None:
            return None
        if not found:
            found.append(registry.block_digests(record['id']))
        blocks = found[0].get(location['url'])
        if blocks is None:
            return store
        if not blocks.usable_for(record['size'] or 0):
            LOG.warning('Image %s: the block digests of its location in '
                        'store %s do not fit its size; served unverified '
                        'by blocks', record['id'], store.store_id)
            return store
        return VerifyingStore(store, blocks, record, environ)

    return locate_verified
