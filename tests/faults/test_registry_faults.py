"""Registry faults through the real imgmw-api (contract 3.22).

The server's registry is PostgreSQL (127.0.0.1:5432, as in CI), reached
through :class:`tests.faults.proxy.FaultProxy`. :meth:`FaultProxy.cut`
breaks every open connection and refuses new ones, as a database server
that stopped or restarts; :meth:`FaultProxy.restore` brings it back. The
tests look at the registry's rows directly, on the real port, and check
that the server answers 503 ``Image registry is unavailable.`` while the
database is away, never a 500, and serves again by itself, without a
restart, once it is back.
"""

import threading
import time
import typing

import requests
import sqlalchemy as sa

from tests import dbfixture
from tests.faults import proxy as proxy_mod
from tests.functional import base


MiB = base.MiB
UNAVAILABLE = 'Image registry is unavailable.'
POSTGRESQL = ('127.0.0.1', 5432)


class RegistryFaultTest(base.FunctionalTest):
    """One server per class, its registry behind a fault proxy."""

    @classmethod
    def setUpClass(cls) -> None:
        # base.FunctionalTest.setUpClass, with the registry proxied.
        super(base.FunctionalTest, cls).setUpClass()
        cls.database = dbfixture.Database('postgresql')
        cls.database.setUp()
        cls.proxy = proxy_mod.FaultProxy(POSTGRESQL)
        try:
            base.sync_database(cls.database.url)
            cls.proxy.start()
            url = sa.engine.make_url(cls.database.url).set(
                port=cls.proxy.port)
            cls.server = base.ApiServer(
                url.render_as_string(hide_password=False),
                options=cls.server_options)
            cls.server.setUp()
        except BaseException:
            cls.proxy.stop()
            cls.database.cleanUp()
            raise
        cls.registry = sa.create_engine(cls.database.url,
                                        poolclass=sa.pool.NullPool)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.dispose()
        cls.server.cleanUp()
        cls.proxy.stop()
        cls.database.cleanUp()
        super(base.FunctionalTest, cls).tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.addCleanup(self.proxy.restore)

    def upload_pattern(self, image_id: str, size: int):
        return self.upload(image_id, base.PatternStream(size, image_id),
                           headers={'Connection': 'close'})

    def assert_retry_succeeds(self, image_id: str, size: int) -> None:
        resp = self.upload_pattern(image_id, size)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image_id, size,
                                *base.pattern_digests(size, image_id))
        self.assertEqual(1, len(self.image_files(image_id)))


