"""imgmw-api's lean wsgi.input over gunicorn's own parser and a real socket.

Each test writes requests into one end of a socketpair and reads them with
gunicorn's parser (the worker's :class:`RequestParser`) from the other, so
gunicorn's accounting (what is left of a body, where the next request of a
kept-alive connection starts) is checked, not assumed.
"""

import os
import socket
import threading

from gunicorn import config as gunicorn_config
from gunicorn.http import body as gunicorn_body
from gunicorn.http import errors as gunicorn_errors
import testtools

from imgmw.cmd import body_guard
from imgmw.cmd import lean_body
from imgmw.cmd import worker

MiB = 1 << 20


def chunked(data: bytes, sizes) -> bytes:
    """``data`` framed in chunks of ``sizes`` (cycled), then the last one."""
    out = []
    start = 0
    index = 0
    while start < len(data):
        size = sizes[index % len(sizes)]
        piece = data[start:start + size]
        out.append(b'%x\r\n%s\r\n' % (len(piece), piece))
        start += size
        index += 1
    out.append(b'0\r\n\r\n')
    return b''.join(out)


def put(body: bytes, framing: str = None) -> bytes:
    framing = framing or 'Content-Length: %d' % len(body)
    return ('PUT /v2/images/x/file HTTP/1.1\r\nHost: h\r\n%s\r\n\r\n'
            % framing).encode() + body


class Connection:
    """A client end and gunicorn's parser of the server end."""

    def __init__(self, test):
        self.client, self.server = socket.socketpair()
        test.addCleanup(self.client.close)
        test.addCleanup(self.server.close)
        self.parser = worker.RequestParser(gunicorn_config.Config(),
                                           self.server, ('127.0.0.1', 1))
        self.sender = None

    def send(self, data: bytes, close: bool = True) -> None:
        """Send ``data`` from a thread (it may exceed the socket buffer)."""
        def run():
            try:
                self.client.sendall(data)
                if close:
                    self.client.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.sender = threading.Thread(target=run, daemon=True)
        self.sender.start()

    def request(self):
        return next(self.parser)


def read_all(body, size) -> list:
    pieces = []
    while True:
        piece = body.read(size)
        if not piece:
            return pieces
        pieces.append(piece)


class TestContentLength(testtools.TestCase):

    def test_a_large_body_comes_whole_in_pieces_of_the_size_asked(self):
        data = os.urandom(3 * MiB + 12345)
        conn = Connection(self)
        conn.send(put(data))
        body = lean_body.lean(conn.request().body)
        self.assertIsInstance(body, lean_body.LeanBody)
        pieces = read_all(body, MiB)
        self.assertEqual(data, b''.join(pieces))
        self.assertEqual([MiB, MiB, MiB, 12345], [len(p) for p in pieces])
        self.assertTrue(all(type(p) is bytes for p in pieces))

    def test_a_read_never_asks_the_socket_for_more_than_a_mebibyte(self):
        # A body declared at 10 GiB, read at once (as WebOb reads a
        # request body): nothing of that size is reserved.
        data = os.urandom(3 * MiB)
        conn = Connection(self)
        conn.send(put(data, 'Content-Length: %d' % (10 << 30)))
        req = conn.request()
        asked = []
        real = req.body.reader.unreader.sock

        class Recorder:
            def recv(self, size):
                asked.append(size)
                return real.recv(size)

        req.body.reader.unreader.sock = Recorder()
        body = lean_body.lean(req.body)
        self.assertEqual(data, body.read())
        self.assertLessEqual(max(asked), lean_body.MAX_RECV)

    def test_bytes_buffered_with_the_head_come_first(self):
        # Head and body in one send: gunicorn's parser holds the start of
        # the body when the request is handed over.
        data = bytes(range(256)) * 40
        conn = Connection(self)
        conn.send(put(data))
        req = conn.request()
        body = lean_body.lean(req.body)
        self.assertEqual(data[:1], body.read(1))
        self.assertEqual(data[1:8], body.read(7))
        self.assertEqual(data[8:], body.read())
        self.assertEqual(b'', body.read(10))

    def test_read_without_size_reads_the_rest(self):
        data = os.urandom(200000)
        conn = Connection(self)
        conn.send(put(data))
        body = lean_body.lean(conn.request().body)
        self.assertEqual(data[:100], body.read(100))
        self.assertEqual(data[100:], body.read(-1))

    def test_never_reads_past_the_body_so_the_next_request_is_whole(self):
        first, second = os.urandom(300000), os.urandom(5000)
        conn = Connection(self)
        conn.send(put(first) + put(second))
        body = lean_body.lean(conn.request().body)
        self.assertEqual(first, b''.join(read_all(body, 65536)))
        following = conn.request()
        self.assertEqual('PUT', following.method)
        self.assertEqual(second, lean_body.lean(following.body).read())

    def test_what_the_app_left_unread_is_skipped_by_gunicorn(self):
        first, second = os.urandom(300000), os.urandom(5000)
        conn = Connection(self)
        conn.send(put(first) + put(second))
        body = lean_body.lean(conn.request().body)
        self.assertEqual(first[:70000], body.read(70000))
        following = conn.request()
        self.assertEqual(second, lean_body.lean(following.body).read())

    def test_a_body_cut_short_ends_early_and_stays_ended(self):
        data = os.urandom(100000)
        conn = Connection(self)
        head = put(b'', 'Content-Length: %d' % (len(data) + 500))
        conn.send(head + data)
        body = lean_body.lean(conn.request().body)
        received = b''.join(read_all(body, 65536))
        self.assertEqual(data, received)
        self.assertEqual(b'', body.read(10))
        self.assertEqual(0, body.reader.length)

    def test_a_failed_read_marks_the_body_failed(self):
        conn = Connection(self)
        conn.client.sendall(put(b'', 'Content-Length: 1000'))
        req = conn.request()
        req.body.reader.unreader.sock = body_guard.PacedSocket(
            conn.server, timeout=0.05)
        body = lean_body.lean(req.body)
        self.assertRaises(body_guard.BodyTooSlow, body.read, 100)
        self.assertTrue(body.failed)
        self.assertTrue(req.body.failed)

    def test_readline_then_read(self):
        data = b'line one\nline two\n' + os.urandom(1000)
        conn = Connection(self)
        conn.send(put(data))
        body = lean_body.lean(conn.request().body)
        self.assertEqual(b'line one\n', body.readline())
        self.assertEqual(data[9:], body.read())


