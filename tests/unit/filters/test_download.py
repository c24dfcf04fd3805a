"""Tests of imgmw.filters.download: conditional requests and ranges.

Contract section 5, rows 2 and 6 to 14, and the success headers. The
filter is built through its ``filter_factory`` and tried in front of two
apps: a double that answers as Glance 33 does (``Content-MD5`` in hex, a
single ``bytes=a-b`` range served, a crash on the inputs that crash
Glance), and imgmw's own data app on a real registry and file store.
"""

import base64
import hashlib
import os
import re

import fixtures
import paste.deploy
import testtools
import webob
import webob.exc

from imgmw import environ as env_keys
from imgmw.filters import download
from tests.unit.app import test_api
from tests.unit.app import test_download as app_download


DATA = b'0123456789'
MD5 = hashlib.md5(DATA).hexdigest()
ETAG = '"%s"' % MD5
SHA512 = hashlib.sha512(DATA).hexdigest()
JSON = {'Accept': 'application/json'}
IMAGE = 'img1'
PATH = '/v2/images/%s/file' % IMAGE


class GlanceCrash(Exception):
    """What Glance 33 does with bytes=-, Content-Range: bytes */N, ..."""


class CountingBody:
    """A download body that counts the bytes read from it."""

    def __init__(self, data: bytes, owner: 'GlanceLikeApp'):
        self.data = data
        self.owner = owner
        self.closed = False

    def __iter__(self):
        for start in range(0, len(self.data), 4):
            chunk = self.data[start:start + 4]
            self.owner.bytes_read += len(chunk)
            yield chunk

    def close(self):
        self.closed = True
        self.owner.closed += 1


class GlanceLikeApp:
    """Answers downloads as Glance 33's router does.

    ``images`` maps an id to ``(status, data)``; ``data`` None is an
    image whose data is lost (Glance answers 204 as for no data).
    """

    def __init__(self, images=None, send_md5=True, record_digest=True):
        self.images = images if images is not None else {
            IMAGE: ('active', DATA)}
        self.send_md5 = send_md5
        self.record_digest = record_digest
        self.calls = []
        self.bytes_read = 0
        self.closed = 0

    def __call__(self, environ, start_response):
        self.calls.append(dict(environ))
        req = webob.Request(environ)
        match = re.fullmatch(r'/v2/images/([^/]+)(/file)?', req.path_info)
        if match is None or match.group(1) not in self.images:
            return webob.exc.HTTPNotFound()(environ, start_response)
        status, data = self.images[match.group(1)]
        if match.group(2) is None:
            return self.record(match.group(1), status, data)(
                environ, start_response)
        if req.method != 'GET':
            return webob.exc.HTTPMethodNotAllowed()(environ, start_response)
        if 'HTTP_CONTENT_RANGE' in environ:
            raise GlanceCrash('Content-Range handed to Glance')
        if data is None or status not in ('active', 'deactivated'):
            if 'HTTP_RANGE' in environ:
                raise GlanceCrash('Range on an image without data')
            resp = webob.Response(status=204)
            del resp.content_type
            return resp(environ, start_response)
        headers = [('Content-Type', 'application/octet-stream')]
        if self.send_md5:
            headers.append(('Content-MD5', hashlib.md5(data).hexdigest()))
        if 'HTTP_RANGE' in environ:
            first, last = self.strict_range(environ['HTTP_RANGE'])
            body = data[first:last + 1]
            headers += [('Content-Range', 'bytes %d-%d/%d'
                         % (first, last, len(data))),
                        ('Content-Length', str(len(body)))]
            start_response('206 Partial Content', headers)
            return CountingBody(body, self)
        headers.append(('Content-Length', str(len(data))))
        start_response('200 OK', headers)
        return CountingBody(data, self)

    @staticmethod
    def strict_range(header):
        match = re.fullmatch(r'bytes=([0-9]+)-([0-9]+)', header)
        if match is None:
            raise GlanceCrash('not the one range form: %r' % header)
        return int(match.group(1)), int(match.group(2))

    def record(self, image_id, status, data):
        record = {'id': image_id, 'status': status,
                  'os_hash_algo': None, 'os_hash_value': None}
        if data is not None and self.record_digest:
            record.update(os_hash_algo='sha512',
                          os_hash_value=hashlib.sha512(data).hexdigest())
        return webob.Response(json_body=record)

    @property
    def file_calls(self):
        return [call for call in self.calls
                if call['PATH_INFO'].endswith('/file')]