class TestRegistryUnreachable(RegistryFaultTest):

    def test_requests_answer_503_then_recover_3_22(self):
        image_id = self.create_image()['id']
        pid = self.server.process.pid
        self.proxy.cut()
        self.assert_error(self.request('GET', '/v2/images/%s' % image_id),
                          503, UNAVAILABLE)
        self.assert_error(self.request('GET', '/v2/images'), 503,
                          UNAVAILABLE)
        self.assert_error(self.request('POST', '/v2/images', json={
            'name': 'lost', 'disk_format': 'raw',
            'container_format': 'bare'}), 503, UNAVAILABLE)
        self.assert_error(self.upload_pattern(image_id, MiB), 503,
                          UNAVAILABLE)
        with self.registry.connect() as connection:
            names = connection.execute(
                sa.text('SELECT name FROM images')).scalars().all()
        self.assertNotIn('lost', names)
        self.proxy.restore()
        # Back by itself (pool_pre_ping), the same server.
        self.assertEqual('queued', self.get_image(image_id)['status'])
        self.assertEqual(pid, self.server.process.pid)
        self.assert_failed_upload_left_nothing(image_id)
        self.assert_retry_succeeds(image_id, MiB)

    def test_registry_lost_mid_upload_3_22(self):
        """The database goes away while the data streams.

        The upload ends 503. Whether its last change reached the database
        is unknown until the database answers again, so its data is kept
        until then (an active image never loses its data); as soon as the
        database is back, the data is removed and the image is ``queued``.
        """
        image_id = self.create_image()['id']
        cut = threading.Event()

        def body() -> typing.Iterator[bytes]:
            yield b'x' * MiB
            deadline = time.monotonic() + 30
            while (self.registry_row(image_id)['status'] != 'saving'
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            self.proxy.cut()
            cut.set()
            # Small: all of it is sent before the answer comes.
            yield b'y' * 1024

        resp = self.upload(image_id, body(), chunked=True,
                           headers={'Connection': 'close'})
        self.assertTrue(cut.is_set())
        self.assert_error(resp, 503, UNAVAILABLE)
        self.proxy.restore()
        self.assert_failed_upload_left_nothing(image_id)
        self.assert_retry_succeeds(image_id, MiB)


class TestRegistryRestartUnderLoad(RegistryFaultTest):

    def load(self, stop: threading.Event, answers: list,
             uploads: typing.Dict[str, int]) -> None:
        """Reads, creations and uploads, until ``stop``."""
        with requests.Session() as http:
            while not stop.is_set():
                for method, path, kwargs in (
                        ('GET', '/v2/images', {}),
                        ('POST', '/v2/images', {'json': {
                            'name': 'load', 'disk_format': 'raw',
                            'container_format': 'bare'}})):
                    resp = http.request(method, self.url(path), timeout=60,
                                        **kwargs)
                    answers.append((method, resp.status_code, resp.text))
                if resp.status_code != 201:
                    continue
                image_id = resp.json()['id']
                resp = http.put(
                    self.url('/v2/images/%s/file' % image_id),
                    data=base.PatternStream(256 * 1024, image_id),
                    timeout=60, headers={
                        'Content-Type': 'application/octet-stream',
                        'Connection': 'close'})
                answers.append(('PUT', resp.status_code, resp.text))
                uploads[image_id] = resp.status_code

    def test_no_500_during_outages_and_recovery_after_3_22(self):
        stop = threading.Event()
        answers: typing.List[typing.Tuple[str, int, str]] = []
        uploads: typing.Dict[str, int] = {}
        threads = [threading.Thread(target=self.load,
                                    args=(stop, answers, uploads))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for outage in range(3):
                time.sleep(1)
                self.proxy.cut()
                time.sleep(1)
                self.proxy.restore()
            time.sleep(1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(120)
        statuses = {status for _, status, _ in answers}
        self.assertEqual(set(), statuses - {200, 201, 204, 503}, [
            answer for answer in answers
            if answer[1] not in (200, 201, 204, 503)])
        self.assertIn(503, statuses)
        for method, status, text in answers:
            if status == 503:
                self.assertIn(UNAVAILABLE, text)
        self.assertIn(204, uploads.values())
        # Served again by every worker; every image as its answer says.
        for _ in range(10):
            self.assertEqual(200, self.request('GET', '/v2/images').
                             status_code)
        size = 256 * 1024
        for image_id, status in uploads.items():
            if status == 204 or self.committed_unanswered(image_id):
                self.assert_active_with(image_id, size,
                                        *base.pattern_digests(size, image_id))
                self.assertEqual(1, len(self.image_files(image_id)))
            else:
                self.assert_failed_upload_left_nothing(image_id)
                self.assert_retry_succeeds(image_id, size)

    def committed_unanswered(self, image_id: str) -> bool:
        """Whether a 503 upload's commit reached the database all the same.

        A connection cut after the database made the change and before it
        said so: the server cannot know, answers 503, and keeps the data;
        the image is active with exactly the bytes sent (checked by the
        caller). Otherwise the image settles to queued with nothing.
        """
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.get_image(image_id)['status']
            if status != 'saving':
                return status == 'active'
            time.sleep(0.05)
        self.fail('image %s still saving' % image_id)
