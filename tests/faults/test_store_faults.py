"""Store faults through the real imgmw-api (contract 3.20, 3.21, section 3).

Each test causes one fault for real and then checks the invariants of
contract section 3 from outside the server: the answer, the image
``queued`` with no size nor checksums (in the API and in the registry's
row), nothing of it left in the store, and a retry that works once the
fault is gone.

=====================  ====================================================
fault                  how it is caused
=====================  ====================================================
store full             the file store's directory is an 8 MiB tmpfs
                       mounted by the test (root, as in CI); without root,
                       (or with ``IMGMW_TEST_NO_MOUNT=1``), the server
                       runs under ``prlimit --fsize`` (writes past the
                       limit fail with ``EFBIG``) and the test that frees
                       space is skipped
write denied           the tmpfs remounted read-only (``EROFS``); without
                       root, the directory made ``0555``
S3 unreachable         the s3 store talks to moto through
                       :class:`tests.faults.proxy.FaultProxy`, which is cut
                       (connections refused) and restored
S3 errors mid-upload   the proxy answers ``500 InternalError``, cuts the
                       connection, or loses the answer, for ``UploadPart``
                       or ``CompleteMultipartUpload`` requests
=====================  ====================================================
"""

import os
import shutil
import subprocess
import time
import typing
import urllib.parse

import fixtures
import sqlalchemy as sa

from tests import dbfixture
from tests.faults import proxy as proxy_mod
from tests.functional import base
from tests import s3fixture


MiB = base.MiB
TMPFS_MIB = 8
PART_MIB = 5


def can_mount() -> bool:
    """Root with mount(8), unless ``IMGMW_TEST_NO_MOUNT`` is set."""
    if os.environ.get('IMGMW_TEST_NO_MOUNT'):
        return False
    return os.geteuid() == 0 and shutil.which('mount') is not None


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


class Tmpfs(fixtures.Fixture):
    """A tmpfs of ``size_mib`` MiB on ``path``, unmounted at cleanup."""

    def __init__(self, path: str, size_mib: int):
        super().__init__()
        self.path = path
        self.size_mib = size_mib

    def _setUp(self) -> None:
        os.makedirs(self.path, exist_ok=True)
        run('mount', '-t', 'tmpfs', '-o', 'size=%dm,mode=0755'
            % self.size_mib, 'imgmw-faults', self.path)
        self.addCleanup(self._unmount)

    def _unmount(self) -> None:
        try:
            run('umount', self.path)
        except subprocess.CalledProcessError:
            run('umount', '-l', self.path)

    def set_read_only(self, read_only: bool) -> None:
        run('mount', '-o', 'remount,%s' % ('ro' if read_only else 'rw'),
            self.path)


class LimitedApiServer(base.ApiServer):
    """imgmw-api whose files may not grow past ``fsize`` bytes."""

    def __init__(self, *args, fsize: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fsize = fsize

    def command(self) -> typing.List[str]:
        return ['prlimit', '--fsize=%d' % self.fsize, '--'] + (
            super().command())


class StoreFaultTest(base.FunctionalTest):
    """One server per class, built by :meth:`make_server`."""

    @classmethod
    def setUpClass(cls) -> None:
        # base.FunctionalTest.setUpClass, with the class's own server.
        super(base.FunctionalTest, cls).setUpClass()
        cls.fixtures = fixtures.Fixture()
        cls.fixtures.setUp()
        try:
            cls.database = cls.fixtures.useFixture(
                dbfixture.Database())
            base.sync_database(cls.database.url)
            cls.prepare()
            cls.server = cls.fixtures.useFixture(cls.make_server())
        except BaseException:
            cls.fixtures.cleanUp()
            raise
        cls.registry = sa.create_engine(cls.database.url,
                                        poolclass=sa.pool.NullPool)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.dispose()
        cls.fixtures.cleanUp()
        super(base.FunctionalTest, cls).tearDownClass()

    @classmethod
    def prepare(cls) -> None:
        """Set up what the server needs before it starts."""

    @classmethod
    def make_server(cls) -> base.ApiServer:
        return base.ApiServer(cls.database.url, options=cls.server_options,
                              extra_config=cls.server_config)

    def new_image(self) -> str:
        """A queued image, deleted (its data with it) after the test."""
        image_id = self.create_image()['id']
        self.addCleanup(self.request, 'DELETE', '/v2/images/%s' % image_id)
        return image_id

    def upload_pattern(self, image_id: str, size: int):
        # The server may answer before the body ends, then close the
        # connection (gunicorn drains 64 KiB at most): no reuse of it.
        return self.upload(image_id, base.PatternStream(size, image_id),
                           headers={'Connection': 'close'})

    def assert_uploads_fine(self, image_id: str, size: int) -> None:
        resp = self.upload_pattern(image_id, size)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image_id, size,
                                *base.pattern_digests(size, image_id))


