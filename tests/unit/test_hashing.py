"""Tests of imgmw.hashing: MultiHasher, Digests and the naming helpers."""

import base64
import hashlib
import os
import threading

import fixtures
import http_sf
import testtools
import xxhash

from imgmw import hashing


DATA = os.urandom(300 * 1024 + 7)


def chunks(data, size):
    return [data[offset:offset + size]
            for offset in range(0, len(data), size)]


class TestMultiHasher(testtools.TestCase):

    def expected(self, *names, data=DATA):
        return {name: hashlib.new(name, data).hexdigest() for name in names}

    def test_matches_hashlib_in_one_thread(self):
        hasher = hashing.MultiHasher(['md5', 'sha512'],
                                     parallel_threshold=None)
        for chunk in chunks(DATA, 4096):
            hasher.update(chunk)
        self.assertEqual(self.expected('md5', 'sha512'), hasher.hexdigests())
        self.assertEqual(len(DATA), hasher.bytes_hashed)

    def test_matches_hashlib_in_parallel(self):
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 2))
        hasher = hashing.MultiHasher(['md5', 'sha512', 'sha256'],
                                     parallel_threshold=1)
        for chunk in chunks(DATA, 65536):
            hasher.update(chunk)
        self.assertEqual(self.expected('md5', 'sha512', 'sha256'),
                         hasher.hexdigests())

    def test_large_chunks_hash_md5_in_a_worker_thread(self):
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 2))
        seen = []
        real = hashing._update_all

        def recording(hashers, chunk):
            hashers = list(hashers)
            seen.append((threading.current_thread().name,
                         sorted(h.name for h in hashers), len(chunk)))
            real(hashers, chunk)

        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.hashing._update_all', recording))
        hasher = hashing.MultiHasher(['sha512', 'md5'])
        hasher.update(DATA[:hashing.PARALLEL_THRESHOLD])
        # update() of bytes may return before the worker ran: wait for it.
        hasher.hexdigests()
        caller = threading.current_thread().name
        by_thread = {name: (names, size) for name, names, size in seen}
        self.assertEqual(2, len(by_thread))
        self.assertEqual((['sha512'], hashing.PARALLEL_THRESHOLD),
                         by_thread.pop(caller))
        (worker, share), = by_thread.items()
        self.assertTrue(worker.startswith('imgmw-hash'), worker)
        self.assertEqual((['md5'], hashing.PARALLEL_THRESHOLD), share)

    def test_worker_share_overlaps_the_next_read(self):
        """update() of bytes returns before the worker's hash is done.

        The digests still wait for it, and so does the next update, so at
        most one chunk is in flight.
        """
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 2))
        gate = threading.Semaphore(0)
        worker_done = []
        real = hashing._update_all
        caller = threading.current_thread().name

        def gated_worker(hashers, chunk):
            hashers = list(hashers)
            if threading.current_thread().name != caller:
                self.assertTrue(gate.acquire(timeout=10))
                real(hashers, chunk)
                worker_done.append(len(chunk))
            else:
                real(hashers, chunk)

        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.hashing._update_all', gated_worker))
        hasher = hashing.MultiHasher(['md5', 'sha512'], parallel_threshold=1)
        hasher.update(DATA[:1000])
        self.assertEqual([], worker_done)
        timer = threading.Timer(0.2, gate.release)
        timer.start()
        self.addCleanup(timer.cancel)
        # Waits for the first chunk's worker share, which the timer lets
        # go; the second chunk's share then waits at the gate.
        hasher.update(DATA[1000:])
        self.assertEqual([1000], worker_done)
        gate.release()
        self.assertEqual(self.expected('md5', 'sha512'), hasher.hexdigests())
        self.assertEqual([1000, len(DATA) - 1000], worker_done)

    def test_mutable_buffers_are_hashed_before_update_returns(self):
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 2))
        hasher = hashing.MultiHasher(['md5', 'sha512'], parallel_threshold=1)
        buffer = bytearray(DATA)
        hasher.update(buffer)
        buffer[:] = b'\0' * len(buffer)
        self.assertEqual(self.expected('md5', 'sha512'), hasher.hexdigests())

    def test_small_chunks_stay_in_the_calling_thread(self):
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 2))
        threads = set()
        real = hashing._update_all

        def recording(hashers, chunk):
            threads.add(threading.current_thread().name)
            real(hashers, chunk)

        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.hashing._update_all', recording))
        hasher = hashing.MultiHasher(['md5', 'sha512'])
        hasher.update(DATA[:hashing.PARALLEL_THRESHOLD - 1])
        self.assertEqual({threading.current_thread().name}, threads)

    def test_one_cpu_never_uses_the_pool(self):
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 1))
        executor = self.useFixture(fixtures.MockPatchObject(
            hashing._POOL, 'executor')).mock
        hasher = hashing.MultiHasher(['md5', 'sha512'], parallel_threshold=1)
        hasher.update(DATA)
        executor.assert_not_called()
        self.assertEqual(self.expected('md5', 'sha512'), hasher.hexdigests())

    def test_worker_failure_propagates(self):
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 2))
        hasher = hashing.MultiHasher(['md5', 'sha512'], parallel_threshold=1)
        self.assertRaises(TypeError, hasher.update, 'not bytes')

    def test_buffers_other_than_bytes(self):
        hasher = hashing.MultiHasher(['md5'])
        hasher.update(bytearray(DATA[:10]))
        hasher.update(memoryview(DATA)[10:])
        self.assertEqual(self.expected('md5'), hasher.hexdigests())

    def test_empty_stream(self):
        hasher = hashing.MultiHasher(['md5', 'sha512'])
        self.assertEqual(self.expected('md5', 'sha512', data=b''),
                         hasher.hexdigests())
        self.assertEqual(hashlib.md5(b'').digest(), hasher.digest('md5'))

    def test_duplicates_are_hashed_once(self):
        hasher = hashing.MultiHasher(['md5', 'sha512', 'md5'])
        self.assertEqual(('md5', 'sha512'), hasher.algorithms)

    def test_unknown_algorithm(self):
        err = self.assertRaises(ValueError, hashing.MultiHasher,
                                ['md5', 'sha1024'])
        self.assertIn("'sha1024'", str(err))
        self.assertIn('sha512', str(err))