def app_factory(global_conf, **local_conf):
    """paste.app_factory for the paste.deploy test."""
    return GlanceLikeApp()


class FilterTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())

    def make(self, app=None, **local_conf):
        self.app = app if app is not None else GlanceLikeApp()
        return download.filter_factory({}, **local_conf)(self.app)

    def get(self, headers=None, method='GET', path=PATH, middleware=None,
            **local_conf):
        middleware = middleware or self.make(**local_conf)
        req = webob.Request.blank(path, method=method)
        req.headers.update(JSON)
        req.headers.update(headers or {})
        return req.get_response(middleware)


class FactoryTest(FilterTestCase):

    def test_unknown_option_stops_start_up(self):
        self.assertRaises(ValueError, download.filter_factory, {},
                          ranges='some')
        self.assertRaises(ValueError, download.filter_factory, {},
                          colour='blue')

    def test_loaded_by_paste_deploy_through_its_entry_point(self):
        tempdir = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tempdir, 'paste.ini')
        with open(path, 'w') as conf:
            conf.write('[pipeline:main]\npipeline = download app\n'
                       '[filter:download]\nuse = egg:imgmw#download\n'
                       'image_record = true\n'
                       '[app:app]\npaste.app_factory = '
                       'tests.unit.filters.test_download:app_factory\n')
        wsgi_app = paste.deploy.loadapp('config:' + path)
        self.assertIsInstance(wsgi_app, download.DownloadMiddleware)
        self.assertTrue(wsgi_app.image_record)
        resp = self.get({'Range': 'bytes=2-3'}, middleware=wsgi_app)
        self.assertEqual(b'23', resp.body)


