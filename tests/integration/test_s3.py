"""Tests of the ``s3`` store driver (imgmw.app.stores.s3).

Against an S3 service on a loopback socket, one server for the module's
test classes (tests/s3fixture.py): moto in server mode, or a real Swift
with its s3api middleware with ``IMGMW_TEST_S3=swift`` (``tox -e
s3-swift``).
"""

import gc
import hashlib
import io
import threading
import tracemalloc
import typing
from unittest import mock

from botocore import exceptions as botocore_exc
import fixtures
import testtools
from testtools import content
import webob.exc

from imgmw.app import stores
from imgmw.app.stores import s3
from imgmw import config
from imgmw import streams
from tests import s3fixture


IMAGE_ID = '8a7e3c5e-1c41-4a55-9c39-7d3f4a1b2c3d'
MiB = 1 << 20
PART = 5 * MiB


def pattern(size: int, seed: int = 7) -> bytes:
    """``size`` reproducible bytes that are not one repeated value."""
    block = hashlib.sha512(b'%d' % seed).digest() * 2048  # 128 KiB
    return (block * (size // len(block) + 1))[:size]


class PatternReader:
    """``size`` bytes of :func:`pattern`, made on demand, never held whole.

    Records the sizes asked for; raises ``error`` once ``fail_after``
    bytes were handed out.
    """

    def __init__(self, size: int, fail_after: typing.Optional[int] = None,
                 error: typing.Optional[BaseException] = None):
        self.left = size
        self.sent = 0
        self.fail_after = fail_after
        self.error = error
        self.asked = []
        self.block = pattern(MiB)

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise self.error
        size = min(size, self.left, len(self.block))
        if self.fail_after is not None:
            size = min(size, self.fail_after - self.sent)
        self.left -= size
        self.sent += size
        return self.block[:size]


class RecordingReader(io.BytesIO):
    """A reader that records the sizes asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked = []

    def read(self, size=-1):
        self.asked.append(size)
        return super().read(size)


def stream_error() -> streams.StreamError:
    return streams.StreamError(webob.exc.HTTPBadRequest('Size mismatch'))


def client_error(code: str, operation: str,
                 status: int = 400) -> botocore_exc.ClientError:
    return botocore_exc.ClientError(
        {'Error': {'Code': code, 'Message': code},
         'ResponseMetadata': {'HTTPStatusCode': status}}, operation)


class S3TestCase(testtools.TestCase):
    """One moto server for the class, one new bucket for each test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.moto = s3fixture.server()
        cls.moto.setUp()

    @classmethod
    def tearDownClass(cls):
        cls.moto.cleanUp()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.bucket = self.moto.make_bucket()

    def make_store(self, **options) -> s3.S3Store:
        options.setdefault('s3_store_large_object_chunk_size', '5')
        return s3.S3Store('cheap',
                          self.moto.store_options(self.bucket, **options))

    def etag(self, key: str = IMAGE_ID) -> str:
        return self.moto.client.head_object(Bucket=self.bucket,
                                            Key=key)['ETag']

    def assertNothingStored(self):
        self.assertEqual([], self.moto.keys(self.bucket))
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))


