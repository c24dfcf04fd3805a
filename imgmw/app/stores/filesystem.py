"""The ``file`` store: image data as files in a local (or mounted) directory.

Each image is one file named after its id in ``filesystem_store_datadir``,
and its location URL is ``file://<datadir>/<id>`` as glance_store writes
it, so an existing Glance data directory can be served as it is.

An upload is written to a hidden temporary file in the same directory
(``.<id>.<random>.partial``), flushed to disk with ``fsync``, renamed to its
final name and the directory entry made durable: a crash leaves either no
file under the final name or the whole data. Any failure removes the
temporary file before the error propagates. A thread of the upload's own
writes each chunk while the request's thread reads (and the filters hash)
the next, so that the write does not add to the hashes' time; at most two
chunks are held. Downloads open the file and
hand the server a bounded file-like object; for a whole-file read it has
``fileno()``, so servers with sendfile (gunicorn) use it.

The directory must be dedicated to the store: ``imgmw-manage sweep``
(:meth:`FilesystemStore.iter_listing`) takes every file in it for an
image's data or an upload's temporary file.

Options (in ``[store:<id>]`` with multi-store, else the app's section or
``[DEFAULT]``):

===========================  =========================================
option                       meaning
===========================  =========================================
``filesystem_store_datadir``  the directory (created when missing)
===========================  =========================================

Errors: ``ENOSPC``, ``EFBIG`` and ``EDQUOT`` are :class:`StorageFull`
(413); any other ``OSError`` of the directory or the file is
:class:`StorageUnavailable` (503).
"""

import concurrent.futures
import errno
import glob
import logging
import os
import tempfile
import typing

from imgmw.app import stores
from imgmw import config


LOG = logging.getLogger(__name__)

SCHEME = 'file://'

OPTS = (
    config.Opt('filesystem_store_datadir', config.string, None,
               'Directory of the image files.'),
)

_FULL = frozenset((errno.ENOSPC, errno.EFBIG, errno.EDQUOT))

#: The suffix of an upload's temporary file.
_PARTIAL = '.partial'


class FileSlice:
    """``length`` bytes of an open file from ``offset``.

    Offers ``fileno()`` only when the slice is the whole file, so that a
    server's sendfile never sends more than the slice.
    """

    def __init__(self, fileobj: typing.BinaryIO, offset: int, length: int,
                 whole: bool):
        fileobj.seek(offset)
        self._file = fileobj
        self._left = length
        if whole:
            self.fileno = fileobj.fileno

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b''
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def file_descriptor(self) -> int:
        """The open file's descriptor.

        For reads and sends at absolute offsets (``os.preadv``,
        ``os.sendfile``), which leave the file's position as it is.
        """
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


