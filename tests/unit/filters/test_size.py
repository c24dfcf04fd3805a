"""Tests of the size filter alone, and of its stream wrapper on BytesIO.

Contract section 3, rows 2 to 6, 14 to 16 and 18; section 9's header forms.
"""

import io
import os

import paste.deploy
import testtools
import webob
import webob.exc

from imgmw import config
from imgmw import environ as keys
from imgmw.filters import size
from imgmw import streams
from tests.unit import fakes


#: How the fake app reads: in pieces of these sizes, or all at once (-1).
READERS = (1, 3, 65536, -1)

ROW4 = ('A request body with a declared length or chunked encoding is '
        'required.')
ROW6 = 'The incoming image is too large: The provided image is too large.'
ROW18 = ('Image data is empty. Declare x-openstack-image-size: 0 to store '
         'an empty image.')
INVALID_SIZE = 'Invalid or missing image size in request headers.'


def message(resp: webob.Response) -> str:
    """The contract's message of an error answered as JSON."""
    return resp.json['message'].split('<br />')[0]


def build(app=None, global_conf=None, **local_conf):
    app = app if app is not None else fakes.RecordingApp()
    return size.filter_factory(global_conf or {}, **local_conf)(app), app


def upload(body=b'', chunked=False, declared=None, headers=None, **kwargs):
    headers = dict(headers or {})
    headers.setdefault('Accept', 'application/json')
    if declared is not None:
        headers['X-OpenStack-Image-Size'] = str(declared)
    return fakes.upload_request(body=body, chunked=chunked, headers=headers,
                                **kwargs)


class FilterTestCase(testtools.TestCase):

    def send(self, req, app=None, **conf):
        middleware, self.app = build(app, **conf)
        return req.get_response(middleware)

    def assertRefused(self, resp, status, text):
        self.assertEqual(status, resp.status_int, resp.text)
        self.assertEqual(text, message(resp))

    def assertRefusedBeforeApp(self, resp, status, text):
        self.assertRefused(resp, status, text)
        self.assertFalse(self.app.called)


class TestPassThrough(FilterTestCase):
    """Requests the filter does not guard reach the app untouched."""

    def assertUntouched(self, req, **conf):
        original = req.environ['wsgi.input']
        resp = self.send(req, fakes.RecordingApp(status=200), **conf)
        self.assertEqual(200, resp.status_int)
        self.assertIs(original, self.app.environ['wsgi.input'])
        self.assertNotIn(keys.SIZE, self.app.environ)

    def test_download_not_guarded(self):
        self.assertUntouched(upload(method='GET', declared='bad'))

    def test_other_methods_on_file_not_guarded(self):
        self.assertUntouched(upload(method='POST', declared='-1'))

    def test_other_paths_not_guarded(self):
        self.assertUntouched(upload(path='/v2/images/abc', method='PUT',
                                    declared='x'))
        self.assertUntouched(upload(path='/v2/images', method='PUT',
                                    headers={'Content-Type': 'text/plain'}))

    def test_stage_not_guarded_when_not_configured(self):
        self.assertUntouched(upload(path='/v2/images/abc/stage',
                                    declared='+1'),
                             guarded_paths='file')

    def test_file_not_guarded_when_not_configured(self):
        self.assertUntouched(upload(declared='+1'), guarded_paths='stage')

    def test_guarded_paths(self):
        for path in ('/v2/images/abc/file', '/v2/images/abc/stage',
                     '/v2.9/images/abc/file', '/v2.13/images/abc/stage/'):
            resp = self.send(upload(path=path, declared='+1'))
            self.assertRefusedBeforeApp(resp, 400, INVALID_SIZE)