class AddTest(S3TestCase):

    def setUp(self):
        super().setUp()
        self.store = self.make_store()

    def test_small_body_is_one_put_under_the_image_id(self):
        stored = self.store.add(IMAGE_ID, io.BytesIO(b'0123456789'), 4)
        self.assertEqual(
            stores.Stored('s3://%s/%s' % (self.bucket, IMAGE_ID), 10),
            stored)
        self.assertEqual(b'0123456789', self.moto.get(self.bucket, IMAGE_ID))
        # A multipart object's ETag ends with -<parts>.
        self.assertNotIn('-', self.etag())
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))

    def test_empty_body_is_an_empty_object(self):
        stored = self.store.add(IMAGE_ID, io.BytesIO(b''), 4)
        self.assertEqual(0, stored.size)
        self.assertEqual(b'', self.moto.get(self.bucket, IMAGE_ID))

    def test_longer_body_is_sent_in_fixed_parts(self):
        size = 2 * PART + 12345
        reader = PatternReader(size)
        stored = self.store.add(IMAGE_ID, reader, MiB)
        self.assertEqual(size, stored.size)
        self.assertEqual(pattern(MiB) * 10 + pattern(MiB)[:12345],
                         self.moto.get(self.bucket, IMAGE_ID))
        self.assertTrue(self.etag().endswith('-3"'), self.etag())
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))

    def test_reads_chunk_size_at_most_and_never_past_a_part(self):
        reader = RecordingReader(pattern(PART + 100))
        self.store.add(IMAGE_ID, reader, 3 * MiB)
        # 3 MiB, then the 2 MiB left in the first part; then the rest.
        self.assertEqual([3 * MiB, 2 * MiB, 3 * MiB, 3 * MiB], reader.asked)

    def test_end_of_body_is_read_once(self):
        reader = PatternReader(PART)
        self.store.add(IMAGE_ID, reader, MiB)
        # Five full reads, one that sees the end; none after it.
        self.assertEqual(6, len(reader.asked))

    def test_body_of_exactly_one_part_is_one_part_upload(self):
        stored = self.store.add(IMAGE_ID, PatternReader(PART), MiB)
        self.assertEqual(PART, stored.size)
        self.assertTrue(self.etag().endswith('-1"'), self.etag())
        self.assertEqual(pattern(MiB) * 5,
                         self.moto.get(self.bucket, IMAGE_ID))

    def test_large_object_size_below_one_part_means_multipart(self):
        store = self.make_store(s3_store_large_object_size='1')
        stored = store.add(IMAGE_ID, PatternReader(2 * MiB), MiB)
        self.assertEqual(2 * MiB, stored.size)
        self.assertTrue(self.etag().endswith('-1"'), self.etag())

    def test_body_below_large_object_size_but_above_a_part_is_multipart(
            self):
        # Memory holds one part, whatever s3_store_large_object_size says.
        store = self.make_store(s3_store_large_object_size='100')
        store.add(IMAGE_ID, PatternReader(PART + 1), MiB)
        self.assertTrue(self.etag().endswith('-2"'), self.etag())

    def test_unsafe_image_id_is_refused(self):
        for image_id in ('', 'a/b', '.hidden'):
            self.assertRaises(ValueError, self.store.add, image_id,
                              io.BytesIO(b'x'), 1)
        self.assertNothingStored()

    def test_create_bucket_on_put(self):
        self.bucket = 'imgmw-created-%s' % self.getUniqueInteger()
        store = self.make_store(s3_store_create_bucket_on_put='true')
        self.assertIn('is created at the first upload', self.log.output)
        store.add(IMAGE_ID, io.BytesIO(b'data'), 4)
        self.assertNotIn('failed', self.log.output)
        self.assertEqual(b'data', self.moto.get(self.bucket, IMAGE_ID))
        # Multipart, once the bucket exists.
        store.add('second', PatternReader(PART + 1), MiB)
        self.assertEqual(PART + 1, store.size('s3://%s/second'
                                              % self.bucket))


