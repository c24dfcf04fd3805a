"""A real S3-compatible server for tests: moto in server mode.

:class:`MotoServer` runs ``moto_server`` of the running virtualenv (from
``moto[server]`` in test-requirements.txt) as a subprocess on a free
loopback port, waits until it answers and stops it at clean-up. It is an
S3 service over HTTP like any other to the code under test: boto3 talks to
it through a real socket, with multipart uploads, ranged GETs and errors.

Start one per test class (it takes a second); give each test a bucket of
its own with :meth:`MotoServer.make_bucket`.
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

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(('127.0.0.1', self.port),
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
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY).client(
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
            's3_store_access_key': ACCESS_KEY,
            's3_store_secret_key': SECRET_KEY,
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