class TestContentType(FilterTestCase):
    """Contract 3.2 (415), checked first of the filter's rows."""

    def test_other_media_type_refused(self):
        resp = self.send(upload(b'ab', headers={'Content-Type':
                                                'text/plain; charset=x'}))
        self.assertRefusedBeforeApp(resp, 415,
                                    'Invalid content type text/plain')

    def test_missing_content_type_refused(self):
        req = upload(b'ab')
        del req.headers['Content-Type']
        resp = self.send(req)
        self.assertRefusedBeforeApp(resp, 415, 'Invalid content type None')

    def test_case_params_and_blanks_ignored(self):
        for value in ('Application/Octet-Stream',
                      'application/octet-stream ; a=b',
                      'APPLICATION/OCTET-STREAM;charset=binary'):
            resp = self.send(upload(b'ab', headers={'Content-Type': value}))
            self.assertEqual(204, resp.status_int, value)
            self.assertEqual(b'ab', self.app.received)

    def test_accepted_type_handed_on_normalised(self):
        """Glance compares the media type exactly: give it the usual form."""
        for value, handed in (
                ('Application/Octet-Stream', 'application/octet-stream'),
                ('application/octet-stream ; a=b',
                 'application/octet-stream; a=b'),
                ('APPLICATION/OCTET-STREAM;charset=binary ',
                 'application/octet-stream; charset=binary')):
            self.send(upload(b'ab', headers={'Content-Type': value}))
            self.assertEqual(handed, self.app.environ['CONTENT_TYPE'])
            self.assertEqual('application/octet-stream', webob.Request(
                self.app.environ).content_type)

    def test_no_content_type_on_the_204(self):
        """Contract 3.24: WebOb (Glance) sends text/html on its 204."""
        def glance_like(environ, start_response):
            environ['wsgi.input'].read()
            start_response('204 No Content', [
                ('Content-Type', 'text/html; charset=UTF-8'),
                ('Content-Length', '0'), ('X-Other', 'kept')])
            return []
        resp = self.send(upload(b'ab'), app=glance_like)
        self.assertEqual(204, resp.status_int)
        self.assertNotIn('Content-Type', resp.headers)
        self.assertNotIn('Content-Length', resp.headers)
        self.assertEqual('kept', resp.headers['X-Other'])

    def test_before_the_size_header(self):
        resp = self.send(upload(b'ab', declared='+2',
                                headers={'Content-Type': 'text/plain'}))
        self.assertRefusedBeforeApp(resp, 415,
                                    'Invalid content type text/plain')

    def test_check_can_be_turned_off(self):
        resp = self.send(upload(b'ab', headers={'Content-Type':
                                                'text/plain'}),
                         check_content_type='false')
        self.assertEqual(204, resp.status_int)


class TestSizeHeader(FilterTestCase):
    """Contract 3.3 and section 9: only plain ASCII decimal integers."""

    BAD = ('+4', '1_0', '-1', '0x4', '4.0', '', ' ', 'foobar', '4, 4', '4 4',
           '1e3', '\u0664', '\uff14', '\xb2', '\xd9\xa4', '4\n')

    def test_bad_forms_refused(self):
        for value in self.BAD:
            resp = self.send(upload(b'abcd', declared=value))
            self.assertEqual(400, resp.status_int, repr(value))
            self.assertEqual(INVALID_SIZE, message(resp), repr(value))
            self.assertFalse(self.app.called, repr(value))

    def test_bad_forms_refused_chunked(self):
        for value in self.BAD:
            resp = self.send(upload(b'abcd', chunked=True, declared=value))
            self.assertRefusedBeforeApp(resp, 400, INVALID_SIZE)

    def test_too_many_digits_refused(self):
        resp = self.send(upload(b'abcd', chunked=True, declared='9' * 5000))
        self.assertRefusedBeforeApp(resp, 400, INVALID_SIZE)

    def test_blanks_and_leading_zeros_accepted(self):
        for value in (' 4 ', '\t4\t', '0004'):
            resp = self.send(upload(b'abcd', chunked=True, declared=value))
            self.assertEqual(204, resp.status_int, repr(value))
            self.assertEqual(4, self.app.environ[keys.SIZE])

    def test_before_framing(self):
        req = upload(b'', declared='-1')
        del req.environ['CONTENT_LENGTH']
        resp = self.send(req)
        self.assertRefusedBeforeApp(resp, 400, INVALID_SIZE)


