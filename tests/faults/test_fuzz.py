"""A bounded fuzz run of raw HTTP requests against a real imgmw-api.

Requests are built from a fixed seed and sent on raw sockets, each with a
timeout: mutated request lines, header names and values, bodies and
framings (bad chunk sizes, missing terminators, huge or contradictory
``Content-Length``, pipelined requests), then the write half is closed so
the server sees the end of whatever was sent. The properties:

- no answer is 5xx, neither on the wire nor in the server's access log
  (gunicorn answers malformed HTTP with 400 itself, and an unknown
  transfer coding with 501 as RFC 9112 asks, before the pipeline: those
  are fine);
- the server stays up: afterwards ``/healthcheck`` answers 200;
- no image is left ``saving`` (contract 3 invariants).

:class:`TestSchemaValidBodies` sends ``POST /v2/images`` and ``PATCH``
bodies that the image schema accepts but that are odd for a database
(integers past every column, NUL characters, lone surrogates, ids with a
final newline, over-long property names and values, names equal but for
trailing spaces) to three servers at once, on SQLite, PostgreSQL and
MariaDB/MySQL: each body gets the same status from the three, never a 5xx,
and a refused body changes nothing.

``IMGMW_FUZZ_REQUESTS`` sets the number of requests of each test (default
100); ``IMGMW_FUZZ_SEED`` the seed (default ``imgmw``).
"""

import collections
import json
import os
import random
import re
import socket
import time
import typing

import jsonschema
import requests
import sqlalchemy as sa
import testtools
from testtools import content

from imgmw.app import images
from tests import dbfixture
from tests.functional import base


REQUESTS = int(os.environ.get('IMGMW_FUZZ_REQUESTS') or 100)
SEED = os.environ.get('IMGMW_FUZZ_SEED') or 'imgmw'
TIMEOUT = 5
DATA = b'imgmw fuzz data.' * 64

_RESPONSE = re.compile(rb'(?:^|\r\n)HTTP/1\.[01] ([0-9]{3})[ \r](.*?)\r\n\r\n',
                       re.DOTALL)
_ACCESS_STATUS = re.compile(r'" ([0-9]{3}) ')

METHODS = ['GET', 'PUT', 'PUT', 'PUT', 'POST', 'HEAD', 'DELETE', 'PATCH',
           'OPTIONS', 'XYZZY']
BAD_METHODS = ['get', 'P UT', 'GET\x00', '', 'PUT' * 50]
VERSIONS = ['HTTP/1.1'] * 8 + ['HTTP/1.0']
BAD_VERSIONS = ['HTTP/2.0', 'HTTP/1.1x', '', 'HTTP/9.9', 'http/1.1']
NASTY = [b'', b' ', b'0', b'-1', b'+4', b'1_0', b'0x10', b'9' * 5000,
         b'18446744073709551616', b'\xd9\xa3', b'\xff\xfe', b'a\x00b',
         b'bytes=0-1,2-3', b'bytes=-', b'bytes=' + b'9' * 3000 + b'-',
         b'bytes */16', b'application/octet-stream; x', b'chunked',
         b'gzip, chunked', b'sha-256=:AAAA:', b'md5=:' + b'A' * 22 + b'==:',
         b'os_glance_staging_store', b'fast', b'"etag"', b'*/*',
         b'application/json', b'x' * 7000, b'\t', b'%00', b'\xc3\xa9']
HEADER_NAMES = [b'Content-Type', b'x-openstack-image-size', b'Range',
                b'If-Range', b'Content-Range', b'If-None-Match',
                b'Content-MD5', b'Content-Digest', b'Repr-Digest',
                b'X-Image-Meta-Store', b'Accept', b'X-Roles',
                b'X-Project-Id', b'X-User-Id', b'X-Openstack-Request-ID',
                b'X' * 300, b'Connection']
BAD_HEADER_NAMES = [b'Transfer-Encoding', b'Content-Length', b'Expect',
                    b'Bad Name', b'\xff', b'']


