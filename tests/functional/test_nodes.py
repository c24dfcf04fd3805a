"""Two API nodes, one registry: an import reaches the node that staged.

Two ``imgmw-api`` processes share the registry of the functional run
(SQLite here, PostgreSQL under ``tox -e functional-postgresql``), each with
its own state directory, hence its own staging area and file store, and
each with ``worker_self_reference_url`` set to its own URL. A stage sent to
one node and the import sent to the other is forwarded to the first, as
Glance does (contract section 4: stage, then import, 202, ``active``).
"""

import hashlib
import os
import time
import typing

import requests
import sqlalchemy as sa
import testtools
from testtools import content

from tests import dbfixture
from tests.functional import base


GLANCE_DIRECT = {'method': {'name': 'glance-direct'}}
SIZE = 3 * base.MiB + 17
STAGE_HOST = 'os_glance_stage_host'


class Node(base.ApiServer):
    """An ``imgmw-api`` that knows its own URL (``-o`` at each start)."""

    def command(self) -> typing.List[str]:
        return super().command() + [
            '-o', 'worker_self_reference_url=%s' % self.url]

    def staged_files(self) -> typing.List[str]:
        staging = os.path.join(self.state_dir, 'staging')
        return [name for name in os.listdir(staging)
                if not name.startswith('.')] if os.path.isdir(
                    staging) else []


