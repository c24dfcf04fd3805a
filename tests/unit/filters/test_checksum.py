"""Tests of the checksum filter (contract 3.19 and section 5)."""

import base64
import hashlib
import io
import logging
import wsgiref.util

import fixtures
import paste.deploy
import testtools
import webob

from imgmw import config
from imgmw import environ as env_keys
from imgmw.filters import checksum
from imgmw import hashing
from imgmw import streams
from tests.unit import fakes


BODY = b'0123456789' * 1000 + b'tail'


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode('ascii')


def sf(name: str, data: bytes) -> str:
    """An RFC 9530 member for ``data`` hashed with hashlib ``name``."""
    return '%s=:%s:' % (hashing.http_name(name),
                        b64(hashlib.new(name, data).digest()))


def make(app, global_conf=None, **local_conf):
    return checksum.filter_factory(global_conf or {}, **local_conf)(app)


class UploadTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.app = fakes.RecordingApp(chunk_size=1000)

    def upload(self, body=BODY, headers=None, filt=None, **kwargs):
        req = fakes.upload_request(body=body, headers=headers, **kwargs)
        resp = req.get_response(filt or make(self.app))
        return req, resp

    def assertRefused(self, resp, message):
        self.assertEqual(400, resp.status_int)
        self.assertIn(message, resp.text)

    def assertStored(self, resp, body=BODY, algorithm='sha512'):
        self.assertEqual(204, resp.status_int, resp.text)
        self.assertEqual(body, self.app.received)
        self.assertTrue(self.app.eof)
        digests = self.app.environ[env_keys.DIGESTS]
        self.assertEqual(hashlib.md5(body).hexdigest(), digests.md5)
        self.assertEqual(algorithm, digests.os_hash_algo)
        self.assertEqual(hashlib.new(algorithm, body).hexdigest(),
                         digests.os_hash_value)
        blocks = hashing.BlockHasher()
        blocks.update(body)
        self.assertEqual(blocks.result(), digests.blocks)

    def assertMismatch(self, resp, algorithm):
        """Contract 3.19, and the app never saw a complete body."""
        self.assertRefused(
            resp, 'Checksum verification failed: %s mismatch' % algorithm)
        self.assertFalse(self.app.eof)
        self.assertIsInstance(self.app.failed, streams.StreamError)
        self.assertFalse(self.app.environ[env_keys.DIGESTS].ready)


