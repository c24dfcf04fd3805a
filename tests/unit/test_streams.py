"""Tests of imgmw.streams: the input proxy alone on BytesIO, and call_app."""

import io
import operator
import types

import testtools
import webob
import webob.exc

from imgmw import environ as env_keys
from imgmw import errors
from imgmw import streams
from tests.unit import fakes


class Recording(streams.InputProxy):
    """A proxy that records what its hook saw, and may fail at a count."""

    def __init__(self, wsgi_input, length=None, fail_over=None, **kwargs):
        super().__init__(wsgi_input, length, **kwargs)
        self.seen = []
        self.fail_over = fail_over

    def chunk_update(self, chunk, eof):
        self.seen.append((chunk, eof))
        if self.fail_over is not None and self.bytes_received > self.fail_over:
            raise streams.StreamError(errors.size_exceeds(
                self.fail_over, self.bytes_received))
        return chunk


class Upper(streams.InputProxy):
    def chunk_update(self, chunk, eof):
        return chunk.upper()


def read_in_pieces(stream, size):
    pieces = []
    while True:
        chunk = stream.read(size)
        if not chunk:
            return pieces
        pieces.append(chunk)


class TestInputProxyReads(testtools.TestCase):

    def test_read_all_at_once_unknown_length(self):
        proxy = Recording(io.BytesIO(b'abcdef'))
        self.assertEqual(b'abcdef', proxy.read())
        self.assertEqual(b'', proxy.read())
        self.assertEqual([(b'abcdef', False), (b'', True)], proxy.seen)
        self.assertEqual(6, proxy.bytes_received)
        self.assertTrue(proxy.finished)

    def test_read_all_at_once_known_length_signals_eof_with_data(self):
        proxy = Recording(io.BytesIO(b'abcdef'), length=6)
        self.assertEqual(b'abcdef', proxy.read())
        self.assertEqual([(b'abcdef', True)], proxy.seen)
        self.assertEqual(b'', proxy.read())
        self.assertEqual(1, len(proxy.seen), 'the hook sees EOF once')

    def test_read_none_means_all(self):
        proxy = streams.InputProxy(io.BytesIO(b'abc'))
        self.assertEqual(b'abc', proxy.read(None))

    def test_read_in_pieces(self):
        proxy = Recording(io.BytesIO(b'abcdefg'), length=7)
        self.assertEqual([b'abc', b'def', b'g'], read_in_pieces(proxy, 3))
        self.assertEqual([(b'abc', False), (b'def', False), (b'g', True)],
                         proxy.seen)

    def test_never_reads_past_length(self):
        source = io.BytesIO(b'abcdefXYZ')
        proxy = streams.InputProxy(source, length=6)
        self.assertEqual([b'abcd', b'ef'], read_in_pieces(proxy, 4))
        self.assertEqual(6, source.tell())
        self.assertEqual(b'', proxy.read())
        self.assertEqual(6, source.tell())

    def test_empty_body(self):
        for length in (None, 0):
            proxy = Recording(io.BytesIO(b''), length=length)
            self.assertEqual(b'', proxy.read(10))
            self.assertEqual([(b'', True)], proxy.seen)

    def test_read_zero_is_not_end_of_stream(self):
        proxy = Recording(io.BytesIO(b'abc'))
        self.assertEqual(b'', proxy.read(0))
        self.assertFalse(proxy.finished)
        self.assertEqual([], proxy.seen)
        self.assertEqual(b'abc', proxy.read())

    def test_readline_readlines_and_iteration(self):
        body = b'one\ntwo\nthree'
        proxy = streams.InputProxy(io.BytesIO(body), length=len(body))
        self.assertEqual(b'one\n', proxy.readline())
        self.assertEqual([b'two\n', b'three'], proxy.readlines())
        proxy = streams.InputProxy(io.BytesIO(body))
        self.assertEqual([b'one\n', b'two\n', b'three'], list(proxy))
        proxy = streams.InputProxy(io.BytesIO(body))
        self.assertEqual([b'one\n'], proxy.readlines(2))

    def test_chunk_update_transforms(self):
        proxy = Upper(io.BytesIO(b'abc'))
        self.assertEqual(b'ABC', proxy.read())

    def test_proxies_stack(self):
        inner = Recording(io.BytesIO(b'abcdef'), length=6)
        outer = Upper(inner)
        self.assertEqual([b'ABCD', b'EF'], read_in_pieces(outer, 4))
        self.assertEqual(6, inner.bytes_received)
        self.assertEqual(6, outer.bytes_received)

    def test_input_ended(self):
        proxy = streams.InputProxy(io.BytesIO(b'ab'))
        self.assertEqual(b'a', proxy.read(1))
        self.assertFalse(proxy.input_ended())
        self.assertEqual(2, proxy.bytes_received)
        self.assertTrue(proxy.input_ended())
        self.assertEqual(2, proxy.bytes_received)

    def test_unknown_error_mode_refused(self):
        self.assertRaises(ValueError, streams.InputProxy, io.BytesIO(),
                          stream_errors='exception')