class InFrontOfGlanceTest(FilterTestCase):
    """The filter before an app that answers as Glance does."""

    def test_plain_get_is_asked_once_and_decorated(self):
        """contract 5.14: ETag from Content-MD5, Accept-Ranges."""
        resp = self.get()
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)
        self.assertEqual(ETAG, resp.headers['ETag'])
        self.assertEqual(MD5, resp.headers['Content-MD5'])
        self.assertEqual('bytes', resp.headers['Accept-Ranges'])
        self.assertEqual('10', resp.headers['Content-Length'])
        self.assertEqual(1, len(self.app.calls))
        self.assertNotIn('Repr-Digest', resp.headers)

    def test_repr_digest_from_the_record_when_asked(self):
        """contract 5: Repr-Digest from os_hash_*, one more request."""
        resp = self.get(image_record='true')
        digest = base64.b64encode(hashlib.sha512(DATA).digest()).decode()
        self.assertEqual('sha-512=:%s:' % digest,
                         resp.headers['Repr-Digest'])
        self.assertEqual(['/v2/images/img1/file', '/v2/images/img1'],
                         [call['PATH_INFO'] for call in self.app.calls])
        self.assertEqual('application/json',
                         self.app.calls[1]['HTTP_ACCEPT'])
        resp = self.get({'Want-Repr-Digest': 'sha-256=1'},
                        image_record='true')
        self.assertNotIn('Repr-Digest', resp.headers)

    def test_record_without_hash_gives_no_repr_digest(self):
        app = GlanceLikeApp(record_digest=False)
        resp = self.get(app=app, image_record='true')
        self.assertEqual(200, resp.status_int)
        self.assertNotIn('Repr-Digest', resp.headers)

    def test_head_is_a_get_without_body(self):
        """contract 5: HEAD as GET; Glance itself answers 405."""
        resp = self.get(method='HEAD')
        self.assertEqual(200, resp.status_int)
        self.assertEqual(b'', resp.body)
        self.assertEqual('10', resp.headers['Content-Length'])
        self.assertEqual(ETAG, resp.headers['ETag'])
        self.assertEqual('GET', self.app.calls[0]['REQUEST_METHOD'])
        self.assertEqual(0, self.app.bytes_read)
        self.assertEqual(1, self.app.closed)

    def test_head_of_a_range(self):
        resp = self.get({'Range': 'bytes=2-4'}, method='HEAD')
        self.assertEqual(206, resp.status_int)
        self.assertEqual('3', resp.headers['Content-Length'])
        self.assertEqual('bytes 2-4/10', resp.headers['Content-Range'])
        self.assertEqual(b'', resp.body)
        self.assertEqual(0, self.app.bytes_read)

    def test_head_of_an_error_has_no_body(self):
        resp = self.get(method='HEAD', path='/v2/images/other/file')
        self.assertEqual(404, resp.status_int)
        self.assertEqual(b'', resp.body)

    def test_range_is_validated_then_asked_in_one_form(self):
        """contract 5.13: the app sees only bytes=<first>-<last>."""
        cases = {'bytes=2-4': (b'234', 'bytes 2-4/10', 'bytes=2-4'),
                 'bytes=7-': (b'789', 'bytes 7-9/10', 'bytes=7-9'),
                 'bytes=8-100': (b'89', 'bytes 8-9/10', 'bytes=8-9'),
                 'bytes=-3': (b'789', 'bytes 7-9/10', 'bytes=7-9'),
                 'bytes=-30': (DATA, 'bytes 0-9/10', 'bytes=0-9'),
                 'Bytes = 0 - 0': (b'0', 'bytes 0-0/10', 'bytes=0-0')}
        for header, (body, content_range, asked) in cases.items():
            resp = self.get({'Range': header})
            self.assertEqual(206, resp.status_int, header)
            self.assertEqual(body, resp.body, header)
            self.assertEqual(content_range, resp.headers['Content-Range'])
            self.assertEqual(str(len(body)), resp.headers['Content-Length'])
            self.assertEqual(ETAG, resp.headers['ETag'])
            self.assertEqual(asked, self.app.file_calls[-1]['HTTP_RANGE'])
            first, last = (int(n) for n in asked[6:].split('-'))
            self.assertEqual((first, last),
                             self.app.file_calls[-1][env_keys.RANGE])
            self.assertNotIn('HTTP_RANGE', self.app.file_calls[0])
            self.assertNotIn(env_keys.RANGE, self.app.file_calls[0])

    def test_no_slice_is_cut_from_a_whole_image(self):
        """The first answer is closed unread; the app sends the range."""
        resp = self.get({'Range': 'bytes=8-9'})
        self.assertEqual(b'89', resp.body)
        self.assertEqual(2, self.app.bytes_read)
        self.assertEqual(2, len(self.app.calls))

    def test_ranges_none_ignores_ranges(self):
        """RFC 9110: a server that cannot serve ranges sends all."""
        for headers in ({'Range': 'bytes=2-4'}, {'Range': 'bytes=-'},
                        {'Content-Range': 'bytes */10'}):
            resp = self.get(headers, ranges='none')
            self.assertEqual(200, resp.status_int, headers)
            self.assertEqual(DATA, resp.body)
            self.assertEqual('none', resp.headers['Accept-Ranges'])
            self.assertEqual(1, len(self.app.calls))
            self.assertNotIn('HTTP_RANGE', self.app.calls[0])

    def test_inputs_that_crash_glance_never_reach_it(self):
        """contract 9: bytes=- and Content-Range: bytes */N are 416."""
        for headers in ({'Range': 'bytes=-'},
                        {'Content-Range': 'bytes */10'}):
            resp = self.get(headers)
            self.assertEqual(416, resp.status_int, headers)
            self.assertEqual('bytes */10', resp.headers['Content-Range'])
            self.assertEqual(1, len(self.app.calls))
            self.assertEqual(1, self.app.closed)
            self.assertEqual(0, self.app.bytes_read)

    def test_range_on_image_without_data_is_204(self):
        """contract 5.6 (Glance crashes)."""
        app = GlanceLikeApp({IMAGE: ('queued', None)})
        for headers in ({}, {'Range': 'bytes=0-1'},
                        {'Content-Range': 'bytes 0-1/2'}):
            resp = self.get(headers, app=app, image_record='true')
            self.assertEqual(204, resp.status_int, headers)
            self.assertNotIn('Content-Type', resp.headers)
            self.assertEqual(b'', resp.body)

    def test_lost_data_is_503_with_image_record(self):
        """contract 5.7: Glance answers 204 for an active image."""
        app = GlanceLikeApp({IMAGE: ('active', None)})
        for headers in ({}, {'Range': 'bytes=0-1'}):
            resp = self.get(headers, app=app, image_record='true')
            self.assertEqual(503, resp.status_int)
            self.assertIn('Image data for img1 is unavailable.',
                          resp.json['message'])
        self.assertIn('Image img1 is active but the app has no data',
                      self.log.output)
        resp = self.get(app=app, method='HEAD', image_record='true')
        self.assertEqual(503, resp.status_int)
        self.assertEqual(b'', resp.body)
        resp = self.get(app=app)
        self.assertEqual(204, resp.status_int)

    def test_other_unit_is_served_whole_from_the_first_answer(self):
        """contract 5.8 (Glance answers 416)."""
        resp = self.get({'Range': 'items=0-1'})
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)
        self.assertEqual(1, len(self.app.calls))

    def test_if_none_match(self):
        """contract 5.12."""
        for tag in (ETAG, '*', '"other", %s' % ETAG):
            resp = self.get({'If-None-Match': tag})
            self.assertEqual(304, resp.status_int, tag)
            self.assertEqual(ETAG, resp.headers['ETag'])
            self.assertEqual(b'', resp.body)
            self.assertEqual(0, self.app.bytes_read)
            self.assertNotIn('HTTP_IF_NONE_MATCH', self.app.calls[0])
        resp = self.get({'If-None-Match': '"other"'})
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)

    def test_if_range_stale_gives_whole_image(self):
        """contract 5.13 (Glance sends the range)."""
        resp = self.get({'Range': 'bytes=0-1', 'If-Range': '"old"'})
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)
        resp = self.get({'Range': 'bytes=0-1', 'If-Range': ETAG})
        self.assertEqual(206, resp.status_int)
        self.assertNotIn('HTTP_IF_RANGE', self.app.calls[-1])

    def test_base64_content_md5_gives_a_hex_etag(self):
        app = GlanceLikeApp(send_md5=False)

        def with_md5(environ, start_response):
            def patched(status, headers, exc_info=None):
                headers.append(('Content-MD5', base64.b64encode(
                    hashlib.md5(DATA).digest()).decode()))
                return start_response(status, headers, exc_info)
            return app(environ, patched)
        resp = self.get({'If-None-Match': ETAG},
                        middleware=download.DownloadMiddleware(with_md5, {}))
        self.assertEqual(304, resp.status_int)

    def test_app_without_validator_has_no_conditionals(self):
        app = GlanceLikeApp(send_md5=False)
        resp = self.get({'If-None-Match': '*', 'Range': 'bytes=0-1',
                         'If-Range': ETAG}, app=app)
        self.assertEqual(200, resp.status_int)
        self.assertNotIn('ETag', resp.headers)
        self.assertEqual('bytes', resp.headers['Accept-Ranges'])

    def test_body_on_get_is_400_before_the_app(self):
        """contract 5.2 (Glance answers a chunked GET 200)."""
        for headers in ({'Content-Length': '3'},
                        {'Transfer-Encoding': 'chunked'},
                        {'Content-Length': 'x'}):
            resp = self.get(headers)
            self.assertEqual(400, resp.status_int, headers)
            self.assertIn('A body is not expected with this request.',
                          resp.json['message'])
        self.assertEqual([], self.app.calls)
        for headers in ({'Content-Type': 'text/plain'},
                        {'Content-Length': '0'}):
            self.assertEqual(200, self.get(headers).status_int)

    def test_other_methods_are_405(self):
        """contract 1 and 9: POST with a body is 405, not Glance's 400."""
        for method in ('POST', 'DELETE', 'PATCH'):
            req = webob.Request.blank(PATH, method=method,
                                      body=b'\x00\x01binary')
            resp = req.get_response(self.make())
            self.assertEqual(405, resp.status_int, method)
            self.assertEqual('GET, HEAD, PUT', resp.headers['Allow'])
            self.assertEqual([], self.app.calls)

    def test_uploads_and_other_paths_pass_untouched(self):
        middleware = self.make()
        req = webob.Request.blank(PATH, method='PUT', body=b'abc',
                                  headers={'Range': 'bytes=-'})
        req.get_response(middleware)
        self.assertEqual('bytes=-', self.app.calls[-1]['HTTP_RANGE'])
        req = webob.Request.blank('/v2/images/img1',
                                  headers={'Range': 'bytes=-'})
        self.assertEqual(200, req.get_response(middleware).status_int)
        self.assertEqual('bytes=-', self.app.calls[-1]['HTTP_RANGE'])

    def test_app_answering_another_range_is_500_and_logged(self):
        app = GlanceLikeApp()

        def shifted(environ, start_response):
            if 'HTTP_RANGE' in environ:
                environ['HTTP_RANGE'] = 'bytes=0-1'
            return app(environ, start_response)
        resp = self.get({'Range': 'bytes=2-3'},
                        middleware=download.DownloadMiddleware(shifted, {}))
        self.assertEqual(500, resp.status_int)
        self.assertIn('asked bytes 2-3/10, the app answered bytes 0-1/10',
                      self.log.output)

    def test_app_ignoring_the_range_is_sent_whole(self):
        app = GlanceLikeApp()

        def ignoring(environ, start_response):
            environ.pop('HTTP_RANGE', None)
            return app(environ, start_response)
        resp = self.get({'Range': 'bytes=2-3'},
                        middleware=download.DownloadMiddleware(ignoring, {}))
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)