class FileStoreDirTest(StoreFaultTest):
    """A file store whose directory the test controls (:attr:`datadir`)."""

    tmpfs_mib = TMPFS_MIB

    @classmethod
    def prepare(cls) -> None:
        cls.datadir = cls.fixtures.useFixture(fixtures.TempDir()).path
        cls.datadir = os.path.join(cls.datadir, 'images')
        cls.tmpfs = None
        if can_mount():
            cls.tmpfs = cls.fixtures.useFixture(
                Tmpfs(cls.datadir, cls.tmpfs_mib))
        else:
            os.makedirs(cls.datadir)
        cls.server_options = {'filesystem_store_datadir': cls.datadir}

    def store_contents(self) -> typing.List[str]:
        """Every entry of the store's directory, hidden ones included."""
        return sorted(os.listdir(self.datadir))

    def assert_failed_upload_left_nothing(self, image_id: str) -> None:
        super().assert_failed_upload_left_nothing(image_id)
        self.assertEqual([], [name for name in self.store_contents()
                              if image_id in name])


class TestStoreFull(FileStoreDirTest):
    """Contract 3.20: the store's file system is full."""

    @classmethod
    def make_server(cls) -> base.ApiServer:
        if cls.tmpfs is not None:
            return super().make_server()
        return LimitedApiServer(cls.database.url, options=cls.server_options,
                                extra_config=cls.server_config,
                                fsize=TMPFS_MIB * MiB)

    def test_upload_larger_than_the_store_is_413_3_20(self):
        image_id = self.new_image()
        resp = self.upload_pattern(image_id, (TMPFS_MIB + 4) * MiB)
        full = ('No space left on device' if self.tmpfs is not None
                else 'File too large')
        self.assert_error(resp, 413, 'Image storage media is full: store '
                          'default: %s' % full)
        self.assert_failed_upload_left_nothing(image_id)
        self.assertEqual([], self.store_contents())
        # What fits is stored: the failure did not break the store.
        self.assert_uploads_fine(image_id, 2 * MiB)

    def test_retry_after_freeing_space_succeeds_3_20(self):
        if self.tmpfs is None:
            self.skipTest('needs a tmpfs of its own: run as root')
        ballast = os.path.join(self.datadir, 'ballast')
        free = os.statvfs(self.datadir)
        with open(ballast, 'wb') as out:
            out.write(b'\0' * (free.f_bavail * free.f_frsize - 3 * MiB))
        self.addCleanup(lambda: os.path.exists(ballast)
                        and os.unlink(ballast))
        image_id = self.new_image()
        resp = self.upload_pattern(image_id, 4 * MiB)
        self.assert_error(resp, 413, 'Image storage media is full: store '
                          'default: No space left on device')
        self.assert_failed_upload_left_nothing(image_id)
        self.assertEqual(['ballast'], self.store_contents())
        os.unlink(ballast)
        self.assert_uploads_fine(image_id, 4 * MiB)
        self.assertEqual([image_id], self.store_contents())


