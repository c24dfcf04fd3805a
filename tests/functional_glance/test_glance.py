"""imgmw's filters in front of a real Glance, over a real socket.

One Glance (:class:`tests.glancefixture.Glance`) for each class, serving
``etc/glance-api-paste.ini``, flavor ``trusted-headers+imgmw``: Glance's own
filters and router with imgmw's ``context``, ``size``, ``quota``
(``usage_source = glance``, every project limited to
:data:`tests.glancefixture.STORAGE_QUOTA`) and ``checksum`` before the
router. Identity headers are sent as keystonemiddleware would set them.

The same checks run under gunicorn (:class:`GunicornGlanceTest`), under
uWSGI configured as devstack configures it (:class:`UwsgiGlanceTest`),
where Glance would read a chunked body with ``uwsgi.chunked_read()``
around the filters but for :mod:`imgmw.chunked`, and under Apache with
mod_wsgi in daemon mode (:class:`ModWsgiGlanceTest`, see
:mod:`tests.modwsgi`). Each check is made with a ``Content-Length`` body
and with a chunked one. Without a Glance virtualenv (``tox -e py3``) the
classes are skipped, saying so.
"""

import base64
import hashlib
import os
import uuid

import requests
import testtools

from tests import glancefixture

MiB = 1 << 20
CONTENT_LENGTH = 'Content-Length'
CHUNKED = 'chunked'
FRAMINGS = (CONTENT_LENGTH, CHUNKED)


