"""Tests of imgmw.app.blocks: reads verified block by block."""

import io
import os
import socket
import tempfile
import threading

import fixtures
import testtools
import webob.exc

from imgmw.app import blocks
from imgmw.app import download
from imgmw.app.stores import filesystem
from imgmw import environ as keys
from imgmw import hashing


BLOCK = 1000
DATA = os.urandom(3 * BLOCK + 321)


def digests_of(data, block_size=BLOCK):
    hasher = hashing.BlockHasher(block_size)
    hasher.update(data)
    return hasher.result()


def read_all(reader, size=-1):
    parts = []
    while True:
        chunk = reader.read(size)
        if not chunk:
            return b''.join(parts)
        parts.append(chunk)


class SlowReader(io.BytesIO):
    """Gives at most ``most`` bytes a read, as a socket may."""

    def __init__(self, data, most=7):
        super().__init__(data)
        self.most = most

    def read(self, size=-1):
        if size is None or size < 0:
            size = self.most
        return super().read(min(size, self.most))


class TestVerifiedSlice(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(
            name='imgmw.app.blocks'))

    def test_whole_image_in_any_read_size(self):
        for size in (-1, 1, 999, BLOCK, BLOCK + 1, 10 * BLOCK):
            reader = blocks_slice(io.BytesIO(DATA), digests_of(DATA), 0,
                                  len(DATA))
            self.assertEqual(DATA, read_all(reader, size), size)
            self.assertEqual(len(DATA), reader.bytes_verified)

    def test_whole_blocks_are_returned_without_copy(self):
        reader = blocks_slice(io.BytesIO(DATA), digests_of(DATA), 0,
                              len(DATA))
        self.assertEqual(BLOCK, len(reader.read(BLOCK)))
        self.assertEqual(BLOCK, len(reader.read(-1)))

    def test_every_range_is_trimmed_from_whole_blocks(self):
        digests = digests_of(DATA)
        for first, last in ((0, 0), (1, 998), (999, 1000), (5, 3000),
                            (2999, 3320), (3320, 3320), (0, 3320)):
            start, span = blocks.aligned(digests, len(DATA), first,
                                         last - first + 1)
            self.assertEqual(0, start % BLOCK)
            self.assertLessEqual(start, first)
            self.assertGreaterEqual(start + span, last + 1)
            reader = blocks_slice(io.BytesIO(DATA[start:start + span]),
                                  digests, first, last - first + 1)
            self.assertEqual(DATA[first:last + 1], read_all(reader, 333),
                             (first, last))

    def test_short_reads_of_the_store_are_joined(self):
        reader = blocks_slice(SlowReader(DATA), digests_of(DATA), 0,
                              len(DATA))
        self.assertEqual(DATA, read_all(reader, BLOCK))

    def test_a_flipped_byte_stops_before_its_block(self):
        digests = digests_of(DATA)
        for position in (0, 999, 1000, 2500, len(DATA) - 1):
            stored = bytearray(DATA)
            stored[position] ^= 0x80
            reader = blocks_slice(io.BytesIO(bytes(stored)), digests, 0,
                                  len(DATA))
            bad = position // BLOCK
            got = b''
            for _ in range(bad):
                got += reader.read(BLOCK)
            self.assertEqual(DATA[:bad * BLOCK], got)
            self.assertRaises(blocks.CorruptBlock, reader.read, BLOCK)
            self.assertIn('block %d (bytes %d-%d) does not match its digest'
                          % (bad, bad * BLOCK,
                             min(bad * BLOCK + BLOCK, len(DATA)) - 1),
                          self.logger.output)

    def test_a_range_is_cut_at_a_bad_edge_block(self):
        digests = digests_of(DATA)
        stored = bytearray(DATA)
        stored[1001] ^= 1
        # Bytes 1500..1509 are intact, but their block is not.
        reader = blocks_slice(io.BytesIO(bytes(stored[1000:2000])),
                              digests, 1500, 10)
        self.assertRaises(blocks.CorruptBlock, reader.read, 10)

    def test_data_ending_early_is_cut(self):
        digests = digests_of(DATA)
        reader = blocks_slice(io.BytesIO(DATA[:2500]), digests, 0,
                              len(DATA))
        self.assertEqual(DATA[:2000], reader.read(BLOCK) + reader.read(BLOCK))
        self.assertRaises(blocks.CorruptBlock, reader.read, BLOCK)
        self.assertIn('ends after 500 of its 1000 bytes', self.logger.output)

    def test_close_closes_the_store_body(self):
        body = io.BytesIO(DATA)
        blocks_slice(body, digests_of(DATA), 0, len(DATA)).close()
        self.assertTrue(body.closed)

    def test_empty_image(self):
        reader = blocks_slice(io.BytesIO(b''), digests_of(b''), 0, 0)
        self.assertEqual(b'', reader.read(BLOCK))