class Fuzzer:
    """Builds one raw request at a time from a seeded generator."""

    def __init__(self, rng: random.Random, port: int,
                 image_ids: typing.Sequence[str]):
        self.rng = rng
        self.host = b'Host: 127.0.0.1:%d' % port
        self.image_ids = list(image_ids)

    def target(self) -> bytes:
        rng = self.rng
        image_id = rng.choice(self.image_ids + [
            'unknown', '', 'a%00b', '%ff', '..', 'x' * 3000, '%2F',
            '\u00e9'])
        path = rng.choice([
            '/v2/images/%s/file', '/v2/images/%s/stage', '/v2/images/%s',
            '/v2/images/%s/import', '/v2/images/%s/actions/deactivate',
            '/v2.%d/images/%%s/file' % rng.randrange(20), '/v2/images',
            '/v2/info/stores/detail', '/v2/info/usage', '/versions', '/',
            '/healthcheck', '*', 'http://example/v2/images/%s/file'])
        if '%s' in path:
            path = path % image_id
        if rng.random() < 0.2:
            path += rng.choice(['?limit=9999', '?x=%ff', '?\xff', '?%00',
                                '?limit=' + '9' * 3000, '?marker=%00'])
        return path.encode('utf-8')

    def headers(self, method: str, malformed: bool) -> typing.List[bytes]:
        rng = self.rng
        headers = [self.host]
        if method.upper().startswith('PUT') or rng.random() < 0.2:
            headers.append(b'Content-Type: application/octet-stream')
        names = HEADER_NAMES + (BAD_HEADER_NAMES if malformed else [])
        for _ in range(rng.randrange(4)):
            name = rng.choice(names)
            value = rng.choice(NASTY)
            separator = rng.choice([b': ', b':', b': \t'] + (
                [b' : '] if malformed else []))
            headers.append(name + separator + value)
        if malformed and rng.random() < 0.2:
            headers.append(b'continued')
        return headers

    def framing(self, body: bytes, malformed: bool
                ) -> typing.Tuple[typing.List[bytes], bytes]:
        """Framing headers and the bytes that follow the head."""
        rng = self.rng
        size = len(body)
        kind = rng.choice([
            'exact', 'exact', 'short', 'long', 'huge', 'chunked', 'chunked',
            'unterminated', 'extension', 'none', 'declared', 'declared'] + (
            ['bad', 'two', 'bad-chunk', 'huge-chunk', 'chunked+length',
             'gzip'] if malformed else []))
        chunks = b'%x\r\n%s\r\n0\r\n\r\n' % (size, body) if body else \
            b'0\r\n\r\n'
        return {
            'exact': ([b'Content-Length: %d' % size], body),
            'short': ([b'Content-Length: %d' % (size + 10)], body),
            'long': ([b'Content-Length: %d' % max(size - 3, 0)], body),
            'huge': ([b'Content-Length: %d' % 10 ** rng.randrange(10, 40)],
                     body),
            'bad': ([b'Content-Length: ' + rng.choice(NASTY)], body),
            'two': ([b'Content-Length: %d' % size,
                     b'Content-Length: %d' % (size + 1)], body),
            'chunked': ([b'Transfer-Encoding: chunked'], chunks),
            'bad-chunk': ([b'Transfer-Encoding: chunked'],
                          b'zz\r\n' + body + b'\r\n0\r\n\r\n'),
            'huge-chunk': ([b'Transfer-Encoding: chunked'],
                           b'ffffffffffffffffffff\r\n' + body),
            'unterminated': ([b'Transfer-Encoding: chunked'],
                             b'%x\r\n%s' % (size, body)),
            'extension': ([b'Transfer-Encoding: chunked'],
                          b'%x;a=b\r\n%s\r\n0\r\nX-T: 1\r\n\r\n'
                          % (size, body)),
            'chunked+length': ([b'Transfer-Encoding: chunked',
                                b'Content-Length: %d' % size], chunks),
            'gzip': ([b'Transfer-Encoding: gzip'], body),
            'none': ([], body),
            'declared': ([b'Content-Length: %d' % size,
                          b'x-openstack-image-size: %d'
                          % rng.choice([size, size + 1, 0])], body),
        }[kind]

    def request(self) -> bytes:
        """A request; one in four is malformed HTTP, for gunicorn."""
        rng = self.rng
        malformed = rng.random() < 0.25
        method = rng.choice(METHODS + (BAD_METHODS if malformed else []))
        version = rng.choice(VERSIONS + (BAD_VERSIONS if malformed else []))
        line = b' '.join([method.encode('latin-1'), self.target(),
                          version.encode()])
        body = DATA[:rng.choice([0, 1, 16, 100, len(DATA)])]
        framing, rest = self.framing(body, malformed)
        headers = self.headers(method, malformed) + framing
        head = b'\r\n'.join([line] + headers)
        raw = head + b'\r\n\r\n' + rest
        if malformed and rng.random() < 0.5:
            raw = self.mutate(raw)
        return raw

    def mutate(self, raw: bytes) -> bytes:
        data = bytearray(raw)
        for _ in range(self.rng.randrange(1, 4)):
            position = self.rng.randrange(len(data))
            data[position] = self.rng.randrange(256)
        return bytes(data)