class TestFraming(FilterTestCase):
    """Contract 3.4 (411) and RFC 9112 section 6.3."""

    def unframed(self, body=b'', **kwargs):
        req = upload(body, **kwargs)
        del req.environ['CONTENT_LENGTH']
        return req

    def test_no_length_no_chunking_refused(self):
        resp = self.send(self.unframed(b'abc'))
        self.assertRefusedBeforeApp(resp, 411, ROW4)

    def test_empty_content_length_is_no_length(self):
        req = upload(b'')
        req.environ['CONTENT_LENGTH'] = ''
        self.assertRefusedBeforeApp(self.send(req), 411, ROW4)

    def test_with_declared_size_still_refused(self):
        resp = self.send(self.unframed(b'abc', declared=3))
        self.assertRefusedBeforeApp(resp, 411, ROW4)

    def test_length_not_required_gives_an_empty_body(self):
        source_body = b'never read'
        req = self.unframed(source_body)
        resp = self.send(req, require_length='false')
        self.assertEqual(204, resp.status_int)
        self.assertEqual(b'', self.app.received)
        self.assertTrue(self.app.eof)
        self.assertIsNone(self.app.environ[keys.SIZE])
        self.assertEqual(0, req.environ['wsgi.input'].wsgi_input.tell())

    def test_length_not_required_declared_size_is_held(self):
        resp = self.send(self.unframed(declared=5), require_length='false')
        self.assertRefused(resp, 400,
                           'Size mismatch: expected 5 bytes, got 0 bytes')
        self.assertFalse(self.app.eof)

    def test_transfer_coding_not_ending_in_chunked_refused(self):
        for coding in ('gzip', 'chunked, gzip', 'identity'):
            req = self.unframed(b'abc', headers={
                'Transfer-Encoding': coding})
            self.assertRefusedBeforeApp(self.send(req), 411, ROW4)

    def test_chunked_as_last_coding_any_case(self):
        for coding in ('Chunked', ' CHUNKED ', 'identity, chunked',
                       'chunked, ', ', chunked'):
            req = upload(b'abc', chunked=True, declared=3)
            req.environ['HTTP_TRANSFER_ENCODING'] = coding
            resp = self.send(req)
            self.assertEqual(204, resp.status_int, coding)
            self.assertEqual(b'abc', self.app.received)

    def test_a_coding_before_chunked_is_400_before_the_app(self):
        """The server removes only chunked: no encoded bytes are stored."""
        for coding, named in (('gzip, chunked', 'gzip'),
                              ('deflate, chunked', 'deflate'),
                              ('gzip, identity, chunked', 'gzip')):
            req = upload(b'abc', chunked=True, declared=3)
            req.environ['HTTP_TRANSFER_ENCODING'] = coding
            self.assertRefusedBeforeApp(
                self.send(req), 400, 'Transfer-Encoding %s is not '
                'accepted: send image data as it is, chunked or with '
                'Content-Length.' % named)

    def test_a_content_coding_is_415_before_the_app(self):
        """RFC 9110 15.5.16: 415, with the codings accepted."""
        for coding in ('gzip', 'br', 'identity, gzip', 'x-gzip'):
            req = upload(b'abc', headers={'Content-Encoding': coding})
            resp = self.send(req)
            self.assertRefusedBeforeApp(
                resp, 415, 'Content-Encoding %s is not accepted: image '
                'data is stored as it is sent.' % coding.split(', ')[-1])
            self.assertEqual('identity', resp.headers['Accept-Encoding'])

    def test_identity_content_coding_passes(self):
        for coding in ('identity', 'Identity', '', 'identity, '):
            req = upload(b'abc', headers={'Content-Encoding': coding})
            self.assertEqual(204, self.send(req).status_int, coding)
            self.assertEqual(b'abc', self.app.received)

    def test_transfer_encoding_overrides_content_length(self):
        # RFC 9112 6.3: chunked wins; Content-Length is neither compared
        # (no 3.5) nor left for the app to bound the body by.
        req = upload(b'abcdef', chunked=True, declared=6)
        req.environ['CONTENT_LENGTH'] = '2'
        resp = self.send(req)
        self.assertEqual(204, resp.status_int)
        self.assertEqual(b'abcdef', self.app.received)
        self.assertNotIn('CONTENT_LENGTH', self.app.environ)
        self.assertEqual(6, self.app.environ[keys.SIZE])

    def test_transfer_encoding_with_content_length_still_held(self):
        req = upload(b'abcdefg', chunked=True, declared=6)
        req.environ['CONTENT_LENGTH'] = '7'
        resp = self.send(req)
        self.assertRefused(resp, 400,
                           'Size exceeds: expected 6 bytes, got 7 bytes')

    def test_malformed_content_length_refused(self):
        for value in ('abc', '-1', '+4', '4.0', '0x4', '4, 4'):
            req = upload(b'abcd')
            req.environ['CONTENT_LENGTH'] = value
            resp = self.send(req)
            self.assertRefusedBeforeApp(resp, 400,
                                        'Invalid Content-Length header.')

    def test_content_length_with_blanks(self):
        req = upload(b'abcd')
        req.environ['CONTENT_LENGTH'] = ' 4 '
        resp = self.send(req)
        self.assertEqual(204, resp.status_int)
        self.assertEqual(4, self.app.environ[keys.SIZE])

    def test_before_header_against_length(self):
        resp = self.send(self.unframed(declared=3, headers={
            'Transfer-Encoding': 'gzip'}))
        self.assertRefusedBeforeApp(resp, 411, ROW4)