class TestVerifiedSliceSendfile(testtools.TestCase):
    """The same slices of a file, sent with verify-then-sendfile."""

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(
            name='imgmw.app.blocks'))
        handle, self.path = tempfile.mkstemp()
        os.close(handle)
        self.addCleanup(os.unlink, self.path)

    def send(self, stored, first, length):
        """(bytes received, bytes sent or the exception, the slice)."""
        with open(self.path, 'wb') as out:
            out.write(stored)
        digests = digests_of(DATA)
        start, span = blocks.aligned(digests, len(DATA), first, length)
        body = filesystem.FileSlice(open(self.path, 'rb'), start, span,
                                    whole=False)
        reader = blocks_slice(body, digests, first, length)
        self.addCleanup(reader.close)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        received = []
        thread = threading.Thread(target=lambda: received.append(
            read_all(theirs.makefile('rb'), 4096)))
        thread.start()
        try:
            reader.prefetch()
            self.assertTrue(reader.can_sendfile())
            result = reader.sendfile(ours)
        except blocks.CorruptBlock as err:
            result = err
        finally:
            ours.shutdown(socket.SHUT_WR)
            thread.join()
        return received[0], result, reader

    def test_every_range_is_sent_exactly(self):
        for first, last in ((0, 0), (1, 998), (999, 1000), (5, 3000),
                            (2999, 3320), (3320, 3320), (0, 3320)):
            got, sent, reader = self.send(DATA, first, last - first + 1)
            self.assertEqual(DATA[first:last + 1], got, (first, last))
            self.assertEqual(last - first + 1, sent)
            self.assertEqual(last - first + 1, reader.bytes_verified)

    def test_a_flipped_byte_stops_before_its_block(self):
        for position in (1000, 2500, len(DATA) - 1):
            stored = bytearray(DATA)
            stored[position] ^= 0x80
            got, err, _ = self.send(bytes(stored), 0, len(DATA))
            bad = position // BLOCK
            self.assertIsInstance(err, blocks.CorruptBlock)
            self.assertEqual(DATA[:bad * BLOCK], got)
            self.assertIn('block %d (bytes %d-%d) does not match its digest'
                          '; download cut after %d bytes'
                          % (bad, bad * BLOCK,
                             min(bad * BLOCK + BLOCK, len(DATA)) - 1,
                             bad * BLOCK), self.logger.output)

    def test_a_range_is_cut_at_a_bad_edge_block(self):
        stored = bytearray(DATA)
        stored[2990] ^= 1
        # Bytes 1500..2100 are intact, but the block of the last is not.
        got, err, _ = self.send(bytes(stored), 1500, 601)
        self.assertIsInstance(err, blocks.CorruptBlock)
        self.assertEqual(DATA[1500:2000], got)

    def test_data_ending_early_is_cut(self):
        got, err, _ = self.send(DATA[:2500], 0, len(DATA))
        self.assertIsInstance(err, blocks.CorruptBlock)
        self.assertEqual(DATA[:2000], got)
        self.assertIn('ends after 500 of its 1000 bytes', self.logger.output)

    def test_other_stores_cannot(self):
        reader = blocks_slice(io.BytesIO(DATA), digests_of(DATA), 0,
                              len(DATA))
        self.assertFalse(reader.can_sendfile())


def blocks_slice(body, digests, offset, length):
    return blocks.VerifiedSlice(body, digests, len(DATA) if len(
        digests) else 0, offset, length, 'Image x, store s')