class TestRawHttpFuzz(base.FunctionalTest):
    """Seeded raw requests; see the module docstring."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        ids = []
        for disk_format in ('raw', 'raw', 'raw', 'qcow2', None):
            body = {'disk_format': disk_format, 'container_format': 'bare'}
            resp = requests.post(cls.server.url + '/v2/images', json=body,
                                 timeout=30)
            ids.append(resp.json()['id'])
        requests.put(
            cls.server.url + '/v2/images/%s/file' % ids[0], data=DATA,
            headers={'Content-Type': 'application/octet-stream'},
            timeout=30)
        cls.image_ids = ids

    def setUp(self) -> None:
        super().setUp()
        self.statuses = collections.Counter()
        self.failures = []

    def send(self, raw: bytes) -> typing.List[int]:
        """Send ``raw``, close the write half, read until the end."""
        received = b''
        with socket.create_connection(('127.0.0.1', self.server.port),
                                      timeout=TIMEOUT) as sock:
            try:
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except socket.timeout:
                self.statuses['timeout'] += 1
            except (ConnectionResetError, BrokenPipeError):
                self.statuses['reset'] += 1
        return [(int(status), b'x-openstack-request-id' in head.lower())
                for status, head in _RESPONSE.findall(received)]

    def run_cases(self, name: str, build: typing.Callable[[Fuzzer], bytes]
                  ) -> None:
        fuzzer = Fuzzer(random.Random('%s:%s' % (SEED, name)),
                        self.server.port, self.image_ids)
        for index in range(REQUESTS):
            raw = build(fuzzer)
            answers = self.send(raw)
            self.statuses.update(status for status, _ in answers)
            self.statuses['by the pipeline'] += sum(
                from_pipeline for _, from_pipeline in answers)
            if not answers:
                self.statuses['no answer'] += 1
            if any(self.is_failure(*answer) for answer in answers):
                self.failures.append((index, answers, raw[:300]))
        self.addDetail('statuses', content.text_content(json.dumps(
            {str(key): n for key, n in sorted(self.statuses.items(),
                                              key=str)})))
        self.assertEqual([], self.failures)
        self.assert_server_healthy()

    @staticmethod
    def is_failure(status: int, from_pipeline: bool) -> bool:
        """A 5xx, but gunicorn's own 501 to a transfer coding it lacks.

        gunicorn answers before the pipeline, so without a request id.
        """
        return status >= 500 and (from_pipeline or status != 501)

    def assert_server_healthy(self) -> None:
        self.assertIsNone(self.server.process.poll(), 'imgmw-api exited')
        self.assertEqual(200, self.request('GET', '/healthcheck',
                                           timeout=30).status_code)
        deadline = time.monotonic() + 30
        while True:
            with self.registry.connect() as connection:
                saving = connection.execute(sa.text(
                    "SELECT id FROM images WHERE status = 'saving'")
                ).scalars().all()
            if not saving or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual([], saving)
        logged = [line for line in self.server.log().splitlines()
                  if any(int(status) >= 500 for status in
                         _ACCESS_STATUS.findall(line))]
        self.assertEqual([], logged)

    def test_single_requests(self):
        self.run_cases('single', lambda fuzzer: fuzzer.request())

    def test_pipelined_requests(self):
        self.run_cases('pipelined', lambda fuzzer: b''.join(
            fuzzer.request() for _ in range(fuzzer.rng.randrange(2, 4))))

    def test_truncated_requests(self):
        """Requests cut at a random byte: head or body ends early."""
        def build(fuzzer):
            raw = fuzzer.request()
            return raw[:fuzzer.rng.randrange(1, len(raw) + 1)]
        self.run_cases('truncated', build)


# Schema-valid bodies that are odd for a database.

INTEGERS = [0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 63,
            2 ** 64, 10 ** 30, -1, -2 ** 31, -2 ** 31 - 1, -2 ** 63 - 1]
TEXTS = ['', ' ', 'a', 'a ', 'a\x00b', '\x00', '\ud800', 'x\udfff',
         '\udbff\udc00', '\u00e9', '\U0001f600', '\t', 'line\n', 'x' * 255,
         '\U0001f600' * 255, 'NUL\x00' * 40]
PROPERTY_NAMES = ['p', 'p ', 'P', 'k' * 255, 'k' * 256, '\u00e9' * 256,
                  'a\x00', '\ud83d', 'tab\t', 'x.y', '\U0001f600' * 64]
PROPERTY_VALUES = TEXTS + ['v' * 65535, 'v' * 65536, '\u00e9' * 32768,
                           '\U0001f600' * 16384, '\U0001f600' * 16383]
UUID = '6e0f2a4c-5b7d-4e8f-9a1b-2c3d4e5f6a7b'
IDS = [UUID, UUID + '\n', UUID.upper(), UUID.upper() + '\n']


def encode(body: typing.Any) -> bytes:
    """UTF-8 JSON; a lone surrogate as its escape (no UTF-8 holds one)."""
    return _LONE_SURROGATE.sub(
        lambda match: '\\u%04x' % ord(match.group()),
        json.dumps(body, ensure_ascii=False)).encode('utf-8')


_LONE_SURROGATE = re.compile('[\ud800-\udfff]')


class BodyFuzzer:
    """Image bodies the image schema accepts, built from a seed."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.validator = jsonschema.Draft4Validator(images.schema('image'))

    def text(self) -> str:
        return self.rng.choice(TEXTS)

    def attributes(self) -> dict:
        rng = self.rng
        body = {}
        for _ in range(rng.randrange(1, 5)):
            kind = rng.choice(['min_ram', 'min_disk', 'name', 'tags',
                               'property', 'property', 'properties'])
            if kind in ('min_ram', 'min_disk'):
                body[kind] = rng.choice(INTEGERS)
            elif kind == 'name':
                body['name'] = self.text()
            elif kind == 'tags':
                body['tags'] = [self.text()
                                for _ in range(rng.randrange(1, 4))]
            elif kind == 'property':
                body[rng.choice(PROPERTY_NAMES)] = rng.choice(
                    PROPERTY_VALUES)
            else:
                body.update({'p': 'one', 'p ': 'two'})
        return body

    def creation(self) -> dict:
        body = self.attributes()
        if self.rng.random() < 0.3:
            body['id'] = self.rng.choice(IDS).replace(
                UUID[:8], '%08x' % self.rng.getrandbits(32))
        if len(encode(body)) > images.MAX_JSON_BODY:
            return self.creation()
        return self.schema_valid(body)

    def patch(self) -> typing.List[dict]:
        changes = [{'op': 'add', 'path': '/' + key.replace(
            '~', '~0').replace('/', '~1'), 'value': value}
            for key, value in self.attributes().items()]
        if len(encode(changes)) > images.MAX_JSON_BODY:
            return self.patch()
        return changes

    def schema_valid(self, body: dict) -> dict:
        """``body``, which the schema accepts (the tests' premise)."""
        errors = list(self.validator.iter_errors(body))
        assert not errors, errors
        return body


