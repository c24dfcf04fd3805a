"""Tests of the ``file`` store driver (imgmw.app.stores.filesystem)."""

import errno
import io
import os
import subprocess
import sys
import textwrap
import threading
from unittest import mock

import fixtures
import testtools
import webob.exc

from imgmw.app import stores
from imgmw.app.stores import filesystem
from imgmw import config
from imgmw import streams


IMAGE_ID = '8a7e3c5e-1c41-4a55-9c39-7d3f4a1b2c3d'


class BrokenReader(io.BytesIO):
    """A reader that raises ``error`` once ``fail_after`` bytes were read."""

    def __init__(self, data: bytes, fail_after: int, error: BaseException):
        super().__init__(data)
        self.fail_after = fail_after
        self.error = error

    def read(self, size=-1):
        if self.tell() >= self.fail_after:
            raise self.error
        return super().read(min(size, self.fail_after - self.tell()))


class FilesystemStoreTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.datadir = self.useFixture(fixtures.TempDir()).path
        self.store = filesystem.FilesystemStore(
            'fast', {'filesystem_store_datadir': self.datadir})

    def add(self, data: bytes, chunk_size: int = 4):
        return self.store.add(IMAGE_ID, io.BytesIO(data), chunk_size)

    def test_add_writes_the_whole_body_under_the_image_id(self):
        stored = self.add(b'0123456789')
        path = os.path.join(os.path.realpath(self.datadir), IMAGE_ID)
        self.assertEqual(stores.Stored('file://' + path, 10), stored)
        with open(path, 'rb') as data:
            self.assertEqual(b'0123456789', data.read())
        self.assertEqual([IMAGE_ID], os.listdir(self.datadir))

    def test_add_empty_body(self):
        stored = self.add(b'')
        self.assertEqual(0, stored.size)
        self.assertEqual(0, self.store.size(stored.url))

    def test_add_reads_in_chunks_of_the_given_size(self):
        reader = mock.Mock(wraps=io.BytesIO(b'x' * 10))
        self.store.add(IMAGE_ID, reader, 4)
        self.assertEqual([mock.call(4)] * 4, reader.read.call_args_list)

    def test_add_fsyncs_before_renaming(self):
        calls = []
        real_fsync, real_rename = os.fsync, os.rename
        self.useFixture(fixtures.MockPatch(
            'os.fsync', side_effect=lambda fd: (calls.append('fsync'),
                                                real_fsync(fd))))
        self.useFixture(fixtures.MockPatch(
            'os.rename', side_effect=lambda a, b: (calls.append('rename'),
                                                   real_rename(a, b))))
        self.add(b'abc')
        # The file, then the directory entry after the rename.
        self.assertEqual(['fsync', 'rename', 'fsync'], calls)

    def test_reader_error_removes_the_partial_file(self):
        reader = BrokenReader(b'x' * 100, 10, ValueError('boom'))
        self.assertRaises(ValueError, self.store.add, IMAGE_ID, reader, 4)
        self.assertEqual([], os.listdir(self.datadir))

    def test_stream_error_passes_through_and_removes_the_partial_file(self):
        error = streams.ClientDisconnected(webob.exc.HTTPBadRequest())
        reader = BrokenReader(b'x' * 100, 10, error)
        raised = self.assertRaises(streams.ClientDisconnected,
                                   self.store.add, IMAGE_ID, reader, 4)
        self.assertIs(error, raised)
        self.assertEqual([], os.listdir(self.datadir))

    def test_write_error_is_storage_unavailable_and_removes_partial(self):
        self.useFixture(fixtures.MockPatch(
            'os.fsync', side_effect=OSError(errno.EIO, 'I/O error')))
        err = self.assertRaises(stores.StorageUnavailable, self.add, b'abc')
        self.assertEqual('store fast: Input/output error', str(err))
        self.assertIn('I/O error', self.log.output)
        self.assertEqual([], os.listdir(self.datadir))

    def test_enospc_is_storage_full(self):
        self.useFixture(fixtures.MockPatch(
            'os.fsync', side_effect=OSError(errno.ENOSPC, 'full')))
        err = self.assertRaises(stores.StorageFull, self.add, b'abc')
        self.assertEqual('store fast: No space left on device', str(err))
        self.assertEqual([], os.listdir(self.datadir))

    def test_each_chunk_is_written_while_the_next_is_read(self):
        written = []
        real_write = filesystem.FilesystemStore._write_all

        def write_all(store, out, chunk):
            written.append((threading.current_thread().name, bytes(chunk)))
            real_write(store, out, chunk)

        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.app.stores.filesystem.FilesystemStore._write_all',
            write_all))
        data = os.urandom(4096 * 5 + 7)
        stored = self.add(data, chunk_size=4096)
        self.assertEqual(len(data), stored.size)
        with open(os.path.join(self.datadir, IMAGE_ID), 'rb') as f:
            self.assertEqual(data, f.read())
        # In order, by the upload's writer thread, never the reader's.
        self.assertEqual(data, b''.join(chunk for _, chunk in written))
        self.assertEqual({'imgmw-store-write'},
                         {name.rsplit('_', 1)[0] for name, _ in written})

    def test_a_failed_write_fails_the_upload_at_the_next_read(self):
        reads = []

        class Reader(io.BytesIO):
            def read(self, size=-1):
                reads.append(size)
                return super().read(size)

        real_write = filesystem.FilesystemStore._write_all
        calls = []

        def write_all(store, out, chunk):
            calls.append(len(chunk))
            if len(calls) == 2:
                store._call(self._raise, OSError(errno.ENOSPC, 'full'))
            real_write(store, out, chunk)

        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.app.stores.filesystem.FilesystemStore._write_all',
            write_all))
        reader = Reader(b'x' * 100)
        self.assertRaises(stores.StorageFull, self.store.add, IMAGE_ID,
                          reader, 10)
        # The second chunk's write failed; the upload stopped after the
        # third read, not at the end of the body.
        self.assertEqual(2, len(calls))
        self.assertEqual(3, len(reads))
        self.assertEqual([], os.listdir(self.datadir))

    @staticmethod
    def _raise(err):
        raise err

    def test_a_failed_read_waits_for_the_pending_write(self):
        gate = threading.Event()
        finished = []
        real_write = filesystem.FilesystemStore._write_all

        def slow_write(store, out, chunk):
            gate.wait(5)
            real_write(store, out, chunk)
            finished.append(len(chunk))

        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.app.stores.filesystem.FilesystemStore._write_all',
            slow_write))

        class Reader(BrokenReader):
            def read(self, size=-1):
                if self.tell() >= self.fail_after:
                    threading.Timer(0.05, gate.set).start()
                return super().read(size)

        reader = Reader(b'x' * 100, 10, ValueError('boom'))
        self.assertRaises(ValueError, self.store.add, IMAGE_ID, reader, 10)
        self.assertEqual([10], finished)
        self.assertEqual([], os.listdir(self.datadir))

    def test_unwritable_directory_is_storage_unavailable(self):
        self.useFixture(fixtures.MockPatch(
            'tempfile.mkstemp', side_effect=PermissionError(
                errno.EACCES, 'Permission denied')))
        err = self.assertRaises(stores.StorageUnavailable, self.add, b'abc')
        self.assertEqual('store fast: Permission denied', str(err))

    def test_file_size_limit_is_storage_full(self):
        """contract 3.20: EFBIG from a real write, in a child process."""
        script = textwrap.dedent('''
            import io, resource, signal, sys, os
            from imgmw.app import stores
            from imgmw.app.stores import filesystem
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
            store = filesystem.FilesystemStore(
                'tiny', {'filesystem_store_datadir': sys.argv[1]})
            try:
                store.add(sys.argv[2], io.BytesIO(b'x' * 10000), 1024)
            except stores.StorageFull as err:
                print('full:', err)
            print(os.listdir(sys.argv[1]))
        ''')
        out = subprocess.run(
            [sys.executable, '-c', script, self.datadir, IMAGE_ID],
            check=True, capture_output=True, text=True).stdout
        self.assertEqual('full: store tiny: File too large\n[]\n', out)

    def test_open_whole_file_offers_fileno(self):
        stored = self.add(b'0123456789')
        body = self.store.open(stored.url)
        self.addCleanup(body.close)
        self.assertTrue(callable(body.fileno))
        self.assertEqual(b'0123456789', body.read())
        self.assertEqual(b'', body.read())

    def test_open_range_is_bounded_and_has_no_fileno(self):
        stored = self.add(b'0123456789')
        body = self.store.open(stored.url, 2, 5)
        self.addCleanup(body.close)
        self.assertFalse(hasattr(body, 'fileno'))
        self.assertEqual(b'234', body.read(3))
        self.assertEqual(b'56', body.read(100))
        self.assertEqual(b'', body.read())

    def test_open_missing_is_data_not_found(self):
        stored = self.add(b'abc')
        os.unlink(stored.url[len('file://'):])
        self.assertRaises(stores.DataNotFound, self.store.open, stored.url)
        self.assertRaises(stores.DataNotFound, self.store.size, stored.url)

    def test_urls_outside_the_datadir_are_refused(self):
        outside = self.useFixture(fixtures.TempDir()).path
        victim = os.path.join(outside, 'victim')
        with open(victim, 'wb') as f:
            f.write(b'keep')
        for url in ('file://' + victim,
                    'file://%s/../%s/victim' % (self.datadir,
                                                os.path.basename(outside)),
                    's3://bucket/' + IMAGE_ID):
            self.assertFalse(self.store.owns(url))
            self.assertRaises(stores.DataNotFound, self.store.open, url)
            self.assertRaises(stores.DataNotFound, self.store.delete, url)
        self.assertTrue(os.path.exists(victim))

    def test_delete_removes_and_is_idempotent(self):
        stored = self.add(b'abc')
        self.assertTrue(self.store.owns(stored.url))
        self.store.delete(stored.url)
        self.store.delete(stored.url)
        self.assertEqual([], os.listdir(self.datadir))

    def test_remove_partial_removes_leftovers_of_a_crash(self):
        for name in ('.%s.abc.partial' % IMAGE_ID, IMAGE_ID, 'other'):
            with open(os.path.join(self.datadir, name), 'wb') as f:
                f.write(b'x')
        self.store.remove_partial(IMAGE_ID)
        self.assertEqual(['other'], os.listdir(self.datadir))

    def test_unsafe_image_id_is_refused(self):
        self.assertRaises(ValueError, self.store.add, '../x',
                          io.BytesIO(b'a'), 4)

    def test_datadir_is_required(self):
        self.assertRaises(config.ConfigError, filesystem.FilesystemStore,
                          'fast', {})

    def test_options_of_other_drivers_are_left_alone(self):
        store = filesystem.FilesystemStore(
            'fast', {'filesystem_store_datadir': self.datadir, 'weight': 3,
                     'store_description': 'Local disks'})
        self.assertEqual(os.path.realpath(self.datadir), store.datadir)


class LoadTest(testtools.TestCase):

    def test_load_file_store(self):
        datadir = self.useFixture(fixtures.TempDir()).path
        store = stores.load('fast', 'file',
                            {'filesystem_store_datadir': datadir})
        self.assertIsInstance(store, filesystem.FilesystemStore)
        self.assertEqual('fast', store.store_id)

    def test_unknown_type(self):
        err = self.assertRaises(config.ConfigError, stores.load, 'x', 'tape',
                                {})
        self.assertIn("unknown store type 'tape'", str(err))