class TestHeaderAgainstLength(FilterTestCase):
    """Contract 3.5: header and Content-Length must agree."""

    def test_unequal_refused_before_reading(self):
        req = upload(b'abcde', declared=4)
        resp = self.send(req)
        self.assertRefusedBeforeApp(
            resp, 400, 'Size mismatch: x-openstack-image-size 4 does not '
            'match Content-Length 5')
        self.assertEqual(0, req.environ['wsgi.input'].tell())

    def test_zero_means_zero_bytes(self):
        resp = self.send(upload(b'a', declared=0))
        self.assertRefusedBeforeApp(
            resp, 400, 'Size mismatch: x-openstack-image-size 0 does not '
            'match Content-Length 1')

    def test_equal_accepted(self):
        resp = self.send(upload(b'abcd', declared=4))
        self.assertEqual(204, resp.status_int)
        self.assertEqual(4, self.app.environ[keys.SIZE])

    def test_before_the_cap(self):
        resp = self.send(upload(b'abcde', declared=100), image_size_cap='10')
        self.assertRefusedBeforeApp(
            resp, 400, 'Size mismatch: x-openstack-image-size 100 does not '
            'match Content-Length 5')


class TestCapUpFront(FilterTestCase):
    """Contract 3.6: a declared size above image_size_cap."""

    def test_header_above_cap(self):
        for chunked in (False, True):
            resp = self.send(upload(b'x' * 11, chunked=chunked, declared=11),
                             image_size_cap='10')
            self.assertRefusedBeforeApp(resp, 413, ROW6)

    def test_content_length_above_cap(self):
        resp = self.send(upload(b'x' * 11), image_size_cap='10')
        self.assertRefusedBeforeApp(resp, 413, ROW6)

    def test_declared_above_cap_without_any_byte(self):
        # The client need not send the body to learn it is too large.
        resp = self.send(upload(chunked=True, declared=2 ** 80))
        self.assertRefusedBeforeApp(resp, 413, ROW6)

    def test_at_cap_accepted(self):
        resp = self.send(upload(b'x' * 10, declared=10), image_size_cap='10')
        self.assertEqual(204, resp.status_int)

    def test_cap_from_default_section_and_section_wins(self):
        req = upload(b'x' * 11)
        resp = self.send(req, global_conf={'image_size_cap': '10'})
        self.assertRefusedBeforeApp(resp, 413, ROW6)
        resp = self.send(upload(b'x' * 11),
                         global_conf={'image_size_cap': '10'},
                         image_size_cap='1KB')
        self.assertEqual(204, resp.status_int)

    def test_default_cap_is_one_tebibyte(self):
        resp = self.send(upload(chunked=True, declared=2 ** 40 + 1))
        self.assertRefusedBeforeApp(resp, 413, ROW6)
        resp = self.send(upload(b'', content_length=2 ** 40))
        # Accepted up front; the empty input then falls short (3.15).
        self.assertRefused(resp, 400, 'Size mismatch: expected %d bytes, '
                           'got 0 bytes' % 2 ** 40)


