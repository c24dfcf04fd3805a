"""Download through the data app: contract 5.3 to 5.7, 5.13 and 5.14.

Requests pass through the download filter, as in ``etc/api-paste.ini``;
the filter's own rows (HEAD, Range, conditionals) are tested in
``tests/unit/filters/test_download.py``. The app alone serves the range
the filter publishes in ``environ['imgmw.range']``.
"""

import base64
import hashlib
import io
import os

import sqlalchemy as sa

from imgmw.app import download as app_download
from imgmw import environ as keys
from imgmw.filters import download
from tests.unit.app import test_api


DATA = b'0123456789'
JSON = {'Accept': 'application/json'}


class DownloadTest(test_api.AppTestCase):

    def setUp(self):
        super().setUp()
        self.image = self.active(DATA)
        self.pipeline = download.filter_factory({})(self.app)

    def call(self, req):
        return req.get_response(self.pipeline)

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

    def test_a_download_reads_the_registry_in_one_transaction(self):
        checkouts = []

        def checkout(*args):
            checkouts.append(args)
        sa.event.listen(self.registry._engine, 'checkout', checkout)
        self.addCleanup(sa.event.remove, self.registry._engine, 'checkout',
                        checkout)
        self.assertEqual(DATA, self.get().body)
        self.assertEqual(1, len(checkouts))

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
        self.assertFalse(hasattr(seen[-1][0], 'fileno'))

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

    def test_app_serves_the_published_range(self):
        """contract 5.13: the range the download filter validated."""
        req = self.request('/v2/images/%s/file' % self.image['id'])
        req.environ[keys.RANGE] = (2, 4)
        resp = req.get_response(self.app)
        self.assertEqual(206, resp.status_int)
        self.assertEqual(b'234', resp.body)
        self.assertEqual('bytes 2-4/10', resp.headers['Content-Range'])
        self.assertEqual('3', resp.headers['Content-Length'])
        self.assertEqual(hashlib.md5(DATA).hexdigest(),
                         resp.headers['Content-MD5'])
        self.assertNotIn('ETag', resp.headers)

    def test_app_reads_no_range_header(self):
        """Range semantics are the filter's: the app alone sends all."""
        req = self.request('/v2/images/%s/file' % self.image['id'],
                           headers={'Range': 'bytes=2-4'})
        resp = req.get_response(self.app)
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)

    def test_published_range_outside_the_image_sends_all(self):
        req = self.request('/v2/images/%s/file' % self.image['id'])
        req.environ[keys.RANGE] = (5, 10)
        resp = req.get_response(self.app)
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)
        self.assertIn('range 5-10 is outside its 10 bytes', self.log.output)


class BodyIterTest(test_api.testtools.TestCase):
    """The response body through the server's ``wsgi.file_wrapper``."""

    class Body(io.BytesIO):
        __iter__ = None  # a store's body: read() only

    def test_a_wrapper_that_returns_the_file_itself_is_iterated(self):
        # uWSGI's wsgi.file_wrapper hands back the object it was given.
        body = self.Body(b'abcdefg')
        chunks = app_download.body_iter(
            {'wsgi.file_wrapper': lambda fileobj, size: fileobj}, body, 3)
        self.assertEqual([b'abc', b'def', b'g'], list(chunks))

    def test_an_iterable_wrapper_is_returned_as_it_is(self):
        wrapped = []
        body = self.Body(b'abc')
        got = app_download.body_iter(
            {'wsgi.file_wrapper': lambda fileobj, size: wrapped}, body, 3)
        self.assertIs(wrapped, got)

    def test_without_a_wrapper(self):
        self.assertEqual([b'ab', b'c'], list(app_download.body_iter(
            {}, self.Body(b'abc'), 2)))
