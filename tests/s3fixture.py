"""A real S3-compatible server for tests: moto in server mode.

:class:`MotoServer` runs ``moto_server`` of the running virtualenv (from
``moto[server]`` in test-requirements.txt) as a subprocess on a free
loopback port, waits until it answers and stops it at clean-up. It is an
S3 service over HTTP like any other to the code under test: boto3 talks to
it through a real socket, with multipart uploads, ranged GETs and errors.

Start one per test class (it takes a second); give each test a bucket of
its own with :meth:`MotoServer.make_bucket`.

:class:`SwiftServer` is a real S3 implementation with the same interface:
OpenStack Swift (Debian's packages) with its ``s3api`` middleware, one
device, one replica, on loopback ports. :func:`server` gives the one the
environment variable ``IMGMW_TEST_S3`` names: ``moto`` (default) or
``swift`` (``tox -e s3-swift`` installs Swift and runs the s3 driver's
tests against it).
"""

import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import typing

import boto3
from botocore import config as botocore_config
import fixtures

from tests import processes


MOTO_SERVER = os.path.join(os.path.dirname(sys.executable), 'moto_server')
START_TIMEOUT = 30
#: Seconds for Swift's proxy to answer S3 once it listens.
SWIFT_ANSWER_TIMEOUT = 10
ACCESS_KEY = 'imgmw-test-access'
SECRET_KEY = 'imgmw-test-secret'

_bucket_numbers = itertools.count()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class MotoServer(fixtures.Fixture):
    """``moto_server`` on 127.0.0.1; :attr:`endpoint` is its URL."""

    access_key = ACCESS_KEY
    secret_key = SECRET_KEY

    def _setUp(self) -> None:
        self.log = self.useFixture(fixtures.TempDir()).path + '/moto.log'
        for attempt in range(3):
            self.port = free_port()
            self.process = self._start()
            if self._wait_ready():
                break
            self._stop(self.process)
        else:
            raise AssertionError('moto_server did not start:\n%s'
                                 % self.output())
        self.addCleanup(self._stop, self.process)
        self.client = self.make_client()

    @property
    def endpoint(self) -> str:
        return 'http://127.0.0.1:%d' % self.port

    def _start(self) -> subprocess.Popen:
        with open(self.log, 'ab') as log:
            return subprocess.Popen(
                [MOTO_SERVER, '-H', '127.0.0.1', '-p', str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                cwd=tempfile.gettempdir())

    def _wait_ready(self, process=None, port=None) -> bool:
        process = process or self.process
        port = port or self.port
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with socket.create_connection(('127.0.0.1', port),
                                              timeout=1):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        processes.stop(process, timeout=10)

    def output(self) -> str:
        try:
            with open(self.log, errors='replace') as log:
                return log.read()
        except FileNotFoundError:
            return ''

    def make_client(self):
        """A boto3 client of the server, to look behind the code's back."""
        return boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key).client(
                's3', endpoint_url=self.endpoint, region_name='us-east-1',
                config=botocore_config.Config(
                    s3={'addressing_style': 'path'}))

    def make_bucket(self, prefix: str = 'imgmw') -> str:
        """A new, empty bucket; its name."""
        name = '%s-%d-%d' % (prefix, os.getpid(), next(_bucket_numbers))
        self.client.create_bucket(Bucket=name)
        return name

    def store_options(self, bucket: str, **more: str
                      ) -> typing.Dict[str, str]:
        """The options of an ``s3`` store on ``bucket`` of this server."""
        options = {
            's3_store_host': self.endpoint,
            's3_store_access_key': self.access_key,
            's3_store_secret_key': self.secret_key,
            's3_store_bucket': bucket,
        }
        options.update(more)
        return options

    def keys(self, bucket: str) -> typing.List[str]:
        """The keys of the objects in ``bucket``."""
        listing = self.client.list_objects_v2(Bucket=bucket)
        return sorted(item['Key'] for item in listing.get('Contents', ()))

    def unfinished_uploads(self, bucket: str) -> typing.List[str]:
        """The keys of the multipart uploads started but not finished."""
        listing = self.client.list_multipart_uploads(Bucket=bucket)
        return sorted(upload['Key'] for upload in listing.get('Uploads', ()))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)['Body'].read()


# OpenStack Swift with its s3api middleware: a real S3 implementation.

SWIFT_BIN = '/usr/bin'
SWIFT_ACCESS_KEY = 'imgmw:tester'
SWIFT_SECRET_KEY = 'imgmw-test-secret'
SWIFT_SERVERS = ('account', 'container', 'object')

_SWIFT_CONF = """\
[swift-hash]
swift_hash_path_suffix = imgmw-test
swift_hash_path_prefix = imgmw-test

[storage-policy:0]
name = Policy-0
default = yes
"""

_SWIFT_BACKEND = """\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = %(port)d
devices = %(devices)s
mount_check = false
disable_fallocate = true
swift_dir = %(swift_dir)s
workers = 0
log_name = %(server)s

[pipeline:main]
pipeline = %(server)s-server

[app:%(server)s-server]
use = egg:swift#%(server)s
"""

