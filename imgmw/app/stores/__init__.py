"""Store drivers: where the data app keeps image bytes.

A store is one configured place for image data (a directory, a bucket).
The data app talks to every store through :class:`Store`, whose four
operations are all an image needs: stream a body in, open a byte range,
stat, delete. A location in the registry is ``{'store': <id>, 'url': <url>}``
where the URL is the driver's own (``file:///...``, ``s3://...``).

Drivers translate their failures into the exceptions below, which the app
maps to the contract's answers:

=========================  ===========================================
exception                  answer
=========================  ===========================================
:class:`StorageFull`       413 ``Image storage media is full: ...``
                           (contract 3.20)
:class:`StorageUnavailable` 503 ``Image storage is unavailable: ...``
                           (contract 3.21)
:class:`DataNotFound`      download: try the next location, then 503
                           (contract 5.7)
=========================  ===========================================

An ``add`` that fails for any reason (an exception of the reader included,
``BaseException`` too) removes what it wrote before re-raising: a store
never keeps a partial image.

The reader an ``add`` gets keeps its holder's hold fresh as it is read
(:class:`imgmw.holders.Heartbeat`). A driver that waits on its backend
without reading (S3 assembling a multipart object may take minutes) waits
inside :func:`kept_alive`, so that the hold stays fresh meanwhile and
recovery does not take a live upload, import or copy for a dead one.

Drivers are chosen by type name (``file``, ``s3``) in
:data:`DRIVERS`, and built by :func:`load`.
"""

import abc
import contextlib
import dataclasses
import importlib
import threading
import typing


class StoreError(Exception):
    """A store failed; the message is safe to show to the client."""


class StorageFull(StoreError):
    """The store has no room for the data (ENOSPC, EFBIG, quota)."""


class StorageUnavailable(StoreError):
    """The store refuses writes or reads, or cannot be reached."""


class DataNotFound(StoreError):
    """The location names data that is not (or no longer) in the store."""


@dataclasses.dataclass(frozen=True)
class Stored:
    """What :meth:`Store.add` wrote: the location URL and the byte count."""

    url: str
    size: int


@dataclasses.dataclass(frozen=True)
class Listed:
    """One piece of data a store holds, as an orphan sweep sees it.

    ``url`` is the location URL of a whole image, or the driver's name of
    an unfinished upload when ``partial`` (a temporary file, a multipart
    upload, then identified by ``token``). ``modified`` is the time of the
    last write (or the start of a multipart upload), seconds since the
    epoch.
    """

    url: str
    image_id: str
    modified: float
    partial: bool = False
    token: typing.Optional[str] = None


class Reader(typing.Protocol):
    def read(self, size: int = -1) -> bytes:
        ...


#: Seconds between two calls of a reader's ``keep_alive`` in a wait (each
#: call beats only when the holder's interval has passed).
KEEP_ALIVE_PERIOD = 1.0


@contextlib.contextmanager
def kept_alive(reader: Reader, period: typing.Optional[float] = None):
    """Keep ``reader``'s hold fresh while the store waits without reading.

    A thread calls ``reader.keep_alive()`` (when the reader has one) every
    ``period`` seconds (:data:`KEEP_ALIVE_PERIOD`) until the block ends.
    If it raises (the hold was lost), the calls stop and the exception is
    raised when the block ends, unless the block raised its own: the
    driver's cleanup then runs as for an exception of ``read``.
    """
    keep_alive = getattr(reader, 'keep_alive', None)
    if keep_alive is None:
        yield
        return
    if period is None:
        period = KEEP_ALIVE_PERIOD
    stop = threading.Event()
    failed: typing.List[BaseException] = []

    def run() -> None:
        while not stop.wait(period):
            try:
                keep_alive()
            except BaseException as err:
                failed.append(err)
                return

    thread = threading.Thread(target=run, name='store-keep-alive',
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failed:
        raise failed[0]


class Store(abc.ABC):
    """One configured store.

    :param store_id: the id locations name it by.
    :param options: the driver's own options, strings as configured; the
        driver parses them with :func:`imgmw.config.parse` so that an
        unknown or malformed one stops start-up.
    """

    type_name = ''

    def __init__(self, store_id: str, options: typing.Mapping[str, str]):
        self.store_id = store_id

    @abc.abstractmethod
    def add(self, image_id: str, reader: Reader,
            chunk_size: int) -> Stored:
        """Stream ``reader`` to its end into the store as ``image_id``.

        Reads ``chunk_size`` bytes at a time. Exceptions of ``reader.read``
        propagate unchanged (after cleanup); the store's own failures are
        raised as :class:`StorageFull` or :class:`StorageUnavailable`.
        """

    @abc.abstractmethod
    def open(self, url: str, offset: int = 0,
             length: typing.Optional[int] = None) -> typing.BinaryIO:
        """A file-like object giving ``length`` bytes from ``offset``.

        The object has ``read(size)`` and ``close()``; a driver may add
        ``fileno()`` when the whole object is read, for sendfile.

        :raises DataNotFound: the data is gone.
        """

    @abc.abstractmethod
    def size(self, url: str) -> int:
        """The byte count of the data at ``url``.

        :raises DataNotFound: the data is gone.
        """

    @abc.abstractmethod
    def delete(self, url: str) -> None:
        """Remove the data at ``url``; data already gone is not an error."""

    @abc.abstractmethod
    def owns(self, url: str) -> bool:
        """Whether ``url`` points into this store.

        Used for locations whose store id is no longer configured.
        """

    def remove_partial(self, image_id: str) -> None:
        """Remove any unfinished upload of ``image_id`` (after a crash)."""


#: Driver classes by store type, as ``module:Class`` so that a driver's
#: dependencies are imported only when a store of its type is configured.
DRIVERS = {
    'file': 'imgmw.app.stores.filesystem:FilesystemStore',
    's3': 'imgmw.app.stores.s3:S3Store',
}


def driver(store_type: str) -> typing.Type[Store]:
    """The driver class of ``store_type``.

    :raises KeyError: no such driver.
    """
    module_name, _, class_name = DRIVERS[store_type].partition(':')
    return getattr(importlib.import_module(module_name), class_name)


def load(store_id: str, store_type: str,
         options: typing.Mapping[str, str]) -> Store:
    """Build the store ``store_id`` of type ``store_type``.

    :raises imgmw.config.ConfigError: unknown type, or bad options.
    """
    from imgmw import config
    try:
        cls = driver(store_type)
    except KeyError:
        raise config.ConfigError(
            'store %s: unknown store type %r (known: %s)'
            % (store_id, store_type, ', '.join(sorted(DRIVERS))))
    return cls(store_id, options)