class TestInputProxyErrors(testtools.TestCase):

    def test_stream_error_is_not_an_exception(self):
        self.assertFalse(issubclass(streams.StreamError, Exception))
        self.assertTrue(issubclass(streams.ClientDisconnected,
                                   streams.StreamError))

    def test_hook_error_is_raised_and_remembered(self):
        proxy = Recording(io.BytesIO(b'abcdef'), fail_over=4)
        self.assertEqual(b'abc', proxy.read(3))
        err = self.assertRaises(streams.StreamError, proxy.read, 3)
        self.assertIs(err, proxy.error)
        self.assertEqual(400, err.http_error.status_int)
        self.assertEqual('Size exceeds: expected 4 bytes, got 6 bytes',
                         str(err))
        # Every later read fails the same way, without reading on.
        self.assertIs(err, self.assertRaises(streams.StreamError,
                                             proxy.read))
        self.assertEqual(6, proxy.bytes_received)

    def test_input_failure_is_a_client_disconnect(self):
        proxy = streams.InputProxy(fakes.FailingInput(b'abcdef', 4),
                                   length=6)
        self.assertEqual(b'abcd', proxy.read(4))
        err = self.assertRaises(streams.ClientDisconnected, proxy.read, 4)
        self.assertIs(err, proxy.error)
        self.assertIsInstance(err.__cause__, OSError)
        self.assertEqual('Size mismatch: expected 6 bytes, got 4 bytes',
                         err.http_error.explanation)

    def test_input_timeout_is_a_request_timeout(self):
        # The server stopped waiting (a socket timeout, or imgmw-api's
        # minimum pace): 408 (RFC 9110 section 15.5.9), not row 15's 400.
        proxy = streams.InputProxy(fakes.FailingInput(
            b'abcdef', 4, TimeoutError('timed out')), length=6)
        self.assertEqual(b'abcd', proxy.read(4))
        err = self.assertRaises(streams.ClientDisconnected, proxy.read, 4)
        self.assertEqual(408, err.http_error.status_int)
        self.assertEqual('Request Timeout: the request body came too '
                         'slowly and was cut after 4 bytes',
                         err.http_error.explanation)

    def test_input_failure_unknown_length(self):
        proxy = streams.InputProxy(fakes.FailingInput(b'abcdef', 0))
        err = self.assertRaises(streams.ClientDisconnected, proxy.read)
        self.assertEqual(400, err.http_error.status_int)

    def test_body_failed_is_called_once(self):
        for make in (lambda: Recording(io.BytesIO(b'abcdef'), fail_over=4),
                     lambda: Recording(fakes.FailingInput(b'abcdef', 3),
                                       length=6)):
            proxy = make()
            failures = []
            proxy.body_failed = lambda: failures.append(proxy.error)
            self.assertEqual(b'abc', proxy.read(3))
            self.assertEqual([], failures)
            err = self.assertRaises(streams.StreamError, proxy.read, 3)
            self.assertRaises(streams.StreamError, proxy.read, 3)
            self.assertEqual([err], failures)

    def test_ioerror_mode_raises_an_ioerror(self):
        proxy = Recording(io.BytesIO(b'abcdef'), fail_over=2,
                          stream_errors=streams.IOERROR)
        err = self.assertRaises(streams.StreamIOError, proxy.read)
        self.assertIsInstance(err, IOError)
        self.assertIs(proxy.error, err.stream_error)
        self.assertEqual(400, err.stream_error.http_error.status_int)
        again = self.assertRaises(streams.StreamIOError, proxy.read)
        self.assertIs(proxy.error, again.stream_error)

    def test_ioerror_mode_disconnect(self):
        proxy = streams.InputProxy(fakes.FailingInput(b'abc', 1), length=3,
                                   stream_errors=streams.IOERROR)
        self.assertEqual(b'a', proxy.read(1))
        err = self.assertRaises(streams.StreamIOError, proxy.read)
        self.assertIsInstance(err.stream_error, streams.ClientDisconnected)

    def test_outer_proxy_remembers_inner_error_both_modes(self):
        for mode in streams.STREAM_ERROR_MODES:
            inner = Recording(io.BytesIO(b'abcdef'), fail_over=2,
                              stream_errors=mode)
            outer = streams.InputProxy(inner)
            err = self.assertRaises(streams.StreamError, outer.read)
            self.assertIs(inner.error, err, mode)
            self.assertIs(inner.error, outer.error, mode)
            self.assertNotIsInstance(err, streams.ClientDisconnected, mode)

    def test_outer_ioerror_proxy_over_base_inner(self):
        inner = Recording(io.BytesIO(b'abcdef'), fail_over=2)
        outer = streams.InputProxy(inner, stream_errors=streams.IOERROR)
        err = self.assertRaises(streams.StreamIOError, outer.read)
        self.assertIs(inner.error, err.stream_error)

    def test_other_base_exceptions_pass_untouched(self):
        class Interrupted:
            def read(self, size=-1):
                raise KeyboardInterrupt()
        proxy = streams.InputProxy(Interrupted())
        self.assertRaises(KeyboardInterrupt, proxy.read)
        self.assertIsNone(proxy.error)


