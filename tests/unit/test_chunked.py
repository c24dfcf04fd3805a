"""Tests of imgmw.chunked: a chunked body under uWSGI, with a fake uwsgi.

The fake stands for uWSGI's embedded module: ``chunked_read()`` hands out
the client's chunks one a call, then ``b''``, and ``wsgi.input`` holds
nothing, as uWSGI's does for a chunked request. The filters find the fake
as uWSGI's apps find the real one: ``import uwsgi``.
"""

import hashlib
import io
import sys
from unittest import mock

import testtools
import webob

from imgmw import chunked
from imgmw import environ as keys
from imgmw.filters import checksum
from imgmw.filters import size
from imgmw import wsgi
from tests.unit import fakes


class FakeUwsgi:
    """uWSGI's module as far as chunked input goes.

    :param chunks: the body's chunks as the client sent them.
    :param fail_after: raise ``IOError`` at that call, as uWSGI does on a
        chunk above ``chunked-input-limit`` or a client gone.
    """

    def __init__(self, chunks, fail_after=None):
        self.chunks = list(chunks)
        self.fail_after = fail_after
        self.calls = 0

    def chunked_read(self, timeout=0):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise IOError('unable to receive chunked part')
        return self.chunks.pop(0) if self.chunks else b''


def uwsgi_request(chunks, declared=None, content_length=None, te='chunked'):
    """A chunked upload as uWSGI hands it over: nothing in wsgi.input."""
    req = fakes.upload_request(chunked=True)
    req.environ['HTTP_TRANSFER_ENCODING'] = te
    del req.environ['wsgi.input_terminated']  # uWSGI sets no such flag
    if declared is not None:
        req.headers['x-openstack-image-size'] = str(declared)
    if content_length is not None:
        req.environ['CONTENT_LENGTH'] = str(content_length)
    return req, FakeUwsgi(chunks)


def under_uwsgi(fake):
    """``import uwsgi`` finds ``fake``, as inside uWSGI."""
    return mock.patch.dict(sys.modules, {'uwsgi': fake})


