"""The production flavor of etc/glance-api-paste.ini against a real Keystone.

One Keystone (:class:`tests.keystonefixture.Keystone`) and one Glance under
uWSGI (:class:`tests.glancefixture.Glance`) serving flavor
``keystone+imgmw``: keystonemiddleware's ``authtoken`` validating real
tokens with a service user of Glance's own, Glance's ``context``, then
imgmw's ``context``, ``size``, ``quota`` and ``checksum``. Users:

=============  ==========  ======================================
user           project     roles (Keystone adds implied ones)
=============  ==========  ======================================
``member-a``   A           ``member`` (and ``reader``)
``member-b``   B           ``member`` (and ``reader``)
``member-q``   Q           ``member``: the quota's tests
``glance``     service     ``service``: authtoken's service user
=============  ==========  ======================================

``tox -e functional-glance`` installs Keystone into Glance's virtualenv
and names it in both ``IMGMW_TEST_GLANCE_VENV`` and
``IMGMW_TEST_KEYSTONE_VENV``; without them the class is skipped, saying
so.
"""

import base64
import hashlib
import os

import requests
import testtools

from tests import glancefixture
from tests import keystonefixture

MiB = 1 << 20


@testtools.skipUnless(
    os.environ.get(glancefixture.VENV_VARIABLE)
    and os.environ.get(keystonefixture.VENV_VARIABLE),
    'needs Glance and Keystone virtualenvs in $%s and $%s: tox -e '
    'functional-glance' % (glancefixture.VENV_VARIABLE,
                           keystonefixture.VENV_VARIABLE))