class ClosingBody(list):
    closed = False

    def close(self):
        self.closed = True


class App:
    """A configurable WSGI app for call_app."""

    def __init__(self, reads=True, catch=None, lazy=False, writes=(),
                 body=(b'done',), raise_after=None):
        self.reads = reads
        self.catch = catch
        self.lazy = lazy
        self.writes = writes
        self.body = body
        self.raise_after = raise_after
        self.closed = False
        self.failed = None

    def __call__(self, environ, start_response):
        if self.lazy:
            return self._lazy(environ, start_response)
        try:
            if self.reads:
                environ['wsgi.input'].read()
        except self.catch or () as err:
            self.failed = err
            if self.raise_after is not None:
                raise self.raise_after
            start_response('500 Internal Server Error',
                           [('Content-Type', 'text/plain')])
            return [b'oops']
        write = start_response('201 Created', [('X-App', 'yes')])
        for data in self.writes:
            write(data)
        return self._iterate()

    def _iterate(self):
        try:
            for chunk in self.body:
                yield chunk
        finally:
            self.closed = True

    def _lazy(self, environ, start_response):
        try:
            if self.reads:
                environ['wsgi.input'].read()
            start_response('202 Accepted', [('X-App', 'lazy')])
            for chunk in self.body:
                yield chunk
        finally:
            self.closed = True


