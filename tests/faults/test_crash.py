"""Crashes: imgmw-api killed with SIGKILL in the middle of an upload.

Contract section 3's invariants after a crash: no image stays ``saving``
once the node is back (start-up recovery, or ``imgmw-manage recover``), the
store keeps nothing of the unfinished upload (the file store's temporary
file included), and the upload can be retried. A live upload of another
process is never taken by a recovery. A node killed in the middle of a
``copy-image`` leaves its image ``active`` and locked: ``imgmw-manage
recover`` releases the lock at once, and a new copy is accepted.

The servers are real ``imgmw-api`` processes (gunicorn master and
workers) on a state directory and registry that outlive them, as a node's
disk and database outlive a crash. The body is sent on a raw socket from a
generator, never held whole, and the kill comes when about half of it has
reached the store. The registry is SQLite, or the database of
``IMGMW_TEST_DATABASE``.
"""

import glob
import os
import signal
import socket
import subprocess
import time
import typing

import fixtures
import requests
import sqlalchemy as sa
import testtools
from testtools import content

from tests import dbfixture
from tests.functional import base


MiB = base.MiB
BIG = 200 * MiB
WAIT = 60


class Node(base.ApiServer):
    """imgmw-api on a state directory that outlives it (a node's disk)."""

    def __init__(self, database_url: str, state_dir: str, **kwargs):
        super().__init__(database_url, **kwargs)
        self.shared_state_dir = state_dir

    def command(self) -> typing.List[str]:
        self.state_dir = self.shared_state_dir
        return super().command()

    def kill(self) -> None:
        """SIGKILL to the master and every worker: the node crashed."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=WAIT)


class Upload:
    """A PUT of ``size`` pattern bytes on a raw socket, sent in steps."""

    def __init__(self, port: int, image_id: str, size: int,
                 seed: str = 'crash'):
        self.size = size
        self.blocks = base.iter_pattern(size, seed)
        self.sent = 0
        self.sock = socket.create_connection(('127.0.0.1', port),
                                             timeout=base.REQUEST_TIMEOUT)
        head = ('PUT /v2/images/%s/file HTTP/1.1\r\n'
                'Host: 127.0.0.1:%d\r\n'
                'Content-Type: application/octet-stream\r\n'
                'Content-Length: %d\r\n\r\n' % (image_id, port, size))
        self.sock.sendall(head.encode('ascii'))

    def send(self, up_to: int) -> None:
        """Send the body until ``up_to`` bytes are out."""
        while self.sent < up_to:
            block = next(self.blocks)
            self.sock.sendall(block)
            self.sent += len(block)

    def finish(self) -> base.RawResponse:
        self.send(self.size)
        try:
            return base.FunctionalTest.read_raw(self.sock, 'PUT')
        finally:
            self.close()

    def close(self) -> None:
        self.sock.close()


class CrashTest(testtools.TestCase):
    """A registry and a state directory shared by successive servers."""

    def setUp(self) -> None:
        super().setUp()
        self.database = self.useFixture(dbfixture.Database())
        base.sync_database(self.database.url)
        self.state_dir = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state')
        self.datadir = os.path.join(self.state_dir, 'images')
        self.engine = sa.create_engine(self.database.url,
                                       poolclass=sa.pool.NullPool)
        self.addCleanup(self.engine.dispose)
        self.nodes = []
        self.addOnException(self._attach_logs)

    def _attach_logs(self, exc_info) -> None:
        for number, node in enumerate(self.nodes):
            self.addDetail('imgmw-api-%d.log' % number,
                           content.text_content(node.log()))

    def start_node(self, **options: str) -> Node:
        node = Node(self.database.url, self.state_dir, options=options)
        self.nodes.append(node)
        return self.useFixture(node)

    # The registry and the store, seen from outside the servers.

    def row(self, image_id: str) -> dict:
        with self.engine.connect() as connection:
            return dict(connection.execute(
                sa.text('SELECT * FROM images WHERE id = :id'),
                {'id': image_id}).mappings().one())

    def partial_files(self, image_id: str) -> typing.List[str]:
        return glob.glob(os.path.join(self.datadir,
                                      '.%s.*.partial' % image_id))

    def store_files(self, image_id: str) -> typing.List[str]:
        """The image's files in the file store: whole or temporary."""
        whole = os.path.join(self.datadir, image_id)
        return self.partial_files(image_id) + (
            [whole] if os.path.exists(whole) else [])

    def wait(self, condition: typing.Callable[[], bool],
             what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                self.fail('timed out waiting until %s' % what)
            time.sleep(0.05)

    def written(self, image_id: str) -> int:
        sizes = []
        for path in self.partial_files(image_id):
            try:
                sizes.append(os.path.getsize(path))
            except FileNotFoundError:
                pass
        return max(sizes, default=0)

    # HTTP.

    def create_image(self, node: Node) -> str:
        resp = requests.post(node.url + '/v2/images', json={
            'name': self.id(), 'disk_format': 'raw',
            'container_format': 'bare'}, timeout=base.REQUEST_TIMEOUT)
        self.assertEqual(201, resp.status_code, resp.text)
        return resp.json()['id']

    def get_image(self, node: Node, image_id: str) -> dict:
        resp = requests.get(node.url + '/v2/images/%s' % image_id,
                            timeout=base.REQUEST_TIMEOUT)
        self.assertEqual(200, resp.status_code, resp.text)
        return resp.json()

    def half_upload(self, node: Node, image_id: str, size: int) -> Upload:
        """An upload stopped after half its body reached the store."""
        upload = Upload(node.port, image_id, size)
        self.addCleanup(upload.close)
        upload.send(size // 2)
        self.wait(lambda: self.written(image_id) >= size // 2 - 8 * MiB,
                  'half of the body is in the temporary file')
        self.assertEqual('saving', self.row(image_id)['status'])
        return upload

    def assert_left_nothing(self, node: Node, image_id: str) -> None:
        """Contract 3 invariants of a failed upload, after the crash."""
        image = self.get_image(node, image_id)
        self.assertEqual('queued', image['status'])
        for field in ('size', 'checksum', 'os_hash_value'):
            self.assertIsNone(image[field], field)
        row = self.row(image_id)
        self.assertEqual('queued', row['status'])
        for column in ('holder', 'held_since', 'heartbeat_at', 'size',
                       'checksum'):
            self.assertIsNone(row[column], column)
        self.assertEqual([], self.store_files(image_id))

    def assert_retry_succeeds(self, node: Node, image_id: str,
                              size: int) -> None:
        resp = requests.put(
            node.url + '/v2/images/%s/file' % image_id,
            data=base.PatternStream(size, 'retry'),
            headers={'Content-Type': 'application/octet-stream'},
            timeout=base.REQUEST_TIMEOUT)
        self.assertEqual(204, resp.status_code, resp.text)
        md5, sha512 = base.pattern_digests(size, 'retry')
        image = self.get_image(node, image_id)
        self.assertEqual(('active', size, md5, sha512), (
            image['status'], image['size'], image['checksum'],
            image['os_hash_value']))
        self.assertEqual([os.path.join(self.datadir, image_id)],
                         self.store_files(image_id))
        self.assertEqual(size, os.path.getsize(self.store_files(image_id)[0]))

    def manage(self, *argv: str) -> str:
        result = subprocess.run(
            [base.MANAGE_SCRIPT,
             '-o', 'database_connection=%s' % self.database.url,
             '-o', 'state_dir=%s' % self.state_dir] + list(argv),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            cwd=base.REPO, timeout=WAIT)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        return result.stdout


class TestKill(CrashTest):

    def test_node_killed_during_a_200_mib_upload(self):
        """Contract 3 invariants after kill -9 of master and workers.

        The restarted node's start-up recovery returns the image to
        ``queued`` and removes the temporary file; a retry succeeds.
        """
        node = self.start_node()
        image_id = self.create_image(node)
        upload = self.half_upload(node, image_id, BIG)
        holder = self.row(image_id)['holder']
        node.kill()
        upload.close()
        # The crash left the image saving, held by a dead worker, and half
        # of its data on disk: what recovery must repair.
        self.assertEqual(('saving', holder), (
            self.row(image_id)['status'], self.row(image_id)['holder']))
        self.assertNotEqual([], self.partial_files(image_id))

        restarted = self.start_node()
        self.assert_left_nothing(restarted, image_id)
        self.assert_retry_succeeds(restarted, image_id, BIG)

    def test_node_killed_during_an_upload_frees_its_quota(self):
        """Issue 17 item 3: a killed upload does not hold the quota.

        ``user_storage_quota`` holds one 200 MiB upload, not two. After
        kill -9 and a restart, the project's next upload (of another image)
        is stored at once: the dead upload's reservation no longer counts,
        where waiting for ``reservation_ttl`` would have made it a 413.
        """
        node = self.start_node(user_storage_quota='300MB')
        image_id = self.create_image(node)
        upload = self.half_upload(node, image_id, BIG)
        node.kill()
        upload.close()

        restarted = self.start_node(user_storage_quota='300MB')
        self.assert_left_nothing(restarted, image_id)
        self.assert_retry_succeeds(restarted, self.create_image(restarted),
                                   BIG)

    def test_worker_killed_master_replaces_it(self):
        """The streaming worker dies alone; its replacement recovers.

        gunicorn starts a new worker, whose start-up recovery finds the
        image held by a dead process of this host: queued, no data left,
        without restarting the server.
        """
        node = self.start_node()
        image_id = self.create_image(node)
        upload = self.half_upload(node, image_id, 64 * MiB)
        worker = int(self.row(image_id)['holder'].split(':')[1])
        self.assertNotEqual(node.process.pid, worker)
        os.kill(worker, signal.SIGKILL)
        upload.close()
        self.wait(lambda: self.row(image_id)['status'] == 'queued',
                  'a new worker recovers the image')
        self.assertIsNone(node.process.poll())
        self.assert_left_nothing(node, image_id)
        self.assert_retry_succeeds(node, image_id, 64 * MiB)


class TestRecoverCommand(CrashTest):

    def test_recover_takes_the_dead_upload_and_never_the_live_one(self):
        """imgmw-manage recover beside a live upload of another node.

        Node A streams an upload, paused half-way (alive, holding its
        image). Node B is killed during another upload and comes back with
        start-up recovery off. ``imgmw-manage recover`` returns B's image
        to ``queued`` and removes its temporary file, and leaves A's image
        ``saving`` with its holder and its temporary file; A's upload then
        completes.
        """
        node_a = self.start_node()
        node_b = self.start_node()
        live = self.create_image(node_a)
        crashed = self.create_image(node_b)
        live_upload = self.half_upload(node_a, live, 32 * MiB)
        live_holder = self.row(live)['holder']
        crashed_upload = self.half_upload(node_b, crashed, 32 * MiB)
        node_b.kill()
        crashed_upload.close()
        node_b = self.start_node(recover_stale_uploads='false')
        self.assertEqual('saving', self.get_image(node_b, crashed)['status'])
        self.assertEqual('saving', self.row(live)['status'])

        output = self.manage('recover')
        self.assertIn('%s: saving -> queued' % crashed, output)
        self.assertNotIn(live, output)
        self.assert_left_nothing(node_b, crashed)
        row = self.row(live)
        self.assertEqual(('saving', live_holder),
                         (row['status'], row['holder']))
        self.assertNotEqual([], self.partial_files(live))

        resp = live_upload.finish()
        self.assertEqual(204, resp.status, resp.body)
        md5, sha512 = base.pattern_digests(32 * MiB, 'crash')
        image = self.get_image(node_b, live)
        self.assertEqual(('active', md5, sha512), (
            image['status'], image['checksum'], image['os_hash_value']))
        self.assert_retry_succeeds(node_a, crashed, 8 * MiB)

    def test_sweep_after_a_crash_with_recovery_off(self):
        """sweep leaves a crashed upload to recover.

        With start-up recovery off, the crashed image stays ``saving``:
        ``sweep --apply`` keeps its temporary file (an upload in progress is
        never an orphan, even with no grace period). ``recover`` removes it
        with the image back to ``queued``; ``sweep`` then finds nothing.
        """
        node = self.start_node(recover_stale_uploads='false')
        image_id = self.create_image(node)
        upload = self.half_upload(node, image_id, 16 * MiB)
        node.kill()
        upload.close()
        node = self.start_node(recover_stale_uploads='false')
        output = self.manage('sweep', '--older-than', '0', '--apply')
        self.assertIn('0 orphan(s) found', output)
        self.assertNotEqual([], self.partial_files(image_id))
        self.manage('recover')
        self.assertIn('0 orphan(s) found',
                      self.manage('sweep', '--older-than', '0'))
        self.assert_left_nothing(node, image_id)


MULTI_STORE = """
[store:fast]
filesystem_store_datadir = %(state)s/fast

[store:cheap]
filesystem_store_datadir = %(state)s/cheap
"""
STORES = {'enabled_backends': 'fast:file, cheap:file',
          'default_backend': 'fast'}


class TestKillCopy(CrashTest):
    """copy-image: the node killed mid-copy, recovered, copied again."""

    def start_multi_store_node(self, **options: str) -> Node:
        node = Node(self.database.url, self.state_dir,
                    options=dict(STORES, **options),
                    extra_config=MULTI_STORE % {'state': self.state_dir})
        self.nodes.append(node)
        return self.useFixture(node)

    def cheap_files(self, image_id: str) -> typing.List[str]:
        directory = os.path.join(self.state_dir, 'cheap')
        return [name for name in os.listdir(directory) if image_id in name]

    def copied_bytes(self, image_id: str) -> int:
        sizes = [0]
        for name in self.cheap_files(image_id):
            try:
                sizes.append(os.path.getsize(
                    os.path.join(self.state_dir, 'cheap', name)))
            except FileNotFoundError:
                pass
        return max(sizes)

    def properties(self, image_id: str) -> typing.Dict[str, str]:
        with self.engine.connect() as connection:
            return dict(connection.execute(sa.text(
                'SELECT name, value FROM image_properties '
                'WHERE image_id = :id'), {'id': image_id}).all())

    def copy(self, node: Node, image_id: str) -> requests.Response:
        return requests.post(
            node.url + '/v2/images/%s/import' % image_id,
            json={'method': {'name': 'copy-image'}, 'stores': ['cheap']},
            timeout=base.REQUEST_TIMEOUT)

    def test_node_killed_during_a_copy(self):
        """The dead copy's lock is released by recover, not after 300 s.

        kill -9 of the node while it copies a 200 MiB image into
        ``cheap``; it comes back with start-up recovery off, and a new
        copy is refused (409: the dead copy's lock is fresh).
        ``imgmw-manage recover`` releases it at once: ``cheap`` is failed,
        no longer importing, and holds nothing of the image; the image is
        ``active`` in ``fast`` as before. A new copy is accepted at once
        and completes.
        """
        node = self.start_multi_store_node()
        image_id = self.create_image(node)
        resp = requests.put(
            node.url + '/v2/images/%s/file' % image_id,
            data=base.PatternStream(BIG, 'copy'),
            headers={'Content-Type': 'application/octet-stream'},
            timeout=base.REQUEST_TIMEOUT)
        self.assertEqual(204, resp.status_code, resp.text)
        resp = self.copy(node, image_id)
        self.assertEqual(202, resp.status_code, resp.text)
        self.wait(lambda: self.copied_bytes(image_id) >= 4 * MiB,
                  'the copy wrote 4 MiB into cheap')
        node.kill()
        properties = self.properties(image_id)
        self.assertEqual('cheap',
                         properties.get('os_glance_importing_to_stores'),
                         'the copy ended before the kill')
        self.assertIn('os_glance_import_task', properties)
        self.assertNotEqual([], self.cheap_files(image_id))

        node = self.start_multi_store_node(recover_stale_uploads='false')
        resp = self.copy(node, image_id)
        self.assertEqual(409, resp.status_code, resp.text)
        self.assertIn('Image has active task', resp.text)

        output = self.manage('--config-file', node.config_file,
                             '-o', 'enabled_backends=%s'
                             % STORES['enabled_backends'],
                             '-o', 'default_backend=fast', 'recover')
        self.assertIn('%s: copy %s released, failed in cheap' % (
            image_id, properties['os_glance_import_task']), output)
        image = self.get_image(node, image_id)
        self.assertEqual(('active', 'fast', '', 'cheap'), (
            image['status'], image['stores'],
            image['os_glance_importing_to_stores'],
            image['os_glance_failed_import']))
        self.assertNotIn('os_glance_import_task', image)
        self.assertEqual([], self.cheap_files(image_id))

        resp = self.copy(node, image_id)
        self.assertEqual(202, resp.status_code, resp.text)
        self.wait(lambda: 'os_glance_import_task' not in self.get_image(
            node, image_id), 'the new copy ends')
        image = self.get_image(node, image_id)
        self.assertEqual(('fast,cheap', '', ''), (
            image['stores'], image['os_glance_importing_to_stores'],
            image['os_glance_failed_import']))
        self.assertEqual([image_id], self.cheap_files(image_id))
        self.assertEqual(BIG, os.path.getsize(
            os.path.join(self.state_dir, 'cheap', image_id)))
        resp = requests.get(node.url + '/v2/images/%s/tasks' % image_id,
                            timeout=base.REQUEST_TIMEOUT)
        self.assertEqual(['failure', 'success'],
                         [task['status'] for task in resp.json()['tasks']])