_SWIFT_PROXY = """\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = %(port)d
swift_dir = %(swift_dir)s
workers = 0
log_name = proxy

[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache s3api tempauth copy
    slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:proxy-logging]
use = egg:swift#proxy_logging

# tempauth needs swift.cache; no memcached answers there (every lookup
# misses), which a test server can afford.
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:%(memcache_port)d

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_imgmw_tester = %(secret)s .admin

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
"""


def swift_available() -> bool:
    """Whether Debian's swift packages are installed (``tox -e s3-swift``)."""
    return all(os.path.exists(os.path.join(SWIFT_BIN, 'swift-%s-server'
                                           % name))
               for name in SWIFT_SERVERS + ('proxy',))


class SwiftServer(MotoServer):
    """Swift (proxy, account, container, object servers) on 127.0.0.1.

    One device in a temporary directory, one replica, ``tempauth``, and the
    ``s3api`` middleware: an S3 service with the same interface as
    :class:`MotoServer` (``endpoint``, ``make_bucket``, ``store_options``,
    ``keys``, ...), keys :data:`SWIFT_ACCESS_KEY` and
    :data:`SWIFT_SECRET_KEY`. Needs Debian's ``swift-proxy``,
    ``swift-account``, ``swift-container`` and ``swift-object`` packages.
    """

    access_key = SWIFT_ACCESS_KEY
    secret_key = SWIFT_SECRET_KEY

    def _setUp(self) -> None:
        if not swift_available():
            raise AssertionError(
                'OpenStack Swift is not installed: apt-get install '
                'swift-proxy swift-account swift-container swift-object '
                '(tox -e s3-swift does)')
        top = self.useFixture(fixtures.TempDir()).path
        self.log = os.path.join(top, 'swift.log')
        self.swift_dir = os.path.join(top, 'etc')
        devices = os.path.join(top, 'srv')
        os.makedirs(os.path.join(devices, 'd1'))
        os.makedirs(self.swift_dir)
        with open(os.path.join(self.swift_dir, 'swift.conf'), 'w') as conf:
            conf.write(_SWIFT_CONF)
        self.port = free_port()
        ports = {name: free_port() for name in SWIFT_SERVERS}
        self.processes = []
        for name in SWIFT_SERVERS:
            self._ring(name, ports[name])
            path = self._conf(name, _SWIFT_BACKEND % {
                'port': ports[name], 'devices': devices,
                'swift_dir': self.swift_dir, 'server': name})
            self._launch(name, path, ports[name])
        path = self._conf('proxy', _SWIFT_PROXY % {
            'port': self.port, 'swift_dir': self.swift_dir,
            'secret': SWIFT_SECRET_KEY, 'memcache_port': free_port()})
        self._launch('proxy', path, self.port)
        self._wait_answering()
        self.client = self.make_client()

    def _wait_answering(self) -> None:
        """Until the proxy answers S3 (its workers load after the bind)."""
        deadline = time.monotonic() + SWIFT_ANSWER_TIMEOUT
        client = self.make_client()
        while True:
            try:
                client.list_buckets()
                return
            except Exception as err:
                if time.monotonic() > deadline:
                    raise AssertionError('Swift does not answer S3: %s\n%s'
                                         % (err, self.output())) from err
                time.sleep(0.2)

    def _ring(self, name: str, port: int) -> None:
        builder = os.path.join(self.swift_dir, '%s.builder' % name)
        ring_builder = os.path.join(SWIFT_BIN, 'swift-ring-builder')
        for args in (['create', '4', '1', '1'],
                     ['add', 'r1z1-127.0.0.1:%d/d1' % port, '100'],
                     ['rebalance']):
            result = subprocess.run([ring_builder, builder] + args,
                                    capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=60)
            # rebalance exits 1 with a warning on a one-device ring.
            if result.returncode not in (0, 1):
                raise AssertionError('swift-ring-builder %s failed:\n%s%s'
                                     % (args, result.stdout, result.stderr))

    def _conf(self, name: str, text: str) -> str:
        path = os.path.join(self.swift_dir, '%s-server.conf' % name)
        with open(path, 'w') as conf:
            conf.write(text)
        return path

    def _launch(self, name: str, conf: str, port: int) -> None:
        with open(self.log, 'ab') as log:
            process = subprocess.Popen(
                [os.path.join(SWIFT_BIN, 'swift-%s-server' % name), conf,
                 '--verbose'],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                cwd=tempfile.gettempdir())
        self.addCleanup(self._stop, process)
        if not self._wait_ready(process, port):
            raise AssertionError('swift-%s-server did not start:\n%s'
                                 % (name, self.output()))


KINDS = ('moto', 'swift')


def server() -> MotoServer:
    """The S3 server that ``IMGMW_TEST_S3`` names (``moto`` by default)."""
    kind = os.environ.get('IMGMW_TEST_S3') or 'moto'
    if kind not in KINDS:
        raise ValueError('IMGMW_TEST_S3=%s: expected one of %s'
                         % (kind, ', '.join(KINDS)))
    return SwiftServer() if kind == 'swift' else MotoServer()