class FailedAddTest(S3TestCase):
    """Any failure leaves no object and no unfinished multipart upload."""

    def setUp(self):
        super().setUp()
        self.store = self.make_store()

    def test_body_error_in_the_first_part(self):
        error = stream_error()
        reader = PatternReader(10, fail_after=4, error=error)
        raised = self.assertRaises(streams.StreamError, self.store.add,
                                   IMAGE_ID, reader, 4)
        self.assertIs(error, raised)
        self.assertNothingStored()

    def test_body_error_mid_multipart_upload(self):
        # BaseException: the cleanup may not rely on except Exception.
        error = stream_error()
        reader = PatternReader(3 * PART, fail_after=PART + 2 * MiB,
                               error=error)
        raised = self.assertRaises(streams.StreamError, self.store.add,
                                   IMAGE_ID, reader, MiB)
        self.assertIs(error, raised)
        self.assertNothingStored()

    def test_io_error_of_the_body_at_a_part_boundary(self):
        error = IOError('client went away')
        reader = PatternReader(3 * PART, fail_after=2 * PART, error=error)
        raised = self.assertRaises(IOError, self.store.add, IMAGE_ID,
                                   reader, MiB)
        self.assertIs(error, raised)
        self.assertNothingStored()

    def fail_part(self, number: int, error: Exception):
        real = self.store.client.upload_part

        def upload_part(**kwargs):
            if kwargs['PartNumber'] == number:
                raise error
            return real(**kwargs)
        self.useFixture(fixtures.MockPatchObject(
            self.store.client, 'upload_part', side_effect=upload_part))

    def test_store_error_mid_upload_is_unavailable(self):
        self.fail_part(2, client_error('InternalError', 'UploadPart', 500))
        err = self.assertRaises(stores.StorageUnavailable, self.store.add,
                                IMAGE_ID, PatternReader(3 * PART), MiB)
        self.assertEqual('store cheap: InternalError', str(err))
        self.assertNothingStored()
        self.assertIn('UploadPart on bucket %s at %s failed'
                      % (self.bucket, self.moto.endpoint), self.log.output)

    def test_entity_too_large_is_storage_full(self):
        self.fail_part(3, client_error('EntityTooLarge', 'UploadPart'))
        self.assertRaises(stores.StorageFull, self.store.add, IMAGE_ID,
                          PatternReader(3 * PART), MiB)
        self.assertNothingStored()

    def test_quota_exceeded_on_put_is_storage_full(self):
        self.useFixture(fixtures.MockPatchObject(
            self.store.client, 'put_object',
            side_effect=client_error('QuotaExceeded', 'PutObject', 403)))
        self.assertRaises(stores.StorageFull, self.store.add, IMAGE_ID,
                          io.BytesIO(b'data'), 4)
        self.assertNothingStored()

    def test_put_that_fails_after_storing_is_deleted(self):
        # The object was stored but the answer was lost (read timeout).
        real = self.store.client.put_object

        def put_object(**kwargs):
            real(**kwargs)
            raise botocore_exc.ReadTimeoutError(endpoint_url='x')
        self.useFixture(fixtures.MockPatchObject(
            self.store.client, 'put_object', side_effect=put_object))
        self.assertRaises(stores.StorageUnavailable, self.store.add,
                          IMAGE_ID, io.BytesIO(b'data'), 4)
        self.assertNothingStored()

    def test_completion_done_but_unanswered_is_deleted(self):
        # Assembling a large object may take minutes: a long read timeout.
        self.assertEqual(900, self.store.completer.meta.config.read_timeout)
        real = self.store.completer.complete_multipart_upload

        def complete(**kwargs):
            real(**kwargs)
            raise botocore_exc.ReadTimeoutError(endpoint_url='x')
        self.useFixture(fixtures.MockPatchObject(
            self.store.completer, 'complete_multipart_upload',
            side_effect=complete))
        self.assertRaises(stores.StorageUnavailable, self.store.add,
                          IMAGE_ID, PatternReader(PART + 1), MiB)
        self.assertNothingStored()

    def test_too_many_parts_is_storage_full_naming_the_option(self):
        self.useFixture(fixtures.MockPatch(
            'imgmw.app.stores.s3.MAX_PARTS', 2))
        err = self.assertRaises(stores.StorageFull, self.store.add,
                                IMAGE_ID, PatternReader(2 * PART + 1), MiB)
        self.assertIn('s3_store_large_object_chunk_size', str(err))
        self.assertNothingStored()

    def test_failed_abort_is_logged(self):
        self.useFixture(fixtures.MockPatchObject(
            self.store.client, 'abort_multipart_upload',
            side_effect=botocore_exc.EndpointConnectionError(
                endpoint_url=self.moto.endpoint)))
        error = stream_error()
        self.assertRaises(streams.StreamError, self.store.add, IMAGE_ID,
                          PatternReader(2 * PART, PART + 1, error), MiB)
        self.assertIn('cannot abort the multipart upload', self.log.output)
        # What remove_partial (imgmw-manage recover) will clean up.
        self.assertEqual([IMAGE_ID],
                         self.moto.unfinished_uploads(self.bucket))