class TestSchemaValidBodies(testtools.TestCase):
    """The same odd bodies to three servers, one per database."""

    KINDS = dbfixture.KINDS

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.fixtures = []
        cls.servers = {}
        try:
            for kind in cls.KINDS:
                database = cls._start(dbfixture.Database(kind))
                base.sync_database(database.url)
                cls.servers[kind] = (cls._start(base.ApiServer(
                    database.url)), sa.create_engine(
                        database.url, poolclass=sa.pool.NullPool))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls, fixture):
        fixture.setUp()
        cls.fixtures.append(fixture)
        return fixture

    @classmethod
    def tearDownClass(cls) -> None:
        for _, engine in cls.servers.values():
            engine.dispose()
        while cls.fixtures:
            cls.fixtures.pop().cleanUp()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.http = requests.Session()
        self.addCleanup(self.http.close)
        self.addOnException(self._attach_logs)

    def _attach_logs(self, exc_info) -> None:
        for kind, (server, _) in self.servers.items():
            self.addDetail('%s.log' % kind,
                           content.text_content(server.log()[-20000:]))

    def send(self, kind: str, method: str, path: str, body: typing.Any,
             media_type: str = 'application/json') -> requests.Response:
        return self.http.request(
            method, self.servers[kind][0].url + path, data=encode(body),
            headers={'Content-Type': media_type,
                     'Accept': 'application/json'}, timeout=60)

    def images_of(self, kind: str) -> typing.List[tuple]:
        with self.servers[kind][1].connect() as connection:
            return connection.execute(sa.text(
                'SELECT id, name, min_ram, min_disk, updated_at FROM images '
                'ORDER BY id')).all()

    def counts(self, kind: str) -> typing.Tuple[int, int]:
        """Images not deleted, and rows of the images table."""
        with self.servers[kind][1].connect() as connection:
            return tuple(connection.execute(sa.text(
                "SELECT coalesce(sum(CASE WHEN status = 'deleted' THEN 0 "
                'ELSE 1 END), 0), count(*) FROM images')).one())

    def properties_of(self, kind: str) -> typing.List[tuple]:
        with self.servers[kind][1].connect() as connection:
            return connection.execute(sa.text(
                'SELECT image_id, name, value FROM image_properties '
                'UNION ALL SELECT image_id, value, NULL FROM image_tags '
                'ORDER BY 1, 2')).all()

    def answers(self, method: str, path: typing.Callable[[str], str],
                body: typing.Any, media_type: str = 'application/json'
                ) -> typing.Dict[str, requests.Response]:
        return {kind: self.send(kind, method, path(kind), body, media_type)
                for kind in self.KINDS}

    def assert_alike(self, index: int, body: typing.Any,
                     answers: typing.Mapping[str, requests.Response]
                     ) -> int:
        statuses = {kind: resp.status_code for kind, resp in answers.items()}
        shown = json.dumps(body)[:300]
        self.assertEqual(1, len(set(statuses.values())),
                         '%d %s: %s' % (index, shown, statuses))
        status = statuses[self.KINDS[0]]
        self.assertLess(status, 500, '%d %s: %s' % (
            index, shown, answers[self.KINDS[0]].text[:300]))
        messages = {resp.json()['message'] if resp.status_code >= 400
                    else None for resp in answers.values()}
        self.assertEqual(1, len(messages), '%d %s' % (index, shown))
        return status

    def test_creation_bodies(self):
        fuzzer = BodyFuzzer(random.Random('%s:create' % SEED))
        created = collections.Counter()
        before = {kind: self.counts(kind) for kind in self.KINDS}
        for index in range(REQUESTS):
            body = fuzzer.creation()
            answers = self.answers('POST', lambda kind: '/v2/images', body)
            status = self.assert_alike(index, body, answers)
            created[status] += 1
            if status == 201:
                self.assertEqual(1, len({json.dumps(
                    {key: value for key, value in resp.json().items()
                     if key not in ('id', 'created_at', 'updated_at', 'self',
                                    'file', 'owner')}, sort_keys=True)
                    for resp in answers.values()}), index)
                for kind, resp in answers.items():
                    self.http.delete(self.servers[kind][0].url
                                     + '/v2/images/' + resp.json()['id'],
                                     timeout=60)
        self.addDetail('statuses', content.text_content(json.dumps(
            {str(key): n for key, n in sorted(created.items())})))
        # Refused bodies created nothing; each created image was deleted.
        for kind in self.KINDS:
            kept, rows = self.counts(kind)
            self.assertEqual(before[kind][0], kept, kind)
            self.assertEqual(before[kind][1] + created[201], rows, kind)
        self.assertGreater(created[400], REQUESTS // 4, created)
        self.assertGreater(created[201], 0, created)

    def test_patch_bodies(self):
        fuzzer = BodyFuzzer(random.Random('%s:patch' % SEED))
        ids = {kind: self.send(kind, 'POST', '/v2/images',
                               {'name': 'patched'}).json()['id']
               for kind in self.KINDS}
        statuses = collections.Counter()
        for index in range(REQUESTS):
            body = fuzzer.patch()
            before = {kind: (self.images_of(kind), self.properties_of(kind))
                      for kind in self.KINDS}
            answers = self.answers(
                'PATCH', lambda kind: '/v2/images/' + ids[kind], body,
                'application/openstack-images-v2.1-json-patch')
            status = self.assert_alike(index, body, answers)
            statuses[status] += 1
            for kind, resp in answers.items():
                if status == 200:
                    fuzzer.schema_valid(resp.json())
                else:
                    self.assertEqual(before[kind], (
                        self.images_of(kind), self.properties_of(kind)),
                        '%s %d' % (kind, index))
        self.addDetail('statuses', content.text_content(json.dumps(
            {str(key): n for key, n in sorted(statuses.items())})))
        self.assertGreater(statuses[400], REQUESTS // 4, statuses)
        self.assertGreater(statuses[200], 0, statuses)