class TestWriteDenied(FileStoreDirTest):
    """Contract 3.21: the store's directory refuses writes."""

    tmpfs_mib = 64

    def deny_writes(self) -> str:
        """Make the directory refuse writes; the error the store meets."""
        if self.tmpfs is not None:
            self.tmpfs.set_read_only(True)
            self.addCleanup(self.tmpfs.set_read_only, False)
            return 'Read-only file system'
        if os.geteuid() == 0:
            self.skipTest('needs a tmpfs of its own: root ignores modes')
        os.chmod(self.datadir, 0o555)
        self.addCleanup(os.chmod, self.datadir, 0o755)
        return 'Permission denied'

    def allow_writes(self) -> None:
        if self.tmpfs is not None:
            self.tmpfs.set_read_only(False)
        else:
            os.chmod(self.datadir, 0o755)

    def test_read_only_store_is_503_then_recovers_3_21(self):
        image_id = self.new_image()
        reason = self.deny_writes()
        resp = self.upload_pattern(image_id, 3 * MiB)
        self.assert_error(resp, 503, 'Image storage is unavailable: store '
                          'default: %s' % reason)
        self.assert_failed_upload_left_nothing(image_id)
        self.assertEqual([], self.store_contents())
        self.allow_writes()
        self.assert_uploads_fine(image_id, 3 * MiB)
        self.assertEqual([image_id], self.store_contents())


def is_upload_part(number: int) -> proxy_mod.Predicate:
    def picks(line: proxy_mod.RequestLine) -> bool:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(
            line.target).query)
        return (line.method == 'PUT'
                and query.get('partNumber') == [str(number)])
    return picks


def is_complete(line: proxy_mod.RequestLine) -> bool:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(line.target).query)
    return line.method == 'POST' and 'uploadId' in query


def is_abort(line: proxy_mod.RequestLine) -> bool:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(line.target).query)
    return line.method == 'DELETE' and 'uploadId' in query