class KeptAliveTest(S3TestCase):
    """The hold is kept fresh while S3 assembles an object.

    Nothing is read meanwhile (minutes for a large object): the store keeps
    the reader's hold fresh (stores.kept_alive).
    """

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'imgmw.app.stores.KEEP_ALIVE_PERIOD', 0.01))
        self.store = self.make_store()

    def slow_assembly(self, operation: str = 'complete_multipart_upload',
                      client=None) -> threading.Event:
        """S3 answers ``operation`` only after a keep-alive was seen."""
        client = client or self.store.completer
        real = getattr(client, operation)
        kept = threading.Event()

        def slow(**kwargs):
            kept.wait(10)
            return real(**kwargs)
        self.useFixture(fixtures.MockPatchObject(client, operation,
                                                 side_effect=slow))
        return kept

    def reader(self, size: int, kept: threading.Event,
               held: bool = True) -> PatternReader:
        reader = PatternReader(size)
        reader.kept = 0

        def keep_alive():
            reader.kept += 1
            kept.set()
            if not held:
                raise RuntimeError('hold lost')
        reader.keep_alive = keep_alive
        return reader

    def test_hold_kept_while_the_object_is_assembled(self):
        kept = self.slow_assembly()
        reader = self.reader(2 * PART + 1, kept)
        stored = self.store.add(IMAGE_ID, reader, MiB)
        self.assertEqual(2 * PART + 1, stored.size)
        self.assertGreaterEqual(reader.kept, 1)
        self.assertEqual([IMAGE_ID], self.moto.keys(self.bucket))

    def test_hold_lost_while_assembling_leaves_nothing(self):
        kept = self.slow_assembly()
        reader = self.reader(2 * PART + 1, kept, held=False)
        self.assertRaises(RuntimeError, self.store.add, IMAGE_ID, reader,
                          MiB)
        self.assertNothingStored()

    def test_hold_kept_during_a_single_put(self):
        kept = self.slow_assembly('put_object', self.store.client)
        reader = self.reader(MiB, kept)
        self.store.add(IMAGE_ID, reader, MiB)
        self.assertGreaterEqual(reader.kept, 1)

    def test_hold_lost_during_a_single_put_leaves_nothing(self):
        kept = self.slow_assembly('put_object', self.store.client)
        reader = self.reader(MiB, kept, held=False)
        self.assertRaises(RuntimeError, self.store.add, IMAGE_ID, reader,
                          MiB)
        self.assertNothingStored()

    def test_reads_alone_need_no_keep_alive(self):
        # A reader without keep_alive (the stores' own tests, imgmw-manage
        # backfills) is stored as before.
        stored = self.store.add(IMAGE_ID, PatternReader(PART + 1), MiB)
        self.assertEqual(PART + 1, stored.size)


class MemoryTest(S3TestCase):

    def test_memory_stays_around_one_part(self):
        store = self.make_store(s3_store_thread_pools='1')
        size = 64 * MiB
        reader = PatternReader(size)
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.get_traced_memory()[0]
        stored = store.add(IMAGE_ID, reader, MiB)
        peak = tracemalloc.get_traced_memory()[1] - before
        self.assertEqual(size, stored.size)
        self.assertEqual(size, store.size(stored.url))
        # One part buffer, one chunk in flight, botocore's bookkeeping.
        self.addDetail('peak', content.text_content(
            '%.2f MiB' % (peak / MiB)))
        self.assertLess(peak, PART + 2 * MiB,
                        'peak %.1f MiB for 5 MiB parts' % (peak / MiB))

    def test_memory_stays_around_n_parts_sent_n_at_a_time(self):
        store = self.make_store(s3_store_thread_pools='3')
        size = 64 * MiB
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.get_traced_memory()[0]
        stored = store.add(IMAGE_ID, PatternReader(size), MiB)
        peak = tracemalloc.get_traced_memory()[1] - before
        self.assertEqual(size, store.size(stored.url))
        self.addDetail('peak', content.text_content(
            '%.2f MiB' % (peak / MiB)))
        self.assertLess(peak, 3 * PART + 2 * MiB,
                        'peak %.1f MiB for 3 x 5 MiB parts' % (peak / MiB))