class KeystoneGlanceTest(testtools.TestCase):
    """Real tokens through Glance's production flavor with imgmw."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.keystone = keystonefixture.Keystone()
        cls.keystone.setUp()
        try:
            cls.users = {}
            for name in ('a', 'b', 'q'):
                project = cls.keystone.create_project('project-' + name)
                cls.users[name] = cls.keystone.create_user(
                    'member-' + name, project, ['member'])
            cls.tokens = {name: cls.keystone.token(user)
                          for name, user in cls.users.items()}
            cls.glance = glancefixture.Glance(glancefixture.UWSGI,
                                              keystone=cls.keystone)
            cls.glance.setUp()
        except BaseException:
            cls.keystone.cleanUp()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.glance.cleanUp()
        cls.keystone.cleanUp()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.http = requests.Session()
        self.addCleanup(self.http.close)
        self.addOnException(self._attach_logs)

    def _attach_logs(self, exc_info) -> None:
        self.addDetail('glance-log', testtools.content.text_content(
            self.glance.log()))
        self.addDetail('keystone-log', testtools.content.text_content(
            self.keystone.log()))

    def url(self, path: str) -> str:
        return self.glance.url + path

    def auth(self, user='a', **extra) -> dict:
        headers = {'X-Auth-Token': self.tokens[user]}
        headers.update(extra)
        return headers

    def create_image(self, user='a') -> str:
        resp = self.http.post(
            self.url('/v2/images'), headers=self.auth(user),
            json={'name': 'test', 'disk_format': 'raw',
                  'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        return resp.json()['id']

    def upload(self, image_id, data, user='a', **headers):
        headers.setdefault('Content-Type', 'application/octet-stream')
        return self.http.put(self.url('/v2/images/%s/file' % image_id),
                             data=data, headers=self.auth(user, **headers))

    def image(self, image_id, user='a') -> dict:
        resp = self.http.get(self.url('/v2/images/%s' % image_id),
                             headers=self.auth(user))
        self.assertEqual(200, resp.status_code, resp.text)
        return resp.json()

    def assertNothingStored(self, image_id, user='a'):
        image = self.image(image_id, user)
        self.assertEqual('queued', image['status'])
        self.assertIsNone(image['size'])
        self.assertFalse(os.path.exists(
            os.path.join(self.glance.images_dir, image_id)))

    def test_no_token_is_401_with_www_authenticate(self):
        image_id = self.create_image()
        for method, path in (('GET', '/v2/images'),
                             ('PUT', '/v2/images/%s/file' % image_id)):
            resp = self.http.request(
                method, self.url(path), data=b'x' * 10,
                headers={'Content-Type': 'application/octet-stream'})
            self.assertEqual(401, resp.status_code, (method, resp.text))
            self.assertIn(self.keystone.url,
                          resp.headers.get('WWW-Authenticate', ''))
            # Contract section 2: a 401 of the pipeline carries the id.
            self.assertTrue(resp.headers.get(
                'x-openstack-request-id', '').startswith('req-'),
                resp.headers)
        resp = self.upload(image_id, b'x' * 10, **{'X-Auth-Token': 'bogus'})
        self.assertEqual(401, resp.status_code, resp.text)
        self.assertNothingStored(image_id)

    def test_member_upload_passes_every_filter(self):
        data = os.urandom(2 * MiB + 7)
        image_id = self.create_image()
        # Chunked, 1 MiB chunks, as python-glanceclient sends it.
        resp = self.upload(
            image_id, iter([data[:MiB], data[MiB:2 * MiB], data[2 * MiB:]]),
            **{'x-openstack-image-size': str(len(data)),
               'Content-MD5': base64.b64encode(
                   hashlib.md5(data).digest()).decode()})
        self.assertEqual(204, resp.status_code, resp.text)
        image = self.image(image_id)
        self.assertEqual('active', image['status'])
        self.assertEqual(len(data), image['size'])
        self.assertEqual(hashlib.md5(data).hexdigest(), image['checksum'])
        self.assertEqual(self.users['a'].project_id, image['owner'])
        resp = self.http.get(self.url('/v2/images/%s/file' % image_id),
                             headers=self.auth())
        self.assertEqual(200, resp.status_code)
        self.assertEqual(data, resp.content)

    def test_wrong_size_refused_before_glance_stores(self):
        """Contract 3.14 (chunked) and 3.5 (Content-Length)."""
        image_id = self.create_image()
        resp = self.upload(image_id, iter([b'x' * 600, b'x' * 600]),
                           **{'x-openstack-image-size': '1000'})
        self.assertEqual(400, resp.status_code, resp.text)
        # The size filter's count: one byte past; Glance's would be 1200.
        self.assertIn('expected 1000 bytes, got 1001 bytes', resp.text)
        self.assertNothingStored(image_id)
        resp = self.upload(image_id, b'x' * 900,
                           **{'x-openstack-image-size': '1000'})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertNothingStored(image_id)

    def test_digest_mismatch_refused_before_glance_stores(self):
        """Contract 3.19, chunked."""
        image_id = self.create_image()
        wrong = base64.b64encode(hashlib.md5(b'other').digest()).decode()
        resp = self.upload(image_id, iter([os.urandom(4096)] * 3),
                           **{'Content-MD5': wrong})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertIn('Checksum verification failed: md5 mismatch',
                      resp.text)
        self.assertNothingStored(image_id)

    def test_quota_breach_refused(self):
        """Contract 3.13: project Q's limit is the deployment's default."""
        first = self.create_image('q')
        resp = self.upload(first, os.urandom(glancefixture.STORAGE_QUOTA
                                             - 4096), 'q')
        self.assertEqual(204, resp.status_code, resp.text)
        second = self.create_image('q')
        resp = self.upload(second, iter([os.urandom(4096)] * 2), 'q')
        self.assertEqual(413, resp.status_code, resp.text)
        self.assertIn('Image exceeds the storage quota', resp.text)
        self.assertNothingStored(second, 'q')

    def test_another_projects_image_is_invisible(self):
        image_id = self.create_image('a')
        resp = self.http.get(self.url('/v2/images/%s' % image_id),
                             headers=self.auth('b'))
        self.assertEqual(404, resp.status_code, resp.text)
        resp = self.upload(image_id, b'x' * 100, 'b')
        self.assertEqual(404, resp.status_code, resp.text)
        self.assertNothingStored(image_id, 'a')