class TestUploadHashing(UploadTestCase):

    def test_digests_published_for_the_app(self):
        req, resp = self.upload()
        self.assertStored(resp)

    def test_configured_multihash(self):
        req, resp = self.upload(filt=make(self.app,
                                          hashing_algorithm='sha3_256'))
        self.assertStored(resp, algorithm='sha3_256')

    def test_multihash_from_default_section(self):
        filt = make(self.app, global_conf={'hashing_algorithm': 'sha256'})
        req, resp = self.upload(filt=filt)
        self.assertStored(resp, algorithm='sha256')

    def test_chunked_body(self):
        req, resp = self.upload(chunked=True)
        self.assertStored(resp)

    def test_read_all_at_once(self):
        self.app.chunk_size = -1
        req, resp = self.upload()
        self.assertStored(resp)

    def test_empty_body(self):
        req, resp = self.upload(body=b'')
        self.assertStored(resp, body=b'')

    def test_empty_chunked_body(self):
        req, resp = self.upload(body=b'', chunked=True)
        self.assertStored(resp, body=b'')

    def test_declared_zero_size_reads_from_the_proxy_below(self):
        # The size filter's proxy must be asked, to refuse extra bytes.
        req = fakes.upload_request(body=b'', chunked=True)
        req.environ[env_keys.SIZE] = 0
        resp = req.get_response(make(self.app))
        self.assertStored(resp, body=b'')
        self.assertIsNone(self.app.environ['wsgi.input'].length)

    def test_stage_is_hashed_too(self):
        req, resp = self.upload(path='/v2/images/abc/stage')
        self.assertStored(resp)

    def test_digests_refuse_to_be_read_early(self):
        seen = []

        def app(environ, start_response):
            digests = environ[env_keys.DIGESTS]
            try:
                digests.md5
            except hashing.DigestsNotReady as err:
                seen.append(err)
            environ['wsgi.input'].read()
            seen.append(digests.md5)
            return webob.Response(status=204)(environ, start_response)

        req = fakes.upload_request(body=BODY)
        req.get_response(make(app))
        self.assertIsInstance(seen[0], hashing.DigestsNotReady)
        self.assertEqual(hashlib.md5(BODY).hexdigest(), seen[1])

    def test_only_md5_and_multihash_without_client_digests(self):
        self.upload()
        hasher = self.app.environ['wsgi.input'].hasher
        self.assertEqual(('md5', 'sha512'), hasher.algorithms)

    def test_extra_algorithm_only_when_asked(self):
        self.upload(headers={'Content-Digest': sf('sha256', BODY)})
        hasher = self.app.environ['wsgi.input'].hasher
        self.assertEqual(('md5', 'sha512', 'sha256'), hasher.algorithms)

    def test_not_a_data_upload_passes_untouched(self):
        for method, path in (('POST', '/v2/images'),
                             ('GET', '/v2/images/abc'),
                             ('PATCH', '/v2/images/abc'),
                             ('POST', '/v2/images/abc/import')):
            req = fakes.upload_request(path=path, method=method,
                                       headers={'Content-MD5': 'bogus'})
            original = req.environ['wsgi.input']
            resp = req.get_response(make(self.app))
            self.assertEqual(204, resp.status_int, path)
            self.assertIs(original, self.app.environ['wsgi.input'])
            self.assertNotIn(env_keys.DIGESTS, self.app.environ)

    def test_short_body_is_a_size_failure_not_a_digest_one(self):
        req, resp = self.upload(
            content_length=len(BODY) + 5,
            headers={'Content-MD5': b64(hashlib.md5(BODY).digest())})
        self.assertRefused(resp, 'Size mismatch: expected %d bytes, got %d '
                           'bytes' % (len(BODY) + 5, len(BODY)))


class TestContentMD5(UploadTestCase):
    """Contract 3.19, Content-MD5 as base64 (RFC 1864) or hex."""

    def test_base64_valid(self):
        req, resp = self.upload(
            headers={'Content-MD5': b64(hashlib.md5(BODY).digest())})
        self.assertStored(resp)

    def test_hex_valid(self):
        for value in (hashlib.md5(BODY).hexdigest(),
                      hashlib.md5(BODY).hexdigest().upper()):
            req, resp = self.upload(headers={'Content-MD5': value})
            self.assertStored(resp)

    def test_base64_wrong(self):
        req, resp = self.upload(
            headers={'Content-MD5': b64(hashlib.md5(b'other').digest())})
        self.assertMismatch(resp, 'md5')

    def test_hex_wrong(self):
        req, resp = self.upload(
            headers={'Content-MD5': hashlib.md5(b'other').hexdigest()})
        self.assertMismatch(resp, 'md5')

    def test_last_chunk_withheld_on_mismatch(self):
        req, resp = self.upload(
            headers={'Content-MD5': hashlib.md5(b'other').hexdigest()})
        self.assertMismatch(resp, 'md5')
        self.assertEqual(BODY[:len(BODY) - len(BODY) % 1000],
                         self.app.received)

    def test_malformed(self):
        for value in ('xyz', hashlib.md5(BODY).hexdigest()[:31],
                      hashlib.md5(BODY).hexdigest() + '0',
                      b64(hashlib.md5(BODY).digest()[:15]),
                      b64(hashlib.sha256(BODY).digest()),
                      '1B2M2Y8AsgTpgAmY7PhCfg=', '\xe9' * 24, ''):
            self.app = fakes.RecordingApp()
            req, resp = self.upload(headers={'Content-MD5': value})
            self.assertRefused(resp, 'Invalid Content-MD5 header: expected '
                               'an MD5 digest as base64 (RFC 1864) or as 32 '
                               'hexadecimal digits')
            self.assertFalse(self.app.called, value)

    def test_empty_body(self):
        req, resp = self.upload(
            body=b'', headers={'Content-MD5': '1B2M2Y8AsgTpgAmY7PhCfg=='})
        self.assertStored(resp, body=b'')

    def test_empty_body_wrong(self):
        req, resp = self.upload(
            body=b'', headers={'Content-MD5': b64(hashlib.md5(b'x').digest())})
        self.assertMismatch(resp, 'md5')

    def test_chunked_wrong(self):
        req, resp = self.upload(
            chunked=True,
            headers={'Content-MD5': hashlib.md5(b'other').hexdigest()})
        self.assertMismatch(resp, 'md5')

    def test_declared_size_used_for_a_chunked_body(self):
        # With the size filter's size, the check runs with the last chunk.
        req = fakes.upload_request(
            body=BODY, chunked=True,
            headers={'Content-MD5': hashlib.md5(b'other').hexdigest()})
        req.environ[env_keys.SIZE] = len(BODY)
        resp = req.get_response(make(self.app))
        self.assertMismatch(resp, 'md5')
        self.assertEqual(len(BODY) - len(BODY) % 1000,
                         len(self.app.received))

    def test_app_catching_everything_still_gets_the_400(self):
        self.app = fakes.RecordingApp(catch=True)
        req, resp = self.upload(
            headers={'Content-MD5': hashlib.md5(b'other').hexdigest()})
        self.assertRefused(resp, 'Checksum verification failed: md5 mismatch')

    def test_stream_errors_as_ioerror_for_glance(self):
        self.app = fakes.RecordingApp(catch=True)
        filt = make(self.app, stream_errors='ioerror')
        req, resp = self.upload(
            headers={'Content-MD5': hashlib.md5(b'other').hexdigest()},
            filt=filt)
        self.assertIsInstance(self.app.failed, streams.StreamIOError)
        self.assertRefused(resp, 'Checksum verification failed: md5 mismatch')

    def test_stream_errors_base_by_default(self):
        self.app = fakes.RecordingApp(catch=True)
        req, resp = self.upload(
            headers={'Content-MD5': hashlib.md5(b'other').hexdigest()})
        self.assertIsInstance(self.app.failed, streams.StreamError)

    def test_ignored_when_verification_is_off(self):
        filt = make(self.app, verify_client_digests='false')
        for value in (hashlib.md5(b'other').hexdigest(), 'malformed'):
            req, resp = self.upload(headers={'Content-MD5': value},
                                    filt=filt)
            self.assertStored(resp)


