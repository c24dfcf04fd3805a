"""Hashing image data once, its several hashes side by side.

An image is hashed as its bytes stream: MD5 (Glance's ``checksum``) and the
configured multihash (``os_hash_algo``, SHA-512 by default), plus any digest
a client asked to have verified. :class:`MultiHasher` feeds each chunk to
all of them. The checksum filter uses it on upload and download, and the
data app on import.

Parallel hashing
----------------
``hashlib`` releases the GIL while it hashes a buffer of 2 KiB or more, so
two hashes of one chunk can run on two cores at once. For a chunk of at
least :data:`PARALLEL_THRESHOLD` bytes, :class:`MultiHasher` hands every
other hash (MD5 first) to a worker thread of a small per-process pool and
runs the rest in the calling thread. For a ``bytes`` chunk (immutable, so
safe to hash later) ``update()`` returns without waiting for the worker:
its share of the chunk is hashed while the caller hands the chunk on and
reads the next one, so hashing overlaps the network and the store instead
of adding to them. The next ``update()`` and every read of a digest wait
for it first, so at most one chunk is in flight and the digests are always
those of everything fed. A mutable buffer (``bytearray``, ``memoryview``)
is waited for before ``update()`` returns. Smaller chunks are
hashed one hash after the other in the calling thread, since the hand-over
costs more than it saves there. On a machine with a single usable CPU the
pool is never used.

Measured in-process on the 2-core development machine (MD5 and SHA-512 over
512 MiB of random data, one chunk size per row, MiB/s)::

    chunk      one thread   MD5 in a worker thread
    1 MiB          311           526 .. 586
    256 KiB        351           514
    128 KiB        315           367 .. 411
    64 KiB         308           356 .. 368
    32 KiB         303           254 .. 275
    16 KiB         317           162
    4 KiB          282            50

(MD5 alone runs at about 715 MiB/s, SHA-512 alone at about 780 MiB/s.) The
worker wins from 64 KiB on and loses below 32 KiB, hence the threshold.
The data app reads request bodies in 1 MiB chunks, where the worker almost
doubles the rate. A dedicated thread per hasher was measured too and was
no faster than the shared pool.

Block digests
-------------
Besides the hashes a client may check, every image gets a fast digest of
each :data:`BLOCK_SIZE` block of its bytes (the last block may be
shorter), computed in the same pass by :class:`BlockHasher` and recorded
with each location of the image (:class:`BlockDigests`). The data app
verifies downloads with them block by block as the bytes leave the store
(:mod:`imgmw.app.blocks`), so a full download or any range is checked at
wire speed and a corrupt one is cut at its first bad block.

The digest is XXH3-64 (the ``xxhash`` package, maintained, with wheels
for every platform OpenStack runs on): it detects accidental corruption
(flipped bits, torn or stale sectors, truncation) with a 64-bit digest, so
an undetected random corruption has odds of 2^-64 against CRC32's 2^-32,
and it needs no special instruction to be fast. Measured in-process on
the 2-core development machine over 1 MiB blocks, GiB/s (shared machine,
best of three)::

    xxhash xxh3_64              22.2
    crc32c (SSE4.2)              6.5 .. 11.6
    google-crc32c                4.5 .. 7.5
    xxhash xxh3_128              8.3
    MD5                          0.34 (for scale)

So the block digests add about 1/60th to the time of the MD5 and SHA-512
of an upload, and verifying a download costs about 45 ms of CPU per GiB.
CRC32C's guarantee of catching every burst of up to 32 bits is worth
little against storage faults, which corrupt whole sectors.

Blocks are fixed-size and aligned from the first byte, so a range is
verified by reading its first and last blocks whole; a :data:`BLOCK_SIZE`
of 1 MiB keeps that overhead small for short ranges and the digests at
8 KiB per GiB of image.

Names
-----
Hashes are named as :mod:`hashlib` names them (``md5``, ``sha512``), which
is also how Glance records ``os_hash_algo``. RFC 9530 names them
differently in ``Content-Digest`` and ``Repr-Digest`` (``sha-512``);
:data:`HTTP_ALGORITHMS` maps one to the other.
"""