def md5_header(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def chunks(data: bytes, size: int):
    """``data`` as a chunked body of ``size``-byte chunks (requests)."""
    return iter([data[start:start + size]
                 for start in range(0, len(data), size)])


class GlanceChecks:
    """The tests, for a class that sets :attr:`server`.

    Each test uses projects of its own.
    """

    server = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.glance = glancefixture.Glance(cls.server)
        cls.glance.setUp()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.glance.cleanUp()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.project = self.new_project()
        self.http = requests.Session()
        self.addCleanup(self.http.close)
        self.addOnException(self._attach_log)

    def _attach_log(self, exc_info) -> None:
        self.addDetail('glance-log', testtools.content.text_content(
            self.glance.log()))

    @staticmethod
    def new_project() -> str:
        return 'project-%s' % uuid.uuid4().hex[:8]

    def headers(self, project=None, **extra) -> dict:
        headers = {'X-Identity-Status': 'Confirmed',
                   'X-User-Id': 'user-1',
                   'X-Project-Id': project or self.project,
                   'X-Roles': 'member,reader'}
        headers.update(extra)
        return headers

    def create_image(self, project=None) -> str:
        resp = self.http.post(
            self.glance.url + '/v2/images', headers=self.headers(project),
            json={'name': 'test', 'disk_format': 'raw',
                  'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        return resp.json()['id']

    def upload(self, image_id, data, framing=CONTENT_LENGTH, project=None,
               chunk_size=64 * 1024, **headers):
        """PUT ``data``: a ``Content-Length`` body, or a chunked one.

        ``data`` may be an iterable of chunks already (chunked only).
        """
        headers.setdefault('Content-Type', 'application/octet-stream')
        if framing == CHUNKED and isinstance(data, bytes):
            data = chunks(data, chunk_size) if data else iter([])
        resp = self.http.put(
            self.glance.url + '/v2/images/%s/file' % image_id, data=data,
            headers=self.headers(project, **headers))
        sent = resp.request.headers
        self.assertEqual(framing == CHUNKED,
                         sent.get('Transfer-Encoding') == 'chunked', sent)
        return resp

    def image(self, image_id, project=None) -> dict:
        resp = self.http.get(self.glance.url + '/v2/images/%s' % image_id,
                             headers=self.headers(project))
        self.assertEqual(200, resp.status_code, resp.text)
        return resp.json()

    def assertNothingStored(self, image_id, project=None):
        image = self.image(image_id, project)
        self.assertEqual('queued', image['status'])
        self.assertIsNone(image['size'])
        self.assertFalse(os.path.exists(
            os.path.join(self.glance.images_dir, image_id)))

    def assertStored(self, image_id, data, project=None):
        image = self.image(image_id, project)
        self.assertEqual('active', image['status'])
        self.assertEqual(len(data), image['size'])
        self.assertEqual(hashlib.md5(data).hexdigest(), image['checksum'])
        with open(os.path.join(self.glance.images_dir, image_id),
                  'rb') as stored:
            self.assertEqual(data, stored.read())

    def assertRefusedThenRetried(self, resp, status, message, image_id,
                                 project=None, framing=CONTENT_LENGTH):
        """The refusal, the invariants after it, and a retry that works."""
        self.assertEqual(status, resp.status_code,
                         '%s: %s' % (framing, resp.text))
        self.assertIn(message, resp.text)
        self.assertNothingStored(image_id, project)
        data = os.urandom(1000)
        resp = self.upload(image_id, data, framing, project,
                           **{'x-openstack-image-size': str(len(data))})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertStored(image_id, data, project)

    # Glance alone.

    def test_round_trip_behaves_as_glance(self):
        # 1 MiB chunks as python-glanceclient sends them.
        data = os.urandom(3 * MiB + 1000)
        for framing in FRAMINGS:
            project = self.new_project()
            image_id = self.create_image(project)
            resp = self.upload(image_id, data, framing, project,
                               chunk_size=MiB)
            self.assertEqual(204, resp.status_code, resp.text)
            image = self.image(image_id, project)
            self.assertEqual(hashlib.sha512(data).hexdigest(),
                             image['os_hash_value'])
            self.assertStored(image_id, data, project)
            resp = self.http.get(
                self.glance.url + '/v2/images/%s/file' % image_id,
                headers=self.headers(project))
            self.assertEqual(200, resp.status_code)
            self.assertEqual(data, resp.content)
            self.assertEqual(hashlib.md5(data).hexdigest(),
                             resp.headers['Content-MD5'])

    def test_right_size_and_md5_are_stored(self):
        data = os.urandom(200 * 1024)
        for framing in FRAMINGS:
            image_id = self.create_image()
            resp = self.upload(
                image_id, data, framing, chunk_size=1000,
                **{'x-openstack-image-size': str(len(data)),
                   'Content-MD5': md5_header(data)})
            self.assertEqual(204, resp.status_code, resp.text)
            self.assertStored(image_id, data)

    def test_glance_errors_pass_through(self):
        resp = self.upload(str(uuid.uuid4()), b'data')
        self.assertEqual(404, resp.status_code)

    # Size.

    def test_body_longer_than_declared_refused(self):
        """Contract 3.5 (Content-Length), 3.14 (chunked).

        The filter reads one byte past the size; Glance alone would count
        whole chunks ("got 1200").
        """
        for framing, message in (
                (CONTENT_LENGTH, 'Content-Length'),
                (CHUNKED, 'Size exceeds: expected 1000 bytes, got 1001')):
            image_id = self.create_image()
            resp = self.upload(image_id, b'x' * 1200, framing,
                               chunk_size=600,
                               **{'x-openstack-image-size': '1000'})
            self.assertRefusedThenRetried(resp, 400, message, image_id,
                                          framing=framing)

    def test_body_shorter_than_declared_refused(self):
        """Contract 3.5 (Content-Length), 3.15 (chunked)."""
        for framing, message in ((CONTENT_LENGTH, 'Content-Length'),
                                 (CHUNKED, 'expected 1000 bytes, got 900')):
            image_id = self.create_image()
            resp = self.upload(image_id, b'x' * 900, framing,
                               chunk_size=500,
                               **{'x-openstack-image-size': '1000'})
            self.assertRefusedThenRetried(resp, 400, message, image_id,
                                          framing=framing)

    def test_empty_chunked_body_refused(self):
        """Contract 3.18: chunked, no size declared, nothing sent."""
        image_id = self.create_image()
        resp = self.upload(image_id, b'', CHUNKED)
        self.assertRefusedThenRetried(resp, 400, 'empty', image_id,
                                      framing=CHUNKED)

    # Checksum.

    def test_content_md5_mismatch_refused(self):
        """Contract 3.19."""
        wrong = md5_header(b'other')
        for framing in FRAMINGS:
            image_id = self.create_image()
            resp = self.upload(image_id, os.urandom(100 * 1024), framing,
                               **{'Content-MD5': wrong})
            self.assertRefusedThenRetried(
                resp, 400, 'Checksum verification failed: md5 mismatch',
                image_id, framing=framing)

    def test_download_of_corrupted_file_is_cut(self):
        data = os.urandom(256 * 1024)
        image_id = self.create_image()
        self.assertEqual(204, self.upload(image_id, data).status_code)
        path = os.path.join(self.glance.images_dir, image_id)
        with open(path, 'r+b') as stored:
            stored.seek(len(data) // 2)
            stored.write(b'\0' * 16)
        received = bytearray()
        with self.http.get(self.glance.url + '/v2/images/%s/file' % image_id,
                           headers=self.headers(), stream=True) as resp:
            self.assertEqual(200, resp.status_code)
            self.assertEqual(str(len(data)), resp.headers['Content-Length'])
            try:
                for chunk in resp.raw.stream(65536, decode_content=False):
                    received += chunk
            except Exception as err:
                cut = err
            else:
                cut = None
        self.assertIsNotNone(cut, 'the corrupt download was sent whole')
        self.assertLess(len(received), len(data))

    # Quota.

    def fill_quota(self, project, framing) -> str:
        """Upload all but 4 KiB of the project's quota; a new image's id."""
        data = os.urandom(glancefixture.STORAGE_QUOTA - 4096)
        image_id = self.create_image(project)
        resp = self.upload(image_id, data, framing, project, chunk_size=MiB)
        self.assertEqual(204, resp.status_code, resp.text)
        return self.create_image(project)

    def test_quota_breach_declared_refused_with_413(self):
        """Contract 3.13: the size is known before the body is read.

        The refused body is small: the 413 comes before the server reads
        it, and a client that sends a large one before reading the answer
        (requests) would see the connection closed instead.
        """
        for framing in FRAMINGS:
            project = self.new_project()
            image_id = self.fill_quota(project, framing)
            resp = self.upload(image_id, os.urandom(8192), framing, project,
                               **{'x-openstack-image-size': '8192'})
            self.assertRefusedThenRetried(
                resp, 413, 'Image exceeds the storage quota', image_id,
                project, framing)
        # Glance answers /v2/info/usage itself, with its own quota
        # settings: the filter only lends its figures to imgmw's app.
        resp = self.http.get(self.glance.url + '/v2/info/usage',
                             headers=self.headers(project))
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual({'usage': {}}, resp.json())

    def test_quota_breach_mid_stream_refused_with_413(self):
        """Contract 3.13: chunked, no size declared."""
        project = self.new_project()
        image_id = self.fill_quota(project, CHUNKED)
        resp = self.upload(image_id, os.urandom(8192), CHUNKED, project,
                           chunk_size=2048)
        self.assertRefusedThenRetried(
            resp, 413, 'Image exceeds the storage quota', image_id,
            project, CHUNKED)


@glancefixture.needs_glance
class GunicornGlanceTest(GlanceChecks, testtools.TestCase):
    """Glance under gunicorn, which decodes chunked bodies itself."""

    server = glancefixture.GUNICORN


@glancefixture.needs_glance
class UwsgiGlanceTest(GlanceChecks, testtools.TestCase):
    """Glance under uWSGI as devstack serves it."""

    server = glancefixture.UWSGI


@glancefixture.needs_mod_wsgi
class ModWsgiGlanceTest(GlanceChecks, testtools.TestCase):
    """Glance under Apache with mod_wsgi, which decodes chunked bodies."""

    server = glancefixture.MOD_WSGI