class ParallelPartsTest(S3TestCase):
    """Parts go up several at a time, never more, in bounded memory."""

    def watch_parts(self, store, gate=None):
        """Count the parts in flight; each first waits on ``gate``."""
        real = store.client.upload_part
        lock = threading.Lock()
        state = {'now': 0, 'most': 0, 'threads': set()}

        def upload_part(**kwargs):
            with lock:
                state['now'] += 1
                state['most'] = max(state['most'], state['now'])
                state['threads'].add(threading.current_thread().name)
            try:
                if gate is not None:
                    gate(kwargs['PartNumber'])
                return real(**kwargs)
            finally:
                with lock:
                    state['now'] -= 1
        self.useFixture(fixtures.MockPatchObject(
            store.client, 'upload_part', side_effect=upload_part))
        return state

    def test_n_parts_are_in_flight_at_once_and_reading_waits(self):
        store = self.make_store(s3_store_thread_pools='3')
        reader = PatternReader(7 * PART + 3)
        barrier = threading.Barrier(3, timeout=60)
        read_when_three_in_flight = []

        def gate(number):
            if number <= 3:
                # Passes only once parts 1 to 3 are all on their way.
                if barrier.wait() == 0:
                    read_when_three_in_flight.append(reader.sent)

        state = self.watch_parts(store, gate)
        stored = store.add(IMAGE_ID, reader, MiB)
        self.assertEqual(7 * PART + 3, stored.size)
        self.assertEqual(3, state['most'])
        # Three buffers, all sent: nothing more was read meanwhile.
        self.assertEqual([3 * PART], read_when_three_in_flight)
        self.assertEqual(pattern(MiB) * 35 + pattern(MiB)[:3],
                         self.moto.get(self.bucket, IMAGE_ID))
        self.assertTrue(self.etag().endswith('-8"'), self.etag())
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))

    def test_one_at_a_time_sends_in_the_calling_thread(self):
        store = self.make_store(s3_store_thread_pools='1')
        state = self.watch_parts(store)
        store.add(IMAGE_ID, PatternReader(3 * PART), MiB)
        self.assertEqual(1, state['most'])
        self.assertEqual({threading.current_thread().name},
                         state['threads'])

    def test_default_is_two_at_a_time(self):
        store = self.make_store()
        self.assertEqual(2, store.thread_pools)
        state = self.watch_parts(store)
        store.add(IMAGE_ID, PatternReader(4 * PART), MiB)
        self.assertLessEqual(state['most'], 2)

    def test_failed_part_waits_for_the_others_then_aborts(self):
        store = self.make_store(s3_store_thread_pools='3')
        finished = []
        release = threading.Event()
        barrier = threading.Barrier(3, timeout=60)

        def gate(number):
            if number <= 3:
                barrier.wait()  # parts 1 to 3 all on their way
            if number == 1:
                raise client_error('InternalError', 'UploadPart', 500)
            if number in (2, 3):
                release.wait(60)
                finished.append(number)
        state = self.watch_parts(store, gate)
        real_abort = store.client.abort_multipart_upload

        def abort(**kwargs):
            # Every part still on its way ended before the abort.
            aborted_while.append(state['now'])
            return real_abort(**kwargs)
        aborted_while = []
        self.useFixture(fixtures.MockPatchObject(
            store.client, 'abort_multipart_upload', side_effect=abort))
        threading.Timer(0.5, release.set).start()
        self.assertRaises(stores.StorageUnavailable, store.add, IMAGE_ID,
                          PatternReader(6 * PART), MiB)
        self.assertEqual([0], aborted_while)
        self.assertEqual([2, 3], sorted(finished))
        self.assertNothingStored()

    def test_body_error_while_parts_are_in_flight_leaves_nothing(self):
        store = self.make_store(s3_store_thread_pools='3')
        release = threading.Event()
        self.watch_parts(store, lambda number: release.wait(60))
        error = stream_error()

        class Reader(PatternReader):
            def read(self, size=-1):
                if self.sent >= 2 * PART + MiB:
                    release.set()
                return super().read(size)
        raised = self.assertRaises(
            streams.StreamError, store.add, IMAGE_ID,
            Reader(4 * PART, fail_after=2 * PART + 2 * MiB, error=error),
            MiB)
        self.assertIs(error, raised)
        self.assertNothingStored()