class TestStream(FilterTestCase):
    """Contract 3.14, 3.15, 3.16 and 3.18, read in pieces and all at once."""

    def each_reader(self, make_request, check, **conf):
        for chunk_size in READERS:
            req = make_request()
            resp = self.send(req, fakes.RecordingApp(chunk_size=chunk_size),
                             **conf)
            check(resp, req, chunk_size)

    def test_exact(self):
        body = b'0123456789'
        for chunked in (False, True):
            for declared in (None, 10):
                def check(resp, req, chunk_size):
                    self.assertEqual(204, resp.status_int, chunk_size)
                    self.assertEqual(body, self.app.received)
                    self.assertTrue(self.app.eof)
                    expected = declared if chunked else 10
                    self.assertEqual(expected, self.app.environ[keys.SIZE])
                self.each_reader(
                    lambda: upload(body, chunked=chunked, declared=declared),
                    check)

    def test_empty_with_content_length_zero(self):
        def check(resp, req, chunk_size):
            self.assertEqual(204, resp.status_int)
            self.assertTrue(self.app.eof)
            self.assertEqual(0, self.app.environ[keys.SIZE])
        self.each_reader(lambda: upload(b''), check)

    def test_empty_chunked_declared_zero(self):
        def check(resp, req, chunk_size):
            self.assertEqual(204, resp.status_int)
            self.assertTrue(self.app.eof)
            self.assertEqual(0, self.app.environ[keys.SIZE])
        self.each_reader(lambda: upload(b'', chunked=True, declared=0),
                         check)

    def test_empty_chunked_undeclared_refused(self):
        """Contract 3.18."""
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 400, ROW18)
            self.assertFalse(self.app.eof)
            self.assertIsNone(self.app.environ[keys.SIZE])
        self.each_reader(lambda: upload(b'', chunked=True), check)

    def test_one_byte_short_content_length(self):
        """Contract 3.15: the app never sees end of stream."""
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 400,
                               'Size mismatch: expected 10 bytes, '
                               'got 9 bytes')
            self.assertFalse(self.app.eof)
            self.assertIsInstance(self.app.failed, streams.StreamError)
        self.each_reader(
            lambda: upload(b'x' * 9, content_length=10), check)
        self.each_reader(
            lambda: upload(b'x' * 9, content_length=10, declared=10), check)

    def test_one_byte_short_chunked(self):
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 400,
                               'Size mismatch: expected 10 bytes, '
                               'got 9 bytes')
            self.assertFalse(self.app.eof)
        self.each_reader(
            lambda: upload(b'x' * 9, chunked=True, declared=10), check)

    def test_one_byte_over_chunked(self):
        """Contract 3.14: the app never holds the whole declared body."""
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 400,
                               'Size exceeds: expected 10 bytes, '
                               'got 11 bytes')
            self.assertLess(len(self.app.received), 10)
            self.assertFalse(self.app.eof)
            self.assertEqual(11, req.environ['wsgi.input'].wsgi_input.tell())
        self.each_reader(
            lambda: upload(b'x' * 11, chunked=True, declared=10), check)

    def test_far_over_chunked_stops_reading(self):
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 400,
                               'Size exceeds: expected 10 bytes, '
                               'got 11 bytes')
            self.assertEqual(11, req.environ['wsgi.input'].wsgi_input.tell())
        self.each_reader(
            lambda: upload(b'x' * 100000, chunked=True, declared=10), check)

    def test_declared_zero_with_a_byte(self):
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 400,
                               'Size exceeds: expected 0 bytes, got 1 bytes')
            self.assertEqual(b'', self.app.received)
        self.each_reader(
            lambda: upload(b'a', chunked=True, declared=0), check)

    def test_content_length_never_read_past(self):
        # A server bounds the body by Content-Length; so does the filter.
        def check(resp, req, chunk_size):
            self.assertEqual(204, resp.status_int)
            self.assertEqual(b'x' * 10, self.app.received)
            self.assertEqual(10, req.environ['wsgi.input'].wsgi_input.tell())
        self.each_reader(
            lambda: upload(b'x' * 11, content_length=10, declared=10), check)

    def test_undeclared_at_cap(self):
        def check(resp, req, chunk_size):
            self.assertEqual(204, resp.status_int)
            self.assertEqual(b'x' * 10, self.app.received)
        self.each_reader(lambda: upload(b'x' * 10, chunked=True), check,
                         image_size_cap='10')

    def test_undeclared_one_byte_over_cap(self):
        """Contract 3.16."""
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 413, ROW6)
            self.assertFalse(self.app.eof)
            self.assertLessEqual(len(self.app.received), 10)
        self.each_reader(lambda: upload(b'x' * 11, chunked=True), check,
                         image_size_cap='10')

    def test_undeclared_far_over_cap_stops_reading(self):
        def check(resp, req, chunk_size):
            self.assertRefused(resp, 413, ROW6)
            self.assertEqual(11, req.environ['wsgi.input'].wsgi_input.tell())
        self.each_reader(lambda: upload(b'x' * 100000, chunked=True), check,
                         image_size_cap='10')

    def test_end_confirmed_before_the_last_chunk(self):
        """Contract 3.14: a body longer than declared never looks complete.

        The app reads exactly the declared size, once.
        """
        def read_once(environ, start_response):
            environ['wsgi.input'].read(4)
            start_response('204 No Content', [])
            return []
        resp = self.send(upload(b'abcde', chunked=True, declared=4),
                         read_once)
        self.assertRefused(resp, 400,
                           'Size exceeds: expected 4 bytes, got 5 bytes')

    def test_readline_and_iteration(self):
        body = b'one\ntwo\nthree\n'

        def by_lines(environ, start_response):
            received = list(environ['wsgi.input'])
            start_response('200 OK', [])
            return received
        resp = self.send(upload(body, chunked=True, declared=len(body)),
                         by_lines)
        self.assertEqual(200, resp.status_int)
        self.assertEqual(body, resp.body)
        resp = self.send(upload(body + b'four\n', chunked=True,
                                declared=len(body)), by_lines)
        self.assertRefused(resp, 400, 'Size exceeds: expected 14 bytes, '
                           'got 15 bytes')

    def test_app_not_reading_is_answered_by_the_app(self):
        # Rows 8 to 12 are the app's; the filter checks only what is read.
        resp = self.send(upload(b'x' * 11, chunked=True, declared=10),
                         fakes.RecordingApp(status=404, read=False))
        self.assertEqual(404, resp.status_int)