class TestValidateAlgorithm(testtools.TestCase):

    def test_hashlib_algorithms(self):
        for name in ('md5', 'sha256', 'sha512', 'sha3_512', 'blake2b'):
            self.assertEqual(name, hashing.validate_algorithm(name))

    def test_variable_length_and_unknown_refused(self):
        for name in ('shake_128', 'shake_256', 'SHA512', 'sha-512', ''):
            self.assertRaises(ValueError, hashing.validate_algorithm, name)
        self.assertNotIn('shake_256', hashing.available_algorithms())


class TestDigests(testtools.TestCase):

    def test_not_ready_before_the_end(self):
        digests = hashing.Digests('sha512')
        self.assertEqual('sha512', digests.os_hash_algo)
        self.assertFalse(digests.ready)
        err = self.assertRaises(hashing.DigestsNotReady,
                                getattr, digests, 'md5')
        self.assertIn('read to its end', str(err))
        self.assertRaises(hashing.DigestsNotReady,
                          getattr, digests, 'os_hash_value')
        self.assertIn('pending', repr(digests))

    def test_finished(self):
        digests = hashing.Digests('sha512')
        digests.finish('a' * 32, 'b' * 128)
        self.assertTrue(digests.ready)
        self.assertEqual('a' * 32, digests.md5)
        self.assertEqual('b' * 128, digests.os_hash_value)


class TestNames(testtools.TestCase):

    def test_http_names(self):
        self.assertEqual('sha-512', hashing.http_name('sha512'))
        self.assertEqual('sha-256', hashing.http_name('sha256'))
        self.assertEqual('md5', hashing.http_name('md5'))
        self.assertIsNone(hashing.http_name('sha3_512'))

    def test_repr_digest_of_active_algorithms(self):
        value = hashlib.sha512(b'data')
        field = hashing.repr_digest('sha512', value.hexdigest())
        self.assertEqual(
            'sha-512=:%s:' % base64.b64encode(value.digest()).decode(),
            field)
        parsed = http_sf.parse(field.encode(), tltype='dictionary')
        self.assertEqual(value.digest(), parsed['sha-512'][0])

    def test_no_repr_digest_for_deprecated_or_unregistered(self):
        self.assertIsNone(hashing.repr_digest(
            'md5', hashlib.md5(b'').hexdigest()))
        self.assertIsNone(hashing.repr_digest(
            'sha3_512', hashlib.sha3_512(b'').hexdigest()))

    def test_md5_base64(self):
        self.assertEqual('1B2M2Y8AsgTpgAmY7PhCfg==', hashing.md5_base64(
            'd41d8cd98f00b204e9800998ecf8427e'))


