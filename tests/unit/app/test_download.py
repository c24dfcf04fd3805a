"""Download through the data app: contract 5.2 to 5.14."""

import base64
import hashlib
import io
import os

from imgmw.app import download
from tests.unit.app import test_api


DATA = b'0123456789'
JSON = {'Accept': 'application/json'}


class DownloadTest(test_api.AppTestCase):

    def setUp(self):
        super().setUp()
        self.image = self.active(DATA)

    def active(self, data: bytes, **values) -> dict:
        record = self.create(**values)
        stored = self.store.add(record['id'], io.BytesIO(data), 4)
        return self.registry.transition(record['id'], 'queued', 'active', {
            'size': len(data), 'checksum': hashlib.md5(data).hexdigest(),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest(),
            'locations': [{'store': 'default', 'url': stored.url}]})

    def get(self, headers=None, method='GET', image=None, **kwargs):
        image = image or self.image
        all_headers = dict(JSON)
        all_headers.update(headers or {})
        return self.call(self.request('/v2/images/%s/file' % image['id'],
                                      method=method, headers=all_headers,
                                      **kwargs))

    def test_full_download_and_headers(self):
        """contract 5.14 and the success headers."""
        resp = self.get()
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)
        checksum = hashlib.md5(DATA).hexdigest()
        self.assertEqual('application/octet-stream',
                         resp.headers['Content-Type'])
        self.assertEqual('10', resp.headers['Content-Length'])
        self.assertEqual(checksum, resp.headers['Content-MD5'])
        self.assertEqual('"%s"' % checksum, resp.headers['ETag'])
        self.assertEqual('bytes', resp.headers['Accept-Ranges'])
        digest = base64.b64encode(hashlib.sha512(DATA).digest()).decode()
        self.assertEqual('sha-512=:%s:' % digest,
                         resp.headers['Repr-Digest'])

    def test_want_repr_digest_for_another_algorithm_omits_it(self):
        resp = self.get({'Want-Repr-Digest': 'sha-256=1'})
        self.assertNotIn('Repr-Digest', resp.headers)
        resp = self.get({'Want-Repr-Digest': 'sha-512=3, sha-256=1'})
        self.assertIn('Repr-Digest', resp.headers)

    def test_head_has_headers_and_no_body(self):
        resp = self.get(method='HEAD')
        self.assertEqual(200, resp.status_int)
        self.assertEqual('10', resp.headers['Content-Length'])
        self.assertEqual(b'', resp.body)

    def test_file_wrapper_gets_a_bounded_file_with_fileno_for_whole(self):
        seen = []

        def wrapper(filelike, block_size):
            seen.append((filelike, block_size))
            return iter(lambda: filelike.read(block_size), b'')

        req = self.request('/v2/images/%s/file' % self.image['id'])
        req.environ['wsgi.file_wrapper'] = wrapper
        self.assertEqual(DATA, self.call(req).body)
        self.assertTrue(hasattr(seen[0][0], 'fileno'))
        req = self.request('/v2/images/%s/file' % self.image['id'],
                           headers={'Range': 'bytes=2-3'})
        req.environ['wsgi.file_wrapper'] = wrapper
        self.assertEqual(b'23', self.call(req).body)
        self.assertFalse(hasattr(seen[1][0], 'fileno'))

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

    def test_unknown_or_invisible_is_404(self):
        """contract 5.3."""
        other = self.active(b'x', owner=test_api.OTHER)
        resp = self.get(image=other)
        self.assertEqual(404, resp.status_int)
        self.assertIn('No image found with ID %s' % other['id'],
                      resp.json['message'])

    def test_deactivated_is_403_for_non_admins(self):
        """contract 5.4; an admin still downloads."""
        self.registry.transition(self.image['id'], 'active', 'deactivated')
        resp = self.get()
        self.assertEqual(403, resp.status_int)
        self.assertIn('The requested image has been deactivated. Image data '
                      'download is forbidden.', resp.json['message'])
        self.assertEqual(DATA, self.get(is_admin=True).body)

    def test_reader_is_403(self):
        """contract 5.5."""
        resp = self.get(roles=('reader',))
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete download_image '
                      'action.', resp.json['message'])

    def test_no_data_is_204_with_or_without_range(self):
        """contract 5.6."""
        queued = self.create()
        for headers in ({}, {'Range': 'bytes=0-1'}):
            resp = self.get(headers, image=queued)
            self.assertEqual(204, resp.status_int)
            self.assertNotIn('Content-Type', resp.headers)
            self.assertEqual(b'', resp.body)

    def test_data_missing_is_503_and_logged(self):
        """contract 5.7."""
        os.unlink(os.path.join(self.datadir, self.image['id']))
        resp = self.get()
        self.assertEqual(503, resp.status_int)
        self.assertIn('Image data for %s is unavailable.' % self.image['id'],
                      resp.json['message'])
        self.assertIn('missing from every store', self.log.output)

    def test_data_of_the_wrong_size_is_503(self):
        with open(os.path.join(self.datadir, self.image['id']), 'ab') as f:
            f.write(b'extra')
        self.assertEqual(503, self.get().status_int)

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
        etag = '"%s"' % hashlib.md5(DATA).hexdigest()
        resp = self.get({'If-None-Match': etag})
        self.assertEqual(304, resp.status_int)
        self.assertEqual(b'', resp.body)
        self.assertEqual(etag, resp.headers['ETag'])
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
            self.assertEqual(hashlib.md5(DATA).hexdigest(),
                             resp.headers['Content-MD5'])

    def test_if_range(self):
        """contract 5.13: the range only when If-Range matches."""
        etag = '"%s"' % hashlib.md5(DATA).hexdigest()
        resp = self.get({'Range': 'bytes=0-1', 'If-Range': etag})
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


class ParseRangeTest(test_api.testtools.TestCase):

    def test_suffix_of_zero_is_the_whole_image_as_glance(self):
        self.assertEqual(download.ByteRange(0, 9, 10),
                         download.parse_range('bytes=-0', 10))

    def test_garbage_without_unit_is_ignored(self):
        self.assertIsNone(download.parse_range('whatever', 10))


class BodyIterTest(test_api.testtools.TestCase):
    """The response body through the server's ``wsgi.file_wrapper``."""

    class Body(io.BytesIO):
        __iter__ = None  # a store's body: read() only

    def test_a_wrapper_that_returns_the_file_itself_is_iterated(self):
        # uWSGI's wsgi.file_wrapper hands back the object it was given.
        body = self.Body(b'abcdefg')
        chunks = download.body_iter(
            {'wsgi.file_wrapper': lambda fileobj, size: fileobj}, body, 3)
        self.assertEqual([b'abc', b'def', b'g'], list(chunks))

    def test_an_iterable_wrapper_is_returned_as_it_is(self):
        wrapped = []
        body = self.Body(b'abc')
        got = download.body_iter(
            {'wsgi.file_wrapper': lambda fileobj, size: wrapped}, body, 3)
        self.assertIs(wrapped, got)

    def test_without_a_wrapper(self):
        self.assertEqual([b'ab', b'c'], list(download.body_iter(
            {}, self.Body(b'abc'), 2)))