import base64
import concurrent.futures
import dataclasses
import hashlib
import os
import threading
import typing

import http_sf
import xxhash

from imgmw import config


#: Chunks of at least this many bytes are hashed in parallel.
PARALLEL_THRESHOLD = 64 * 1024

#: The digest of each block of an image (module docstring).
BLOCK_ALGORITHM = 'xxh3_64'

#: Bytes per block of the block digests of new images.
BLOCK_SIZE = 1 << 20

#: Bytes of one block digest.
BLOCK_DIGEST_SIZE = 8

#: RFC 9530 algorithm keys imgmw computes, strongest first, with their
#: hashlib names. ``md5`` is "deprecated" in the IANA registry but still
#: honoured: imgmw computes MD5 anyway, so checking it costs nothing.
HTTP_ALGORITHMS = {'sha-512': 'sha512', 'sha-256': 'sha256', 'md5': 'md5'}

#: RFC 9530 keys that may be sent in a ``Repr-Digest`` (registry "active").
ACTIVE_HTTP_ALGORITHMS = ('sha-512', 'sha-256')


def validate_algorithm(name: str) -> str:
    """Return ``name`` when hashlib offers it with a fixed-length digest.

    This is the test Glance applies to ``hashing_algorithm``
    (``hashlib.algorithms_available``), less the SHAKE functions, whose
    digest needs a length that ``os_hash_value`` has no room for.

    :raises ValueError: naming the algorithm and the choices.
    """
    if name in hashlib.algorithms_available and not name.startswith('shake'):
        return name
    raise ValueError('unknown hashing algorithm %r; available: %s' % (
        name, ', '.join(sorted(available_algorithms()))))


#: The ``hashing_algorithm`` option of the checksum filter and the data app
#: (which hashes on import): both read it from ``[DEFAULT]`` when set there.
HASHING_ALGORITHM_OPT = config.Opt(
    'hashing_algorithm', config.validated(validate_algorithm), 'sha512',
    'The multihash recorded as os_hash_algo (a hashlib name).')


def available_algorithms() -> typing.FrozenSet[str]:
    """The hashlib names :func:`validate_algorithm` accepts."""
    return frozenset(name for name in hashlib.algorithms_available
                     if not name.startswith('shake'))


def new(name: str):
    """A new hashlib object; these hashes check integrity, not secrets.

    ``usedforsecurity=False`` keeps MD5 usable on FIPS-enabled hosts.
    """
    return hashlib.new(name, usedforsecurity=False)


def http_name(name: str) -> typing.Optional[str]:
    """The RFC 9530 key of a hashlib name, or ``None`` if it has none."""
    for key, hashlib_name in HTTP_ALGORITHMS.items():
        if hashlib_name == name:
            return key
    return None


def repr_digest(name: str, hexdigest: str) -> typing.Optional[str]:
    """A ``Repr-Digest`` field value for one hash, or ``None``.

    Only the registry's active algorithms (SHA-256, SHA-512) are sent, as
    RFC 9530 asks; e.g. ``repr_digest('sha512', image['os_hash_value'])``.
    """
    key = http_name(name)
    if key not in ACTIVE_HTTP_ALGORITHMS:
        return None
    return http_sf.ser({key: (bytes.fromhex(hexdigest), {})})


def md5_base64(hexdigest: str) -> str:
    """The RFC 1864 (base64) form of a hex MD5."""
    return base64.b64encode(bytes.fromhex(hexdigest)).decode('ascii')


def block_digest(data) -> bytes:
    """The digest of one block (any bytes-like object)."""
    return xxhash.xxh3_64_digest(data)


