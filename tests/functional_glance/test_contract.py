"""Glance 33 with imgmw's filters answers the contract's rows a filter reaches.

One Glance (:class:`tests.glancefixture.Glance`) for each class, under
gunicorn, under uWSGI and under Apache with mod_wsgi, serving
``etc/glance-api-paste.ini`` (flavor ``trusted-headers+imgmw``): Glance's
own filters and router with imgmw's ``request_id``, ``context``, ``size``,
``stores``, ``quota``, ``download``, ``checksum`` and ``inspect`` before
the router. Each test names the row of ``image-data.md`` where Glance
alone differs (section 9). Rows no filter can reach are listed in
``doc/source/glance.rst``.
"""

import base64
import hashlib
import http.client
import os
import socket
import time

import testtools

from tests.functional_glance import test_glance
from tests import glancefixture
from tests.unit.filters import test_inspect

DATA = b'0123456789'
MD5 = hashlib.md5(DATA).hexdigest()
ETAG = '"%s"' % MD5


class ContractChecks(test_glance.GlanceChecks):
    """Rows of sections 2, 3, 5 and 6 on a real Glance."""

    #: What the server hands on of a Content-Length body of which 500
    #: bytes came before the client's half-close (row 3.15's count); None
    #: where the server answers such a request itself, whatever the app
    #: would.
    received_before_half_close = 500

    def active_image(self, data=DATA) -> str:
        image_id = self.create_image()
        resp = self.upload(image_id, data)
        self.assertEqual(204, resp.status_code, resp.text)
        return image_id

    def file_url(self, image_id) -> str:
        return self.glance.url + '/v2/images/%s/file' % image_id

    def download(self, image_id, method='GET', **headers):
        headers.setdefault('Accept', 'application/json')
        return self.http.request(method, self.file_url(image_id),
                                 headers=self.headers(**headers))

    def assertError(self, resp, status, message):
        self.assertEqual(status, resp.status_code, resp.text)
        self.assertIn(message, resp.json()['message'])

    # Section 5: downloads.

    def test_success_headers_5_14(self):
        """ETag, Accept-Ranges and Repr-Digest (Glance sends none)."""
        image_id = self.active_image()
        resp = self.download(image_id)
        self.assertEqual(200, resp.status_code)
        self.assertEqual(DATA, resp.content)
        self.assertEqual(MD5, resp.headers['Content-MD5'])
        self.assertEqual(ETAG, resp.headers['ETag'])
        self.assertEqual('bytes', resp.headers['Accept-Ranges'])
        digest = base64.b64encode(hashlib.sha512(DATA).digest()).decode()
        self.assertEqual('sha-512=:%s:' % digest,
                         resp.headers['Repr-Digest'])
        resp = self.download(image_id, **{'Want-Repr-Digest': 'sha-256=1'})
        self.assertNotIn('Repr-Digest', resp.headers)

    def test_head_is_get_without_body_5(self):
        """Glance: 405."""
        image_id = self.active_image()
        resp = self.download(image_id, 'HEAD')
        self.assertEqual(200, resp.status_code)
        self.assertEqual('10', resp.headers['Content-Length'])
        self.assertEqual(ETAG, resp.headers['ETag'])
        self.assertEqual(b'', resp.content)

    def test_get_with_a_body_is_400_5_2(self):
        """Glance answers a chunked GET 200."""
        image_id = self.active_image()
        resp = self.http.get(self.file_url(image_id),
                             data=iter([b'x']),
                             headers=self.headers(Accept='application/json'))
        self.assertError(resp, 400,
                         'A body is not expected with this request.')

    def test_range_on_image_without_data_is_204_5_6(self):
        """Glance crashes (500 or no answer)."""
        image_id = self.create_image()
        for headers in ({}, {'Range': 'bytes=0-1'}):
            resp = self.download(image_id, **headers)
            self.assertEqual(204, resp.status_code, resp.text)
            self.assertNotIn('Content-Type', resp.headers)

    def test_missing_data_is_503_5_7(self):
        """Glance answers 204 for an active image whose data is gone."""
        image_id = self.active_image()
        os.unlink(os.path.join(self.glance.images_dir, image_id))
        resp = self.download(image_id)
        self.assertError(resp, 503,
                         'Image data for %s is unavailable.' % image_id)

    def test_other_unit_is_ignored_5_8(self):
        """Glance: 416."""
        resp = self.download(self.active_image(), Range='items=0-1')
        self.assertEqual(200, resp.status_code)
        self.assertEqual(DATA, resp.content)

    def test_several_ranges_are_400_5_9(self):
        resp = self.download(self.active_image(), Range='bytes=0-1,3-4')
        self.assertError(resp, 400, 'Requests with multiple ranges are not '
                         'supported in Glance.')

    def test_malformed_ranges_are_416_with_content_range_5_10(self):
        """bytes=- crashes Glance; its 416s have no Content-Range."""
        image_id = self.active_image()
        for header in ('bytes=-', 'bytes=3-1', 'bytes='):
            resp = self.download(image_id, Range=header)
            self.assertError(resp, 416, 'Invalid Range header.')
            self.assertEqual('bytes */10', resp.headers['Content-Range'])

    def test_start_beyond_the_size_is_416_5_11(self):
        resp = self.download(self.active_image(), Range='bytes=10-')
        self.assertError(resp, 416, 'Invalid start position in Range '
                         'header. Start position MUST be in the inclusive '
                         'range [0, 9].')
        self.assertEqual('bytes */10', resp.headers['Content-Range'])

    def test_if_none_match_is_304_5_12(self):
        """Glance never answers 304."""
        image_id = self.active_image()
        resp = self.download(image_id, **{'If-None-Match': ETAG})
        self.assertEqual(304, resp.status_code)
        self.assertEqual(ETAG, resp.headers['ETag'])
        self.assertEqual(b'', resp.content)

    def test_ranges_served_by_glance_5_13(self):
        image_id = self.active_image()
        for header, body, content_range in (
                ('bytes=2-4', b'234', 'bytes 2-4/10'),
                ('bytes=-3', b'789', 'bytes 7-9/10'),
                ('bytes=8-100', b'89', 'bytes 8-9/10')):
            resp = self.download(image_id, Range=header)
            self.assertEqual(206, resp.status_code, header)
            self.assertEqual(body, resp.content)
            self.assertEqual(content_range, resp.headers['Content-Range'])
            self.assertEqual(ETAG, resp.headers['ETag'])

    def test_stale_if_range_gives_the_whole_image_5_13(self):
        """Glance sends the range whatever If-Range says."""
        image_id = self.active_image()
        resp = self.download(image_id, Range='bytes=0-1',
                             **{'If-Range': '"stale"'})
        self.assertEqual(200, resp.status_code)
        self.assertEqual(DATA, resp.content)
        resp = self.download(image_id, Range='bytes=0-1',
                             **{'If-Range': ETAG})
        self.assertEqual(206, resp.status_code)
        self.assertEqual(b'01', resp.content)

    def test_legacy_content_range_5(self):
        """Lengths match what is sent; bytes */N crashes Glance."""
        image_id = self.active_image()
        resp = self.download(image_id, **{'Content-Range': 'bytes 8-15/20'})
        self.assertEqual(206, resp.status_code)
        self.assertEqual(b'89', resp.content)
        self.assertEqual('2', resp.headers['Content-Length'])
        resp = self.download(image_id, **{'Content-Range': 'bytes */10'})
        self.assertError(resp, 416, 'Invalid Content-Range header.')
        self.assertEqual('bytes */10', resp.headers['Content-Range'])

    def test_post_on_file_is_405_1(self):
        """Glance reads a POST body as JSON: 400 Malformed JSON."""
        image_id = self.active_image()
        resp = self.http.post(self.file_url(image_id), data=b'\x00\x01\xff',
                              headers=self.headers(**{
                                  'Content-Type':
                                      'application/octet-stream'}))
        self.assertEqual(405, resp.status_code, resp.text)
        self.assertEqual('GET, HEAD, PUT', resp.headers['Allow'])

    # Section 3: uploads.

    def test_content_type_case_and_blanks_accepted_3_2(self):
        """Glance: 415 for both."""
        for content_type in ('Application/Octet-Stream',
                             'application/octet-stream ; a=b'):
            image_id = self.create_image()
            resp = self.upload(image_id, DATA,
                               **{'Content-Type': content_type})
            self.assertEqual(204, resp.status_code, resp.text)
            self.assertEqual('active', self.image(image_id)['status'])

    def test_upload_204_has_no_content_type_3_24(self):
        """Glance: Content-Type: text/html on its 204."""
        resp = self.upload(self.create_image(), DATA)
        self.assertEqual(204, resp.status_code)
        self.assertNotIn('Content-Type', resp.headers)

    def test_body_cut_short_by_a_half_close_3_15(self):
        """Glance: 500 (WebOb's DisconnectionError); here 400, retry works."""
        image_id = self.create_image()
        head = ['PUT /v2/images/%s/file HTTP/1.1' % image_id,
                'Host: 127.0.0.1:%d' % self.glance.port,
                'Content-Type: application/octet-stream',
                'Content-Length: 1000', 'Accept: application/json']
        head += ['%s: %s' % item for item in self.headers().items()]
        sock = socket.create_connection(('127.0.0.1', self.glance.port),
                                        timeout=60)
        try:
            sock.sendall(('\r\n'.join(head) + '\r\n\r\n').encode() +
                         b'x' * 500)
            sock.shutdown(socket.SHUT_WR)
            resp = http.client.HTTPResponse(sock, method='PUT')
            resp.begin()
            body = resp.read()
        finally:
            sock.close()
        if self.received_before_half_close is not None:
            self.assertEqual(400, resp.status, body)
            self.assertIn(b'Size mismatch: expected 1000 bytes, got %d bytes'
                          % self.received_before_half_close, body)
            self.assertNothingStored(image_id)
            self.assertEqual(204, self.upload(image_id, DATA).status_code)
            return
        # The server answered for the app, whose request may still be
        # running: the image stays the cut upload's (409, row 3.12) until
        # the app has refused what it received.
        self.assertEqual(500, resp.status, body)
        self.assertIn(b'Internal Server Error', body)
        deadline = time.monotonic() + 60
        while True:
            self.assertNothingStored(image_id)
            retry = self.upload(image_id, DATA)
            if retry.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(204, retry.status_code, retry.text)
        self.assertStored(image_id, DATA)

    # Section 6: stores.

    def test_reserved_store_refused_before_glance_3_7(self):
        """Glance stores the image in its staging store."""
        for store in ('os_glance_staging_store', 'os_glance_tasks_store'):
            image_id = self.create_image()
            resp = self.upload(image_id, DATA, **{
                'X-Image-Meta-Store': store, 'Accept': 'application/json'})
            self.assertError(resp, 400,
                             'Store for identifier %s not found' % store)
            self.assertNothingStored(image_id)

    def test_image_creation_shows_no_reserved_store_6(self):
        """Glance lists os_glance_staging_store and os_glance_tasks_store."""
        resp = self.http.post(
            self.glance.url + '/v2/images', headers=self.headers(),
            json={'name': 'test', 'disk_format': 'raw',
                  'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        self.assertEqual('fast', resp.headers['OpenStack-image-store-ids'])

    def test_info_stores_answered_by_glance_6(self):
        resp = self.http.get(self.glance.url + '/v2/info/stores',
                             headers=self.headers())
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual({'stores': [{'id': 'fast', 'default': 'true'}]},
                         resp.json())

    # Section 2: errors and request ids.

    def test_a_401_carries_a_request_id_2(self):
        """Glance's context answers 401 without x-openstack-request-id."""
        resp = self.http.get(self.glance.url + '/v2/images',
                             headers={'X-Identity-Status': 'Invalid'})
        self.assertEqual(401, resp.status_code)
        self.assertTrue(resp.headers['x-openstack-request-id']
                        .startswith('req-'))

    def test_overlong_client_request_id_ignored_2(self):
        """Glance: 500; a short id is still echoed as Glance does."""
        long_id = 'a' * 100
        resp = self.http.get(self.glance.url + '/v2/images', headers=dict(
            self.headers(), **{'X-Openstack-Request-ID': long_id}))
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertNotIn(long_id, resp.headers['x-openstack-request-id'])
        resp = self.http.get(self.glance.url + '/v2/images', headers=dict(
            self.headers(), **{'X-Openstack-Request-ID': 'abc'}))
        self.assertEqual('req-abc', resp.headers['x-openstack-request-id'])

    # Format inspection.

    def test_unsafe_image_refused_before_glance_stores_it_3(self):
        """Glance keeps a refused image's data; the retry gets 500."""
        image_id = self.http.post(
            self.glance.url + '/v2/images', headers=self.headers(),
            json={'name': 'test', 'disk_format': 'qcow2',
                  'container_format': 'bare'}).json()['id']
        resp = self.upload(image_id, test_inspect.qcow2(
            size=1 << 20, backing_file=b'/etc/shadow'),
            Accept='application/json')
        self.assertError(resp, 415, 'Image failed safety checks')
        self.assertNothingStored(image_id)
        resp = self.upload(image_id, test_inspect.qcow2(size=1 << 20))
        self.assertEqual(204, resp.status_code, resp.text)


@glancefixture.needs_glance
class GunicornContractTest(ContractChecks, testtools.TestCase):
    """The contract's rows, Glance under gunicorn."""

    server = glancefixture.GUNICORN


@glancefixture.needs_glance
class UwsgiContractTest(ContractChecks, testtools.TestCase):
    """The contract's rows, Glance under uWSGI as devstack serves it."""

    server = glancefixture.UWSGI
    #: uWSGI answers the first read of a body cut short with an error and
    #: none of its bytes, so the filter counts none: row 3.15's status and
    #: message, with the count the server delivered.
    received_before_half_close = 0


@glancefixture.needs_mod_wsgi
class ModWsgiContractTest(ContractChecks, testtools.TestCase):
    """The contract's rows, Glance under Apache with mod_wsgi."""

    server = glancefixture.MOD_WSGI
    #: In daemon mode Apache's child reads the body and passes it on to
    #: the daemon process; when the client's body ends short, the child
    #: answers 500 itself (mod_wsgi's "Request data read error when
    #: proxying data to daemon process"), and the app's 400 never reaches
    #: the client. Row 3.15's invariants still hold: nothing is stored and
    #: a retry succeeds.
    received_before_half_close = None
