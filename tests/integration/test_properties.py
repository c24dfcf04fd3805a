"""Bad input never gives a 500: property-based tests with hypothesis.

Every header the filters parse, and image ids and paths, are drawn by
hypothesis and fed to the parsers alone and to the shipped ``noauth``
pipeline (``etc/api-paste.ini`` loaded with paste.deploy, two file stores,
the registry of :class:`tests.dbfixture.Database`). The properties:

- a parser accepts exactly the forms the contract names and refuses every
  other with its contract error, never another exception;
- the pipeline never answers 5xx; a 4xx body follows ``Accept`` (contract
  2) and carries ``x-openstack-request-id``;
- after any upload the image is ``queued`` with nothing recorded, or
  ``active`` with the size and MD5 of the bytes sent (contract 3
  invariants).

Runs are reproducible: the profile ``imgmw-ci`` derandomizes and bounds
the examples. ``IMGMW_HYPOTHESIS_PROFILE=imgmw-thorough`` tries ten times
as many, at random. With ``IMGMW_HYPOTHESIS_COUNTS=<directory>`` each test
class writes ``<class>.json``, the number of examples tried per parser or
property, for the issue's note.
"""

import base64
import collections
import hashlib
import io
import itertools
import json
import os
import re
import typing
import urllib.parse

import fixtures
import hypothesis
from hypothesis import strategies as st
from paste import deploy
import sqlalchemy as sa
import testtools
import webob
import webob.exc

from imgmw.app import registry as registry_mod
from imgmw.filters import checksum
from imgmw.filters import context
from imgmw.filters import download
from imgmw.filters import size
from imgmw import paths
from imgmw import wsgi
from tests import dbfixture
from tests.unit import fakes


PASTE_FILE = os.path.join(os.path.dirname(__file__), '..', '..', 'etc',
                          'api-paste.ini')

hypothesis.settings.register_profile(
    'imgmw-ci', deadline=None, derandomize=True, database=None,
    print_blob=True, suppress_health_check=list(hypothesis.HealthCheck))
hypothesis.settings.register_profile(
    'imgmw-thorough', parent=hypothesis.settings.get_profile('imgmw-ci'),
    derandomize=False)
PROFILE = os.environ.get('IMGMW_HYPOTHESIS_PROFILE') or 'imgmw-ci'
SCALE = 10 if PROFILE == 'imgmw-thorough' else 1


def examples(count: int) -> hypothesis.settings:
    """The module's profile, trying at most ``count`` examples (scaled)."""
    return hypothesis.settings(hypothesis.settings.get_profile(PROFILE),
                               max_examples=count * SCALE)


#: Examples tried, per parser or property.
TRIED = collections.Counter()


class CountingTest(testtools.TestCase):
    """Writes the examples its tests tried (see the module docstring)."""

    @classmethod
    def tearDownClass(cls) -> None:
        directory = os.environ.get('IMGMW_HYPOTHESIS_COUNTS')
        prefix = cls.__name__ + '.'
        counts = {name[len(prefix):]: n for name, n in TRIED.items()
                  if name.startswith(prefix)}
        if directory and counts:
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, cls.__name__ + '.json'),
                      'w') as out:
                json.dump(counts, out, indent=1, sort_keys=True)
        super().tearDownClass()

    def tried(self, name: str) -> None:
        TRIED['%s.%s' % (type(self).__name__, name)] += 1


# Strategies.

def as_wsgi(text: str) -> str:
    """``text`` as a server hands a header over: its UTF-8 bytes, latin-1.

    Servers refuse CR, LF and NUL in a header, and strip blanks around it.
    """
    raw = text.encode('utf-8', 'surrogatepass').decode('latin-1')
    return re.sub(r'[\r\n\x00]', '', raw).strip(' \t')


#: Any header value a server may pass on.
header_values = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode('latin-1')),
).map(as_wsgi)

blanks = st.sampled_from(['', ' ', '\t', ' \t '])
ascii_numbers = st.integers(min_value=0, max_value=10 ** 25).map(str)
#: Glance's int() accepts some of these; the contract refuses them (9).
tricky_numbers = st.sampled_from([
    '+4', '1_0', '-1', '0x4', '4.0', '1e3', '\u0663', '\uff11\uff12',
    '\u00b2', '', ' ', '0' * 4001, '9' * 4300, '9' * 5000, '00', '007',
    '1 2', '\u20074', '4\x0b', '\u0660\u0661'])
decimal_forms = st.builds(lambda a, n, b: a + n + b, blanks, ascii_numbers,
                          blanks)
