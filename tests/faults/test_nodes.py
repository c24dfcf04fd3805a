"""Several nodes: two imgmw-api servers on MariaDB/MySQL and one S3 store.

Two ``imgmw-api`` processes (two gunicorn workers each), each with its own
state directory, share a registry on MariaDB or MySQL at 127.0.0.1:3306
(tests/dbfixture.py, ``root`` without a password) and an ``s3`` store on a
moto server (tests/s3fixture.py), as API nodes behind a load balancer do.

Any node serves any image; uploads, downloads and deletes racing across
the nodes keep contract section 3's invariants. After each race, from
outside the servers: every image is ``deleted`` with no object left,
``active`` with an object whose length and MD5 are the record's, or
``queued`` with no object; no image is ``saving``; the bucket holds no
object that no image refers to and no unfinished multipart upload.
"""

import concurrent.futures
import hashlib
import random
import re
import threading
import time
import typing

import requests
import sqlalchemy as sa
import testtools
from testtools import content
from testtools import matchers

from tests import dbfixture
from tests.functional import base
from tests import s3fixture


MiB = base.MiB
PART_MIB = 5
#: Answers an upload may give in a race (contract 3: rows 8, 10, 12, 23, 24).
UPLOAD_ANSWERS = frozenset((204, 404, 409, 410))
#: Answers a delete may give in a race.
DELETE_ANSWERS = frozenset((204, 404))


def store_config(endpoint: str, bucket: str) -> str:
    return '\n'.join((
        '[store:shared]',
        's3_store_host = %s' % endpoint,
        's3_store_access_key = %s' % s3fixture.ACCESS_KEY,
        's3_store_secret_key = %s' % s3fixture.SECRET_KEY,
        's3_store_bucket = %s' % bucket,
        's3_store_large_object_size = %d' % PART_MIB,
        's3_store_large_object_chunk_size = %d' % PART_MIB,
        '',
    ))


def slow_body(size: int, seed: str,
              pause: float) -> typing.Iterator[bytes]:
    """The pattern in 1 MiB chunks, ``pause`` seconds apart (chunked)."""
    for chunk in base.iter_pattern(size, seed):
        yield chunk
        time.sleep(pause)


def md5_of(size: int, seed: str) -> str:
    return base.pattern_digests(size, seed)[0]