class ReadTest(S3TestCase):

    def setUp(self):
        super().setUp()
        self.store = self.make_store()
        self.data = pattern(PART + 1000)
        self.url = self.store.add(IMAGE_ID, io.BytesIO(self.data), MiB).url

    def read_all(self, body, size: int = 65536) -> bytes:
        try:
            return b''.join(iter(lambda: body.read(size), b''))
        finally:
            body.close()

    def test_size(self):
        self.assertEqual(len(self.data), self.store.size(self.url))

    def test_full_read(self):
        body = self.store.open(self.url, 0, len(self.data))
        self.assertEqual(self.data, self.read_all(body))

    def test_ranged_read(self):
        body = self.store.open(self.url, PART - 10, 30)
        self.assertEqual(self.data[PART - 10:PART + 20],
                         self.read_all(body, 7))

    def test_ranged_read_sends_a_range_header(self):
        real = self.store.client.get_object
        with mock.patch.object(self.store.client, 'get_object',
                               side_effect=real) as get_object:
            self.read_all(self.store.open(self.url, 5, 10))
        self.assertEqual('bytes=5-14', get_object.call_args[1]['Range'])

    def test_read_of_the_rest_without_length(self):
        body = self.store.open(self.url, 100)
        self.assertEqual(self.data[100:], self.read_all(body))

    def test_read_all_at_once_and_past_the_end(self):
        body = self.store.open(self.url, 10, 20)
        self.assertEqual(self.data[10:30], body.read())
        self.assertEqual(b'', body.read(10))
        body.close()

    def test_zero_length_reads_nothing_but_checks_the_object(self):
        self.assertEqual(b'', self.read_all(self.store.open(self.url, 0, 0)))
        self.store.delete(self.url)
        self.assertRaises(stores.DataNotFound, self.store.open, self.url,
                          0, 0)

    def test_close_before_the_end_releases_the_stream(self):
        body = self.store.open(self.url, 0, len(self.data))
        self.assertEqual(self.data[:10], body.read(10))
        raw = body._body
        body.close()
        self.assertTrue(raw._raw_stream.closed)
        self.assertEqual(b'', body.read(10))
        body.close()
        # The store still serves.
        self.assertEqual(self.data[:5],
                         self.read_all(self.store.open(self.url, 0, 5)))

    def test_delete(self):
        self.store.delete(self.url)
        self.assertEqual([], self.moto.keys(self.bucket))
        # Data already gone is not an error.
        self.store.delete(self.url)

    def test_missing_object(self):
        url = 's3://%s/missing' % self.bucket
        self.assertRaises(stores.DataNotFound, self.store.size, url)
        self.assertRaises(stores.DataNotFound, self.store.open, url, 0, 10)

    def test_urls_of_other_buckets_and_schemes_are_not_found(self):
        for url in ('s3://other/%s' % IMAGE_ID, 'file:///tmp/%s' % IMAGE_ID,
                    's3://%s/' % self.bucket,
                    's3://%s/a/b' % self.bucket,
                    's3://ak:sk@host/%s/%s' % (self.bucket, IMAGE_ID)):
            self.assertFalse(self.store.owns(url), url)
            self.assertRaises(stores.DataNotFound, self.store.size, url)
            self.assertRaises(stores.DataNotFound, self.store.open, url)
        self.assertTrue(self.store.owns(self.url))

    def test_iter_urls_lists_every_object(self):
        self.store.add('other', io.BytesIO(b'x'), 1)
        self.assertEqual(sorted([self.url, 's3://%s/other' % self.bucket]),
                         sorted(self.store.iter_urls()))

    def test_remove_partial_aborts_unfinished_uploads_and_deletes(self):
        client = self.moto.client
        for key in (IMAGE_ID, IMAGE_ID, 'other'):
            client.create_multipart_upload(Bucket=self.bucket, Key=key)
        self.store.remove_partial(IMAGE_ID)
        self.assertEqual([], self.moto.keys(self.bucket))
        self.assertEqual(['other'], self.moto.unfinished_uploads(self.bucket))
        # Nothing left to remove is no error.
        self.store.remove_partial(IMAGE_ID)

    def test_access_denied_is_unavailable(self):
        self.useFixture(fixtures.MockPatchObject(
            self.store.client, 'head_object',
            side_effect=client_error('AccessDenied', 'HeadObject', 403)))
        err = self.assertRaises(stores.StorageUnavailable, self.store.size,
                                self.url)
        self.assertEqual('store cheap: AccessDenied', str(err))