class TestAppsThatCatch(FilterTestCase):
    """An app catching Exception: still the contract's 400/413, no 500."""

    CASES = (
        (dict(body=b'x' * 11, chunked=True, declared=10), {}, 400,
         'Size exceeds: expected 10 bytes, got 11 bytes'),
        (dict(body=b'x' * 9, content_length=10), {}, 400,
         'Size mismatch: expected 10 bytes, got 9 bytes'),
        (dict(body=b'x' * 11, chunked=True), {'image_size_cap': '10'}, 413,
         ROW6),
        (dict(body=b'', chunked=True), {}, 400, ROW18),
    )

    def test_base_errors_pass_an_except_exception(self):
        for request, conf, status, text in self.CASES:
            resp = self.send(upload(**request),
                             fakes.RecordingApp(catch=True), **conf)
            self.assertRefused(resp, status, text)
            self.assertIsInstance(self.app.failed, streams.StreamError)
            self.assertNotIsInstance(self.app.failed, Exception)

    def test_ioerror_mode_lets_the_app_clean_up(self):
        for request, conf, status, text in self.CASES:
            resp = self.send(upload(**request),
                             fakes.RecordingApp(catch=True),
                             stream_errors='ioerror', **conf)
            self.assertRefused(resp, status, text)
            self.assertIsInstance(self.app.failed, IOError)
            self.assertIsInstance(self.app.failed, streams.StreamIOError)

    def test_ioerror_mode_app_not_catching(self):
        resp = self.send(upload(b'x' * 11, chunked=True, declared=10),
                         stream_errors='ioerror')
        self.assertRefused(resp, 400,
                           'Size exceeds: expected 10 bytes, got 11 bytes')


class TestClientGone(FilterTestCase):
    """A client gone mid-body: the app cleans up; answered as 3.15."""

    def gone(self, chunked, declared, **conf):
        req = upload(b'x' * 10, chunked=chunked, declared=declared)
        req.environ['wsgi.input'] = fakes.FailingInput(b'x' * 10, 4)
        return self.send(req, fakes.RecordingApp(chunk_size=3,
                                                 catch=True), **conf)

    def test_declared_size(self):
        for chunked in (False, True):
            resp = self.gone(chunked, 10)
            self.assertRefused(resp, 400,
                               'Size mismatch: expected 10 bytes, '
                               'got 4 bytes')
            self.assertIsInstance(self.app.failed,
                                  streams.ClientDisconnected)

    def test_content_length_only(self):
        resp = self.gone(False, None)
        self.assertRefused(resp, 400,
                           'Size mismatch: expected 10 bytes, got 4 bytes')

    def test_unknown_size(self):
        resp = self.gone(True, None)
        self.assertEqual(400, resp.status_int)
        self.assertIsInstance(self.app.failed, streams.ClientDisconnected)

    def test_half_close_through_webob_is_row_15(self):
        """A short Content-Length body read by WebOb (Glance): not a 500.

        The server's input returns pieces smaller than asked; WebOb takes
        a short read for a disconnection, so every read of the filter
        returns what was asked unless the body ends.
        """
        class Trickle(io.BytesIO):
            def read(self, size=-1):
                return super().read(min(size, 3) if size >= 0 else 3)

        def webob_reader(environ, start_response):
            try:
                body = webob.Request(environ).body_file
                while body.read(65536):
                    pass
            except Exception:  # As Glance: restore, answer 500.
                return webob.exc.HTTPInternalServerError()(environ,
                                                           start_response)
            start_response('204 No Content', [])
            return []
        for data in (b'x' * 6, b''):
            req = upload(b'x' * 10)
            req.environ['wsgi.input'] = Trickle(data)
            resp = self.send(req, webob_reader, stream_errors='ioerror')
            self.assertRefused(resp, 400,
                               'Size mismatch: expected 10 bytes, got %d '
                               'bytes' % len(data))
        req = upload(b'x' * 10)
        req.environ['wsgi.input'] = Trickle(b'x' * 10)
        self.assertEqual(204, self.send(req, webob_reader).status_int)

    def test_ioerror_mode(self):
        resp = self.gone(True, 10, stream_errors='ioerror')
        self.assertEqual(400, resp.status_int)
        self.assertIsInstance(self.app.failed, streams.StreamIOError)
        self.assertIsInstance(self.app.failed.stream_error,
                              streams.ClientDisconnected)