class TestDigestFields(UploadTestCase):
    """Contract 3.19, Content-Digest and Repr-Digest (RFC 9530)."""

    HEADERS = ('Content-Digest', 'Repr-Digest')

    def test_valid(self):
        for header in self.HEADERS:
            for name in ('sha256', 'sha512', 'md5'):
                self.app = fakes.RecordingApp()
                req, resp = self.upload(headers={header: sf(name, BODY)})
                self.assertStored(resp)

    def test_wrong(self):
        for header in self.HEADERS:
            for name in ('sha256', 'sha512', 'md5'):
                self.app = fakes.RecordingApp(chunk_size=1000)
                req, resp = self.upload(headers={header: sf(name, b'x')})
                self.assertMismatch(resp, hashing.http_name(name))

    def test_empty_body(self):
        for name in ('sha256', 'sha512'):
            req, resp = self.upload(
                body=b'', headers={'Repr-Digest': sf(name, b'')})
            self.assertStored(resp, body=b'')
            req, resp = self.upload(
                body=b'', headers={'Repr-Digest': sf(name, b'x')})
            self.assertMismatch(resp, hashing.http_name(name))

    def test_with_parameters_and_spacing(self):
        value = '  %s;foo=1 ,  %s  ' % (sf('sha256', BODY), sf('md5', BODY))
        req, resp = self.upload(headers={'Content-Digest': value})
        self.assertStored(resp)

    def test_several_in_one_field_one_wrong(self):
        value = '%s, %s' % (sf('sha512', BODY), sf('sha256', b'x'))
        req, resp = self.upload(headers={'Content-Digest': value})
        self.assertMismatch(resp, 'sha-256')

    def test_every_header_at_once_valid(self):
        req, resp = self.upload(headers={
            'Content-MD5': b64(hashlib.md5(BODY).digest()),
            'Content-Digest': sf('sha256', BODY),
            'Repr-Digest': '%s, %s' % (sf('sha512', BODY),
                                       sf('sha256', BODY))})
        self.assertStored(resp)

    def test_every_header_at_once_one_wrong(self):
        req, resp = self.upload(headers={
            'Content-MD5': hashlib.md5(BODY).hexdigest(),
            'Content-Digest': sf('sha256', BODY),
            'Repr-Digest': sf('sha512', b'x')})
        self.assertMismatch(resp, 'sha-512')

    def test_malformed(self):
        good = b64(hashlib.sha256(BODY).digest())
        cases = {
            'sha-256=%s' % good: 'not an RFC 9530 dictionary',
            'sha-256=:%s' % good: 'not an RFC 9530 dictionary',
            'sha-256=:not base64!:': 'not an RFC 9530 dictionary',
            'SHA-256=:%s:' % good: 'not an RFC 9530 dictionary',
            'sha-256=:%s:,' % good: 'not an RFC 9530 dictionary',
            'sha-256=abc': 'sha-256 must be a byte sequence (:base64:)',
            'sha-256="%s"' % good: 'sha-256 must be a byte sequence',
            'sha-256=(:%s:)' % good: 'sha-256 must be a byte sequence',
            'sha-256': 'sha-256 must be a byte sequence',
            'sha-256=:%s:' % b64(hashlib.md5(BODY).digest()):
                'a sha-256 digest has 32 bytes, not 16',
            'sha-512=:%s:' % good: 'a sha-512 digest has 64 bytes, not 32',
        }
        for header in self.HEADERS:
            for value, reason in cases.items():
                self.app = fakes.RecordingApp()
                req, resp = self.upload(headers={header: value})
                self.assertRefused(resp, 'Invalid %s header: ' % header)
                self.assertIn(reason, resp.text)
                self.assertFalse(self.app.called, value)

    def test_unsupported_algorithm_alone(self):
        for header in self.HEADERS:
            self.app = fakes.RecordingApp()
            req, resp = self.upload(
                headers={header: 'crc32c=:AAAAAA==:, sha=:%s:' % b64(
                    hashlib.sha1(BODY).digest())})
            self.assertRefused(
                resp, 'Unsupported digest algorithm(s) in %s: crc32c, sha. '
                'Supported: sha-512=10, sha-256=9, md5=1' % header)
            self.assertEqual(checksum.WANT_DIGEST,
                             resp.headers['Want-' + header])
            self.assertFalse(self.app.called)

    def test_unsupported_algorithm_beside_a_supported_one(self):
        value = 'sha3-512=:AAAA:, %s, unixsum=1' % sf('sha256', BODY)
        req, resp = self.upload(headers={'Repr-Digest': value})
        self.assertStored(resp)

    def test_unsupported_algorithm_beside_a_wrong_one(self):
        value = 'crc32c=:AAAAAA==:, %s' % sf('sha256', b'x')
        req, resp = self.upload(headers={'Content-Digest': value})
        self.assertMismatch(resp, 'sha-256')

    def test_empty_field_is_no_digest(self):
        req, resp = self.upload(headers={'Content-Digest': ''})
        self.assertStored(resp)

    def test_without_published_digests(self):
        filt = make(self.app, publish_digests='false')
        req, resp = self.upload(
            headers={'Content-Digest': sf('sha256', BODY)}, filt=filt)
        self.assertEqual(204, resp.status_int)
        self.assertNotIn(env_keys.DIGESTS, self.app.environ)
        hasher = self.app.environ['wsgi.input'].hasher
        self.assertEqual(('sha256',), hasher.algorithms)
        req, resp = self.upload(
            headers={'Content-Digest': sf('sha256', b'x')}, filt=filt)
        self.assertRefused(resp, 'Checksum verification failed: sha-256 '
                           'mismatch')

    def test_nothing_to_do_leaves_the_input_alone(self):
        filt = make(self.app, publish_digests='false')
        req = fakes.upload_request(body=BODY)
        original = req.environ['wsgi.input']
        resp = req.get_response(filt)
        self.assertEqual(204, resp.status_int)
        self.assertIs(original, self.app.environ['wsgi.input'])