class ImgmwAppTest(test_api.AppTestCase):
    """The filter in front of imgmw's data app, as in etc/api-paste.ini.

    The range and conditional tests of the app before the filter existed,
    unchanged.
    """

    def setUp(self):
        super().setUp()
        self.image = self.active(DATA)
        self.pipeline = download.filter_factory({})(self.app)

    # The app's download tests' helpers: through this filter.
    active = app_download.DownloadTest.active
    get = app_download.DownloadTest.get
    call = app_download.DownloadTest.call

    def test_want_repr_digest_for_another_algorithm_omits_it(self):
        resp = self.get({'Want-Repr-Digest': 'sha-256=1'})
        self.assertNotIn('Repr-Digest', resp.headers)
        resp = self.get({'Want-Repr-Digest': 'sha-512=3, sha-256=1'})
        self.assertIn('Repr-Digest', resp.headers)
        resp = self.get({'Want-Repr-Digest': 'sha-512=0'})
        self.assertNotIn('Repr-Digest', resp.headers)

    def test_head_has_headers_and_no_body(self):
        resp = self.get(method='HEAD')
        self.assertEqual(200, resp.status_int)
        self.assertEqual('10', resp.headers['Content-Length'])
        self.assertEqual(b'', resp.body)

    def test_no_data_is_204_with_or_without_range(self):
        """contract 5.6."""
        queued = self.create()
        for headers in ({}, {'Range': 'bytes=0-1'}):
            resp = self.get(headers, image=queued)
            self.assertEqual(204, resp.status_int)
            self.assertNotIn('Content-Type', resp.headers)
            self.assertEqual(b'', resp.body)

    def test_data_missing_is_503_with_a_range_too(self):
        """contract 5.7."""
        os.unlink(os.path.join(self.datadir, self.image['id']))
        resp = self.get({'Range': 'bytes=0-1'})
        self.assertEqual(503, resp.status_int)
        self.assertIn('Image data for %s is unavailable.' % self.image['id'],
                      resp.json['message'])

    def test_other_unit_is_ignored(self):
        """contract 5.8."""
        resp = self.get({'Range': 'items=0-1'})
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)

    def test_several_ranges_are_400(self):
        """contract 5.9."""
        resp = self.get({'Range': 'bytes=0-1,3-4'})
        self.assertEqual(400, resp.status_int)
        self.assertIn('Requests with multiple ranges are not supported in '
                      'Glance. You may make multiple single-range requests '
                      'instead.', resp.json['message'])

    def test_malformed_ranges_are_416(self):
        """contract 5.10."""
        for header in ('bytes=', 'bytes=-', 'bytes=3-1', 'bytes=a-b',
                       'bytes=0-4;x', 'bytes'):
            resp = self.get({'Range': header})
            self.assertEqual(416, resp.status_int, header)
            self.assertIn('Invalid Range header.', resp.json['message'])
            self.assertEqual('bytes */10', resp.headers['Content-Range'])

    def test_start_beyond_the_size_is_416(self):
        """contract 5.11."""
        resp = self.get({'Range': 'bytes=10-'})
        self.assertEqual(416, resp.status_int)
        self.assertIn('Invalid start position in Range header. Start '
                      'position MUST be in the inclusive range [0, 9].',
                      resp.json['message'])
        self.assertEqual('bytes */10', resp.headers['Content-Range'])

    def test_if_none_match_is_304(self):
        """contract 5.12."""
        resp = self.get({'If-None-Match': ETAG})
        self.assertEqual(304, resp.status_int)
        self.assertEqual(b'', resp.body)
        self.assertEqual(ETAG, resp.headers['ETag'])
        self.assertEqual(200, self.get({'If-None-Match': '"other"'})
                         .status_int)

    def test_ranges_are_206(self):
        """contract 5.13: clamped end, suffixes."""
        cases = {'bytes=2-4': (b'234', 'bytes 2-4/10'),
                 'bytes=7-': (b'789', 'bytes 7-9/10'),
                 'bytes=8-100': (b'89', 'bytes 8-9/10'),
                 'bytes=-3': (b'789', 'bytes 7-9/10'),
                 'bytes=-30': (DATA, 'bytes 0-9/10'),
                 'Bytes = 0 - 0': (b'0', 'bytes 0-0/10')}
        for header, (body, content_range) in cases.items():
            resp = self.get({'Range': header})
            self.assertEqual(206, resp.status_int, header)
            self.assertEqual(body, resp.body, header)
            self.assertEqual(content_range, resp.headers['Content-Range'])
            self.assertEqual(str(len(body)), resp.headers['Content-Length'])
            self.assertEqual(MD5, resp.headers['Content-MD5'])

    def test_if_range(self):
        """contract 5.13: the range only when If-Range matches."""
        resp = self.get({'Range': 'bytes=0-1', 'If-Range': ETAG})
        self.assertEqual(206, resp.status_int)
        resp = self.get({'Range': 'bytes=0-1', 'If-Range': '"old"'})
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)

    def test_legacy_content_range(self):
        """contract 5 and 9: lengths match what is sent."""
        resp = self.get({'Content-Range': 'bytes 8-15/20'})
        self.assertEqual(206, resp.status_int)
        self.assertEqual(b'89', resp.body)
        self.assertEqual('2', resp.headers['Content-Length'])
        self.assertEqual('bytes 8-9/10', resp.headers['Content-Range'])
        for header in ('bytes */10', 'bytes 1-3/3', 'junk'):
            resp = self.get({'Content-Range': header})
            self.assertEqual(416, resp.status_int, header)
            self.assertIn('Invalid Content-Range header.',
                          resp.json['message'])
        resp = self.get({'Content-Range': 'bytes 2-10/*'})
        self.assertIn('Invalid stop position in Content-Range header.',
                      resp.json['message'])
        resp = self.get({'Content-Range': 'bytes 10-11/20'})
        self.assertIn('Invalid start position in Content-Range header.',
                      resp.json['message'])

    def test_empty_image(self):
        """A 0-byte image: 200 with no body; any range 416 [0, -1]."""
        empty = self.active(b'')
        resp = self.get(image=empty)
        self.assertEqual(200, resp.status_int)
        self.assertEqual('0', resp.headers['Content-Length'])
        resp = self.get({'Range': 'bytes=0-'}, image=empty)
        self.assertEqual(416, resp.status_int)
        self.assertIn('[0, -1]', resp.json['message'])

    def test_body_is_400(self):
        """contract 5.2: Content-Length > 0 or Transfer-Encoding."""
        for headers in ({'Content-Length': '3'},
                        {'Transfer-Encoding': 'chunked'}):
            resp = self.get(headers)
            self.assertEqual(400, resp.status_int)
            self.assertIn('A body is not expected with this request.',
                          resp.json['message'])
        self.assertEqual(200, self.get({'Content-Type': 'text/plain'})
                         .status_int)


class ParseRangeTest(testtools.TestCase):

    def test_suffix_of_zero_is_the_whole_image_as_glance(self):
        self.assertEqual(download.ByteRange(0, 9, 10),
                         download.parse_range('bytes=-0', 10))

    def test_garbage_without_unit_is_ignored(self):
        self.assertIsNone(download.parse_range('whatever', 10))

    def test_overlong_numbers_are_malformed_not_a_crash(self):
        digits = '9' * 5000
        err = self.assertRaises(webob.exc.HTTPRequestRangeNotSatisfiable,
                                download.parse_range,
                                'bytes=%s-' % digits, 10)
        self.assertEqual('bytes */10', err.headers['Content-Range'])
        self.assertRaises(webob.exc.HTTPRequestRangeNotSatisfiable,
                          download.parse_content_range,
                          'bytes 0-%s/*' % digits, 10)

    def test_wants_repr_digest(self):
        field = 'sha-512=:AAAA:'
        self.assertTrue(download.wants_repr_digest(field, None))
        self.assertTrue(download.wants_repr_digest(field, 'SHA-512=1'))
        self.assertFalse(download.wants_repr_digest(field, 'sha-512=0'))
        self.assertFalse(download.wants_repr_digest(field, 'sha-256=5'))