class FakeStore:
    store_id = 'fast'

    def __init__(self, data):
        self.data = data
        self.opened = []

    def size(self, url):
        return len(self.data)

    def open(self, url, offset=0, length=None):
        self.opened.append((offset, length))
        return io.BytesIO(self.data[offset:offset + length])


class FakeRegistry:

    def __init__(self, found):
        self.found = found
        self.calls = 0

    def block_digests(self, image_id):
        self.calls += 1
        return self.found


class TestVerifyingLocator(testtools.TestCase):

    record = {'id': 'image-1', 'size': len(DATA)}
    location = {'store': 'fast', 'url': 'file:///x/image-1'}

    def locator(self, found, store):
        environ = {}
        registry = FakeRegistry(found)
        locate = blocks.verifying_locator(lambda location: store, registry,
                                          self.record, environ)
        return locate, environ, registry

    def test_location_with_digests_is_read_in_whole_blocks(self):
        store = FakeStore(DATA)
        locate, environ, registry = self.locator(
            {self.location['url']: digests_of(DATA)}, store)
        verifying = locate(self.location)
        self.assertEqual(len(DATA), verifying.size(self.location['url']))
        self.assertNotIn(keys.BLOCKS_VERIFIED, environ)
        body = verifying.open(self.location['url'], 1500, 1600)
        self.assertIs(True, environ[keys.BLOCKS_VERIFIED])
        # Blocks 1 to 3, the last one short.
        self.assertEqual([(1000, 2321)], store.opened)
        self.assertEqual(DATA[1500:3100], read_all(body))
        locate(self.location)
        self.assertEqual(1, registry.calls)

    def test_digests_read_with_the_record_are_not_read_again(self):
        store = FakeStore(DATA)
        registry = FakeRegistry({})
        locate = blocks.verifying_locator(
            lambda location: store, registry, self.record, {},
            {self.location['url']: digests_of(DATA)})
        self.assertIsInstance(locate(self.location), blocks.VerifyingStore)
        self.assertEqual(0, registry.calls)

    def test_location_without_digests_is_the_store_itself(self):
        store = FakeStore(DATA)
        locate, environ, _ = self.locator({}, store)
        self.assertIs(store, locate(self.location))
        self.assertNotIn(keys.BLOCKS_VERIFIED, environ)

    def test_digests_not_fitting_the_size_are_not_used(self):
        logger = self.useFixture(fixtures.FakeLogger(
            name='imgmw.app.blocks'))
        store = FakeStore(DATA)
        locate, _, _ = self.locator(
            {self.location['url']: digests_of(DATA[:BLOCK])}, store)
        self.assertIs(store, locate(self.location))
        self.assertIn('do not fit its size', logger.output)

    def test_unknown_store_stays_unknown(self):
        locate, _, registry = self.locator({}, None)
        self.assertIsNone(locate(self.location))
        self.assertEqual(0, registry.calls)

    def test_bad_first_block_fails_the_open_and_the_next_location_serves(
            self):
        logger = self.useFixture(fixtures.FakeLogger(name='imgmw.app'))
        corrupt = bytearray(DATA)
        corrupt[1200] ^= 1
        bad, good = FakeStore(bytes(corrupt)), FakeStore(DATA)
        record = dict(self.record, status='active', locations=[
            {'store': 'bad', 'url': 'u1'}, {'store': 'good', 'url': 'u2'}])
        stores_by_id = {'bad': bad, 'good': good}
        environ = {}
        locate = blocks.verifying_locator(
            lambda location: stores_by_id[location['store']],
            FakeRegistry({'u1': digests_of(DATA), 'u2': digests_of(DATA)}),
            record, environ)
        body = download.open_data(record, locate, 1100, 50)
        self.assertEqual(DATA[1100:1150], read_all(body))
        self.assertEqual([(1000, 1000)], bad.opened)
        self.assertIn('block 1 (bytes 1000-1999) does not match',
                      logger.output)
        self.assertTrue(environ[keys.BLOCKS_VERIFIED])
        # No good location at all: 503, as for missing data (5.7).
        record['locations'] = record['locations'][:1]
        self.assertRaises(webob.exc.HTTPServiceUnavailable,
                          download.open_data, record, locate, 1100, 10)
