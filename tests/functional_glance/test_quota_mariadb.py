"""The quota filter alone in front of a Glance whose database is MariaDB.

Glance 33 (:class:`tests.glancefixture.Glance`, flavor
``trusted-headers+quota``) with only imgmw's quota filter after Glance's
own context filter: no imgmw context or size filter, so the filter takes
the caller's project from Glance's context and the declared size from
``Content-Length`` or ``x-openstack-image-size``. Glance's database and
the reservations' are two databases of the MariaDB server on
127.0.0.1:3306 (``tests.dbfixture``), as production runs them; every
project may store 1 MiB (``user_storage_quota``).

Concurrent uploads of one project, of known and of unknown size: no 500,
the limit is never exceeded, a refused image stays ``queued`` with nothing
stored (contract section 8, section 3 rows 13 and 17, section 9 "quota
under concurrency").
"""

import concurrent.futures
import os
import threading
import uuid

import requests
import sqlalchemy as sa
import testtools

from tests import dbfixture
from tests.functional import base
from tests import glancefixture

MiB = 1 << 20
LIMIT = MiB
FLAVOR = 'trusted-headers+quota'


@glancefixture.needs_glance
class QuotaMariaDBTest(testtools.TestCase):
    """One Glance for the class; each test uses a project of its own."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.databases = [dbfixture.Database('mysql') for _ in range(2)]
        try:
            for database in cls.databases:
                database.setUp()
            glance_db, quota_db = (database.url for database in cls.databases)
            cls.glance = glancefixture.Glance(
                database_url=glance_db, flavor=FLAVOR,
                paste_defaults={'glance_connection': glance_db,
                                'quota_connection': quota_db,
                                'user_storage_quota': '1MB'})
            cls.glance.setUp()
        except BaseException:
            cls._clean_databases()
            raise

    @classmethod
    def _clean_databases(cls) -> None:
        for database in cls.databases:
            try:
                database.cleanUp()
            except Exception:  # nosec B110: a fixture never set up.
                pass

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls.glance.cleanUp()
        finally:
            cls._clean_databases()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.project = 'project-%s' % uuid.uuid4().hex[:8]
        self.addOnException(self._attach_log)

    def _attach_log(self, exc_info) -> None:
        self.addDetail('glance-log', testtools.content.text_content(
            self.glance.log()))

    #: A connection per request: the server closes one whose body it
    #: refused unread, and threads share nothing.
    http = requests

    def headers(self, **extra) -> dict:
        headers = {'X-Identity-Status': 'Confirmed', 'X-User-Id': 'user-1',
                   'X-Project-Id': self.project, 'X-Roles': 'member,reader',
                   'Accept': 'application/json'}
        headers.update(extra)
        return headers

    def create_image(self) -> str:
        resp = self.http.post(
            self.glance.url + '/v2/images', headers=self.headers(),
            json={'name': 'test', 'disk_format': 'raw',
                  'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        return resp.json()['id']

    def upload(self, image_id: str, data, **headers) -> requests.Response:
        headers.setdefault('Content-Type', 'application/octet-stream')
        return self.http.put(
            self.glance.url + '/v2/images/%s/file' % image_id, data=data,
            headers=self.headers(**headers), timeout=120)

    def image(self, image_id: str) -> dict:
        resp = self.http.get(self.glance.url + '/v2/images/%s' % image_id,
                             headers=self.headers())
        self.assertEqual(200, resp.status_code, resp.text)
        return resp.json()

    def assertNothingStored(self, image_id: str) -> None:
        image = self.image(image_id)
        self.assertEqual('queued', image['status'])
        self.assertIsNone(image['size'])
        self.assertFalse(os.path.exists(
            os.path.join(self.glance.images_dir, image_id)))

    def upload_concurrently(self, count: int, size: int, body):
        """``count`` uploads of ``size`` bytes at once; their answers.

        :param body: ``body(data)``: what requests sends for ``data``.
        """
        image_ids = [self.create_image() for _ in range(count)]
        data = os.urandom(size)
        barrier = threading.Barrier(count)

        def upload(image_id):
            barrier.wait(timeout=60)
            return self.upload(image_id, body(data))
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            answers = list(pool.map(upload, image_ids))
        return list(zip(image_ids, answers))

    def assertQuotaHeld(self, results, size: int) -> int:
        """No 500, stored bytes within the limit, refusals clean.

        :returns: how many uploads were stored.
        """
        statuses = [resp.status_code for _, resp in results]
        self.assertEqual(set(), set(statuses) - {204, 413},
                         [resp.text for _, resp in results])
        stored = 0
        for image_id, resp in results:
            if resp.status_code == 204:
                image = self.image(image_id)
                self.assertEqual('active', image['status'])
                self.assertEqual(size, image['size'])
                stored += image['size']
            else:
                self.assertIn('Image exceeds the storage quota',
                              resp.json()['message'])
                self.assertNothingStored(image_id)
        self.assertLessEqual(stored, LIMIT)
        return statuses.count(204)

    def test_usage_info_is_glance_own(self):
        # Glance's static quotas are off: Glance says no limits.
        resp = self.http.get(self.glance.url + '/v2/info/usage',
                             headers=self.headers())
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual({'usage': {}}, resp.json())

    def test_glance_records_are_in_mariadb(self):
        image_id = self.create_image()
        engine = sa.create_engine(self.databases[0].url,
                                  poolclass=sa.pool.NullPool)
        self.addCleanup(engine.dispose)
        with engine.connect() as connection:
            owner = connection.execute(
                sa.text('SELECT owner FROM images WHERE id = :id'),
                {'id': image_id}).scalar_one()
        self.assertEqual(self.project, owner)

    def test_contract_3_13_content_length_above_the_quota_is_413(self):
        image_id = self.create_image()
        resp = self.upload(image_id, b'x' * (LIMIT + 1))
        self.assertEqual(413, resp.status_code, resp.text)
        self.assertEqual(
            'Image exceeds the storage quota: The size of the data %d will '
            'exceed the limit. %d bytes remaining.' % (LIMIT + 1, LIMIT),
            resp.json()['message'].split('<br />')[0])
        self.assertNothingStored(image_id)
        self.assertEqual(204, self.upload(image_id, b'x' * LIMIT).status_code)

    def test_contract_3_13_declared_size_of_a_chunked_body(self):
        image_id = self.create_image()
        resp = self.upload(image_id, iter([b'x' * 100]),
                           **{'x-openstack-image-size': str(LIMIT + 1)})
        self.assertEqual(413, resp.status_code, resp.text)
        self.assertNothingStored(image_id)

    def test_contract_3_17_chunked_body_over_the_quota_is_413(self):
        image_id = self.create_image()
        chunks = [b'y' * (64 * 1024)] * 17
        resp = self.upload(image_id, iter(chunks))
        self.assertEqual(413, resp.status_code, resp.text)
        self.assertNothingStored(image_id)
        self.assertEqual(204, self.upload(image_id, iter(chunks[:16]))
                         .status_code)

    def test_section_9_concurrent_uploads_of_known_size(self):
        size = 300 * 1024
        results = self.upload_concurrently(8, size, lambda data: data)
        # 3 fit in 1 MiB, a 4th would not: exactly 3, whatever the order.
        self.assertEqual(3, self.assertQuotaHeld(results, size))

    def test_section_9_concurrent_chunked_uploads_of_unknown_size(self):
        size = 300 * 1024
        results = self.upload_concurrently(6, size, chunked)
        self.assertGreaterEqual(self.assertQuotaHeld(results, size), 1)

    def test_section_8_overlapping_chunked_uploads_that_fit_all_pass(self):
        # 3 x 300 KiB of unknown size fit in 1 MiB: none may be refused
        # because another reserved what the project has left.
        size = 300 * 1024
        results = self.upload_concurrently(3, size, chunked)
        self.assertEqual(3, self.assertQuotaHeld(results, size))

    def test_contract_3_12_a_second_upload_to_an_image_is_409(self):
        """Issue 16: one upload at a time, answered before Glance."""
        image_id = self.create_image()
        first_started = threading.Event()
        finish_first = threading.Event()

        def slow_body():
            yield b'a' * 1024
            first_started.set()
            finish_first.wait(timeout=60)
            yield b'b' * 1024
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(self.upload, image_id, slow_body())
            self.assertTrue(first_started.wait(timeout=60))
            # The first holds the image once Glance has it: Glance marks
            # it saving before it reads the body, after the filter's claim.
            base.wait_for_status(self, self.image, image_id, 'saving',
                                 timeout=60)
            try:
                second = self.upload(image_id, b'c' * 100)
            finally:
                finish_first.set()
            first = first.result(timeout=120)
        self.assertEqual(409, second.status_code, second.text)
        self.assertEqual('Image status transition from saving to saving is '
                         'not allowed',
                         second.json()['message'].split('<br />')[0])
        self.assertEqual(204, first.status_code, first.text)
        image = self.image(image_id)
        self.assertEqual(('active', 2048), (image['status'], image['size']))


def chunked(data: bytes, chunk: int = 64 * 1024):
    """``data`` as requests sends a body of unknown size: chunked."""
    return iter([data[start:start + chunk]
                 for start in range(0, len(data), chunk)])
