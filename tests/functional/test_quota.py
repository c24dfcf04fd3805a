"""The quota filter on two imgmw-api nodes sharing PostgreSQL.

Contract section 8 (``usage + delta > limit`` never passes, under
concurrency, across nodes) and section 3 rows 13 and 17: two ``imgmw-api``
processes serve the same PostgreSQL registry and the same file store, with
``user_storage_quota = 10MB``. Eight 3 MiB uploads to one project run in
parallel across both nodes, half of them chunked without a declared size.
While they run, a watcher reads the registry: the bytes of the project's
active images never exceed 10 MiB, nor do its reservations. At the end,
every refused upload got 413 and left its image ``queued`` with nothing
stored, every accepted one is ``active`` with its exact bytes, and no
reservation is left.
"""

import hashlib
import os
import threading
import time

import fixtures
import requests
import sqlalchemy as sa
import testtools
from testtools import content

from tests import dbfixture
from tests.functional import base

MiB = base.MiB
LIMIT = 10 * MiB
IMAGE_SIZE = 3 * MiB
UPLOADS = 8
QUOTA_REFUSAL = 'Image exceeds the storage quota: The size of the data '


class Watcher(threading.Thread):
    """Samples the project's active bytes and reservations until stopped."""

    def __init__(self, engine: sa.engine.Engine):
        super().__init__(daemon=True)
        self.engine = engine
        self.stop = threading.Event()
        self.samples = []
        self.failure = None

    def run(self) -> None:
        try:
            # One connection, one short transaction a sample: as many
            # samples as the database answers while the uploads run.
            with self.engine.connect() as connection:
                while not self.stop.is_set():
                    self.samples.append(self.sample(connection))
                    connection.rollback()
        except Exception as err:  # Reported by the test.
            self.failure = err

    @staticmethod
    def sample(connection):
        active = connection.execute(sa.text(
            "SELECT COALESCE(SUM(size), 0) FROM images "
            "WHERE status = 'active'")).scalar_one()
        reserved = connection.execute(sa.text(
            'SELECT COALESCE(SUM(size), 0) FROM quota_reservations'
        )).scalar_one()
        return int(active), int(reserved)


