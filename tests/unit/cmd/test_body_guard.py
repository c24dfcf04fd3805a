"""Tests of imgmw.cmd.body_guard."""

import socket

import testtools

from imgmw.cmd import body_guard

WINDOW = 65536


def head(*fields: str) -> bytes:
    return '\r\n'.join(('PUT /v2/images/x/file HTTP/1.1', 'Host: x')
                       + fields).encode()


class TestBodyWindow(testtools.TestCase):

    def test_no_body_is_handed_over_at_once(self):
        self.assertEqual(0, body_guard.body_window(head(), WINDOW))

    def test_small_body_is_buffered_whole(self):
        self.assertEqual(100, body_guard.body_window(
            head('Content-Length: 100'), WINDOW))

    def test_large_body_is_buffered_up_to_the_window(self):
        self.assertEqual(WINDOW, body_guard.body_window(
            head('content-length:  1000000 '), WINDOW))

    def test_expect_continue_is_handed_over_at_once(self):
        self.assertEqual(0, body_guard.body_window(
            head('Content-Length: 100', 'Expect: 100-continue'), WINDOW))

    def test_chunked_body_is_buffered_to_its_end_or_the_window(self):
        self.assertIsNone(body_guard.body_window(
            head('Transfer-Encoding: chunked,'), WINDOW))

    def test_unusual_framing_is_left_to_the_thread(self):
        for fields in (('Content-Length: 1', 'Content-Length: 1'),
                       ('Content-Length: -1',),
                       ('Content-Length: 1', 'Transfer-Encoding: chunked'),
                       ('Transfer-Encoding: gzip, chunked',)):
            self.assertEqual(0, body_guard.body_window(head(*fields),
                                                       WINDOW), fields)

    def test_a_zero_window_hands_every_request_over(self):
        self.assertEqual(0, body_guard.body_window(
            head('Content-Length: 100'), 0))


class TestWindowFilled(testtools.TestCase):

    def test_known_length(self):
        self.assertFalse(body_guard.window_filled(b'x' * 99, 100, WINDOW))
        self.assertTrue(body_guard.window_filled(b'x' * 100, 100, WINDOW))
        # A pipelined request after the body.
        self.assertTrue(body_guard.window_filled(b'x' * 150, 100, WINDOW))

    def test_chunked_ends_at_its_last_chunk(self):
        self.assertFalse(body_guard.window_filled(b'3\r\nabc\r\n', None,
                                                  WINDOW))
        self.assertFalse(body_guard.window_filled(b'3\r\nabc\r\n0\r\n',
                                                  None, WINDOW))
        for body in (b'3\r\nabc\r\n0\r\n\r\n', b'0\r\n\r\n',
                     b'3\r\nabc\r\n00;x=1\r\nT: v\r\n\r\n'):
            self.assertTrue(body_guard.window_filled(body, None, WINDOW),
                            body)

    def test_chunked_framing_counts_towards_the_window(self):
        self.assertTrue(body_guard.window_filled(b'1\r\nx\r\n' * 11000,
                                                 None, WINDOW))


class FakeSocket:

    def __init__(self, chunks, clock, pace):
        self.chunks = list(chunks)
        self.clock = clock
        self.pace = pace
        self.timeouts = []

    def settimeout(self, value):
        self.timeouts.append(value)

    def recv(self, size):
        self.clock.now += self.pace
        chunk = self.chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        return chunk

    def fileno(self):
        return 7


class Clock:

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class TestPacedSocket(testtools.TestCase):

    def paced(self, chunks, pace):
        clock = Clock()
        raw = FakeSocket(chunks, clock, pace)
        return body_guard.PacedSocket(raw, timeout=30, min_rate=1024,
                                      grace=10, clock=clock), raw

    def test_a_steady_slow_upload_is_read_whole(self):
        # 64 KiB/s, far above the minimum, for a minute.
        sock, raw = self.paced([b'x' * 65536] * 60 + [b''], 1.0)
        got = b''.join(iter(lambda: sock.recv(65536), b''))
        self.assertEqual(60 * 65536, len(got))
        self.assertEqual([30, None] * 61, raw.timeouts)

    def test_a_trickle_is_cut_after_the_grace_period(self):
        sock, _ = self.paced([b'x'] * 20, 1.0)
        for _ in range(10):
            self.assertEqual(b'x', sock.recv(8192))
        err = self.assertRaises(body_guard.BodyTooSlow, sock.recv, 8192)
        self.assertIsInstance(err, OSError)

    def test_a_silent_client_is_cut(self):
        sock, _ = self.paced([socket.timeout('timed out')], 0)
        self.assertRaises(body_guard.BodyTooSlow, sock.recv, 8192)

    def test_restart_counts_a_new_request_anew(self):
        sock, _ = self.paced([b'x' * 20000, b'x'] + [b'x'] * 12, 1.0)
        sock.recv(8192)
        sock.recv(8192)
        sock.clock.now += 60
        sock.restart()
        for _ in range(10):
            sock.recv(8192)
        self.assertRaises(body_guard.BodyTooSlow, sock.recv, 8192)

    def test_other_attributes_are_the_socket_s(self):
        sock, _ = self.paced([], 0)
        self.assertEqual(7, sock.fileno())