class ConfigurationTest(S3TestCase):

    def test_registered_as_the_s3_driver(self):
        store = stores.load('cheap', 's3',
                            self.moto.store_options(self.bucket))
        self.assertIsInstance(store, s3.S3Store)
        self.assertEqual(10 * MiB, store.part_size)
        self.assertEqual(100 * MiB, store.large_object_size)

    def test_typed_options_as_imgmw_backends_gives_them(self):
        from imgmw import backends
        section = self.moto.store_options(
            self.bucket, s3_store_large_object_chunk_size='6',
            s3_store_bucket_url_format='path', store_description='Cheap')
        conf = backends.load({'enabled_backends': 'cheap:s3',
                              'default_backend': 'cheap'},
                             {'store:cheap': section})
        store = stores.load('cheap', 's3', conf.stores['cheap'].options)
        self.assertEqual(6 * MiB, store.part_size)
        store.add(IMAGE_ID, io.BytesIO(b'data'), 4)
        self.assertEqual([IMAGE_ID], self.moto.keys(self.bucket))

    def test_host_without_scheme_is_http(self):
        self.assertEqual('http://rgw.example:8080',
                         s3.endpoint_url('rgw.example:8080'))
        self.assertEqual('https://rgw.example', s3.endpoint_url(
            'https://rgw.example/'))
        store = self.make_store(
            s3_store_host=self.moto.endpoint[len('http://'):])
        store.add(IMAGE_ID, io.BytesIO(b'data'), 4)
        self.assertEqual(b'data', self.moto.get(self.bucket, IMAGE_ID))

    def test_missing_bucket_stops_start_up(self):
        self.bucket = 'imgmw-no-such-bucket'
        err = self.assertRaises(config.ConfigError, self.make_store)
        self.assertIn('bucket imgmw-no-such-bucket does not exist',
                      str(err))
        self.assertIn('s3_store_create_bucket_on_put', str(err))

    def test_bad_options(self):
        cases = (
            ({'s3_store_large_object_chunk_size': '4'},
             's3_store_large_object_chunk_size'),
            ({'s3_store_large_object_chunk_size': 4},
             's3_store_large_object_chunk_size'),
            ({'s3_store_bucket_url_format': 'dns'},
             's3_store_bucket_url_format'),
            ({'s3_store_bucket': ''}, 's3_store_bucket'),
            ({'s3_store_secret_key': None}, 's3_store_secret_key'),
        )
        for options, name in cases:
            opts = self.moto.store_options(self.bucket)
            opts.update(options)
            err = self.assertRaises(config.ConfigError, s3.S3Store,
                                    'cheap', opts)
            self.assertIn(name, str(err))
            self.assertIn('cheap', str(err))

    def test_secret_never_logged(self):
        self.make_store()
        self.assertNotIn(self.moto.secret_key, self.log.output)


