"""Verify-then-sendfile over a socketpair: exact bytes, bad blocks unsent."""

import os
import socket
import tempfile
import threading

import testtools

from imgmw import hashing
from imgmw import verified_sendfile

BLOCK = 4096
#: Three whole blocks and a short one.
SIZE = 3 * BLOCK + 1000


def digests_of(data: bytes) -> hashing.BlockDigests:
    return hashing.BlockDigests(
        hashing.BLOCK_ALGORITHM, BLOCK,
        b''.join(hashing.block_digest(data[i:i + BLOCK])
                 for i in range(0, len(data), BLOCK)))


class TestSendVerified(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.data = bytes((i * 7 + i // 251) % 256 for i in range(SIZE))
        self.blocks = digests_of(self.data)
        handle, self.path = tempfile.mkstemp()
        os.close(handle)
        self.addCleanup(os.unlink, self.path)
        self.write(self.data)

    def write(self, data: bytes) -> None:
        with open(self.path, 'wb') as out:
            out.write(data)

    def send(self, offset: int, length: int):
        """(bytes received, sent or the exception raised)."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        received = []
        reader = threading.Thread(
            target=lambda: received.append(_read_all(theirs)))
        reader.start()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            result = verified_sendfile.send_verified(
                ours, fd, self.blocks, SIZE, offset, length)
        except verified_sendfile.BadBlock as err:
            result = err
        finally:
            os.close(fd)
            ours.shutdown(socket.SHUT_WR)
            reader.join()
        return received[0], result

    def test_whole_file_is_sent_exactly(self):
        got, sent = self.send(0, SIZE)
        self.assertEqual(SIZE, sent)
        self.assertEqual(self.data, got)

    def test_range_inside_blocks_sends_only_the_range(self):
        for first, last in ((0, 0), (5, BLOCK + 10), (BLOCK, 2 * BLOCK - 1),
                            (BLOCK - 1, SIZE - 1), (SIZE - 1, SIZE - 1)):
            got, sent = self.send(first, last - first + 1)
            self.assertEqual(last - first + 1, sent)
            self.assertEqual(self.data[first:last + 1], got)

    def test_bad_block_stops_before_sending_any_of_it(self):
        for block in range(4):
            changed = bytearray(self.data)
            changed[block * BLOCK + 3] ^= 1
            self.write(bytes(changed))
            got, err = self.send(0, SIZE)
            self.assertIsInstance(err, verified_sendfile.BadBlock)
            self.assertEqual(block, err.index)
            self.assertEqual(block * BLOCK, err.sent)
            self.assertEqual('does not match its digest', err.what)
            self.assertEqual(self.data[:block * BLOCK], got)

    def test_bad_edge_block_of_a_range_is_caught(self):
        changed = bytearray(self.data)
        changed[2 * BLOCK + 5] ^= 1
        self.write(bytes(changed))
        # The range ends in block 2, before the flipped byte.
        got, err = self.send(BLOCK + 10, BLOCK)
        self.assertIsInstance(err, verified_sendfile.BadBlock)
        self.assertEqual(2, err.index)
        self.assertEqual(BLOCK - 10, err.sent)
        self.assertEqual(self.data[BLOCK + 10:2 * BLOCK], got)

    def test_short_file_is_cut_at_the_missing_block(self):
        self.write(self.data[:BLOCK + 100])
        got, err = self.send(0, SIZE)
        self.assertIsInstance(err, verified_sendfile.BadBlock)
        self.assertEqual(1, err.index)
        self.assertEqual('ends after 100 of its %d bytes' % BLOCK, err.what)
        self.assertEqual(self.data[:BLOCK], got)

    def test_buffer_is_reused(self):
        buffer = bytearray(BLOCK)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        fd = os.open(self.path, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        verified_sendfile.send_verified(ours, fd, self.blocks, SIZE, 0,
                                        BLOCK, buffer=buffer)
        self.assertEqual(self.data[:BLOCK], bytes(buffer))
        self.assertEqual(self.data[:BLOCK], _read_exactly(theirs, BLOCK))


def _read_all(sock: socket.socket) -> bytes:
    parts = []
    while True:
        part = sock.recv(65536)
        if not part:
            return b''.join(parts)
        parts.append(part)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    parts = []
    while count:
        part = sock.recv(count)
        parts.append(part)
        count -= len(part)
    return b''.join(parts)