class TestPool(testtools.TestCase):

    def test_forget_makes_a_new_executor(self):
        pool = hashing._Pool()
        first = pool.executor()
        self.assertIs(first, pool.executor())
        pool.forget()
        second = pool.executor()
        self.assertIsNot(first, second)
        first.shutdown()
        second.shutdown()


def reference_blocks(data, block_size):
    """One one-shot XXH3-64 per block, as the registry records them."""
    return b''.join(xxhash.xxh3_64_digest(data[start:start + block_size])
                    for start in range(0, len(data), block_size))


class TestBlockHasher(testtools.TestCase):

    def test_xxh3_64_known_value(self):
        # The XXH3-64 of no bytes, from the xxHash specification's tests.
        self.assertEqual(bytes.fromhex('2d06800538d394c2'),
                         hashing.block_digest(b''))

    def test_any_chunking_gives_the_digests_of_whole_blocks(self):
        block_size = 4096
        for chunk_size in (1, 100, 4095, 4096, 4097, 3 * 4096, len(DATA)):
            hasher = hashing.BlockHasher(block_size)
            for chunk in chunks(DATA, chunk_size):
                hasher.update(chunk)
            blocks = hasher.result()
            self.assertEqual(reference_blocks(DATA, block_size),
                             blocks.digests, chunk_size)
            self.assertEqual(-(-len(DATA) // block_size), len(blocks))
            self.assertEqual(('xxh3_64', block_size),
                             (blocks.algorithm, blocks.block_size))

    def test_exact_multiple_has_no_empty_last_block(self):
        hasher = hashing.BlockHasher(1024)
        hasher.update(DATA[:4096])
        self.assertEqual(4, len(hasher.result()))
        self.assertEqual(0, len(hashing.BlockHasher(1024).result()))

    def test_mutable_buffers(self):
        hasher = hashing.BlockHasher(1000)
        hasher.update(bytearray(DATA[:2500]))
        hasher.update(memoryview(DATA[2500:5000]))
        self.assertEqual(reference_blocks(DATA[:5000], 1000),
                         hasher.result().digests)

    def test_digest_of_each_block(self):
        hasher = hashing.BlockHasher(1000)
        hasher.update(DATA[:2500])
        blocks = hasher.result()
        self.assertEqual(xxhash.xxh3_64_digest(DATA[1000:2000]),
                         blocks.digest(1))
        self.assertEqual(xxhash.xxh3_64_digest(DATA[2000:2500]),
                         blocks.digest(2))

    def test_usable_for(self):
        hasher = hashing.BlockHasher(1000)
        hasher.update(DATA[:2500])
        blocks = hasher.result()
        self.assertTrue(blocks.usable_for(2500))
        self.assertTrue(blocks.usable_for(2001))
        self.assertFalse(blocks.usable_for(2000))
        self.assertFalse(blocks.usable_for(3001))
        self.assertTrue(hashing.BlockDigests('xxh3_64', 1000, b'')
                        .usable_for(0))
        self.assertFalse(hashing.BlockDigests('crc32c', 1000,
                                              blocks.digests)
                         .usable_for(2500))
        self.assertFalse(hashing.BlockDigests('xxh3_64', 1000,
                                              blocks.digests[:-1])
                         .usable_for(2500))

    def test_multihasher_computes_blocks_in_the_same_pass(self):
        self.useFixture(fixtures.MockPatchObject(hashing._POOL, 'cpus', 2))
        for threshold in (None, 1):
            hasher = hashing.MultiHasher(['md5', 'sha512'],
                                         parallel_threshold=threshold,
                                         block_size=65536)
            for chunk in chunks(DATA, 100000):
                hasher.update(chunk)
            self.assertEqual(reference_blocks(DATA, 65536),
                             hasher.block_digests().digests)
            self.assertEqual(
                hashlib.md5(DATA).hexdigest(), hasher.hexdigest('md5'))

    def test_multihasher_without_block_size_has_none(self):
        hasher = hashing.MultiHasher(['md5'])
        hasher.update(DATA)
        self.assertIsNone(hasher.block_digests())

    def test_digests_carry_blocks(self):
        digests = hashing.Digests('sha512')
        self.assertRaises(hashing.DigestsNotReady, lambda: digests.blocks)
        blocks = hashing.BlockDigests('xxh3_64', 1, b'12345678')
        digests.finish('a' * 32, 'b' * 128, blocks)
        self.assertIs(blocks, digests.blocks)