unicode_digits = st.text(
    alphabet=st.characters(categories=['Nd']), min_size=1, max_size=8)
size_values = st.one_of(decimal_forms, tricky_numbers, unicode_digits,
                        st.text(max_size=12), header_values)

media_types = st.one_of(
    st.sampled_from(['application/octet-stream', 'Application/Octet-Stream',
                     'application/octet-stream ; a=b',
                     'application/octet-stream;', 'application/json',
                     'text/plain', '', ';', 'application/octet-streamx',
                     'application /octet-stream']),
    st.builds(lambda mt, params: mt + params,
              st.sampled_from(['application/octet-stream',
                               'APPLICATION/OCTET-STREAM']),
              header_values.map(lambda p: ';' + p)),
    header_values)

accepts = st.one_of(
    st.sampled_from(['application/json', 'text/html', '*/*', 'text/plain',
                     'application/json;q=0', 'text/html;q=0.5, '
                     'application/json', 'image/*', ';;', 'q=1',
                     'application/json;q=x']),
    header_values)

digest_bytes = {'md5': 16, 'sha-256': 32, 'sha-512': 64}
digest_keys = st.sampled_from(['md5', 'sha-256', 'sha-512', 'sha-1',
                               'SHA-256', 'crc32', 'x'])


def _field(items) -> str:
    return ', '.join('%s=:%s:' % (key, base64.b64encode(raw).decode())
                     for key, raw in items)


digest_fields = st.one_of(
    st.lists(st.tuples(digest_keys, st.binary(max_size=70)),
             max_size=3).map(_field),
    st.sampled_from(['sha-256=:', 'sha-256=1', 'sha-256="x"', '=:AA==:',
                     'sha-256=:AA==:;a=1', 'sha-256=?1', ',']),
    header_values)
content_md5s = st.one_of(
    st.binary(min_size=16, max_size=16).map(
        lambda raw: base64.b64encode(raw).decode()),
    st.binary(min_size=16, max_size=16).map(lambda raw: raw.hex()),
    st.binary(max_size=20).map(lambda raw: base64.b64encode(raw).decode()),
    st.text(alphabet='0123456789abcdefABCDEF', max_size=34),
    header_values)

store_ids = st.one_of(
    st.sampled_from(['fast', 'cheap', 'default', 'os_glance_staging_store',
                     'os_glance_tasks_store', 'FAST', ' fast', 'fast,cheap',
                     '']),
    header_values)

range_numbers = st.one_of(st.sampled_from(['', '0', '1', '15', '16', '17']),
                          ascii_numbers, st.just('9' * 5000))
range_values = st.one_of(
    st.builds(lambda unit, a, b: '%s=%s-%s' % (unit, a, b),
              st.sampled_from(['bytes', 'Bytes', 'items', ' bytes ']),
              range_numbers, range_numbers),
    st.builds(lambda a, b, c, d: 'bytes=%s-%s,%s-%s' % (a, b, c, d),
              range_numbers, range_numbers, range_numbers, range_numbers),
    st.sampled_from(['bytes=', 'bytes=-', 'bytes', 'bytes=--1', '=0-1',
                     'bytes=0-1 ', 'bytes=\u0661-2', 'bytes=1-\u00b2']),
    header_values)
content_range_values = st.one_of(
    st.builds(lambda a, b, c: 'bytes %s-%s/%s' % (a, b, c),
              range_numbers, range_numbers,
              st.one_of(range_numbers, st.just('*'))),
    st.sampled_from(['bytes */16', 'bytes 0-1', 'bytes 1-0/16',
                     'bytes=0-1/16']),
    header_values)

segments = st.one_of(
    st.sampled_from(['v2', 'v2.0', 'v2.9', 'v2.99', 'v2.x', 'v3', 'images',
                     'file', 'stage', 'import', 'actions', 'deactivate',
                     'reactivate', 'info', 'stores', 'detail', 'usage',
                     'schemas', 'image', 'versions', '', '.', '..',
                     '%2F', '%00', '%ff', '%', 'a%2Fb']),
    st.text(max_size=10).map(urllib.parse.quote),
    st.text(max_size=10))

#: Raw bytes as a server hands them over (latin-1), UTF-8 or not.
raw_segments = st.one_of(
    segments.map(as_wsgi), st.sampled_from(['\x00', 'a\x00b', '\xff']),
    st.binary(min_size=1, max_size=8).map(
        lambda raw: raw.replace(b'/', b'').decode('latin-1')))