class DownloadApp:
    """Serves an image, perhaps corrupt, with the digest headers it is given.

    :param served: the bytes actually sent, in ``chunk_size`` chunks.
    :param lazy: call ``start_response`` only on the first iteration.
    :param file_wrapper: answer through ``wsgi.file_wrapper``.
    """

    def __init__(self, served, headers, status='200 OK', chunk_size=4096,
                 lazy=False, file_wrapper=False, content_length=None):
        self.served = served
        self.headers = dict(headers)
        self.headers.setdefault('Content-Type', 'application/octet-stream')
        self.headers['Content-Length'] = str(
            len(served) if content_length is None else content_length)
        self.status = status
        self.chunk_size = chunk_size
        self.lazy = lazy
        self.file_wrapper = file_wrapper
        self.closed = False
        self.app_iter = None

    def __call__(self, environ, start_response):
        headers = list(self.headers.items())
        if self.file_wrapper:
            self.app_iter = environ['wsgi.file_wrapper'](
                io.BytesIO(self.served), self.chunk_size)
            start_response(self.status, headers)
            return self.app_iter
        if self.lazy:
            self.app_iter = self._lazy(start_response, headers)
        else:
            start_response(self.status, headers)
            self.app_iter = _ClosingIter(self, fakes_chunks(
                self.served, self.chunk_size))
        return self.app_iter

    def _lazy(self, start_response, headers):
        start_response(self.status, headers)
        yield from fakes_chunks(self.served, self.chunk_size)