class TestChunked(testtools.TestCase):

    def body(self, data: bytes, sizes, extra: bytes = b''):
        conn = Connection(self)
        conn.send(put(chunked(data, sizes), 'Transfer-Encoding: chunked')
                  + extra)
        body = lean_body.lean(conn.request().body)
        self.assertIsInstance(body, lean_body.LeanBody)
        return conn, body

    def test_pieces_of_the_size_asked_whatever_the_chunks(self):
        data = os.urandom(2 * MiB + 777)
        _, body = self.body(data, [65536, 1, 300001])
        pieces = read_all(body, MiB)
        self.assertEqual(data, b''.join(pieces))
        self.assertEqual([MiB, MiB, 777], [len(p) for p in pieces])

    def test_small_reads_of_large_chunks(self):
        data = os.urandom(200000)
        _, body = self.body(data, [200000])
        pieces = read_all(body, 1000)
        self.assertEqual(data, b''.join(pieces))
        self.assertEqual({1000}, {len(p) for p in pieces})

    def test_read_without_size_reads_the_rest(self):
        data = os.urandom(100000)
        _, body = self.body(data, [4096])
        self.assertEqual(data[:5], body.read(5))
        self.assertEqual(data[5:], body.read())
        self.assertEqual(b'', body.read())

    def test_readline_after_a_read_continues_where_it_stopped(self):
        data = b'abc' * 1000 + b'\nrest of the line\n' + os.urandom(500)
        _, body = self.body(data, [4000])
        self.assertEqual(data[:10], body.read(10))
        self.assertEqual(data[10:3001], body.readline())
        self.assertEqual(b'rest of the line\n', body.readline())
        self.assertEqual(data[3018:], body.read())

    def test_the_next_request_on_the_connection_is_whole(self):
        data, second = os.urandom(150000), os.urandom(3000)
        conn, body = self.body(data, [65536], extra=put(second))
        self.assertEqual(data, b''.join(read_all(body, 50000)))
        following = conn.request()
        self.assertEqual(second, lean_body.lean(following.body).read())

    def test_a_malformed_chunk_fails_the_read_and_the_body(self):
        conn = Connection(self)
        conn.send(put(b'5\r\nabcde\r\nzz\r\n', 'Transfer-Encoding: chunked'))
        req = conn.request()
        body = lean_body.lean(req.body)
        self.assertRaises(gunicorn_errors.InvalidChunkSize, body.read, 100)
        self.assertTrue(req.body.failed)


class TestLean(testtools.TestCase):

    def test_other_inputs_are_left_as_they_are(self):
        class Unknown:
            pass
        for body in (Unknown(), gunicorn_body.Body(
                gunicorn_body.EOFReader(object()))):
            self.assertIs(body, lean_body.lean(body))

    def test_install_puts_the_lean_body_in_the_environ(self):
        conn = Connection(self)
        conn.send(put(b'12345'))
        seen = []

        def app(environ, start_response):
            seen.append(environ['wsgi.input'])
            return [environ['wsgi.input'].read()]

        environ = {'wsgi.input': conn.request().body}
        self.assertEqual([b'12345'], lean_body.install(app)(environ, None))
        self.assertIsInstance(seen[0], lean_body.LeanBody)