class TestQuotaAcrossTwoNodes(testtools.TestCase):

    def setUp(self):
        super().setUp()
        database = self.useFixture(dbfixture.Database('postgresql'))
        base.sync_database(database.url)
        self.engine = sa.create_engine(database.url,
                                       poolclass=sa.pool.NullPool)
        self.addCleanup(self.engine.dispose)
        self.state_dir = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state')
        options = {'user_storage_quota': '10MB',
                   'reservation_increment': '1MB'}
        self.nodes = [
            self.useFixture(base.ApiServer(
                database.url, options=options,
                args=['--state-dir', self.state_dir]))
            for _ in range(2)]
        for index, node in enumerate(self.nodes):
            self.addOnException(
                lambda exc_info, node=node, index=index: self.addDetail(
                    'node%d.log' % index, content.text_content(node.log())))
        self.http = requests.Session()
        # A fresh connection per request: a kept-alive one that the server
        # closes meanwhile would fail the next request.
        self.http.headers['Connection'] = 'close'
        self.addCleanup(self.http.close)

    def create_image(self, index: int) -> str:
        resp = self.http.post(
            self.nodes[0].url + '/v2/images', timeout=base.REQUEST_TIMEOUT,
            json={'name': 'quota-%d' % index, 'disk_format': 'raw',
                  'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        return resp.json()['id']

    def upload(self, node: base.ApiServer, image_id: str, chunked: bool):
        """PUT 3 MiB; chunked ones declare no size."""
        if chunked:
            data = base.iter_pattern(IMAGE_SIZE, seed=image_id)
        else:
            data = base.PatternStream(IMAGE_SIZE, seed=image_id)
        with requests.Session() as session:
            return session.put(
                '%s/v2/images/%s/file' % (node.url, image_id), data=data,
                headers={'Content-Type': 'application/octet-stream'},
                timeout=base.REQUEST_TIMEOUT)

    def stored_files(self, image_id: str):
        found = []
        for top, _dirs, names in os.walk(self.state_dir):
            found.extend(name for name in names if image_id in name)
        return found

    def image(self, node: base.ApiServer, image_id: str) -> dict:
        resp = self.http.get('%s/v2/images/%s' % (node.url, image_id),
                             timeout=base.REQUEST_TIMEOUT)
        self.assertEqual(200, resp.status_code, resp.text)
        return resp.json()

    def run_uploads(self, image_ids):
        answers = {}
        barrier = threading.Barrier(len(image_ids))

        def one(index, image_id):
            barrier.wait()
            try:
                answers[image_id] = self.upload(
                    self.nodes[index % 2], image_id,
                    chunked=bool((index // 2) % 2))
            except requests.RequestException as err:
                answers[image_id] = err
        threads = [threading.Thread(target=one, args=(index, image_id))
                   for index, image_id in enumerate(image_ids)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(base.REQUEST_TIMEOUT)
        return answers

    def test_section_8_parallel_uploads_never_exceed_the_limit(self):
        image_ids = [self.create_image(index) for index in range(UPLOADS)]
        watcher = Watcher(self.engine)
        watcher.start()
        try:
            answers = self.run_uploads(image_ids)
        finally:
            watcher.stop.set()
            watcher.join()
        self.assertIsNone(watcher.failure)
        self.assertGreater(len(watcher.samples), 10)
        for active, reserved in watcher.samples:
            self.assertLessEqual(active, LIMIT)
            self.assertLessEqual(reserved, LIMIT)

        accepted = [image_id for image_id, resp in answers.items()
                    if getattr(resp, 'status_code', None) == 204]
        refused = [image_id for image_id in image_ids
                   if image_id not in accepted]
        self.assertEqual(UPLOADS, len(answers))
        self.assertGreaterEqual(len(accepted), 1)
        self.assertLessEqual(len(accepted) * IMAGE_SIZE, LIMIT)

        for image_id in refused:
            resp = answers[image_id]
            self.assertIsInstance(resp, requests.Response, resp)
            self.assertEqual(413, resp.status_code, resp.text)
            self.assertIn(QUOTA_REFUSAL, resp.text)
            self.assert_left_nothing(image_id)

        md5s = {}
        for image_id in accepted:
            md5s[image_id] = self.assert_intact(image_id)
        self.assertEqual(len(accepted), len(set(md5s.values())))

        with self.engine.connect() as connection:
            self.assertEqual(0, connection.execute(sa.text(
                'SELECT COUNT(*) FROM quota_reservations')).scalar_one())
        self.assert_usage(len(accepted) * IMAGE_SIZE)

    def assert_left_nothing(self, image_id: str) -> None:
        for node in self.nodes:
            image = self.image(node, image_id)
            self.assertEqual('queued', image['status'])
            for field in ('size', 'checksum', 'os_hash_value'):
                self.assertIsNone(image[field], field)
        self.assertEqual([], self.stored_files(image_id))

    def assert_intact(self, image_id: str) -> str:
        md5, sha512 = base.pattern_digests(IMAGE_SIZE, seed=image_id)
        image = self.image(self.nodes[1], image_id)
        self.assertEqual(('active', IMAGE_SIZE, md5, sha512),
                         (image['status'], image['size'], image['checksum'],
                          image['os_hash_value']))
        for node in self.nodes:
            resp = self.http.get('%s/v2/images/%s/file' % (node.url,
                                                           image_id),
                                 timeout=base.REQUEST_TIMEOUT)
            self.assertEqual(200, resp.status_code)
            self.assertEqual(md5, hashlib.md5(resp.content).hexdigest())
        return md5

    def assert_usage(self, stored: int) -> None:
        for node in self.nodes:
            resp = self.http.get(node.url + '/v2/info/usage',
                                 timeout=base.REQUEST_TIMEOUT)
            self.assertEqual(200, resp.status_code, resp.text)
            self.assertEqual({'usage': stored // MiB, 'limit': LIMIT // MiB},
                             resp.json()['usage']['image_size_total'])


class TestQuotaAtImport(testtools.TestCase):
    """Stage + glance-direct import is held to the storage quota.

    Issue 17 item 1: with ``user_storage_quota = 2MB``, two staged images
    of 1.5 MiB both became active. Now the second import is refused with
    the 413 of contract row 13 and its image stays staged.
    """

    SIZE = 3 * MiB // 2

    def setUp(self):
        super().setUp()
        database = self.useFixture(dbfixture.Database('sqlite'))
        base.sync_database(database.url)
        self.node = self.useFixture(base.ApiServer(
            database.url, options={'user_storage_quota': '2MB'},
            workers=1))
        self.addOnException(lambda exc_info: self.addDetail(
            'node.log', content.text_content(self.node.log())))
        self.http = requests.Session()
        self.http.headers['Connection'] = 'close'
        self.addCleanup(self.http.close)

    def staged_image(self) -> str:
        resp = self.http.post(
            self.node.url + '/v2/images', timeout=base.REQUEST_TIMEOUT,
            json={'name': 'import', 'disk_format': 'raw',
                  'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        image_id = resp.json()['id']
        resp = self.http.put(
            '%s/v2/images/%s/stage' % (self.node.url, image_id),
            data=b's' * self.SIZE, timeout=base.REQUEST_TIMEOUT,
            headers={'Content-Type': 'application/octet-stream'})
        self.assertEqual(204, resp.status_code, resp.text)
        return image_id

    def import_(self, image_id: str) -> requests.Response:
        return self.http.post(
            '%s/v2/images/%s/import' % (self.node.url, image_id),
            json={'method': {'name': 'glance-direct'}},
            headers={'Accept': 'application/json'},
            timeout=base.REQUEST_TIMEOUT)

    def status(self, image_id: str) -> str:
        return self.http.get('%s/v2/images/%s' % (self.node.url, image_id),
                             timeout=base.REQUEST_TIMEOUT).json()['status']

    def test_an_import_over_the_storage_quota_is_413(self):
        first, second = self.staged_image(), self.staged_image()
        self.assertEqual(202, self.import_(first).status_code)
        for _ in range(200):
            if self.status(first) == 'active':
                break
            time.sleep(0.05)
        self.assertEqual('active', self.status(first))
        resp = self.import_(second)
        self.assertEqual(413, resp.status_code, resp.text)
        self.assertEqual(
            'Image exceeds the storage quota: The size of the data %d will '
            'exceed the limit. %d bytes remaining.'
            % (self.SIZE, 2 * MiB - self.SIZE),
            resp.json()['message'].split('<br />')[0])
        self.assertEqual('uploading', self.status(second))