def fakes_chunks(data, size):
    return [data[offset:offset + size]
            for offset in range(0, len(data), size)]


class _ClosingIter:

    def __init__(self, app, chunks):
        self._app = app
        self._chunks = chunks

    def __iter__(self):
        return iter(self._chunks)

    def close(self):
        self._app.closed = True


class TestDownload(testtools.TestCase):
    """Contract section 5: a full download is verified while it streams."""

    IMAGE = b'image data ' * 2000

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))

    def get(self, app, path='/v2/images/img-1/file', method='GET', **conf):
        """Run a download; return (status, headers, bytes sent, error)."""
        environ = webob.Request.blank(path, method=method).environ
        environ['wsgi.file_wrapper'] = wsgiref.util.FileWrapper
        started = []

        def start_response(status, headers, exc_info=None):
            started.append((status, headers))

        result = make(app, **conf)(environ, start_response)
        received = b''
        error = None
        try:
            for chunk in result:
                received += chunk
        except checksum.CorruptImageData as err:
            error = err
        finally:
            streams.close_if_possible(result)
        status, headers = started[0]
        return result, status, dict(headers), received, error

    def md5_hex(self, data=IMAGE):
        return hashlib.md5(data).hexdigest()

    def corrupt(self, data=IMAGE):
        return data[:5000] + b'X' + data[5001:]

    def assertCut(self, received, error, app):
        self.assertIsInstance(error, checksum.CorruptImageData)
        self.assertEqual('Corrupt image download for image img-1',
                         str(error))
        self.assertLess(len(received), int(app.headers['Content-Length']))
        self.assertEqual(app.served[:len(received)], received)
        self.assertIn('Image img-1: the data sent does not match',
                      self.log.output)
        self.assertIn('download cut after %d of %s bytes'
                      % (len(received), app.headers['Content-Length']),
                      self.log.output)

    def test_intact_image_with_hex_content_md5(self):
        app = DownloadApp(self.IMAGE, {'Content-MD5': self.md5_hex()})
        result, status, headers, received, error = self.get(app)
        self.assertIsNone(error)
        self.assertEqual(self.IMAGE, received)
        self.assertEqual(self.md5_hex(), headers['Content-MD5'])
        self.assertTrue(app.closed)

    def test_body_the_app_verifies_by_blocks_is_left_alone(self):
        """The app published imgmw.verified: no second hash."""
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()})

        def verifying_app(environ, start_response):
            environ[env_keys.BLOCKS_VERIFIED] = True
            return app(environ, start_response)

        result, status, headers, received, error = self.get(verifying_app)
        self.assertIsNone(error)
        self.assertIs(app.app_iter, result)
        self.assertEqual(self.corrupt(), received)

    def test_headers_of_a_body_verified_by_blocks_are_not_parsed(self):
        # Nothing to check them for: not even an unusable one is reported.
        app = DownloadApp(self.IMAGE, {'Content-MD5': 'nonsense',
                                       'Repr-Digest': 'crc32c=:AAAAAA==:'})

        def verifying_app(environ, start_response):
            environ[env_keys.BLOCKS_VERIFIED] = True
            return app(environ, start_response)

        result, status, headers, received, error = self.get(verifying_app)
        self.assertIsNone(error)
        self.assertEqual(self.IMAGE, received)
        self.assertEqual('nonsense', headers['Content-MD5'])
        self.assertNotIn('unusable digest header', self.log.output)

    def test_intact_image_with_base64_content_md5(self):
        app = DownloadApp(self.IMAGE, {
            'Content-MD5': b64(hashlib.md5(self.IMAGE).digest())})
        result, status, headers, received, error = self.get(app)
        self.assertIsNone(error)
        self.assertEqual(self.IMAGE, received)

    def test_corrupt_bytes_cut_before_the_end(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()})
        result, status, headers, received, error = self.get(app)
        self.assertEqual('200 OK', status)
        self.assertCut(received, error, app)
        self.assertEqual(len(self.IMAGE) - len(self.IMAGE) % 4096,
                         len(received))
        self.assertTrue(app.closed)

    def test_truncated_data_cut(self):
        app = DownloadApp(self.IMAGE[:-100], {'Content-MD5': self.md5_hex()},
                          content_length=len(self.IMAGE))
        result, status, headers, received, error = self.get(app)
        self.assertCut(received, error, app)

    def test_single_chunk_corrupt_sends_nothing(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()},
                          chunk_size=len(self.IMAGE))
        result, status, headers, received, error = self.get(app)
        self.assertCut(received, error, app)
        self.assertEqual(b'', received)

    def test_repr_digest_preferred(self):
        # A correct SHA-512 wins over a (wrong) MD5: only one hash is run.
        app = DownloadApp(self.IMAGE, {
            'Content-MD5': self.md5_hex(b'other'),
            'Repr-Digest': sf('sha512', self.IMAGE)})
        result, status, headers, received, error = self.get(app)
        self.assertIsNone(error)
        self.assertEqual(self.IMAGE, received)

    def test_repr_digest_wrong(self):
        app = DownloadApp(self.corrupt(), {
            'Content-MD5': self.md5_hex(self.corrupt()),
            'Repr-Digest': sf('sha256', self.IMAGE)})
        result, status, headers, received, error = self.get(app)
        self.assertCut(received, error, app)
        self.assertIn('Repr-Digest sha-256 digest', self.log.output)

    def test_repr_digest_strongest_of_several(self):
        app = DownloadApp(self.IMAGE, {
            'Repr-Digest': '%s, %s' % (sf('sha256', b'x'),
                                       sf('sha512', self.IMAGE))})
        result, status, headers, received, error = self.get(app)
        self.assertIsNone(error)

    def test_unusable_repr_digest_falls_back_to_content_md5(self):
        app = DownloadApp(self.corrupt(), {
            'Content-MD5': self.md5_hex(),
            'Repr-Digest': 'crc32c=:AAAAAA==:'})
        result, status, headers, received, error = self.get(app)
        self.assertCut(received, error, app)
        self.assertIn('unusable digest header: Unsupported digest',
                      self.log.output)

    def test_malformed_digest_header_passes_with_a_warning(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': 'nonsense'})
        result, status, headers, received, error = self.get(app)
        self.assertIsNone(error)
        self.assertEqual(self.corrupt(), received)
        self.assertIn('Image img-1: the app sent an unusable digest header: '
                      'Invalid Content-MD5 header', self.log.output)

    def test_empty_image(self):
        app = DownloadApp(b'', {'Content-MD5': self.md5_hex(b'')})
        result, status, headers, received, error = self.get(app)
        self.assertIsNone(error)
        self.assertEqual(b'', received)

    def test_file_wrapper_is_iterated_and_verified(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()},
                          file_wrapper=True)
        result, status, headers, received, error = self.get(app)
        self.assertIsNot(app.app_iter, result)
        self.assertCut(received, error, app)

    def test_lazy_start_response(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()},
                          lazy=True)
        result, status, headers, received, error = self.get(app)
        self.assertCut(received, error, app)

    def test_lazy_start_response_without_digest(self):
        app = DownloadApp(self.IMAGE, {}, lazy=True)
        result, status, headers, received, error = self.get(app)
        self.assertIsNone(error)
        self.assertEqual(self.IMAGE, received)

    def test_partial_content_untouched(self):
        app = DownloadApp(self.corrupt()[:100], {
            'Content-MD5': self.md5_hex(),
            'Content-Range': 'bytes 0-99/%d' % len(self.IMAGE)},
            status='206 Partial Content', file_wrapper=True)
        result, status, headers, received, error = self.get(app)
        self.assertIs(app.app_iter, result)
        self.assertIsNone(error)

    def test_200_with_content_range_untouched(self):
        app = DownloadApp(self.corrupt(), {
            'Content-MD5': self.md5_hex(),
            'Content-Range': 'bytes 0-%d/%d' % (len(self.IMAGE) - 1,
                                                len(self.IMAGE))})
        result, status, headers, received, error = self.get(app)
        self.assertIs(app.app_iter, result)

    def test_without_digest_untouched(self):
        app = DownloadApp(self.IMAGE, {}, file_wrapper=True)
        result, status, headers, received, error = self.get(app)
        self.assertIs(app.app_iter, result)

    def test_head_untouched(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()})
        result, status, headers, received, error = self.get(
            app, method='HEAD')
        self.assertIs(app.app_iter, result)

    def test_other_paths_untouched(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()})
        result, status, headers, received, error = self.get(
            app, path='/v2/images/img-1')
        self.assertIs(app.app_iter, result)

    def test_versioned_path_verified(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()})
        result, status, headers, received, error = self.get(
            app, path='/v2.9/images/img-1/file')
        self.assertCut(received, error, app)

    def test_verification_off(self):
        app = DownloadApp(self.corrupt(), {'Content-MD5': self.md5_hex()},
                          file_wrapper=True)
        result, status, headers, received, error = self.get(
            app, verify_downloads='false')
        self.assertIs(app.app_iter, result)
        self.assertEqual(self.corrupt(), received)


