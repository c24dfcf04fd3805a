"""The functional-test harness: a real imgmw-api on a real loopback socket.

:class:`ApiServer` starts the ``imgmw-api`` console script of the running
virtualenv as a subprocess, on a free loopback port, with a temporary state
directory and the registry URL of :class:`tests.dbfixture.Database` (SQLite
by default, PostgreSQL or MySQL with ``IMGMW_TEST_DATABASE``). It waits for
``/healthcheck`` and stops the server at clean-up; the server's log stays in
the temporary directory and is attached to any failing test.

:class:`FunctionalTest` starts one server per test class and offers HTTP
helpers (``create_image``, ``upload``, ``download``, ``raw_request`` for
bodies cut short) and direct views of the store directory and the registry,
to assert the contract's invariants from outside the server.
"""

import hashlib
import http.client
import io
import os
import random
import socket
import subprocess
import sys
import time
import typing

import fixtures
import requests
import sqlalchemy as sa
import testtools
from testtools import content

from tests import dbfixture
from tests import processes


REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PASTE_FILE = os.path.join(REPO, 'etc', 'api-paste.ini')
API_SCRIPT = os.path.join(os.path.dirname(sys.executable), 'imgmw-api')
MANAGE_SCRIPT = os.path.join(os.path.dirname(sys.executable), 'imgmw-manage')

MiB = 1 << 20
START_TIMEOUT = 60
REQUEST_TIMEOUT = 120
DATABASE_FILES = ('imgmw.sqlite', 'imgmw.sqlite-wal', 'imgmw.sqlite-shm',
                  'imgmw.sqlite-journal')


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def wait_for_status(test: testtools.TestCase,
                    get_image: typing.Callable[[str], dict], image_id: str,
                    status: str, timeout: float = 30) -> dict:
    """The image, once ``get_image`` shows it in ``status``.

    Fails after ``timeout`` seconds, showing the image as last read.
    """
    deadline = time.monotonic() + timeout
    while True:
        image = get_image(image_id)
        if image['status'] == status or time.monotonic() > deadline:
            test.assertEqual(status, image['status'], image)
            return image
        time.sleep(0.05)


class ServerFailed(AssertionError):
    """imgmw-api exited or did not answer; the message holds its log."""


class ApiServer(fixtures.Fixture):
    """``imgmw-api`` serving ``pipeline`` on 127.0.0.1.

    :param database_url: the registry (``-o database_connection=``).
    :param options: more ``-o`` overrides of ``[DEFAULT]``.
    :param extra_config: sections appended to the server's copy of
        ``etc/api-paste.ini`` (``[store:<id>]``, ...); ``%(here)s`` is the
        temporary directory, whose ``state`` is the state directory.
    :param args: more command-line arguments.
    """

    def __init__(self, database_url: str, pipeline: str = 'noauth',
                 options: typing.Optional[typing.Mapping[str, str]] = None,
                 extra_config: str = '', args: typing.Sequence[str] = (),
                 workers: int = 2):
        super().__init__()
        self.database_url = database_url
        self.pipeline = pipeline
        self.options = dict(options or {})
        self.extra_config = extra_config
        self.args = list(args)
        self.workers = workers
        self.process = None
        self.port = None

    def _setUp(self) -> None:
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        self.state_dir = os.path.join(self.tempdir, 'state')
        self.log_path = os.path.join(self.tempdir, 'imgmw-api.log')
        self.config_file = os.path.join(self.tempdir, 'api-paste.ini')
        with open(PASTE_FILE) as shipped, open(self.config_file, 'w') as copy:
            copy.write(shipped.read() + '\n' + self.extra_config)
        for attempt in range(3):
            self._start()
            if self._wait_ready():
                return
            if 'Address already in use' not in self.log():
                break
        raise ServerFailed('imgmw-api did not start (exit status %s):\n%s'
                           % (self.process.poll(), self.log()))

    @property
    def url(self) -> str:
        return 'http://127.0.0.1:%d' % self.port

    def command(self) -> typing.List[str]:
        command = [API_SCRIPT, '--config-file', self.config_file,
                   '--pipeline', self.pipeline,
                   '--bind', '127.0.0.1:%d' % self.port,
                   '--workers', str(self.workers),
                   '--state-dir', self.state_dir,
                   '-o', 'database_connection=%s' % self.database_url]
        for key, value in sorted(self.options.items()):
            command += ['-o', '%s=%s' % (key, value)]
        return command + self.args

    def _start(self) -> None:
        self.port = free_port()
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        self.addCleanup(self._stop, self.process)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                resp = requests.get(self.url + '/healthcheck', timeout=5)
            except (requests.ConnectionError, requests.Timeout):
                # Refused before the bind; unanswered while the workers
                # load the pipeline, which takes long on a busy machine.
                time.sleep(0.1)
                continue
            if resp.status_code == 200:
                return True
            time.sleep(0.1)
        return False

    def _stop(self, process: subprocess.Popen) -> None:
        processes.stop(process)

    def log(self) -> str:
        try:
            with open(self.log_path, errors='replace') as log:
                return log.read()
        except FileNotFoundError:
            return ''

    def files(self) -> typing.List[str]:
        """Every file in the state directory but the SQLite registry."""
        found = []
        for top, _dirs, names in os.walk(self.state_dir):
            found.extend(os.path.join(top, name) for name in names
                         if name not in DATABASE_FILES)
        return sorted(found)