class GlanceLikeApp(fakes.RecordingApp):
    """Reads the body as Glance 33's ``Request.body_file`` does.

    Under uWSGI a request whose ``Transfer-Encoding`` is ``chunked`` is read
    with ``uwsgi.chunked_read()``, around ``wsgi.input``; any other through
    WebOb's ``body_file``, which needs ``is_body_readable``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.took_uwsgi_path = None

    def _read_all(self, wsgi_input):
        req = webob.Request(self.calls[-1])
        te = req.headers.get('transfer-encoding', '').lower()
        self.took_uwsgi_path = te == 'chunked' and 'uwsgi' in sys.modules
        if self.took_uwsgi_path:
            body_file = chunked.UwsgiChunkedInput(
                sys.modules['uwsgi'].chunked_read)
        else:
            self.calls[-1]['wsgi.input'] = wsgi_input
            body_file = webob.Request(self.calls[-1]).body_file
        super()._read_all(body_file)


class TestServerInput(testtools.TestCase):

    def test_under_uwsgi_a_chunked_body_moves_into_wsgi_input(self):
        req, fake = uwsgi_request([b'abc', b'defg'], content_length=99)
        got = chunked.server_input(req.environ, fake)
        self.assertIs(req.environ['wsgi.input'], got)
        self.assertIsInstance(got, chunked.UwsgiChunkedInput)
        self.assertNotIn('HTTP_TRANSFER_ENCODING', req.environ)
        self.assertEqual('chunked', req.environ[keys.TRANSFER_ENCODING])
        self.assertNotIn('CONTENT_LENGTH', req.environ,
                         'the transfer coding overrides Content-Length')
        self.assertIs(True, req.environ['wsgi.input_terminated'])
        self.assertTrue(webob.Request(req.environ).is_body_readable)
        self.assertEqual(b'abcdefg',
                         webob.Request(req.environ).body_file.read())

    def test_the_framing_is_still_known(self):
        req, fake = uwsgi_request([b'abc'], te='gzip, Chunked')
        chunked.server_input(req.environ, fake)
        self.assertEqual('gzip, Chunked', chunked.transfer_encoding(
            req.environ))
        self.assertEqual(['gzip', 'chunked'],
                         chunked.transfer_codings(req.environ))
        self.assertTrue(chunked.is_chunked(req.environ))

    def test_idempotent(self):
        req, fake = uwsgi_request([b'abc', b'def'])
        first = chunked.server_input(req.environ, fake)
        self.assertEqual(b'abc', first.read(3))
        wrapper = io.BytesIO(b'installed by a filter')
        req.environ['wsgi.input'] = wrapper
        self.assertIs(wrapper, chunked.server_input(req.environ, fake))
        self.assertEqual('chunked', req.environ[keys.TRANSFER_ENCODING])
        self.assertEqual(b'def', first.read())

    def test_without_uwsgi_nothing_changes(self):
        req = fakes.upload_request(body=b'abc', chunked=True)
        before = dict(req.environ)
        with mock.patch.object(chunked, '_import_uwsgi', return_value=None):
            got = chunked.server_input(req.environ)
        self.assertIs(before['wsgi.input'], got)
        self.assertEqual(before, req.environ)

    def test_the_real_import_fails_outside_uwsgi(self):
        self.assertNotIn('uwsgi', sys.modules)
        self.assertIsNone(chunked._import_uwsgi())

    def test_content_length_body_under_uwsgi_is_left_alone(self):
        req = fakes.upload_request(body=b'abc')
        fake = FakeUwsgi([b'never'])
        before = dict(req.environ)
        self.assertIs(before['wsgi.input'],
                      chunked.server_input(req.environ, fake))
        self.assertEqual(before, req.environ)
        self.assertEqual(0, fake.calls)

    def test_coding_not_ending_in_chunked_is_left_alone(self):
        for te in ('gzip', 'chunked, gzip', ''):
            req, fake = uwsgi_request([b'abc'], te=te)
            before = dict(req.environ)
            chunked.server_input(req.environ, fake)
            self.assertEqual(before, req.environ, te)

    def test_the_uwsgi_module_is_imported_when_not_given(self):
        req, fake = uwsgi_request([b'abc', b'de'])
        with under_uwsgi(fake):
            self.assertEqual(b'abcde', chunked.server_input(
                req.environ).read())

    def test_no_transfer_encoding_reads_as_empty(self):
        req = fakes.upload_request()
        self.assertEqual('', chunked.transfer_encoding(req.environ))
        self.assertEqual([], chunked.transfer_codings(req.environ))
        self.assertFalse(chunked.is_chunked(req.environ))


class TestUwsgiChunkedInput(testtools.TestCase):

    def make(self, chunks, **kwargs):
        fake = FakeUwsgi(chunks, **kwargs)
        return chunked.UwsgiChunkedInput(fake.chunked_read), fake

    def test_read_all(self):
        body, fake = self.make([b'ab', b'cde', b'f'])
        self.assertEqual(b'abcdef', body.read())
        self.assertEqual(b'', body.read())
        self.assertEqual(b'', body.read(10))
        self.assertEqual(4, fake.calls, 'the end is asked for once')

    def test_read_sizes_cross_chunk_boundaries(self):
        body, _ = self.make([b'abcd', b'efghij', b'k'])
        self.assertEqual(b'abc', body.read(3))
        self.assertEqual(b'defgh', body.read(5))
        self.assertEqual(b'ij', body.read(2))
        self.assertEqual(b'k', body.read(4), 'short only at the end')
        self.assertEqual(b'', body.read(4))

    def test_read_none_and_zero(self):
        body, fake = self.make([b'abc'])
        self.assertEqual(b'', body.read(0))
        self.assertEqual(0, fake.calls)
        self.assertEqual(b'abc', body.read(None))

    def test_a_whole_chunk_is_handed_on_as_it_is(self):
        chunk = b'x' * 1024
        body, _ = self.make([chunk])
        self.assertIs(chunk, body.read(4096))

    def test_empty_body(self):
        body, _ = self.make([])
        self.assertEqual(b'', body.read(65536))
        self.assertEqual(b'', body.read())

    def test_readline_and_iteration(self):
        body, _ = self.make([b'one\ntw', b'o\n', b'three'])
        self.assertEqual(b'one\n', body.readline())
        self.assertEqual(b'tw', body.readline(2))
        self.assertEqual(b'o\n', body.readline())
        self.assertEqual([b'three'], list(body))

    def test_readlines_with_hint(self):
        body, _ = self.make([b'a\nb\nc\n'])
        self.assertEqual([b'a\n', b'b\n'], body.readlines(3))
        self.assertEqual([b'c\n'], body.readlines())

    def test_uwsgi_errors_propagate(self):
        body, _ = self.make([b'abc', b'def'], fail_after=1)
        self.assertEqual(b'abc', body.read(3))
        self.assertRaises(IOError, body.read, 3)


class TestFiltersUnderUwsgi(testtools.TestCase):
    """The size and checksum filters stacked, before a Glance-like app."""

    def pipeline(self, app):
        conf = {'stream_errors': 'ioerror'}
        return size.filter_factory({}, **conf)(
            checksum.filter_factory({}, publish_digests='false',
                                    **conf)(app))

    def send(self, req, fake, app):
        with under_uwsgi(fake):
            return req.get_response(self.pipeline(app))

    def test_the_app_reads_the_body_through_the_filters(self):
        data = b'0123456789' * 1000
        chunks = [data[:4000], data[4000:]]
        req, fake = uwsgi_request(chunks, declared=len(data))
        req.headers['Content-MD5'] = hashlib.md5(data).hexdigest()
        app = GlanceLikeApp(chunk_size=1500)
        resp = self.send(req, fake, app)
        self.assertEqual(204, resp.status_int, resp.text)
        self.assertFalse(app.took_uwsgi_path)
        self.assertEqual(data, app.received)
        self.assertNotIn('HTTP_TRANSFER_ENCODING', app.environ)

    def test_longer_than_declared_refused(self):
        req, fake = uwsgi_request([b'x' * 600, b'x' * 600], declared=1000)
        app = GlanceLikeApp(catch=True)
        resp = self.send(req, fake, app)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size exceeds', resp.text)
        self.assertLess(len(app.received), 1000)

    def test_shorter_than_declared_refused(self):
        req, fake = uwsgi_request([b'x' * 500, b'x' * 400], declared=1000)
        app = GlanceLikeApp(catch=True)
        resp = self.send(req, fake, app)
        self.assertEqual(400, resp.status_int)
        self.assertIn('expected 1000 bytes, got 900', resp.text)

    def test_empty_chunked_body_refused(self):
        req, fake = uwsgi_request([])
        app = GlanceLikeApp(catch=True)
        resp = self.send(req, fake, app)
        self.assertEqual(400, resp.status_int, resp.text)

    def test_digest_mismatch_refused(self):
        req, fake = uwsgi_request([b'abc', b'def'])
        req.headers['Content-MD5'] = hashlib.md5(b'other').hexdigest()
        app = GlanceLikeApp(catch=True)
        resp = self.send(req, fake, app)
        self.assertEqual(400, resp.status_int)
        self.assertIn('md5 mismatch', resp.text)

    def test_a_broken_chunk_is_an_incomplete_body(self):
        req, _ = uwsgi_request([], declared=6)
        fake = FakeUwsgi([b'abc', b'def'], fail_after=1)
        app = GlanceLikeApp(catch=True)
        resp = self.send(req, fake, app)
        self.assertEqual(400, resp.status_int, resp.text)
        self.assertEqual(b'', app.received)

    def test_the_glance_like_app_alone_reads_around_wsgi_input(self):
        """What the filters guard against: the proof the double is right."""
        req, fake = uwsgi_request([b'abc', b'def'])
        app = GlanceLikeApp()
        with under_uwsgi(fake):
            resp = req.get_response(app)
        self.assertEqual(204, resp.status_int)
        self.assertTrue(app.took_uwsgi_path)
        self.assertEqual(b'abcdef', app.received)


class TestImgmwEntryPoint(testtools.TestCase):

    def test_the_entry_point_moves_the_body_before_the_pipeline(self):
        req, fake = uwsgi_request([b'abc', b'def'])
        app = fakes.RecordingApp()
        with under_uwsgi(fake):
            resp = req.get_response(wsgi.PathGuard(app))
        self.assertEqual(204, resp.status_int)
        self.assertEqual(b'abcdef', app.received)
        self.assertEqual('chunked', app.environ[keys.TRANSFER_ENCODING])
