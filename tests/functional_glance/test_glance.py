"""imgmw's filters in front of a real Glance, over a real socket.

One Glance (:class:`tests.glancefixture.Glance`) for the class, serving
``tests/functional_glance/glance-api-paste.ini``: Glance's own filters and
router with imgmw's ``context``, ``size``, ``quota`` (``usage_source =
glance``) and ``checksum`` before the router. Identity headers are sent as
keystonemiddleware would set them. Without a Glance virtualenv (``tox -e
py3``) the class is skipped, saying so.
"""

import base64
import hashlib
import os
import uuid

import requests
import testtools

from tests import glancefixture

QUOTA_PROJECT = 'quota-project'
MiB = 1 << 20


@testtools.skipUnless(
    os.environ.get(glancefixture.VENV_VARIABLE),
    'needs a Glance virtualenv in $%s: tox -e functional-glance'
    % glancefixture.VENV_VARIABLE)
class GlanceTest(testtools.TestCase):
    """Glance with imgmw's filters; each test uses its own project."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.glance = glancefixture.Glance()
        cls.glance.setUp()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.glance.cleanUp()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.project = 'project-%s' % uuid.uuid4().hex[:8]
        self.http = requests.Session()
        self.addCleanup(self.http.close)
        self.addOnException(self._attach_log)

    def _attach_log(self, exc_info) -> None:
        self.addDetail('glance-log', testtools.content.text_content(
            self.glance.log()))

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

    def upload(self, image_id, data, project=None, **headers):
        headers.setdefault('Content-Type', 'application/octet-stream')
        return self.http.put(
            self.glance.url + '/v2/images/%s/file' % image_id, data=data,
            headers=self.headers(project, **headers))

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

    # Glance alone.

    def test_round_trip_behaves_as_glance(self):
        data = os.urandom(300 * 1024)
        image_id = self.create_image()
        resp = self.upload(image_id, data)
        self.assertEqual(204, resp.status_code, resp.text)
        image = self.image(image_id)
        self.assertEqual('active', image['status'])
        self.assertEqual(len(data), image['size'])
        self.assertEqual(hashlib.md5(data).hexdigest(), image['checksum'])
        self.assertEqual(hashlib.sha512(data).hexdigest(),
                         image['os_hash_value'])
        resp = self.http.get(
            self.glance.url + '/v2/images/%s/file' % image_id,
            headers=self.headers())
        self.assertEqual(200, resp.status_code)
        self.assertEqual(data, resp.content)
        self.assertEqual(hashlib.md5(data).hexdigest(),
                         resp.headers['Content-MD5'])

    def test_chunked_upload_with_right_size_and_md5_is_stored(self):
        data = os.urandom(200 * 1024)
        image_id = self.create_image()
        resp = self.upload(
            image_id, iter([data[:1000], data[1000:]]),
            **{'x-openstack-image-size': str(len(data)),
               'Content-MD5': base64.b64encode(
                   hashlib.md5(data).digest()).decode()})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual(len(data), self.image(image_id)['size'])

    def test_glance_errors_pass_through(self):
        resp = self.upload(str(uuid.uuid4()), b'data')
        self.assertEqual(404, resp.status_code)

    # Must show.

    def test_wrong_declared_size_refused_before_glance_stores(self):
        """Contract 3.5: the header and Content-Length disagree."""
        image_id = self.create_image()
        resp = self.upload(image_id, b'x' * 1000,
                           **{'x-openstack-image-size': '2000'})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertNothingStored(image_id)

    def test_chunked_body_longer_than_declared_refused(self):
        """Contract 3.14: Glance's file store would store it whole."""
        image_id = self.create_image()
        resp = self.upload(image_id, iter([b'x' * 600, b'x' * 600]),
                           **{'x-openstack-image-size': '1000'})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertNothingStored(image_id)

    def test_chunked_body_shorter_than_declared_refused(self):
        """Contract 3.15."""
        image_id = self.create_image()
        resp = self.upload(image_id, iter([b'x' * 500, b'x' * 400]),
                           **{'x-openstack-image-size': '1000'})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertNothingStored(image_id)

    def test_content_md5_mismatch_refused(self):
        """Contract 3.19."""
        image_id = self.create_image()
        wrong = base64.b64encode(hashlib.md5(b'other').digest()).decode()
        resp = self.upload(image_id, os.urandom(100 * 1024),
                           **{'Content-MD5': wrong})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertIn('Checksum verification failed: md5 mismatch',
                      resp.text)
        self.assertNothingStored(image_id)

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

    def test_quota_breach_refused_with_413(self):
        """Contract 3.13: 1 MiB for quota-project in the paste file.

        The refused body is small: the 413 comes before the server reads
        it, and a client that sends a large one before reading the answer
        (requests) would see the connection closed instead.
        """
        first = self.create_image(QUOTA_PROJECT)
        resp = self.upload(first, os.urandom(MiB - 4096), QUOTA_PROJECT)
        self.assertEqual(204, resp.status_code, resp.text)
        second = self.create_image(QUOTA_PROJECT)
        resp = self.upload(second, os.urandom(8192), QUOTA_PROJECT)
        self.assertEqual(413, resp.status_code, resp.text)
        self.assertIn('Image exceeds the storage quota', resp.text)
        self.assertNothingStored(second, QUOTA_PROJECT)
        # Glance answers /v2/info/usage itself, with its own quota
        # settings: the filter only lends its figures to imgmw's app.
        resp = self.http.get(self.glance.url + '/v2/info/usage',
                             headers=self.headers(QUOTA_PROJECT))
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual({'usage': {}}, resp.json())
        # What is left still fits, exactly.
        resp = self.upload(second, os.urandom(4096), QUOTA_PROJECT)
        self.assertEqual(204, resp.status_code, resp.text)