def pattern_block(seed: str, index: int, size: int = MiB) -> bytes:
    """Block ``index`` of a reproducible pseudo-random byte stream."""
    return random.Random('%s:%d' % (seed, index)).randbytes(size)


def iter_pattern(size: int, seed: str = 'imgmw',
                 block: int = MiB) -> typing.Iterator[bytes]:
    """``size`` bytes of the stream ``seed``, one block at a time."""
    index = 0
    while size > 0:
        chunk = pattern_block(seed, index, block)[:size]
        yield chunk
        size -= len(chunk)
        index += 1


def pattern_digests(size: int, seed: str = 'imgmw'
                    ) -> typing.Tuple[str, str]:
    """MD5 and SHA-512 (hex) of ``iter_pattern(size, seed)``."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha512 = hashlib.sha512()
    for chunk in iter_pattern(size, seed):
        md5.update(chunk)
        sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


class PatternStream(io.RawIOBase):
    """A sized, readable stream of :func:`iter_pattern`.

    requests sends it with ``Content-Length`` and never holds it whole.
    """

    def __init__(self, size: int, seed: str = 'imgmw'):
        super().__init__()
        self.size = size
        self._chunks = iter_pattern(size, seed)
        self._pending = b''

    def __len__(self) -> int:
        return self.size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size
        while len(self._pending) < size:
            chunk = next(self._chunks, b'')
            if not chunk:
                break
            self._pending += chunk
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class RawResponse(typing.NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class FunctionalTest(testtools.TestCase):
    """One real server per test class; HTTP and inspection helpers."""

    #: ``-o`` overrides for this class's server.
    server_options: typing.Mapping[str, str] = {}
    #: Sections appended to its paste file (see :class:`ApiServer`).
    server_config = ''
    #: More command-line arguments of its ``imgmw-api``.
    server_args: typing.Sequence[str] = ()
    pipeline = 'noauth'

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.database = dbfixture.Database()
        cls.database.setUp()
        try:
            sync_database(cls.database.url)
            cls.server = ApiServer(cls.database.url, pipeline=cls.pipeline,
                                   options=cls.server_options,
                                   extra_config=cls.server_config,
                                   args=cls.server_args)
            cls.server.setUp()
        except BaseException:
            cls.database.cleanUp()
            raise
        cls.registry = sa.create_engine(cls.database.url,
                                        poolclass=sa.pool.NullPool)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.dispose()
        cls.server.cleanUp()
        cls.database.cleanUp()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.http = requests.Session()
        self.addCleanup(self.http.close)
        self.addOnException(self._attach_server_log)

    def _attach_server_log(self, exc_info) -> None:
        self.addDetail('imgmw-api.log',
                       content.text_content(self.server.log()))

    # HTTP.

    def url(self, path: str) -> str:
        return self.server.url + path

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault('timeout', REQUEST_TIMEOUT)
        return self.http.request(method, self.url(path), **kwargs)

    def create_image(self, **props) -> dict:
        """POST /v2/images; raw/bare unless told; ``None`` omits a field."""
        body = {'name': self.id().rsplit('.', 1)[-1],
                'disk_format': 'raw', 'container_format': 'bare'}
        body.update(props)
        body = {key: value for key, value in body.items()
                if value is not None}
        resp = self.request('POST', '/v2/images', json=body)
        self.assertEqual(201, resp.status_code, resp.text)
        return resp.json()

    def get_image(self, image_id: str) -> dict:
        resp = self.request('GET', '/v2/images/%s' % image_id)
        self.assertEqual(200, resp.status_code, resp.text)
        return resp.json()

    def upload(self, image_id: str, data=b'', chunked: bool = False,
               headers: typing.Optional[typing.Mapping[str, str]] = None,
               route: str = 'file') -> requests.Response:
        """PUT image data: ``Content-Length`` framing, or chunked.

        ``data`` is bytes, a sized stream (:class:`PatternStream`), or, with
        ``chunked``, any iterable of byte strings.
        """
        sent = {'Content-Type': 'application/octet-stream'}
        sent.update(headers or {})
        if chunked:
            data = iter([data]) if isinstance(data, bytes) else iter(data)
        return self.request('PUT', '/v2/images/%s/%s' % (image_id, route),
                            data=data, headers=sent)

    def download(self, image_id: str, method: str = 'GET',
                 headers: typing.Optional[typing.Mapping[str, str]] = None,
                 stream: bool = False) -> requests.Response:
        return self.request(method, '/v2/images/%s/file' % image_id,
                            headers=headers, stream=stream)

    def open_raw(self, method: str, path: str,
                 headers: typing.Sequence[typing.Tuple[str, str]] = (),
                 body: bytes = b'',
                 timeout: float = REQUEST_TIMEOUT) -> socket.socket:
        """A fresh connection that was sent exactly these bytes.

        :param headers: sent as they are; nothing is added but ``Host``.
        """
        head = ['%s %s HTTP/1.1' % (method, path),
                'Host: 127.0.0.1:%d' % self.server.port]
        head += ['%s: %s' % header for header in headers]
        data = ('\r\n'.join(head) + '\r\n\r\n').encode('latin-1') + body
        sock = socket.create_connection(('127.0.0.1', self.server.port),
                                        timeout=timeout)
        try:
            sock.sendall(data)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def read_raw(sock: socket.socket, method: str) -> RawResponse:
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return RawResponse(resp.status, resp.headers, resp.read())

    def raw_request(self, method: str, path: str,
                    headers: typing.Sequence[typing.Tuple[str, str]] = (),
                    body: bytes = b'', then: str = 'read'
                    ) -> typing.Optional[RawResponse]:
        """Send exactly these bytes on a fresh connection (:meth:`open_raw`).

        :param then: ``'read'`` reads the answer; ``'shutdown'`` half-closes
            the connection first (the body ends early, the client still
            listens); ``'close'`` closes it and returns ``None`` (the client
            went away).
        """
        sock = self.open_raw(method, path, headers, body)
        try:
            if then == 'close':
                return None
            if then == 'shutdown':
                sock.shutdown(socket.SHUT_WR)
            return self.read_raw(sock, method)
        finally:
            sock.close()

    # Waiting and inspecting.

    def wait_for_status(self, image_id: str, status: str,
                        timeout: float = 30) -> dict:
        return wait_for_status(self, self.get_image, image_id, status,
                               timeout)

    def image_files(self, image_id: str) -> typing.List[str]:
        """Files of the state directory (stores, staging) of an image."""
        return [path for path in self.server.files()
                if image_id in os.path.basename(path)]

    def registry_row(self, image_id: str) -> typing.Optional[dict]:
        with self.registry.connect() as connection:
            row = connection.execute(
                sa.text('SELECT * FROM images WHERE id = :id'),
                {'id': image_id}).mappings().first()
        return dict(row) if row is not None else None

    def assert_error(self, resp, status: int, message: str) -> None:
        """A contract error: status, exact message, request id."""
        self.assertEqual(status, resp.status_code, resp.text)
        self.assertIn(message, resp.text)
        self.assertIn('x-openstack-request-id', resp.headers)

    def assert_failed_upload_left_nothing(self, image_id: str) -> None:
        """Contract 3 invariants: queued, no size nor checksums, no data."""
        image = self.wait_for_status(image_id, 'queued')
        for field in ('size', 'checksum', 'os_hash_value'):
            self.assertIsNone(image[field], field)
        row = self.registry_row(image_id)
        self.assertEqual('queued', row['status'])
        for column in ('size', 'checksum', 'os_hash_value'):
            self.assertIsNone(row[column], column)
        self.assertEqual([], self.image_files(image_id))

    def assert_active_with(self, image_id: str, size: int, md5: str,
                           sha512: str) -> dict:
        image = self.wait_for_status(image_id, 'active', timeout=5)
        self.assertEqual(size, image['size'])
        self.assertEqual(md5, image['checksum'])
        self.assertEqual('sha512', image['os_hash_algo'])
        self.assertEqual(sha512, image['os_hash_value'])
        return image


def sync_database(url: str) -> None:
    """Bring an empty registry to the head migration, as an operator does.

    SQLite is left to the server (it creates its embedded database); the
    other databases are migrated with ``imgmw-manage db sync``.
    """
    if url.startswith('sqlite'):
        return
    result = subprocess.run(
        [MANAGE_SCRIPT, '-o', 'database_connection=%s' % url, 'db', 'sync'],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO,
        timeout=120)
    if result.returncode:
        raise AssertionError('imgmw-manage db sync failed (%d):\n%s%s' % (
            result.returncode, result.stdout, result.stderr))