class MalformedChunksInput(io.BytesIO):
    """A server input that finds a malformed chunk after some bytes.

    As gunicorn's ``InvalidChunkSize``: an exception, not an ``OSError``.
    """

    def __init__(self, data: bytes, fail_after: int):
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.tell() >= self.fail_after:
            raise ValueError("Invalid chunk size: b'zz'")
        if size is None or size < 0:
            size = self.fail_after - self.tell()
        return super().read(min(size, self.fail_after - self.tell()))


class TestMalformedChunks(FilterTestCase):
    """A chunked body the server cannot decode names that cause."""

    def malformed(self, declared, fail_after):
        req = upload(b'x' * 10, chunked=True, declared=declared)
        req.environ['wsgi.input'] = MalformedChunksInput(b'x' * 10,
                                                         fail_after)
        return self.send(req, fakes.RecordingApp(chunk_size=3, catch=True))

    def test_bad_chunk_size_is_named(self):
        for declared in (None, 10):
            for fail_after in (0, 4):
                resp = self.malformed(declared, fail_after)
                self.assertRefused(
                    resp, 400, "Malformed chunked request body after %d "
                    "bytes: Invalid chunk size: b'zz'" % fail_after)
                self.assertIsInstance(self.app.failed, streams.StreamError)

    def test_a_disconnect_is_still_a_size_mismatch(self):
        req = upload(b'x' * 10, chunked=True)
        req.environ['wsgi.input'] = fakes.FailingInput(b'x' * 10, 0)
        resp = self.send(req, fakes.RecordingApp(chunk_size=3, catch=True))
        self.assertRefused(resp, 400, 'Size mismatch: the request body '
                           'ended after 0 bytes before its end')

    def test_a_timeout_is_a_request_timeout(self):
        for declared in (None, 10):
            req = upload(b'x' * 10, chunked=True, declared=declared)
            req.environ['wsgi.input'] = fakes.FailingInput(
                b'x' * 10, 4, TimeoutError('timed out'))
            resp = self.send(req, fakes.RecordingApp(chunk_size=3,
                                                     catch=True))
            self.assertRefused(resp, 408, 'Request Timeout: the request '
                               'body came too slowly and was cut after '
                               '4 bytes')


class TestConfiguration(testtools.TestCase):

    def test_entry_point(self):
        factory = paste.deploy.loadfilter('egg:imgmw#size',
                                          global_conf={'image_size_cap':
                                                       '10'})
        middleware = factory(fakes.RecordingApp())
        self.assertIsInstance(middleware, size.SizeMiddleware)
        self.assertEqual(10, middleware.image_size_cap)

    def test_real_paste_config(self):
        ini = os.path.join(os.path.dirname(__file__), '..', '..', '..',
                           'etc', 'api-paste.ini')
        factory = paste.deploy.loadfilter('config:' + os.path.abspath(ini),
                                          name='size')
        middleware = factory(fakes.RecordingApp())
        self.assertIsInstance(middleware, size.SizeMiddleware)

    def test_defaults(self):
        middleware = size.SizeMiddleware(fakes.RecordingApp(), {})
        self.assertEqual(2 ** 40, middleware.image_size_cap)
        self.assertEqual({'image_data', 'stage'}, middleware.guarded)
        self.assertTrue(middleware.require_length)
        self.assertTrue(middleware.check_content_type)
        self.assertEqual('base', middleware.stream_errors)

    def test_typed_values(self):
        middleware, _ = build(image_size_cap='2GB', guarded_paths='stage',
                              require_length='no',
                              check_content_type='off',
                              stream_errors='ioerror')
        self.assertEqual(2 << 30, middleware.image_size_cap)
        self.assertEqual({'stage'}, middleware.guarded)
        self.assertFalse(middleware.require_length)
        self.assertFalse(middleware.check_content_type)
        self.assertEqual('ioerror', middleware.stream_errors)

    def test_bad_values_name_the_option(self):
        for name, value in (('image_size_cap', '-1'),
                            ('image_size_cap', 'big'),
                            ('guarded_paths', 'file, download'),
                            ('guarded_paths', ''),
                            ('require_length', 'maybe'),
                            ('check_content_type', '2'),
                            ('stream_errors', 'exception')):
            err = self.assertRaises(config.ConfigError, size.filter_factory,
                                    {}, **{name: value})
            self.assertIn(name, str(err))
            self.assertIn('size filter', str(err))

    def test_unknown_option_refused(self):
        err = self.assertRaises(config.ConfigError, size.filter_factory, {},
                                image_size_limit='10')
        self.assertIn('image_size_limit', str(err))

    def test_default_section_keys_of_others_ignored(self):
        middleware, _ = build(global_conf={'enabled_backends': 'a:file',
                                           'image_size_cap': '5MB'})
        self.assertEqual(5 << 20, middleware.image_size_cap)