class TestImportAcrossNodes(testtools.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.database = dbfixture.Database()
        cls.database.setUp()
        cls.nodes = []
        try:
            base.sync_database(cls.database.url)
            for _ in range(2):
                node = Node(cls.database.url, workers=1)
                node.setUp()
                cls.nodes.append(node)
        except BaseException:
            cls.tearDownClass()
            raise
        cls.node_a, cls.node_b = cls.nodes
        cls.engine = sa.create_engine(cls.database.url,
                                      poolclass=sa.pool.NullPool)

    @classmethod
    def tearDownClass(cls) -> None:
        if getattr(cls, 'engine', None) is not None:
            cls.engine.dispose()
        for node in cls.nodes:
            node.cleanUp()
        cls.database.cleanUp()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.http = requests.Session()
        self.addCleanup(self.http.close)
        self.addOnException(self._attach_logs)

    def _attach_logs(self, exc_info) -> None:
        for name, node in (('a', self.node_a), ('b', self.node_b)):
            self.addDetail('node-%s.log' % name,
                           content.text_content(node.log()))

    def call(self, node: base.ApiServer, method: str, path: str,
             **kwargs) -> requests.Response:
        kwargs.setdefault('timeout', base.REQUEST_TIMEOUT)
        headers = {'Accept': 'application/json'}
        headers.update(kwargs.pop('headers', {}))
        return self.http.request(method, node.url + path, headers=headers,
                                 **kwargs)

    def staged_on_a(self, seed: str) -> str:
        resp = self.call(self.node_a, 'POST', '/v2/images', json={
            'name': self.id(), 'disk_format': 'raw',
            'container_format': 'bare'})
        self.assertEqual(201, resp.status_code, resp.text)
        image_id = resp.json()['id']
        resp = self.call(self.node_a, 'PUT', '/v2/images/%s/stage' % image_id,
                         data=base.PatternStream(SIZE, seed), headers={
                             'Content-Type': 'application/octet-stream'})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertIn(image_id, self.node_a.staged_files())
        return image_id

    def import_on_b(self, image_id: str) -> requests.Response:
        return self.call(self.node_b, 'POST',
                         '/v2/images/%s/import' % image_id,
                         json=GLANCE_DIRECT)

    def image(self, node: base.ApiServer, image_id: str) -> dict:
        resp = self.call(node, 'GET', '/v2/images/%s' % image_id)
        self.assertEqual(200, resp.status_code, resp.text)
        return resp.json()

    def wait_for(self, image_id: str, status: str) -> dict:
        deadline = time.monotonic() + 60
        while True:
            image = self.image(self.node_b, image_id)
            if (image['status'] == status
                    or time.monotonic() > deadline):
                self.assertEqual(status, image['status'], image)
                return image
            time.sleep(0.05)

    def set_stage_host(self, image_id: str, value: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text(
                'UPDATE image_properties SET value = :value WHERE '
                'image_id = :id AND name = :name'),
                {'value': value, 'id': image_id, 'name': STAGE_HOST})

    def test_stage_on_a_import_on_b_is_active_4(self):
        image_id = self.staged_on_a('across')
        resp = self.import_on_b(image_id)
        self.assertEqual(202, resp.status_code, resp.text)
        self.assertIn('x-openstack-request-id', resp.headers)
        image = self.wait_for(image_id, 'active')
        md5, sha512 = base.pattern_digests(SIZE, 'across')
        self.assertEqual(SIZE, image['size'])
        self.assertEqual(md5, image['checksum'])
        self.assertEqual('sha512', image['os_hash_algo'])
        self.assertEqual(sha512, image['os_hash_value'])
        self.assertNotIn(STAGE_HOST, image)
        # The staged file goes right after the commit.
        deadline = time.monotonic() + 10
        while (image_id in self.node_a.staged_files()
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.assertNotIn(image_id, self.node_a.staged_files())
        # The data went into A's store; B has none of it.
        self.assertTrue(any(image_id in path for path in self.node_a.files()))
        self.assertFalse(any(image_id in path
                             for path in self.node_b.files()))
        resp = self.call(self.node_a, 'GET', '/v2/images/%s/file' % image_id)
        self.assertEqual(200, resp.status_code)
        self.assertEqual(md5, hashlib.md5(
            resp.content, usedforsecurity=False).hexdigest())

    def test_the_stage_records_the_node_url(self):
        image_id = self.staged_on_a('recorded')
        with self.engine.connect() as connection:
            recorded = connection.execute(sa.text(
                'SELECT value FROM image_properties WHERE image_id = :id '
                'AND name = :name'),
                {'id': image_id, 'name': STAGE_HOST}).scalar()
        self.assertEqual(self.node_a.url, recorded)
        resp = self.call(self.node_a, 'DELETE', '/v2/images/%s' % image_id)
        self.assertEqual(204, resp.status_code, resp.text)

    def test_refusal_of_the_staging_node_is_relayed_4(self):
        image_id = self.staged_on_a('gone')
        os.unlink(os.path.join(self.node_a.state_dir, 'staging', image_id))
        resp = self.import_on_b(image_id)
        self.assertEqual(409, resp.status_code, resp.text)
        self.assertIn('application/json', resp.headers['Content-Type'])
        self.assertIn('The staged data of image %s is gone; stage it '
                      'again.' % image_id, resp.json()['message'])
        self.assertEqual('queued', self.image(self.node_b,
                                              image_id)['status'])

    def test_checks_of_the_receiving_node_come_first_4(self):
        image_id = self.staged_on_a('checked')
        resp = self.call(self.node_b, 'POST',
                         '/v2/images/%s/import' % image_id,
                         json={'method': {'name': 'web-download'}})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertIn("Unknown import method name 'web-download'.",
                      resp.json()['message'])
        self.assertEqual('uploading', self.image(self.node_b,
                                                 image_id)['status'])
        self.assertIn(image_id, self.node_a.staged_files())

    def test_unreachable_staging_node_is_504_and_keeps_the_stage(self):
        image_id = self.staged_on_a('unreachable')
        dead = 'http://127.0.0.1:%d' % base.free_port()
        self.set_stage_host(image_id, dead)
        resp = self.import_on_b(image_id)
        self.assertEqual(504, resp.status_code, resp.text)
        self.assertIn('Stage host is unavailable', resp.json()['message'])
        self.assertIn(dead, self.node_b.log())
        # Nothing changed: the stage is still there, to import later.
        self.assertEqual('uploading', self.image(self.node_b,
                                                 image_id)['status'])
        self.assertIn(image_id, self.node_a.staged_files())
        self.set_stage_host(image_id, self.node_a.url)
        resp = self.import_on_b(image_id)
        self.assertEqual(202, resp.status_code, resp.text)
        self.wait_for(image_id, 'active')
