"""imgmw-api's worker hook: verified bodies go out with sendfile."""

import gc
import io
import weakref

from gunicorn.http import wsgi
import testtools

from imgmw.cmd import sendfile


class FakeBody:

    def __init__(self, can=True):
        self.can = can
        self.sockets = []

    def can_sendfile(self):
        return self.can

    def sendfile(self, sock):
        self.sockets.append(sock)
        return 42

    def read(self, size=-1):
        return b''


class FakeConfig:
    is_ssl = False
    sendfile = None


class FakeResponse(wsgi.Response):

    def __init__(self):
        self.cfg = FakeConfig()
        self.sock = object()
        self.sent = 0
        self.response_length = 42
        self.chunked = False
        self._omits_body = False
        self.headers_sent = False
        self.defaulted = []

    def send_headers(self):
        self.headers_sent = True

    def is_chunked(self):
        return self.chunked


class TestWriteFile(testtools.TestCase):

    def write(self, response, body):
        def default(respiter):
            response.defaulted.append(respiter)
        sendfile.write_file(response, default, wsgi.FileWrapper(body))

    def test_verified_body_is_sent_by_its_sendfile(self):
        response = FakeResponse()
        body = FakeBody()
        self.write(response, body)
        self.assertEqual([response.sock], body.sockets)
        self.assertTrue(response.headers_sent)
        self.assertEqual(42, response.sent)
        self.assertEqual([], response.defaulted)

    def test_gunicorn_writes_anything_else(self):
        cases = []
        plain = FakeResponse()
        cases.append((plain, io.BytesIO(b'x')))
        cases.append((FakeResponse(), FakeBody(can=False)))
        ssl = FakeResponse()
        ssl.cfg.is_ssl = True
        cases.append((ssl, FakeBody()))
        no_sendfile = FakeResponse()
        no_sendfile.cfg = FakeConfig()
        no_sendfile.cfg.sendfile = False
        cases.append((no_sendfile, FakeBody()))
        chunked = FakeResponse()
        chunked.chunked = True
        cases.append((chunked, FakeBody()))
        head = FakeResponse()
        head._omits_body = True
        cases.append((head, FakeBody()))
        for response, body in cases:
            self.write(response, body)
            self.assertEqual(1, len(response.defaulted))
            self.assertFalse(response.headers_sent)
            if isinstance(body, FakeBody):
                self.assertEqual([], body.sockets)

    def test_install_hooks_gunicorn_responses_only(self):
        response = FakeResponse()
        seen = []

        def app(environ, start_response):
            seen.append(start_response)
            return []
        sendfile.install(app)({}, response.start_response)
        self.assertIsInstance(response.write_file, sendfile.WriteFile)
        plain = []
        sendfile.install(app)({}, plain.append)
        self.assertEqual(plain.append, seen[-1])

    def test_hooked_write_file_sends_verified_bodies(self):
        response = FakeResponse()
        sendfile.install(lambda environ, start: [])(
            {}, response.start_response)
        body = FakeBody()
        response.write_file(wsgi.FileWrapper(body))
        self.assertEqual([response.sock], body.sockets)
        self.assertEqual(42, response.sent)

    def test_hooked_write_file_falls_back_to_the_class_one(self):
        class Recording(FakeResponse):
            def write_file(self, respiter):
                self.defaulted.append(respiter)
        response = Recording()
        sendfile.install(lambda environ, start: [])(
            {}, response.start_response)
        respiter = wsgi.FileWrapper(io.BytesIO(b'x'))
        response.write_file(respiter)
        self.assertEqual([respiter], response.defaulted)
        self.assertFalse(response.headers_sent)

    def test_hooked_response_is_no_reference_cycle(self):
        # A cycle would keep the response, its request and their buffers
        # until the garbage collector next runs.
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        response = FakeResponse()
        sendfile.install(lambda environ, start: [])(
            {}, response.start_response)
        ref = weakref.ref(response)
        del response
        self.assertIsNone(ref())