class TestNodes(testtools.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.fixtures = []
        try:
            cls.moto = cls._start(s3fixture.MotoServer())
            cls.bucket = cls.moto.make_bucket('nodes')
            cls.database = cls._start(dbfixture.Database(kind='mysql'))
            base.sync_database(cls.database.url)
            config = store_config(cls.moto.endpoint, cls.bucket)
            cls.nodes = [cls._start(base.ApiServer(
                cls.database.url, extra_config=config, options={
                    'enabled_backends': 'shared:s3',
                    'default_backend': 'shared'})) for _ in range(2)]
        except BaseException:
            cls.tearDownClass()
            raise
        cls.engine = sa.create_engine(cls.database.url,
                                      poolclass=sa.pool.NullPool)

    @classmethod
    def _start(cls, fixture):
        fixture.setUp()
        cls.fixtures.append(fixture)
        return fixture

    @classmethod
    def tearDownClass(cls) -> None:
        if getattr(cls, 'engine', None) is not None:
            cls.engine.dispose()
        while cls.fixtures:
            cls.fixtures.pop().cleanUp()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.local = threading.local()
        self.addOnException(self._attach_logs)

    def _attach_logs(self, exc_info) -> None:
        for number, node in enumerate(self.nodes):
            self.addDetail('node%d.log' % number,
                           content.text_content(node.log()))

    # HTTP, one session per thread.

    def http(self) -> requests.Session:
        if not hasattr(self.local, 'session'):
            self.local.session = requests.Session()
            self.addCleanup(self.local.session.close)
        return self.local.session

    def call(self, node: base.ApiServer, method: str, path: str,
             **kwargs) -> requests.Response:
        kwargs.setdefault('timeout', base.REQUEST_TIMEOUT)
        return self.http().request(method, node.url + path, **kwargs)

    def create_image(self, node: base.ApiServer) -> str:
        resp = self.call(node, 'POST', '/v2/images', json={
            'name': self.id(), 'disk_format': 'raw',
            'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        return resp.json()['id']

    def upload(self, node: base.ApiServer, image_id: str, size: int,
               seed: str, pause: float = 0) -> requests.Response:
        body = (slow_body(size, seed, pause) if pause
                else base.PatternStream(size, seed))
        return self.call(node, 'PUT', '/v2/images/%s/file' % image_id,
                         data=body, headers={
                             'Content-Type': 'application/octet-stream'})

    def delete(self, node: base.ApiServer, image_id: str,
               delay: float) -> requests.Response:
        time.sleep(delay)
        return self.call(node, 'DELETE', '/v2/images/%s' % image_id)

    def download_md5(self, node: base.ApiServer, image_id: str) -> str:
        resp = self.call(node, 'GET', '/v2/images/%s/file' % image_id,
                         stream=True)
        self.assertEqual(200, resp.status_code, resp.text)
        digest = hashlib.md5(usedforsecurity=False)
        for chunk in resp.iter_content(MiB):
            digest.update(chunk)
        return digest.hexdigest()

    # The registry and the bucket, seen from outside the servers.

    def rows(self, image_ids: typing.Iterable[str]) -> typing.Dict[str, dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text('SELECT * FROM images WHERE id IN :ids').bindparams(
                    sa.bindparam('ids', expanding=True)),
                {'ids': list(image_ids)}).mappings().all()
            locations = connection.execute(
                sa.text('SELECT image_id, store, url FROM image_locations '
                        'WHERE image_id IN :ids').bindparams(
                    sa.bindparam('ids', expanding=True)),
                {'ids': list(image_ids)}).mappings().all()
        found = {row['id']: dict(row, locations=[]) for row in rows}
        for location in locations:
            found[location['image_id']]['locations'].append(
                (location['store'], location['url']))
        return found

    def in_progress(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT COUNT(*) FROM images WHERE status IN "
                "('saving', 'uploading', 'importing')")).scalar()

    def assert_invariants(self, image_ids: typing.Sequence[str]
                          ) -> typing.Dict[str, str]:
        """Contract 3 invariants of every image, the bucket's contents.

        :returns: the status of each image.
        """
        deadline = time.monotonic() + 30
        while self.in_progress() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(0, self.in_progress(), 'images left saving')
        rows = self.rows(image_ids)
        keys = self.moto.keys(self.bucket)
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))
        active = set()
        for image_id in image_ids:
            row = rows[image_id]
            self.assertIn(row['status'], ('deleted', 'active', 'queued'),
                          image_id)
            if row['status'] != 'active':
                self.assertNotIn(image_id, keys, row['status'])
                self.assertIsNone(row['size'] if row['status'] == 'queued'
                                  else None)
                continue
            active.add(image_id)
            self.assertEqual(
                [('shared', 's3://%s/%s' % (self.bucket, image_id))],
                row['locations'])
            head = self.moto.client.head_object(Bucket=self.bucket,
                                                Key=image_id)
            self.assertEqual(row['size'], head['ContentLength'])
            self.assertEqual(row['checksum'], hashlib.md5(
                self.moto.get(self.bucket, image_id),
                usedforsecurity=False).hexdigest())
        self.assertEqual(sorted(active),
                         sorted(set(keys) & set(image_ids)))
        self.assertEqual([], sorted(set(keys) - self.all_active()),
                         'orphan objects in the bucket')
        return {image_id: rows[image_id]['status'] for image_id in image_ids}

    def all_active(self) -> typing.Set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(sa.text(
                "SELECT id FROM images WHERE status = 'active'")).scalars())

    # Tests.

    def test_any_node_serves_any_image(self):
        """Created on one node, uploaded on the other, served by both."""
        first, second = self.nodes
        image_id = self.create_image(first)
        size = 2 * PART_MIB * MiB + 4321
        resp = self.upload(second, image_id, size, 'any')
        self.assertEqual(204, resp.status_code, resp.text)
        md5 = md5_of(size, 'any')
        for node in self.nodes:
            image = self.call(node, 'GET', '/v2/images/%s' % image_id).json()
            self.assertEqual(('active', size, md5, 'shared'), (
                image['status'], image['size'], image['checksum'],
                image['stores']))
            self.assertEqual(md5, self.download_md5(node, image_id))
        ranged = self.call(first, 'GET', '/v2/images/%s/file' % image_id,
                           headers={'Range': 'bytes=%d-%d' % (
                               PART_MIB * MiB - 10, PART_MIB * MiB + 9)})
        self.assertEqual(206, ranged.status_code, ranged.text)
        whole = b''.join(base.iter_pattern(size, 'any'))
        self.assertEqual(whole[PART_MIB * MiB - 10:PART_MIB * MiB + 10],
                         ranged.content)
        self.assertEqual(204, self.delete(first, image_id, 0).status_code)
        for node in self.nodes:
            self.assertEqual(404, self.call(
                node, 'GET', '/v2/images/%s/file' % image_id).status_code)
        self.assertEqual('deleted', self.assert_invariants([image_id])[
            image_id])

    def test_uploads_of_one_image_racing_on_two_nodes(self):
        """Contract 3.12: one upload wins, the other gets 409.

        The image is active with the winner's data, read from either node.
        """
        image_id = self.create_image(self.nodes[0])
        size = 3 * PART_MIB * MiB
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(
                lambda index: self.upload(self.nodes[index], image_id, size,
                                          'racer%d' % index, pause=0.01),
                range(2)))
        statuses = sorted(resp.status_code for resp in answers)
        self.assertEqual([204, 409], statuses,
                         [resp.text for resp in answers])
        winner = [index for index, resp in enumerate(answers)
                  if resp.status_code == 204][0]
        self.assertThat(answers[1 - winner].text, matchers.MatchesRegex(
            '.*Image status transition from (saving|active) to saving is '
            'not allowed', re.DOTALL))
        self.assertEqual({image_id: 'active'},
                         self.assert_invariants([image_id]))
        md5 = md5_of(size, 'racer%d' % winner)
        for node in self.nodes:
            self.assertEqual(md5, self.download_md5(node, image_id))

    def test_deletes_racing_uploads_across_nodes(self):
        """Uploads on one node, deletes of the same images on the other.

        Each delete comes at a different moment: before the upload, while
        it streams (a multipart upload part-way), or after it. Every answer
        is one the contract gives (no 5xx); afterwards the invariants hold
        for every image and the bucket, and the answers agree with the
        records: a 204 delete or a 410 upload left the image deleted.
        """
        chooser = random.Random(9)
        plan = []
        for index in range(16):
            image_id = self.create_image(self.nodes[index % 2])
            size = chooser.choice((1, 3, 7, 12)) * MiB + chooser.randrange(
                MiB)
            delay = chooser.choice((None, 0, 0.1, 0.3, 0.6, 1.0, 2.5))
            plan.append((index, image_id, size, delay))

        def upload(step):
            index, image_id, size, _ = step
            return self.upload(self.nodes[index % 2], image_id, size,
                               image_id, pause=0.05)

        def delete(step):
            index, image_id, _, delay = step
            return self.delete(self.nodes[(index + 1) % 2], image_id, delay)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            uploads = [pool.submit(upload, step) for step in plan]
            deletes = [pool.submit(delete, step) if step[3] is not None
                       else None for step in plan]
            uploaded = [future.result() for future in uploads]
            deleted = [future and future.result() for future in deletes]

        statuses = self.assert_invariants([step[1] for step in plan])
        for (index, image_id, size, delay), up, down in zip(
                plan, uploaded, deleted):
            self.assertIn(up.status_code, UPLOAD_ANSWERS, up.text)
            status = statuses[image_id]
            if down is None:
                self.assertEqual((204, 'active'), (up.status_code, status))
                continue
            self.assertIn(down.status_code, DELETE_ANSWERS, down.text)
            self.assertEqual(204, down.status_code, down.text)
            self.assertEqual('deleted', status, image_id)
            if up.status_code == 410:
                self.assert_error_410(up, image_id)
        self.addDetail('upload answers', content.text_content(
            repr(sorted(up.status_code for up in uploaded))))

    def test_delete_on_one_node_during_a_multipart_upload_on_the_other(self):
        """Contract 3.23 across nodes: 410, deleted, nothing in the bucket.

        The delete comes once the upload's multipart upload has parts in
        the bucket: the uploading node aborts it and answers 410.
        """
        uploader, deleter = self.nodes
        image_id = self.create_image(uploader)
        size = 4 * PART_MIB * MiB
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.upload, uploader, image_id, size,
                                  'deleted', 0.1)
            deadline = time.monotonic() + 60
            while image_id not in self.moto.unfinished_uploads(self.bucket):
                self.assertLess(time.monotonic(), deadline)
                self.assertFalse(pending.done(), pending.done()
                                 and pending.result().text)
                time.sleep(0.05)
            self.assertEqual(204, self.delete(deleter, image_id,
                                              0).status_code)
            resp = pending.result()
        self.assert_error_410(resp, image_id)
        self.assertEqual({image_id: 'deleted'},
                         self.assert_invariants([image_id]))

    def assert_error_410(self, resp: requests.Response,
                         image_id: str) -> None:
        self.assertEqual(410, resp.status_code, resp.text)
        self.assertIn('Image %s could not be found after upload. The image '
                      'may have been deleted during the upload, cleaning up '
                      'the chunks uploaded.' % image_id, resp.text)