query_params = st.tuples(
    st.sampled_from(['limit', 'marker', 'name', 'status', 'visibility',
                     'os_hidden', 'sort_key', 'sort_dir', 'member_status',
                     'tag', 'owner', 'x']),
    st.one_of(size_values, tricky_numbers, st.just('9' * 5000),
              st.binary(max_size=8).map(
                  lambda raw: urllib.parse.quote_from_bytes(raw)),
              st.binary(max_size=8).map(lambda raw: raw.decode('latin-1'))))
query_strings = st.one_of(
    st.none(),
    st.lists(query_params, max_size=4).map(
        lambda pairs: '&'.join('%s=%s' % pair for pair in pairs).encode(
            'utf-8', 'surrogatepass').decode('latin-1')),
    header_values)


# The parsers alone.

class TestParsers(CountingTest):

    @examples(1000)
    @hypothesis.given(st.one_of(size_values, st.text()))
    def test_parse_decimal_accepts_exactly_ascii_digits_3_3(self, value):
        """contract 3.3 and 9: blanks, then ASCII digits, then blanks."""
        self.tried('size.parse_decimal')
        parsed = size.parse_decimal(value)
        digits = value.strip(' \t')
        plain = (digits.isascii() and digits.isdigit()
                 and len(digits) <= 4000)
        if plain:
            self.assertEqual(int(digits), parsed)
        else:
            self.assertIsNone(parsed)

    @examples(300)
    @hypothesis.given(blanks, st.integers(min_value=0, max_value=10 ** 40),
                      blanks)
    def test_parse_decimal_reads_every_number_3_3(self, before, number,
                                                  after):
        self.tried('size.parse_decimal.roundtrip')
        self.assertEqual(number,
                         size.parse_decimal(before + str(number) + after))

    @examples(500)
    @hypothesis.given(media_types)
    def test_content_type_only_octet_stream_3_2(self, value):
        """contract 3.2: the media type, any case, parameters ignored."""
        self.tried('size.check_content_type')
        media_type = value.split(';', 1)[0].strip().lower()
        environ = {'CONTENT_TYPE': value}
        if media_type == 'application/octet-stream':
            self.assertIsNone(size.check_content_type(environ))
        else:
            err = self.assertRaises(webob.exc.HTTPUnsupportedMediaType,
                                    size.check_content_type, environ)
            self.assertIn('Invalid content type', err.explanation)

    @examples(500)
    @hypothesis.given(st.one_of(st.none(), size_values),
                      st.one_of(st.none(), size_values),
                      st.one_of(st.none(), st.sampled_from(
                          ['chunked', 'gzip, chunked', 'chunked, gzip',
                           'Chunked', 'identity', '', ',']), header_values))
    def test_framing_is_a_contract_error_or_a_declaration_3_3_to_3_6(
            self, header, content_length, transfer_encoding):
        self.tried('size.SizeMiddleware.check_request')
        middleware = size.SizeMiddleware(None, {'image_size_cap': '1000'})
        environ = {'CONTENT_TYPE': 'application/octet-stream'}
        for key, value in (('HTTP_X_OPENSTACK_IMAGE_SIZE', header),
                           ('CONTENT_LENGTH', content_length),
                           ('HTTP_TRANSFER_ENCODING', transfer_encoding)):
            if value is not None:
                environ[key] = value
        try:
            declared = middleware.check_request(environ)
        except webob.exc.HTTPException as err:
            self.assertIn(err.status_int, (400, 411, 413))
            return
        self.assertTrue(declared.size is None or 0 <= declared.size <= 1000)
        if declared.framing.chunked:
            self.assertNotIn('CONTENT_LENGTH', environ)
        else:
            self.assertEqual(declared.framing.content_length,
                             declared.framing.length)

    @examples(1000)
    @hypothesis.given(range_values, st.integers(min_value=1, max_value=100))
    def test_range_is_inside_the_image_or_a_contract_error_5_8_to_5_11(
            self, header, image_size):
        self.tried('download.parse_range')
        try:
            found = download.parse_range(header, image_size)
        except webob.exc.HTTPException as err:
            self.assertIn(err.status_int, (400, 416))
            if err.status_int == 416:
                self.assertEqual('bytes */%d' % image_size,
                                 err.headers['Content-Range'])
            return
        if found is not None:
            self.assertLessEqual(0, found.first)
            self.assertLessEqual(found.first, found.last)
            self.assertLess(found.last, image_size)
            self.assertEqual(image_size, found.size)

    def test_huge_positions_are_416_5_10(self):
        """contract 5.10: no int() of a header beyond Python's limit."""
        huge = '9' * 5000
        for header in ('bytes=%s-' % huge, 'bytes=0-%s' % huge,
                       'bytes=-%s' % huge):
            err = self.assertRaises(webob.exc.HTTPRequestRangeNotSatisfiable,
                                    download.parse_range, header, 16)
            self.assertIn('Invalid Range header.', err.explanation)
        for header in ('bytes %s-1/16' % huge, 'bytes 0-1/%s' % huge):
            self.assertRaises(webob.exc.HTTPRequestRangeNotSatisfiable,
                              download.parse_content_range, header, 16)

    @examples(300)
    @hypothesis.given(st.integers(min_value=1, max_value=10 ** 12),
                      st.integers(min_value=0, max_value=10 ** 12),
                      st.integers(min_value=0, max_value=10 ** 12))
    def test_range_of_two_numbers_5_13(self, image_size, first, length):
        """contract 5.13: the end clamped to the size."""
        self.tried('download.parse_range.roundtrip')
        last = first + length
        if first >= image_size:
            self.assertRaises(webob.exc.HTTPRequestRangeNotSatisfiable,
                              download.parse_range,
                              'bytes=%d-%d' % (first, last), image_size)
            return
        self.assertEqual(
            download.ByteRange(first, min(last, image_size - 1), image_size),
            download.parse_range('bytes=%d-%d' % (first, last), image_size))

    @examples(1000)
    @hypothesis.given(content_range_values,
                      st.integers(min_value=1, max_value=100))
    def test_legacy_content_range_5(self, header, image_size):
        """contract 5: what is announced is what is sent."""
        self.tried('download.parse_content_range')
        try:
            found = download.parse_content_range(header, image_size)
        except webob.exc.HTTPException as err:
            self.assertEqual(416, err.status_int)
            return
        self.assertLessEqual(0, found.first)
        self.assertLessEqual(found.first, found.last)
        self.assertLess(found.last, image_size)

    @examples(500)
    @hypothesis.given(st.one_of(st.none(), range_values),
                      st.one_of(st.none(), content_range_values),
                      st.one_of(st.none(), st.just('"etag"'), header_values))
    def test_if_range_decides_5_13(self, header, legacy, if_range):
        self.tried('download.requested_range')
        req = webob.Request.blank('/')
        for name, value in (('Range', header), ('Content-Range', legacy),
                            ('If-Range', if_range)):
            if value is not None:
                req.headers[name] = value
        try:
            found = download.requested_range(req.environ, 16, '"etag"')
        except webob.exc.HTTPException as err:
            self.assertIn(err.status_int, (400, 416))
            return
        if if_range is not None and if_range.strip() != '"etag"':
            self.assertIsNone(found)

    @examples(1000)
    @hypothesis.given(content_md5s)
    def test_content_md5_is_16_bytes_or_400_3_19(self, value):
        """contract 3.19: base64 (RFC 1864) or 32 hex digits."""
        self.tried('checksum.parse_content_md5')
        try:
            found = checksum.parse_content_md5(value)
        except webob.exc.HTTPBadRequest:
            return
        self.assertEqual(16, len(found.value))
        self.assertEqual('md5', found.algorithm)

    @examples(200)
    @hypothesis.given(st.binary(min_size=16, max_size=16), st.booleans())
    def test_content_md5_both_forms_read_back_3_19(self, raw, as_hex):
        self.tried('checksum.parse_content_md5.roundtrip')
        text = raw.hex() if as_hex else base64.b64encode(raw).decode()
        self.assertEqual(raw, checksum.parse_content_md5(text).value)

    @examples(1000)
    @hypothesis.given(digest_fields, st.sampled_from(['Content-Digest',
                                                      'Repr-Digest']))
    def test_digest_fields_parse_or_400_3_19(self, value, header):
        """contract 3.19: RFC 9530 dictionaries."""
        self.tried('checksum.parse_digest_field')
        try:
            found = checksum.parse_digest_field(header, value)
        except webob.exc.HTTPBadRequest:
            return
        for digest in found:
            self.assertEqual(digest_bytes[digest.name], len(digest.value))
            self.assertEqual(header, digest.header)

    @examples(300)
    @hypothesis.given(st.lists(st.sampled_from(sorted(digest_bytes)),
                               min_size=1, max_size=3, unique=True),
                      st.randoms(use_true_random=False))
    def test_digest_fields_read_back_3_19(self, names, rng):
        self.tried('checksum.parse_digest_field.roundtrip')
        items = [(name, rng.randbytes(digest_bytes[name])) for name in names]
        found = checksum.parse_digest_field('Repr-Digest', _field(items))
        self.assertEqual(items, [(d.name, d.value) for d in found])

    @examples(1000)
    @hypothesis.given(st.lists(segments, max_size=7), st.booleans())
    def test_route_never_fails_and_ids_are_one_segment_1(self, parts,
                                                         trailing):
        """contract 1: any path is a route or None; ids never span a /."""
        self.tried('paths.route')
        path = '/' + '/'.join(parts) + ('/' if trailing else '')
        found = paths.route(path)
        if found is None:
            return
        self.assertIn(found.kind, paths.KINDS)
        if found.image_id is not None:
            self.assertNotEqual('', found.image_id)
            self.assertNotIn('/', found.image_id)

    @examples(500)
    @hypothesis.given(st.text(min_size=1, max_size=20).filter(
        lambda text: '/' not in text),
        st.sampled_from(['file', 'stage', 'import', 'actions/deactivate',
                         'actions/reactivate', '']),
        st.integers(min_value=0, max_value=10 ** 6))
    def test_route_v2_minor_is_v2_1(self, image_id, tail, minor):
        """contract 1: /v2.N/ is served as /v2/, for any image id."""
        self.tried('paths.route.versions')
        path = '/images/%s/%s' % (image_id, tail)
        found = paths.route('/v2' + path)
        self.assertEqual(found, paths.route('/v2.%d%s' % (minor, path)))
        self.assertEqual(image_id, found.image_id)

    @examples(500)
    @hypothesis.given(st.one_of(st.none(), header_values))
    def test_roles_are_lower_cased_words_8(self, value):
        """contract 8: roles from X-Roles, lower-cased."""
        self.tried('context._split_roles')
        roles = context._lower(context._split_roles(value))
        for role in roles:
            self.assertEqual(role.strip().lower(), role)
            self.assertNotIn(',', role)
            self.assertNotEqual('', role)