class TestCallApp(testtools.TestCase):

    def call(self, app, body=b'abcdef', fail_over=None, mode=streams.BASE):
        req = webob.Request.blank('/', method='PUT')
        req.environ['wsgi.input'] = io.BytesIO(body)
        req.environ['CONTENT_LENGTH'] = str(len(body))
        self.proxy = Recording(req.environ['wsgi.input'], len(body),
                               fail_over=fail_over, stream_errors=mode)
        streams.install(req.environ, self.proxy)

        def wrapped(environ, start_response):
            return streams.call_app(app, environ, start_response,
                                    self.proxy)
        return req.get_response(wrapped)

    def test_install_assigns_the_key_and_keeps_content_length(self):
        environ = {'wsgi.input': io.BytesIO(b'ab'), 'CONTENT_LENGTH': '2'}
        proxy = streams.InputProxy(environ['wsgi.input'], 2)
        self.assertIs(proxy, streams.install(environ, proxy))
        self.assertIs(proxy, environ['wsgi.input'])
        self.assertEqual('2', environ['CONTENT_LENGTH'])

    def test_success_passes_the_app_answer(self):
        app = App()
        resp = self.call(app)
        self.assertEqual(201, resp.status_int)
        self.assertEqual('yes', resp.headers['X-App'])
        self.assertEqual(b'done', resp.body)
        self.assertTrue(app.closed)

    def test_stream_error_propagating_is_answered(self):
        app = App()
        resp = self.call(app, fail_over=3)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size exceeds: expected 3 bytes, got 6 bytes',
                      resp.text)
        self.assertNotIn('X-App', resp.headers)

    def test_app_swallowing_the_error_is_overridden(self):
        # An app that catches everything and answers 500.
        app = App(catch=BaseException)
        resp = self.call(app, fail_over=3)
        self.assertIsInstance(app.failed, streams.StreamError)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size exceeds', resp.text)

    def test_ioerror_mode_app_catching_exception_is_overridden(self):
        app = App(catch=Exception)
        resp = self.call(app, fail_over=3, mode=streams.IOERROR)
        self.assertIsInstance(app.failed, streams.StreamIOError)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size exceeds', resp.text)

    def test_ioerror_propagating_is_answered(self):
        resp = self.call(App(), fail_over=3, mode=streams.IOERROR)
        self.assertEqual(400, resp.status_int)

    def test_app_raising_something_else_after_the_error(self):
        # As Glance: catch Exception, clean up, raise a 500 of its own.
        app = App(catch=Exception,
                  raise_after=webob.exc.HTTPInternalServerError())
        resp = self.call(app, fail_over=3, mode=streams.IOERROR)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size exceeds', resp.text)

    def test_unrelated_app_error_propagates(self):
        # The body is fine; the app fails on its own: nothing to translate.
        def failing(environ, start_response):
            environ['wsgi.input'].read()
            raise ValueError('app bug')
        self.assertRaises(ValueError, self.call, failing)
        self.assertIsNone(self.proxy.error)

    def test_lazy_start_response_success(self):
        app = App(lazy=True, body=(b'a', b'b'))
        resp = self.call(app)
        self.assertEqual(202, resp.status_int)
        self.assertEqual('lazy', resp.headers['X-App'])
        self.assertEqual(b'ab', resp.body)
        self.assertTrue(app.closed)

    def test_lazy_start_response_stream_error(self):
        app = App(lazy=True)
        resp = self.call(app, fail_over=3)
        self.assertEqual(400, resp.status_int)
        self.assertNotIn('X-App', resp.headers)
        self.assertTrue(app.closed)

    def test_lazy_app_swallowing_the_error(self):
        def swallowing(environ, start_response):
            try:
                environ['wsgi.input'].read()
            except BaseException:
                pass
            start_response('204 No Content', [])
            yield b''
        resp = self.call(swallowing, fail_over=3)
        self.assertEqual(400, resp.status_int)

    def test_swallowed_answer_is_closed(self):
        body = ClosingBody([b'x'])

        def swallow(environ, start_response):
            try:
                environ['wsgi.input'].read()
            except BaseException:
                pass
            start_response('200 OK', [])
            return body
        resp = self.call(swallow, fail_over=3)
        self.assertEqual(400, resp.status_int)
        self.assertTrue(body.closed)

    def test_write_callable_data_comes_first(self):
        app = App(writes=(b'w1', b'w2'), body=(b'-it',))
        resp = self.call(app)
        self.assertEqual(201, resp.status_int)
        self.assertEqual(b'w1w2-it', resp.body)
        self.assertTrue(app.closed)

    def test_write_callable_then_error_is_replaced(self):
        def writer(environ, start_response):
            write = start_response('200 OK', [])
            write(b'partial')
            try:
                environ['wsgi.input'].read()
            except BaseException:
                return [b'swallowed']
            return []
        resp = self.call(writer, fail_over=3)
        self.assertEqual(400, resp.status_int)
        self.assertNotIn(b'partial', resp.body)

    def test_empty_lazy_app_without_start_response(self):
        def broken(environ, start_response):
            return iter(())
        self.assertRaises(RuntimeError, self.call, broken)

    def test_client_disconnect_answered_and_app_cleans_up(self):
        app = fakes.RecordingApp(chunk_size=2)
        req = fakes.upload_request(body=b'abcdef')
        source = fakes.FailingInput(b'abcdef', 3)
        proxy = streams.InputProxy(source, 6)
        streams.install(req.environ, proxy)

        def wrapped(environ, start_response):
            return streams.call_app(app, environ, start_response, proxy)
        resp = req.get_response(wrapped)
        self.assertIsInstance(app.failed, streams.ClientDisconnected)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size mismatch: expected 6 bytes, got 3 bytes',
                      resp.text)