class TestParsing(testtools.TestCase):

    def test_parse_decimal(self):
        self.assertEqual(42, size.parse_decimal(' 42\t'))
        self.assertEqual(0, size.parse_decimal('000'))
        for value in (None, '', '+1', '-1', '1_0', '\u0664', '1 2'):
            self.assertIsNone(size.parse_decimal(value), repr(value))

    def test_transfer_codings(self):
        self.assertEqual(['gzip', 'chunked'], size.transfer_codings(
            {'HTTP_TRANSFER_ENCODING': 'GZip ; q=1 ,, Chunked'}))
        self.assertEqual([], size.transfer_codings({}))


class TestSizeCheckedInput(testtools.TestCase):
    """The stream wrapper alone, on BytesIO."""

    def wrap(self, body, declared=None, length=None, cap=100,
             empty_allowed=True):
        self.source = io.BytesIO(body)
        return size.SizeCheckedInput(self.source, length, declared, cap,
                                     empty_allowed=empty_allowed)

    def read_all(self, proxy, chunk_size):
        received = b''
        while True:
            chunk = proxy.read(chunk_size)
            if not chunk:
                return received
            received += chunk

    def test_exact(self):
        for chunk_size in READERS:
            for length in (None, 6):
                proxy = self.wrap(b'abcdef', declared=6, length=length)
                self.assertEqual(b'abcdef', self.read_all(proxy, chunk_size))
                self.assertTrue(proxy.finished)

    def test_exact_chunked_read_to_size_confirms_the_end(self):
        proxy = self.wrap(b'abcdef', declared=6)
        self.assertEqual(b'abcdef', proxy.read(6))
        self.assertTrue(proxy.finished)

    def test_too_long(self):
        for chunk_size in READERS:
            proxy = self.wrap(b'abcdefg', declared=6)
            err = self.assertRaises(streams.StreamError, self.read_all,
                                    proxy, chunk_size)
            self.assertEqual('Size exceeds: expected 6 bytes, got 7 bytes',
                             err.http_error.explanation)
            self.assertEqual(7, self.source.tell())

    def test_too_short(self):
        for chunk_size in READERS:
            for length in (None, 7):
                proxy = self.wrap(b'abcdef', declared=7, length=length)
                err = self.assertRaises(streams.StreamError, self.read_all,
                                        proxy, chunk_size)
                self.assertEqual('Size mismatch: expected 7 bytes, '
                                 'got 6 bytes', err.http_error.explanation)

    def test_empty(self):
        self.assertEqual(b'', self.read_all(self.wrap(b'', declared=0), 3))
        self.assertEqual(b'', self.read_all(self.wrap(b''), 3))
        err = self.assertRaises(streams.StreamError, self.read_all,
                                self.wrap(b'', empty_allowed=False), 3)
        self.assertEqual(400, err.http_error.status_int)

    def test_cap_without_declared_size(self):
        for chunk_size in READERS:
            proxy = self.wrap(b'x' * 10, cap=10)
            self.assertEqual(b'x' * 10, self.read_all(proxy, chunk_size))
            proxy = self.wrap(b'x' * 50, cap=10)
            err = self.assertRaises(streams.StreamError, self.read_all,
                                    proxy, chunk_size)
            self.assertEqual(413, err.http_error.status_int)
            self.assertEqual(11, self.source.tell())

    def test_read_limit(self):
        proxy = self.wrap(b'x' * 50, declared=10)
        self.assertEqual(11, proxy.read_limit(-1))
        self.assertEqual(4, proxy.read_limit(4))
        proxy = self.wrap(b'x' * 50, length=10, declared=10)
        self.assertEqual(10, proxy.read_limit(None))