class FilesystemStore(stores.Store):
    """A directory of image files."""

    type_name = 'file'

    def __init__(self, store_id: str, options: typing.Mapping[str, str]):
        super().__init__(store_id, options)
        # Checked by imgmw.backends; other stores' and common keys ignored.
        values = config.parse(OPTS, options, {}, 'store %s' % store_id)
        datadir = values['filesystem_store_datadir']
        if not datadir:
            raise config.ConfigError(
                'store %s: filesystem_store_datadir is required' % store_id)
        self.datadir = os.path.realpath(datadir)
        try:
            os.makedirs(self.datadir, exist_ok=True)
        except OSError as err:
            # Reported on each upload as 503; the operator may fix it live.
            LOG.warning('Store %s: cannot create %s: %s', store_id,
                        self.datadir, err)

    # Writing.

    def add(self, image_id: str, reader: stores.Reader,
            chunk_size: int) -> stores.Stored:
        final = self._path_of(image_id)
        try:
            fd, temp = tempfile.mkstemp(prefix='.%s.' % image_id,
                                        suffix=_PARTIAL, dir=self.datadir)
        except OSError as err:
            raise self._translate(err) from err
        try:
            with os.fdopen(fd, 'wb', buffering=0) as out:
                size = self._copy(reader, out, chunk_size)
                self._call(os.fsync, out.fileno())
            self._call(os.rename, temp, final)
            self._sync_directory()
        except BaseException:
            self._unlink_quietly(temp)
            raise
        return stores.Stored(SCHEME + final, size)

    def _copy(self, reader: stores.Reader, out, chunk_size: int) -> int:
        """Copy ``reader`` into ``out``, one chunk written as the next is read.

        A thread of the upload's own writes each chunk while the request's
        thread reads (and the filters hash) the next one: the write into
        the filesystem no longer adds to the time of the hashes. At most
        two chunks are held; a write's failure is raised at the next read.
        """
        size = 0
        pending = None
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix='imgmw-store-write'
        ) as writer:
            try:
                while True:
                    chunk = reader.read(chunk_size)
                    if pending is not None:
                        pending, done = None, pending
                        done.result()
                    if not chunk:
                        return size
                    pending = writer.submit(self._write_all, out, chunk)
                    size += len(chunk)
            finally:
                if pending is not None:
                    # The body failed: its last write ends before the
                    # caller removes the file.
                    concurrent.futures.wait([pending])

    def _write_all(self, out, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            written = self._call(out.write, view)
            view = view[written:]

    def _sync_directory(self) -> None:
        fd = self._call(os.open, self.datadir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._call(os.fsync, fd)
        finally:
            os.close(fd)

    def _call(self, func, *args):
        try:
            return func(*args)
        except OSError as err:
            raise self._translate(err) from err

    def _translate(self, err: OSError) -> stores.StoreError:
        detail = 'store %s: %s' % (self.store_id,
                                   os.strerror(err.errno or errno.EIO))
        LOG.error('Store %s (%s): %s', self.store_id, self.datadir, err)
        if err.errno in _FULL:
            return stores.StorageFull(detail)
        return stores.StorageUnavailable(detail)

    # Reading and deleting.

    def open(self, url: str, offset: int = 0,
             length: typing.Optional[int] = None) -> FileSlice:
        path = self._path_of_url(url)
        try:
            fileobj = open(path, 'rb')
        except FileNotFoundError:
            raise stores.DataNotFound(url)
        except OSError as err:
            raise self._translate(err) from err
        try:
            size = os.fstat(fileobj.fileno()).st_size
            if length is None:
                length = max(size - offset, 0)
            whole = offset == 0 and length == size
            return FileSlice(fileobj, offset, length, whole)
        except BaseException:
            fileobj.close()
            raise

    def size(self, url: str) -> int:
        try:
            return os.stat(self._path_of_url(url)).st_size
        except FileNotFoundError:
            raise stores.DataNotFound(url)
        except OSError as err:
            raise self._translate(err) from err

    def delete(self, url: str) -> None:
        try:
            os.unlink(self._path_of_url(url))
        except FileNotFoundError:
            pass
        except OSError as err:
            raise self._translate(err) from err

    def owns(self, url: str) -> bool:
        try:
            self._path_of_url(url)
        except stores.DataNotFound:
            return False
        return True

    def remove_partial(self, image_id: str) -> None:
        pattern = os.path.join(self.datadir, '.%s.*%s' % (
            glob.escape(image_id), _PARTIAL))
        for path in glob.glob(pattern) + [self._path_of(image_id)]:
            self._unlink_quietly(path)

    # Listing, for the orphan sweep.

    def iter_listing(self) -> typing.Iterator[stores.Listed]:
        """Every regular file of the directory: images and temporary files.

        The directory must be dedicated to the store: any file in it is
        taken for an image's data (named after the image) or for an
        upload's temporary file (``.<id>.<random>.partial``).

        :raises StorageUnavailable: the directory cannot be read.
        """
        try:
            with os.scandir(self.datadir) as entries:
                for entry in entries:
                    listed = self._listed(entry)
                    if listed is not None:
                        yield listed
        except OSError as err:
            raise self._translate(err) from err

    def iter_urls(self) -> typing.Iterator[str]:
        """The URL of every image file (temporary files left out)."""
        return (listed.url for listed in self.iter_listing()
                if not listed.partial)

    def remove_listed(self, listed: stores.Listed) -> None:
        """Remove what :meth:`iter_listing` gave; gone already is fine."""
        self.delete(listed.url)

    def _listed(self, entry: os.DirEntry) -> typing.Optional[stores.Listed]:
        try:
            if not entry.is_file(follow_symlinks=False):
                return None
            modified = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            return None  # removed meanwhile
        name = entry.name
        partial = name.startswith('.') and name.endswith(_PARTIAL)
        image_id = (name[1:-len(_PARTIAL)].rpartition('.')[0] if partial
                    else name)
        return stores.Listed(SCHEME + entry.path, image_id, modified,
                             partial)

    # Paths.

    def _path_of(self, image_id: str) -> str:
        if not image_id or '/' in image_id or image_id.startswith('.'):
            raise ValueError('unsafe image id %r' % image_id)
        return os.path.join(self.datadir, image_id)

    def _path_of_url(self, url: str) -> str:
        """The file a location URL names, refusing any outside the datadir.

        :raises DataNotFound: not a ``file://`` URL of this directory.
        """
        if not url.startswith(SCHEME):
            raise stores.DataNotFound(url)
        path = os.path.normpath(url[len(SCHEME):])
        if os.path.dirname(path) != self.datadir:
            raise stores.DataNotFound(url)
        return path

    @staticmethod
    def _unlink_quietly(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            LOG.error('Cannot remove %s: %s', path, err)