class UnreachableTest(testtools.TestCase):
    """An endpoint with nobody listening."""

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.endpoint = 'http://127.0.0.1:%d' % s3fixture.free_port()
        self.store = s3.S3Store('cheap', {
            's3_store_host': self.endpoint,
            's3_store_access_key': 'a', 's3_store_secret_key': 'b',
            's3_store_bucket': 'images'})

    def test_start_up_reports_it_and_goes_on(self):
        self.assertIn('Store cheap: cannot reach %s (bucket images)'
                      % self.endpoint, self.log.output)

    def test_requests_are_unavailable(self):
        url = 's3://images/%s' % IMAGE_ID
        for call in (lambda: self.store.add(IMAGE_ID, io.BytesIO(b'x'), 1),
                     lambda: self.store.size(url),
                     lambda: self.store.open(url, 0, 1),
                     lambda: self.store.delete(url),
                     lambda: list(self.store.iter_urls())):
            err = self.assertRaises(stores.StorageUnavailable, call)
            self.assertEqual(
                'store cheap: the object store cannot be reached', str(err))

    def test_remove_partial_logs(self):
        self.store.remove_partial(IMAGE_ID)
        self.assertIn('cannot list the unfinished uploads', self.log.output)


class AbortRetrierTest(testtools.TestCase):
    """Aborts that failed while the store was away are retried."""

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.calls = []
        self.failures = 2
        self.now = 0.0

    def abort(self, key, upload_id):
        self.calls.append((key, upload_id))
        if len(self.calls) <= self.failures:
            raise botocore_exc.EndpointConnectionError(
                endpoint_url='http://127.0.0.1:1')

    def wait_until_idle(self, retrier):
        for _ in range(500):
            if not retrier.pending:
                return
            threading.Event().wait(0.01)
        self.fail('still pending: %s' % retrier.pending)

    def test_retried_until_it_succeeds(self):
        retrier = s3.AbortRetrier(self.abort, delay=0.01, max_delay=0.02)
        retrier.add('img', 'up-1')
        self.wait_until_idle(retrier)
        self.assertEqual([('img', 'up-1')] * 3, self.calls)
        self.assertIn('Aborted the multipart upload up-1 of img on retry',
                      self.log.output)

    def test_gives_up_after_its_time_and_says_so(self):
        self.failures = 1 << 30
        retrier = s3.AbortRetrier(self.abort, delay=0.01, max_delay=0.01,
                                  give_up_after=5, clock=lambda: self.now)
        retrier.add('img', 'up-2')
        while len(self.calls) < 2:
            threading.Event().wait(0.01)
        self.assertEqual([('img', 'up-2')], retrier.pending)
        self.now = 10.0
        self.wait_until_idle(retrier)
        self.assertIn('Giving up aborting the multipart upload up-2 of img',
                      self.log.output)

    def test_same_upload_is_pending_once(self):
        self.failures = 1 << 30
        retrier = s3.AbortRetrier(self.abort, delay=60)
        retrier.add('img', 'up-3')
        retrier.add('img', 'up-3')
        self.assertEqual([('img', 'up-3')], retrier.pending)


class AbortLaterTest(S3TestCase):

    def test_failed_abort_is_handed_to_the_retrier(self):
        store = self.make_store()
        upload_id = store.client.create_multipart_upload(
            Bucket=self.bucket, Key='img')['UploadId']
        retried = []
        store.abort_retrier = mock.Mock(
            add=lambda key, upload: retried.append((key, upload)))
        with mock.patch.object(
                store.client, 'abort_multipart_upload',
                side_effect=botocore_exc.EndpointConnectionError(
                    endpoint_url=store.endpoint)):
            store._abort_quietly('img', upload_id)
        self.assertEqual([('img', upload_id)], retried)
        # Once the store answers, the retry finds and aborts it.
        store._abort('img', upload_id)
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))
        # An upload already gone counts as aborted.
        store._abort('img', upload_id)