class BodyLengthTest(testtools.TestCase):
    """The length a body proxy is bounded by."""

    def test_declared_size_wins_and_zero_is_unknown(self):
        from imgmw import environ as keys
        self.assertEqual(5, streams.body_length(
            {keys.SIZE: 5, 'CONTENT_LENGTH': '9'}))
        self.assertIsNone(streams.body_length({keys.SIZE: 0}))
        self.assertIsNone(streams.body_length({keys.SIZE: None,
                                               'CONTENT_LENGTH': '9'}))

    def test_content_length_of_an_unchunked_body(self):
        self.assertEqual(9, streams.body_length({'CONTENT_LENGTH': ' 9 '}))
        self.assertIsNone(streams.body_length(
            {'CONTENT_LENGTH': '9', 'HTTP_TRANSFER_ENCODING': 'chunked'}))
        for bad in ('', '-1', '1e3', '\u0661'):
            self.assertIsNone(streams.body_length({'CONTENT_LENGTH': bad}))


class Listening(streams.InputProxy):
    """Records the images announced to it, and when."""

    def __init__(self, wsgi_input, heard):
        super().__init__(wsgi_input)
        self.heard = heard

    def image_announced(self, image):
        self.heard.append((self, dict(image), self.bytes_received))


class AnnounceImageTest(testtools.TestCase):

    def test_every_proxy_of_the_stack_hears_it_outermost_first(self):
        heard = []
        inner = Listening(io.BytesIO(b'body'), heard)
        middle = streams.InputProxy(inner)
        outer = Listening(middle, heard)
        environ = {'wsgi.input': outer}
        streams.announce_image(environ, {'id': 'i', 'owner': 'p'})
        self.assertEqual([(outer, {'id': 'i', 'owner': 'p'}, 0),
                          (inner, {'id': 'i', 'owner': 'p'}, 0)], heard)
        self.assertEqual({'id': 'i', 'owner': 'p'},
                         environ[env_keys.IMAGE])
        self.assertEqual(b'body', outer.read())

    def test_the_record_is_read_only_and_a_copy(self):
        image = {'id': 'i'}
        environ = {'wsgi.input': io.BytesIO(b'')}
        streams.announce_image(environ, image)
        image['id'] = 'changed'
        self.assertEqual('i', environ[env_keys.IMAGE]['id'])
        self.assertRaises(TypeError, operator.setitem,
                          environ[env_keys.IMAGE], 'id', 'x')

    def test_the_walk_stops_at_what_is_no_proxy(self):
        heard = []
        hidden = Listening(io.BytesIO(b''), heard)
        wrapper = types.SimpleNamespace(wsgi_input=hidden, read=hidden.read)
        environ = {'wsgi.input': wrapper}
        streams.announce_image(environ, {'id': 'i'})
        self.assertEqual([], heard)