# The whole pipeline.

MULTI_STORE = """
[store:fast]
filesystem_store_datadir = %(here)s/fast

[store:cheap]
filesystem_store_datadir = %(here)s/cheap
"""


class PipelineTest(CountingTest):
    """The shipped ``noauth`` pipeline, multi-store, one per class."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.fixtures = fixtures.CompoundFixture([
            fixtures.TempDir(), dbfixture.Database(),
            fixtures.FakeLogger(level='INFO')])
        cls.fixtures.setUp()
        try:
            cls.app = cls._load(*cls.fixtures.fixtures[:2])
        except BaseException:
            cls.fixtures.cleanUp()
            raise

    @classmethod
    def _load(cls, tempdir, database):
        if not database.url.startswith('sqlite'):
            registry_mod.Registry(database.url, sync=True).dispose()
        config_file = os.path.join(tempdir.path, 'api-paste.ini')
        with open(PASTE_FILE) as shipped, open(config_file, 'w') as copy:
            copy.write(shipped.read() + MULTI_STORE)
        conf = wsgi.global_conf(config_file, {
            'database_connection': database.url,
            'enabled_backends': 'fast:file, cheap:file',
            'default_backend': 'fast'},
            os.path.join(tempdir.path, 'state'))
        cls.registry = sa.create_engine(database.url,
                                        poolclass=sa.pool.NullPool)
        return deploy.loadapp('config:%s' % config_file, name='noauth',
                              global_conf=conf)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.dispose()
        cls.fixtures.cleanUp()
        super().tearDownClass()

    def call(self, method: str, path: str, body: bytes = b'',
             headers: typing.Optional[typing.Mapping[str, str]] = None,
             environ: typing.Optional[dict] = None) -> webob.Response:
        """A request as a WSGI server hands it over; the answer checked.

        ``path`` is the raw PATH_INFO (latin-1 of the bytes on the wire).
        """
        req = webob.Request.blank('/', method=method)
        req.environ['PATH_INFO'] = path
        req.body = body
        for name, value in (headers or {}).items():
            req.headers[name] = value
        req.environ.update(environ or {})
        resp = req.get_response(self.app)
        self.assert_well_formed(req, resp)
        return resp

    def assert_well_formed(self, req: webob.Request,
                           resp: webob.Response) -> None:
        """Never 5xx; errors follow Accept and carry the request id (2)."""
        self.assertLess(resp.status_int, 500, resp.text)
        if resp.status_int < 400 or req.environ['PATH_INFO'] == '/':
            return
        self.assertIn('x-openstack-request-id', resp.headers)
        if req.method == 'HEAD':
            # WebOb answers HEAD without generating the body (nor its type).
            self.assertEqual(b'', resp.body)
            return
        if req.headers.get('Accept') == 'application/json':
            self.assertEqual('application/json', resp.content_type)
        if resp.content_type == 'application/json':
            error = resp.json
            self.assertEqual(resp.status, error['code'])
            self.assertIsInstance(error['message'], str)
        else:
            self.assertIn(resp.content_type, ('text/html', 'text/plain'))
            self.assertIn(str(resp.status_int), resp.text)

    def create_image(self, **props) -> dict:
        body = {'disk_format': 'raw', 'container_format': 'bare'}
        body.update(props)
        resp = self.call('POST', '/v2/images', json.dumps(body).encode(),
                         {'Content-Type': 'application/json'})
        self.assertEqual(201, resp.status_int, resp.text)
        return resp.json

    def row(self, image_id: str) -> dict:
        with self.registry.connect() as connection:
            return dict(connection.execute(
                sa.text('SELECT * FROM images WHERE id = :id'),
                {'id': image_id}).mappings().one())


def _framing(body: bytes, content_length, chunked: typing.Optional[str]
             ) -> typing.Tuple[dict, bytes]:
    """The environ of a body as the server frames it, and what it holds."""
    environ = {'wsgi.input_terminated': chunked is not None}
    if chunked is not None:
        environ['HTTP_TRANSFER_ENCODING'] = chunked
        environ.pop('CONTENT_LENGTH', None)
        return environ, body
    if content_length is None:
        return dict(environ, CONTENT_LENGTH=''), b''
    environ['CONTENT_LENGTH'] = content_length
    length = size.parse_decimal(content_length)
    return environ, body if length is None else body[:length]


bodies = st.binary(max_size=40)
content_lengths = st.one_of(st.none(), st.just(None), size_values)
transfer_encodings = st.one_of(
    st.none(), st.sampled_from(['chunked', 'gzip, chunked', 'chunked, gzip',
                                'CHUNKED', 'identity', ',']),
    header_values)


class TestUploadProperties(PipelineTest):
    """PUT /v2/images/{id}/file with drawn headers (contract 3)."""

    def upload(self, body: bytes, headers: typing.Mapping[str, str],
               content_length='exact', chunked=None) -> webob.Response:
        if content_length == 'exact':
            content_length = str(len(body))
        environ, held = _framing(body, content_length, chunked)
        image = self.create_image()
        sent = {'Content-Type': 'application/octet-stream',
                'Accept': 'application/json'}
        sent.update(headers)
        resp = self.call('PUT', '/v2/images/%s/file' % image['id'], body,
                         sent, environ)
        self.assert_invariants(image['id'], resp, held)
        return resp

    def assert_invariants(self, image_id: str, resp: webob.Response,
                          held: bytes) -> None:
        """Contract 3: queued and empty, or active with what was sent."""
        row = self.row(image_id)
        if resp.status_int == 204:
            self.assertEqual('active', row['status'])
            self.assertEqual(len(held), row['size'])
            self.assertEqual(hashlib.md5(held).hexdigest(), row['checksum'])
            self.assertEqual(hashlib.sha512(held).hexdigest(),
                             row['os_hash_value'])
            return
        self.assertEqual('queued', row['status'], resp.text)
        for column in ('size', 'checksum', 'os_hash_value', 'holder'):
            self.assertIsNone(row[column], column)

    @examples(100)
    @hypothesis.given(bodies, size_values)
    def test_image_size_header_3_3(self, body, value):
        self.tried('x-openstack-image-size')
        resp = self.upload(body, {'x-openstack-image-size': value})
        if resp.status_int == 204:
            self.assertEqual(len(body), size.parse_decimal(value))

    @examples(100)
    @hypothesis.given(bodies, content_lengths, transfer_encodings,
                      st.one_of(st.none(), size_values))
    def test_framing_3_4_to_3_6_and_3_14_to_3_18(
            self, body, length, coding, declared):
        self.tried('content-length+transfer-encoding')
        headers = {}
        if declared is not None:
            headers['x-openstack-image-size'] = declared
        self.upload(body, headers, length, coding)

    @examples(100)
    @hypothesis.given(bodies, media_types, accepts)
    def test_content_type_and_accept_3_2_and_2(self, body, media_type,
                                               accept):
        self.tried('content-type+accept')
        resp = self.upload(body, {'Content-Type': media_type,
                                  'Accept': accept})
        media = media_type.split(';', 1)[0].strip().lower()
        if media != 'application/octet-stream':
            self.assertEqual(415, resp.status_int)

    @examples(100)
    @hypothesis.given(bodies, st.one_of(st.none(), content_md5s),
                      st.one_of(st.none(), digest_fields),
                      st.one_of(st.none(), digest_fields), st.booleans())
    def test_client_digests_3_19(self, body, md5, content_digest,
                                 repr_digest, chunked):
        self.tried('content-md5+content-digest+repr-digest')
        headers = {}
        for name, value in (('Content-MD5', md5),
                            ('Content-Digest', content_digest),
                            ('Repr-Digest', repr_digest)):
            if value is not None:
                headers[name] = value
        self.upload(body, headers, None if chunked else 'exact',
                    'chunked' if chunked else None)

    @examples(50)
    @hypothesis.given(bodies)
    def test_matching_digests_are_accepted_3_19_3_24(self, body):
        self.tried('matching digests')
        headers = {
            'Content-MD5': base64.b64encode(
                hashlib.md5(body).digest()).decode(),
            'Repr-Digest': _field([('sha-256',
                                    hashlib.sha256(body).digest())])}
        self.assertEqual(204, self.upload(body, headers).status_int)

    @examples(100)
    @hypothesis.given(bodies, store_ids)
    def test_store_header_3_7(self, body, store):
        self.tried('x-image-meta-store')
        resp = self.upload(body, {'X-Image-Meta-Store': store})
        if store.strip() not in ('fast', 'cheap'):
            self.assertEqual(400, resp.status_int)
            self.assertIn('Store for identifier', resp.json['message'])


class TestDownloadProperties(PipelineTest):
    """GET and HEAD /v2/images/{id}/file with drawn headers (section 5)."""

    DATA = bytes(range(16))

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        req = webob.Request.blank('/v2/images', method='POST', json={
            'disk_format': 'raw', 'container_format': 'bare'})
        cls.image_id = req.get_response(cls.app).json['id']
        req = webob.Request.blank('/v2/images/%s/file' % cls.image_id,
                                  method='PUT', body=cls.DATA,
                                  content_type='application/octet-stream')
        assert req.get_response(cls.app).status_int == 204
        req = webob.Request.blank('/v2/images', method='POST', json={})
        cls.empty_id = req.get_response(cls.app).json['id']

    @examples(300)
    @hypothesis.given(st.sampled_from(['GET', 'HEAD']),
                      st.one_of(st.none(), range_values),
                      st.one_of(st.none(), content_range_values),
                      st.one_of(st.none(), st.just(
                          '"%s"' % hashlib.md5(DATA).hexdigest()),
                          header_values),
                      st.one_of(st.none(), header_values), accepts)
    def test_ranges_5_8_to_5_14(self, method, header, legacy, if_range,
                                if_none_match, accept):
        self.tried('range+content-range+if-range+if-none-match')
        headers = {'Accept': accept}
        for name, value in (('Range', header), ('Content-Range', legacy),
                            ('If-Range', if_range),
                            ('If-None-Match', if_none_match)):
            if value is not None:
                headers[name] = value
        resp = self.call(method, '/v2/images/%s/file' % self.image_id,
                         headers=headers)
        self.assertIn(resp.status_int, (200, 206, 304, 400, 416))
        if resp.status_int == 200:
            self.assertEqual(16, resp.content_length)
        if resp.status_int == 206:
            first, last = map(int, re.fullmatch(
                r'bytes (\d+)-(\d+)/16', resp.headers['Content-Range']
            ).groups())
            self.assertEqual(last - first + 1, resp.content_length)
            if method == 'GET':
                self.assertEqual(self.DATA[first:last + 1], resp.body)

    @examples(100)
    @hypothesis.given(st.one_of(st.none(), range_values),
                      st.one_of(st.none(), content_range_values))
    def test_no_data_is_204_whatever_the_range_5_6(self, header, legacy):
        self.tried('range on an image without data')
        headers = {}
        for name, value in (('Range', header), ('Content-Range', legacy)):
            if value is not None:
                headers[name] = value
        resp = self.call('GET', '/v2/images/%s/file' % self.empty_id,
                         headers=headers)
        self.assertEqual(204, resp.status_int)


class CutChunkInput(io.BytesIO):
    """gunicorn's input on a chunk cut short: a ParseException."""

    def read(self, size=-1):
        raise ValueError('Invalid chunk terminator is not \\r\\n')