class TestConfiguration(testtools.TestCase):

    def test_defaults(self):
        filt = make(fakes.RecordingApp())
        self.assertEqual('sha512', filt.hashing_algorithm)
        self.assertTrue(filt.verify_client_digests)
        self.assertTrue(filt.verify_downloads)
        self.assertTrue(filt.publish_digests)

    def test_typed_values(self):
        filt = make(fakes.RecordingApp(), hashing_algorithm='sha256',
                    verify_client_digests='no', verify_downloads='off',
                    publish_digests='0')
        self.assertEqual('sha256', filt.hashing_algorithm)
        self.assertFalse(filt.verify_client_digests)
        self.assertFalse(filt.verify_downloads)
        self.assertFalse(filt.publish_digests)

    def test_unknown_algorithm_stops_start_up(self):
        for name in ('sha1024', 'shake_256', 'SHA-512'):
            err = self.assertRaises(config.ConfigError, make,
                                    fakes.RecordingApp(),
                                    hashing_algorithm=name)
            self.assertIn('checksum filter', str(err))
            self.assertIn('hashing_algorithm', str(err))
            self.assertIn(repr(name), str(err))

    def test_unknown_algorithm_in_default_section(self):
        self.assertRaises(config.ConfigError, make, fakes.RecordingApp(),
                          global_conf={'hashing_algorithm': 'nope'})

    def test_unknown_algorithm_given_typed(self):
        self.assertRaises(config.ConfigError, checksum.ChecksumMiddleware,
                          fakes.RecordingApp(),
                          {'hashing_algorithm': 'nope'})

    def test_unknown_option_and_bad_boolean(self):
        self.assertRaises(config.ConfigError, make, fakes.RecordingApp(),
                          verify_download='true')
        self.assertRaises(config.ConfigError, make, fakes.RecordingApp(),
                          verify_downloads='maybe')
        self.assertRaises(config.ConfigError, make, fakes.RecordingApp(),
                          stream_errors='exception')

    def test_entry_point(self):
        factory = paste.deploy.loadfilter('egg:imgmw#checksum')
        filt = factory(fakes.RecordingApp())
        self.assertIsInstance(filt, checksum.ChecksumMiddleware)