@dataclasses.dataclass(frozen=True)
class BlockDigests:
    """The digest of every block of an image, as recorded with a location.

    ``digests`` is the concatenation of one :data:`BLOCK_DIGEST_SIZE`
    digest per block of ``block_size`` bytes (the last one may be
    shorter), in order; an empty image has none.
    """

    algorithm: str
    block_size: int
    digests: bytes

    def __len__(self) -> int:
        return len(self.digests) // BLOCK_DIGEST_SIZE

    def digest(self, index: int) -> bytes:
        """The digest of block ``index`` (counted from 0)."""
        start = index * BLOCK_DIGEST_SIZE
        return self.digests[start:start + BLOCK_DIGEST_SIZE]

    def usable_for(self, size: int) -> bool:
        """Whether these digests can verify an image of ``size`` bytes.

        False for an algorithm or a block size this code does not know,
        or a count of digests that does not match the size.
        """
        if (self.algorithm != BLOCK_ALGORITHM or self.block_size <= 0
                or len(self.digests) % BLOCK_DIGEST_SIZE):
            return False
        return len(self) == -(-size // self.block_size)


class BlockHasher:
    """The block digests of a stream, fed in chunks of any size."""

    def __init__(self, block_size: int = BLOCK_SIZE):
        self.block_size = block_size
        self._digests = bytearray()
        self._state = xxhash.xxh3_64()
        self._filled = 0

    def update(self, chunk) -> None:
        view = memoryview(chunk).cast('B')
        while view:
            room = self.block_size - self._filled
            part, view = view[:room], view[room:]
            if self._filled == 0 and len(part) == self.block_size:
                self._digests += block_digest(part)
                continue
            self._state.update(part)
            self._filled += len(part)
            if self._filled == self.block_size:
                self._close_block()

    def _close_block(self) -> None:
        self._digests += self._state.digest()
        self._state.reset()
        self._filled = 0

    def result(self) -> BlockDigests:
        """The digests of everything fed (a last short block included)."""
        digests = bytes(self._digests)
        if self._filled:
            digests += self._state.digest()
        return BlockDigests(BLOCK_ALGORITHM, self.block_size, digests)


class DigestsNotReady(RuntimeError):
    """The digests of a body were read before the body was read to its end.

    A programming error in the app: the digests exist only once every byte
    has been hashed, and only for a body that passed its checks.
    """


class Digests:
    """The MD5 and multihash of an upload, as the data app records them.

    Published in ``environ['imgmw.digests']`` by the checksum filter.
    ``os_hash_algo`` is known from the start; ``md5`` and ``os_hash_value``
    (hex strings), and ``blocks`` (the :class:`BlockDigests`, or None when
    whoever hashed computed none), once the body has been read to its end
    and passed every check. Reading them earlier raises
    :class:`DigestsNotReady`.
    """

    def __init__(self, os_hash_algo: str):
        self.os_hash_algo = os_hash_algo
        self._md5: typing.Optional[str] = None
        self._os_hash_value: typing.Optional[str] = None
        self._blocks: typing.Optional[BlockDigests] = None

    @property
    def ready(self) -> bool:
        return self._md5 is not None

    @property
    def md5(self) -> str:
        self._check_ready('md5')
        return self._md5

    @property
    def os_hash_value(self) -> str:
        self._check_ready('os_hash_value')
        return self._os_hash_value

    @property
    def blocks(self) -> typing.Optional[BlockDigests]:
        self._check_ready('blocks')
        return self._blocks

    def finish(self, md5: str, os_hash_value: str,
               blocks: typing.Optional[BlockDigests] = None) -> None:
        """Record the final digests (called by whoever hashed)."""
        self._md5 = md5
        self._os_hash_value = os_hash_value
        self._blocks = blocks

    def _check_ready(self, what: str) -> None:
        if self._md5 is None:
            raise DigestsNotReady(
                'the %s of the request body is known only once the body has '
                'been read to its end without error' % what)

    def __repr__(self) -> str:
        if not self.ready:
            return '<Digests %s pending>' % self.os_hash_algo
        return '<Digests md5=%s %s=%s>' % (
            self._md5, self.os_hash_algo, self._os_hash_value)


class MultiHasher:
    """Several hashes of one stream, updated together.

    :param algorithms: hashlib names; duplicates are hashed once.
    :param parallel_threshold: chunks of at least this many bytes are
        hashed on two threads (module docstring); ``None`` never does.
    :param block_size: when given, block digests of blocks of that many
        bytes are computed too (:meth:`block_digests`), in the calling
        thread.
    :raises ValueError: on an algorithm hashlib does not offer.
    """

    def __init__(self, algorithms: typing.Iterable[str],
                 parallel_threshold: typing.Optional[int] = (
                     PARALLEL_THRESHOLD),
                 block_size: typing.Optional[int] = None):
        names = list(dict.fromkeys(validate_algorithm(name)
                                   for name in algorithms))
        self._hashers = {name: new(name) for name in names}
        ordered = list(self._hashers.values())
        # MD5 (when present) goes to the worker and the multihash stays
        # with the caller, as measured; further hashes alternate.
        ordered.sort(key=lambda hasher: hasher.name != 'md5')
        self._worker_share = ordered[0::2]
        self._caller_share = ordered[1::2]
        self._threshold = parallel_threshold
        if len(ordered) < 2 or _POOL.cpus < 2:
            self._threshold = None
        self.bytes_hashed = 0
        self._pending: typing.Optional[concurrent.futures.Future] = None
        self._blocks = (BlockHasher(block_size) if block_size is not None
                        else None)

    @property
    def algorithms(self) -> typing.Tuple[str, ...]:
        return tuple(self._hashers)

    def update(self, chunk: bytes) -> None:
        """Feed ``chunk`` to every hash (see "Parallel hashing")."""
        self._join()
        if self._threshold is not None and len(chunk) >= self._threshold:
            future = _POOL.executor().submit(
                _update_all, self._worker_share, chunk)
            if isinstance(chunk, bytes):
                self._pending = future
                self._update_caller_share(chunk)
            else:
                try:
                    self._update_caller_share(chunk)
                finally:
                    future.result()
        else:
            _update_all(self._hashers.values(), chunk)
            if self._blocks is not None:
                self._blocks.update(chunk)
        self.bytes_hashed += len(chunk)

    def _update_caller_share(self, chunk) -> None:
        _update_all(self._caller_share, chunk)
        if self._blocks is not None:
            self._blocks.update(chunk)

    def block_digests(self) -> typing.Optional[BlockDigests]:
        """The block digests of everything fed, or None if not computed."""
        return self._blocks.result() if self._blocks is not None else None

    def _join(self) -> None:
        """Wait for the worker's share of the last chunk, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def digest(self, name: str) -> bytes:
        self._join()
        return self._hashers[name].digest()

    def hexdigest(self, name: str) -> str:
        self._join()
        return self._hashers[name].hexdigest()

    def hexdigests(self) -> typing.Dict[str, str]:
        """``{hashlib name: hex digest}`` of everything hashed so far."""
        self._join()
        return {name: hasher.hexdigest()
                for name, hasher in self._hashers.items()}


def _update_all(hashers, chunk) -> None:
    for hasher in hashers:
        hasher.update(chunk)


class _Pool:
    """The per-process worker threads of parallel hashing.

    Started on first use, and forgotten in a forked child (a pool's threads
    do not survive ``fork``, which pre-forking servers do after loading the
    app).
    """

    def __init__(self):
        self.cpus = _usable_cpus()
        self._executor = None
        self._lock = threading.Lock()

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.cpus,
                        thread_name_prefix='imgmw-hash')
        return self._executor

    def forget(self) -> None:
        self._executor = None
        self._lock = threading.Lock()
        self.cpus = _usable_cpus()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)