class TestRequestProperties(PipelineTest):
    """Any method on any path, as any identity (sections 1, 2 and 8)."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        req = webob.Request.blank('/v2/images', method='POST', json={
            'disk_format': 'raw', 'container_format': 'bare'})
        cls.image_id = req.get_response(cls.app).json['id']

    @examples(400)
    @hypothesis.given(
        st.sampled_from(['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'OPTIONS',
                         'TRACE', 'get', 'PROPFIND']),
        st.lists(raw_segments, max_size=6), query_strings, bodies, accepts)
    def test_any_path_1(self, method, parts, query, body, accept):
        """contract 1 and 2: 404 or 405 with Allow, never 5xx."""
        self.tried('paths+query strings')
        path = '/' + '/'.join(parts)
        environ = {'QUERY_STRING': query or ''}
        resp = self.call(method, path, body, {'Accept': accept}, environ)
        if resp.status_int == 405:
            self.assertIn('Allow', resp.headers)

    @examples(200)
    @hypothesis.given(st.one_of(st.text(min_size=1, max_size=40), st.binary(
        min_size=1, max_size=40).map(lambda raw: raw.decode('latin-1'))),
        st.sampled_from(['', '/file', '/stage', '/import',
                         '/actions/deactivate', '/actions/reactivate']),
        st.sampled_from(['GET', 'HEAD', 'PUT', 'POST']),
        st.sampled_from(['/v2', '/v2.1', '/v2.13', '/v2.99']))
    def test_any_image_id_is_404_1(self, image_id, tail, method, prefix):
        """contract 3.8 and 5.3: an unknown id, however spelt, is 404."""
        self.tried('image ids')
        quoted = urllib.parse.quote(as_wsgi(image_id), safe='')
        for raw in {quoted, as_wsgi(image_id).replace('/', '')} - {''}:
            path = '%s/images/%s%s' % (prefix, raw, tail)
            resp = self.call(method, path, b'', {
                'Content-Type': 'application/octet-stream'})
            self.assertIn(resp.status_int, (300, 400, 404, 405), path)
            if resp.status_int == 404 and method != 'HEAD':
                self.assertIn('No image found with ID', resp.text)

    def test_json_body_cut_short_is_400(self):
        """A create or import body that breaks mid-read (a chunk cut)."""
        body = b'{"method": {"name": "glance-direct"}}'
        inputs = [lambda: fakes.FailingInput(body, 5), CutChunkInput]
        for path, make_input in itertools.product(
                ('/v2/images', '/v2/images/%s/import' % self.image_id),
                inputs):
            req = webob.Request.blank(path, method='POST')
            req.content_type = 'application/json'
            req.environ['wsgi.input'] = make_input()
            req.environ['CONTENT_LENGTH'] = str(len(body))
            resp = req.get_response(self.app)
            self.assertEqual(400, resp.status_int, resp.text)
            self.assertIn('Malformed JSON in request body.', resp.text)

    @examples(200)
    @hypothesis.given(query_strings, accepts)
    def test_list_queries_1(self, query, accept):
        """contract 1: GET /v2/images with any query is 200 or 400."""
        self.tried('GET /v2/images query strings')
        resp = self.call('GET', '/v2/images', headers={'Accept': accept},
                         environ={'QUERY_STRING': query or ''})
        self.assertIn(resp.status_int, (200, 400), resp.text)

    @examples(200)
    @hypothesis.given(st.one_of(st.none(), header_values),
                      st.one_of(st.none(), header_values),
                      st.one_of(st.none(), header_values),
                      st.sampled_from(['list', 'create', 'get', 'upload',
                                       'download', 'usage', 'stores']))
    def test_identity_headers_8(self, roles, project, user, action):
        """contract 8: trust_identity_headers takes any identity."""
        self.tried('x-roles+x-project-id+x-user-id')
        headers = {'Accept': 'application/json'}
        for name, value in (('X-Roles', roles), ('X-Project-Id', project),
                            ('X-User-Id', user)):
            if value is not None:
                headers[name] = value
        method, path, body = {
            'list': ('GET', '/v2/images', b''),
            'create': ('POST', '/v2/images', b'{}'),
            'get': ('GET', '/v2/images/%s' % self.image_id, b''),
            'upload': ('PUT', '/v2/images/%s/file' % self.image_id,
                       b'12345'),
            'download': ('GET', '/v2/images/%s/file' % self.image_id, b''),
            'usage': ('GET', '/v2/info/usage', b''),
            'stores': ('GET', '/v2/info/stores/detail', b''),
        }[action]
        if action == 'create':
            headers['Content-Type'] = 'application/json'
        if action == 'upload':
            headers['Content-Type'] = 'application/octet-stream'
        self.call(method, path, body, headers)