class TestS3Faults(StoreFaultTest):
    """Contract 3.21 for the s3 store behind a fault proxy.

    The store is moto, or Swift's s3api with ``IMGMW_TEST_S3=swift``.
    """

    server_options = {'enabled_backends': 'objects:s3',
                      'default_backend': 'objects'}

    @classmethod
    def prepare(cls) -> None:
        cls.moto = cls.fixtures.useFixture(s3fixture.server())
        cls.bucket = cls.moto.make_bucket()
        cls.proxy = proxy_mod.FaultProxy(('127.0.0.1', cls.moto.port),
                                         http=True)
        cls.proxy.start()
        cls.fixtures.addCleanup(cls.proxy.stop)
        cls.server_config = '\n'.join([
            '[store:objects]',
            's3_store_host = http://127.0.0.1:%d' % cls.proxy.port,
            's3_store_access_key = %s' % cls.moto.access_key,
            's3_store_secret_key = %s' % cls.moto.secret_key,
            's3_store_bucket = %s' % cls.bucket,
            's3_store_large_object_size = %d' % PART_MIB,
            's3_store_large_object_chunk_size = %d' % PART_MIB,
            ''])

    def setUp(self) -> None:
        super().setUp()
        self.proxy.reset()
        self.addCleanup(self.proxy.reset)
        self.addCleanup(self.proxy.restore)

    def assert_failed_upload_left_nothing(self, image_id: str) -> None:
        super().assert_failed_upload_left_nothing(image_id)
        self.assertNotIn(image_id, self.moto.keys(self.bucket))
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))

    def assert_uploads_fine(self, image_id: str, size: int) -> None:
        super().assert_uploads_fine(image_id, size)
        self.assertEqual(b''.join(base.iter_pattern(size, image_id)),
                         self.moto.get(self.bucket, image_id))
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))

    def test_unreachable_endpoint_is_503_then_recovers_3_21(self):
        image_id = self.new_image()
        self.proxy.cut()
        resp = self.upload_pattern(image_id, MiB)
        self.assert_error(resp, 503, 'Image storage is unavailable: store '
                          'objects: the object store cannot be reached')
        self.proxy.restore()
        self.assert_failed_upload_left_nothing(image_id)
        self.assert_uploads_fine(image_id, MiB)

    def fail_mid_upload(self, predicate: proxy_mod.Predicate, mode: str,
                        message: str, times: int = 1 << 30) -> str:
        """A three-part upload, ``predicate``'s requests failing."""
        image_id = self.new_image()
        self.proxy.fail_requests(predicate, mode, times)
        resp = self.upload_pattern(image_id, 2 * PART_MIB * MiB + 1)
        self.assert_error(resp, 503, 'Image storage is unavailable: store '
                          'objects: %s' % message)
        self.assertGreater(self.proxy.faults_injected(), 0)
        self.assert_failed_upload_left_nothing(image_id)
        self.proxy.clear_faults()
        return image_id

    def test_upload_part_answers_500_3_21(self):
        image_id = self.fail_mid_upload(is_upload_part(2), proxy_mod.ERROR,
                                        'InternalError')
        # botocore's retries met the same 500.
        self.assertGreater(sum(map(is_upload_part(2), self.proxy.requests)),
                           1)
        self.assert_uploads_fine(image_id, 2 * PART_MIB * MiB + 1)

    def test_upload_part_connection_cut_3_21(self):
        image_id = self.fail_mid_upload(
            is_upload_part(3), proxy_mod.DROP,
            'the object store cannot be reached')
        self.assert_uploads_fine(image_id, 2 * PART_MIB * MiB + 1)

    def test_complete_answers_500_3_21(self):
        image_id = self.fail_mid_upload(is_complete, proxy_mod.ERROR,
                                        'InternalError')
        self.assert_uploads_fine(image_id, 2 * PART_MIB * MiB + 1)

    def test_endpoint_lost_mid_multipart_abort_retried_later_3_21(self):
        """The store goes away mid-upload, so the abort fails too.

        The image is queued at once; the unfinished upload is aborted in
        the background as soon as the store answers again.
        """
        image_id = self.new_image()
        self.proxy.fail_requests(is_upload_part(2), proxy_mod.DROP)
        # The abort right away fails, botocore's own retries included, and
        # so does the first round in the background.
        self.proxy.fail_requests(is_abort, proxy_mod.DROP, 6)
        resp = self.upload_pattern(image_id, 2 * PART_MIB * MiB + 1)
        self.assert_error(resp, 503, 'Image storage is unavailable: store '
                          'objects: the object store cannot be reached')
        deadline = time.monotonic() + 30
        # A real S3's listing may lag (Swift updates its container
        # listings asynchronously under load): wait for the retrier's word
        # as well.
        while ((self.moto.unfinished_uploads(self.bucket)
                or 'Aborted the multipart upload' not in self.server.log())
               and time.monotonic() < deadline):
            time.sleep(0.2)
        self.assertGreater(sum(map(is_abort, self.proxy.requests)), 6)
        self.assertIn('cannot abort the multipart upload', self.server.log())
        self.assertIn('Aborted the multipart upload', self.server.log())
        self.assert_failed_upload_left_nothing(image_id)
        self.proxy.clear_faults()
        self.assert_uploads_fine(image_id, 2 * PART_MIB * MiB + 1)

    def test_complete_answer_lost_is_retried_3_24(self):
        """The service completed the object, the answer never came.

        botocore sends the completion again; S3 (and moto) answer a
        repeated completion of a completed upload with success, so the
        upload succeeds, with the whole data and no unfinished upload.
        """
        image_id = self.new_image()
        self.proxy.fail_requests(is_complete, proxy_mod.LOSE_ANSWER, 1)
        self.assert_uploads_fine(image_id, 2 * PART_MIB * MiB + 1)
        self.assertEqual(1, self.proxy.faults_injected())
        self.assertEqual(2, sum(map(is_complete, self.proxy.requests)))
