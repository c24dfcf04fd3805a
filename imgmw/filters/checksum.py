"""Checksum: hash every image once on the way in, verify it on the way out.

Uploads
-------
On ``PUT /v2/images/{id}/file`` and ``PUT /v2/images/{id}/stage`` the
filter wraps the request body and hashes it while the app reads it, never
reading or buffering it itself:

* MD5 and the configured multihash (``hashing_algorithm``) are computed in
  one pass, on two cores for large chunks (see :mod:`imgmw.hashing`), with
  a fast digest of every 1 MiB block (XXH3-64), and published as
  ``environ['imgmw.digests']``, a :class:`imgmw.hashing.Digests` whose
  ``md5``, ``os_hash_algo`` and ``os_hash_value`` the data app records as
  the image's ``checksum`` and ``os_hash_*``, and whose ``blocks`` it
  records with the image's location, to verify downloads with. ``md5``
  and ``os_hash_value`` exist once the body has been read to its end and
  passed every check; reading them earlier raises
  :class:`imgmw.hashing.DigestsNotReady`. The app never hashes an upload
  (it ignores the digests of a stage, as Glance computes a staged image's
  checksums at import).
* A digest the client sent is verified at the end of the body, before the
  app is handed the last chunk (when the length is known, else before it
  sees the end of the body), so the app never commits a body that does not
  match. A mismatch answers contract 3.19: 400 ``Checksum verification
  failed: <algorithm> mismatch``, the algorithm as the header names it
  (``md5``, ``sha-256``, ``sha-512``); the app treats it as any failed
  upload (the image stays ``queued``, nothing is stored).

Client digest headers (all that are present are verified):

==================  ===================================================
header              accepted form
==================  ===================================================
``Content-MD5``     the MD5 of the body, as base64 (RFC 1864) or as 32
                    hex digits (the form Glance and its clients use
                    elsewhere)
``Content-Digest``  RFC 9530: a structured-field dictionary of byte
                    sequences, e.g. ``sha-256=:<base64>:``; keys
                    ``sha-512``, ``sha-256`` and ``md5`` are verified
``Repr-Digest``     the same; for an upload without content coding the
                    representation is the body, so both are checked
                    against the same bytes
==================  ===================================================

A header that is not well formed (bad base64 or hex, not an RFC 8941
dictionary, a value that is not a byte sequence, a digest of the wrong
length for its algorithm) is answered 400 ``Invalid <header> header:
<reason>`` before the app is called. In ``Content-Digest`` and
``Repr-Digest``, keys of algorithms imgmw does not compute (the registry's
deprecated ``sha``, ``crc32c``, ... or unregistered ones) are ignored when
the field also names one it does, as RFC 9530 lets a recipient do. A field
that names none it does is answered 400 ``Unsupported digest algorithm(s)
in <header>: <keys>. Supported: ...`` with a ``Want-Content-Digest`` or
``Want-Repr-Digest`` header listing what is: the client asked for an
integrity check, and storing the image unchecked would silently drop it.
SHA-256 (or any algorithm other than MD5 and the multihash) is computed
only when a client digest names it.

Downloads
---------
The data app verifies the downloads of images it recorded block digests
for (every image uploaded or imported through this filter, and older ones
once ``imgmw-manage backfill-blocks`` has run), full or ranged, block by
block as they leave the store (:mod:`imgmw.app.blocks`), and says so in
``environ['imgmw.verified']``: the filter then leaves the body
alone. For every other full download (an image without block digests,
Glance's responses in front of Glance) it falls back to a hash of the
whole body:

On ``GET /v2/images/{id}/file`` answered 200 without ``Content-Range`` (a
full image), the filter hashes the body as it passes to the server and
checks it against the response's own ``Repr-Digest`` (preferred:
``sha-512``, then ``sha-256``) or else its ``Content-MD5`` (hex, as Glance
sends it, or base64). It holds back the last chunk until the hash over every
byte is known: on a mismatch that chunk is never sent, the error is logged
naming the image, and the iteration raises
:class:`CorruptImageData`, on which the WSGI server closes the connection.
The client receives fewer bytes than ``Content-Length``, so no client ever
receives a complete but corrupt image. Partial (206) responses, ``HEAD``,
and responses without a digest header pass through untouched, as does
everything else.

What this fallback costs: one hash over every byte served (a few hundred
MiB/s per core: MD5 and SHA-512 run at 700 to 800 MiB/s on a current
core), one chunk of latency and memory per download, and the server's
``sendfile``: a ``wsgi.file_wrapper`` response (the file store's) is
iterated in Python instead of handed to the kernel. ``verify_downloads =
false`` buys that back, trusting the store.

``Want-Repr-Digest`` is the data app's business (it sets ``Repr-Digest``
from the recorded ``os_hash_*``, and ``Content-MD5`` and ``ETag`` from the
checksum); this filter neither reads nor changes those headers on the way
out.

Where it goes
-------------
Last before the app, after ``size`` and ``quota`` (it uses the declared size
``environ['imgmw.size']`` when the ``size`` filter set it, else
``Content-Length``):

.. code-block:: ini

    [DEFAULT]
    # Read by this filter and by the data app (import hashes too).
    hashing_algorithm = sha512

    [pipeline:keystone-api]
    pipeline = request_id authtoken context size stores quota checksum
               inspect imgmw

    [filter:checksum]
    use = egg:imgmw#checksum
    # verify_downloads = true
    # verify_client_digests = true

In front of Glance, which hashes uploads itself, turn publishing off: the
filter then only verifies client digests (computing just the algorithms
they name) and downloads, and set ``stream_errors = ioerror`` (why:
:ref:`stream-errors`):

.. code-block:: ini

    [pipeline:glance-api-keystone]
    pipeline = cors http_proxy_to_wsgi versionnegotiation osprofiler
               authtoken context imgmw_checksum rootapp

    [filter:imgmw_checksum]
    use = egg:imgmw#checksum
    publish_digests = false
    stream_errors = ioerror

Options
-------
=========================  ========  ========================================
option                     default   meaning
=========================  ========  ========================================
``hashing_algorithm``      sha512    the multihash (``os_hash_algo``), as
                                     Glance's option: any fixed-length
                                     ``hashlib`` algorithm of this host
                                     (``hashlib.algorithms_available``); an
                                     unknown name stops start-up
``verify_client_digests``  true      verify ``Content-MD5``,
                                     ``Content-Digest`` and ``Repr-Digest``
                                     on uploads; false ignores them as
                                     Glance does
``verify_downloads``       true      verify full downloads the app does
                                     not verify block by block (see the
                                     cost above)
``publish_digests``        true      compute MD5 and the multihash of every
                                     upload and publish them for the app;
                                     false in front of an app that hashes
                                     by itself
``stream_errors``          base      how a refused body leaves ``read()``:
                                     ``base`` (a ``BaseException`` no
                                     ``except Exception`` turns into a 500)
                                     or ``ioerror`` (:ref:`stream-errors`)
=========================  ========  ========================================

Logged: a refused upload at INFO (which header, which algorithm), a
corrupt download at ERROR (image id, digest, bytes sent), an unusable digest
header of the app at WARNING. Never a digest the client sent, nor any byte
of a body.
"""

import base64
import binascii
import dataclasses
import logging
import re
import typing

import http_sf
import webob.exc

from imgmw import chunked
from imgmw import config
from imgmw import environ as env_keys
from imgmw import errors
from imgmw import hashing
from imgmw import paths
from imgmw import streams


LOG = logging.getLogger(__name__)

OWNER = 'checksum filter'

#: Sent as Want-Content-Digest / Want-Repr-Digest with a 400 for a digest
#: field that names no algorithm imgmw computes (RFC 9530, section 4).
WANT_DIGEST = 'sha-512=10, sha-256=9, md5=1'

#: Download verification prefers the strongest digest the response offers.
DOWNLOAD_PREFERENCE = ('sha-512', 'sha-256', 'md5')

_HEX_MD5 = re.compile(r'[0-9a-fA-F]{32}')


OPTS = (
    hashing.HASHING_ALGORITHM_OPT,
    config.Opt('verify_client_digests', config.boolean, True,
               'Verify Content-MD5, Content-Digest and Repr-Digest of '
               'uploads.'),
    config.Opt('verify_downloads', config.boolean, True,
               'Verify full downloads against their Repr-Digest or '
               'Content-MD5, cutting the connection on a mismatch.'),
    config.Opt('publish_digests', config.boolean, True,
               'Compute MD5 and the multihash of uploads for the app.'),
    streams.STREAM_ERRORS_OPT,
)


class CorruptImageData(Exception):
    """The data of a download does not match its digest.

    Raised from the response iterator before its last chunk, so that the
    WSGI server cuts the connection short of ``Content-Length``.
    """


@dataclasses.dataclass(frozen=True)
class ExpectedDigest:
    """A digest some header promises for a body.

    ``name`` is the algorithm as the header names it (``md5``,
    ``sha-256``), ``algorithm`` its hashlib name, ``value`` the raw digest.
    """

    header: str
    name: str
    algorithm: str
    value: bytes


def parse_content_md5(value: str,
                      header: str = 'Content-MD5') -> ExpectedDigest:
    """An MD5 as base64 (RFC 1864) or 32 hex digits.

    :raises webob.exc.HTTPBadRequest: when it is neither.
    """
    value = value.strip()
    if _HEX_MD5.fullmatch(value):
        return ExpectedDigest(header, 'md5', 'md5', bytes.fromhex(value))
    try:
        raw = base64.b64decode(value.encode('ascii'), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b''
    if len(raw) != 16:
        raise errors.invalid_digest_header(
            header, 'expected an MD5 digest as base64 (RFC 1864) or as 32 '
            'hexadecimal digits')
    return ExpectedDigest(header, 'md5', 'md5', raw)


def parse_digest_field(header: str,
                       value: str) -> typing.List[ExpectedDigest]:
    """The digests of an RFC 9530 ``Content-Digest`` or ``Repr-Digest``.

    Keys of algorithms imgmw does not compute are ignored, unless no key
    is left: an empty list means an empty field.

    :raises webob.exc.HTTPBadRequest: on a malformed field, or one that
        names only unsupported algorithms.
    """
    try:
        members = http_sf.parse(value.encode('latin-1'), tltype='dictionary')
    except (http_sf.StructuredFieldError, UnicodeEncodeError) as err:
        raise errors.invalid_digest_header(
            header, 'not an RFC 9530 dictionary of digests (%s)' % err)
    found = []
    unsupported = []
    for key, (item, _params) in members.items():
        algorithm = hashing.HTTP_ALGORITHMS.get(key)
        if algorithm is None:
            unsupported.append(key)
            continue
        found.append(ExpectedDigest(header, key, algorithm,
                                    _digest_bytes(header, key, item)))
    if unsupported and not found:
        raise errors.unsupported_digest_algorithms(header, unsupported,
                                                   WANT_DIGEST)
    return found


def _digest_bytes(header: str, key: str, item) -> bytes:
    if not isinstance(item, bytes):
        raise errors.invalid_digest_header(
            header, '%s must be a byte sequence (:base64:)' % key)
    size = hashing.new(hashing.HTTP_ALGORITHMS[key]).digest_size
    if len(item) != size:
        raise errors.invalid_digest_header(
            header, 'a %s digest has %d bytes, not %d'
            % (key, size, len(item)))
    return item


def client_digests(environ: dict) -> typing.List[ExpectedDigest]:
    """Every digest the request's headers promise for its body.

    :raises webob.exc.HTTPBadRequest: on a malformed header.
    """
    expected = []
    if 'HTTP_CONTENT_MD5' in environ:
        expected.append(parse_content_md5(environ['HTTP_CONTENT_MD5']))
    for header, key in (('Content-Digest', 'HTTP_CONTENT_DIGEST'),
                        ('Repr-Digest', 'HTTP_REPR_DIGEST')):
        if key in environ:
            expected.extend(parse_digest_field(header, environ[key]))
    return expected


class HashingInput(streams.InputProxy):
    """Hashes a request body on its way to the app; checks it at its end.

    :param hasher: a :class:`imgmw.hashing.MultiHasher` computing at least
        the algorithms of ``expected`` (and MD5 and the multihash of
        ``digests``, when given).
    :param expected: the client's digests, verified at end of stream.
    :param digests: finished once the body ended and matched.
    :param stream_errors: as for :class:`imgmw.streams.InputProxy`.
    """

    def __init__(self, wsgi_input, length: typing.Optional[int],
                 hasher: hashing.MultiHasher,
                 expected: typing.Sequence[ExpectedDigest] = (),
                 digests: typing.Optional[hashing.Digests] = None,
                 logger=None, stream_errors: str = streams.BASE):
        super().__init__(wsgi_input, length, stream_errors=stream_errors)
        self.logger = logger or LOG
        self.hasher = hasher
        self.expected = tuple(expected)
        self.digests = digests

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        if chunk:
            self.hasher.update(chunk)
        if eof:
            self._complete()
        return chunk

    def _complete(self) -> None:
        if self.length is not None and self.bytes_received < self.length:
            # The input ended early: a size failure, whatever the digests.
            raise streams.StreamError(errors.incomplete_body(
                self.length, self.bytes_received))
        for want in self.expected:
            if self.hasher.digest(want.algorithm) != want.value:
                self.logger.info(
                    'Upload refused: the body does not match its %s %s '
                    'digest', want.header, want.name)
                raise streams.StreamError(errors.checksum_mismatch(
                    want.name))
        if self.digests is not None:
            self.digests.finish(
                self.hasher.hexdigest('md5'),
                self.hasher.hexdigest(self.digests.os_hash_algo),
                self.hasher.block_digests())


class _DownloadCheck:
    """What a download response promises, learnt from its headers."""

    def __init__(self, image_id: str, logger):
        self.image_id = image_id
        self.logger = logger
        self.started = False
        self.expected: typing.Optional[ExpectedDigest] = None
        self.content_length: typing.Optional[str] = None

    def response_started(self, status: str, headers) -> None:
        self.started = True
        if not status.startswith('200'):
            return
        by_name = {name.lower(): value for name, value in headers}
        if 'content-range' in by_name:
            return
        self.content_length = by_name.get('content-length')
        self.expected = self._promised(by_name)

    def _promised(self, by_name) -> typing.Optional[ExpectedDigest]:
        """The strongest usable digest: Repr-Digest's, else Content-MD5."""
        offered = {}
        if 'repr-digest' in by_name:
            offered = {want.name: want for want in self._parsed(
                parse_digest_field, 'Repr-Digest', by_name['repr-digest'])}
        for name in DOWNLOAD_PREFERENCE:
            if name in offered:
                return offered[name]
        if 'content-md5' in by_name:
            found = self._parsed(parse_content_md5, by_name['content-md5'])
            return found[0] if found else None
        return None

    def _parsed(self, parser, *args) -> typing.List[ExpectedDigest]:
        try:
            found = parser(*args)
        except webob.exc.HTTPException as err:
            self.logger.warning(
                'Image %s: the app sent an unusable digest header: %s',
                self.image_id, err.explanation)
            return []
        return found if isinstance(found, list) else [found]

    def verify(self, hasher: hashing.MultiHasher, sent: int) -> None:
        want = self.expected
        if hasher.digest(want.algorithm) == want.value:
            return
        self.logger.error(
            'Image %s: the data sent does not match its %s %s digest (got '
            '%s); download cut after %d of %s bytes', self.image_id,
            want.header, want.name, hasher.hexdigest(want.algorithm), sent,
            self.content_length)
        raise CorruptImageData('Corrupt image download for image %s'
                               % self.image_id)


class _VerifiedBody:
    """Iterates a download, holding back its last chunk until verified."""

    def __init__(self, app_iter, check: _DownloadCheck):
        self._app_iter = app_iter
        self._check = check

    def __iter__(self):
        hasher = None
        held = b''
        sent = 0
        for chunk in self._app_iter:
            if self._check.expected is None:
                yield chunk
                continue
            if hasher is None:
                hasher = hashing.MultiHasher([self._check.expected.algorithm])
            if not chunk:
                continue
            hasher.update(chunk)
            if held:
                yield held
                sent += len(held)
            held = chunk
        if self._check.expected is None:
            return
        if hasher is None:
            hasher = hashing.MultiHasher([self._check.expected.algorithm])
        self._check.verify(hasher, sent)
        if held:
            yield held

    def close(self) -> None:
        streams.close_if_possible(self._app_iter)


class ChecksumMiddleware:
    """Hashes uploads, verifies client digests and downloads (see module)."""

    def __init__(self, app, conf: typing.Mapping, logger=None):
        self.app = app
        self.logger = logger or LOG
        values = config.parse(OPTS, {}, conf, OWNER)
        self.hashing_algorithm: str = values['hashing_algorithm']
        self.verify_client_digests: bool = values['verify_client_digests']
        self.verify_downloads: bool = values['verify_downloads']
        self.publish_digests: bool = values['publish_digests']
        self.stream_errors: str = values['stream_errors']

    def __call__(self, environ: dict, start_response):
        if paths.is_data_upload(environ) is not None:
            return self._upload(environ, start_response)
        if self.verify_downloads and environ.get('REQUEST_METHOD') == 'GET':
            route = paths.route_of(environ)
            if route is not None and route.kind == paths.IMAGE_DATA:
                return self._download(environ, start_response,
                                      route.image_id)
        return self.app(environ, start_response)

    def _upload(self, environ: dict, start_response):
        try:
            expected = (client_digests(environ)
                        if self.verify_client_digests else [])
        except webob.exc.HTTPException as err:
            return err(environ, start_response)
        algorithms = [want.algorithm for want in expected]
        digests = None
        block_size = None
        if self.publish_digests:
            digests = hashing.Digests(self.hashing_algorithm)
            algorithms = ['md5', self.hashing_algorithm] + algorithms
            block_size = hashing.BLOCK_SIZE
            environ[env_keys.DIGESTS] = digests
        if not algorithms:
            return self.app(environ, start_response)
        hasher = hashing.MultiHasher(algorithms, block_size=block_size)
        proxy = HashingInput(chunked.server_input(environ),
                             streams.body_length(environ),
                             hasher, expected, digests, self.logger,
                             self.stream_errors)
        streams.install(environ, proxy)
        return streams.call_app(self.app, environ, start_response, proxy)

    def _download(self, environ: dict, start_response, image_id: str):
        check = _DownloadCheck(image_id, self.logger)

        def checking_start_response(status, headers, exc_info=None):
            # A body the app verifies by blocks needs none of its headers.
            if not environ.get(env_keys.BLOCKS_VERIFIED):
                check.response_started(status, headers)
            return start_response(status, headers, exc_info)

        app_iter = self.app(environ, checking_start_response)
        if environ.get(env_keys.BLOCKS_VERIFIED):
            # The app verifies this body block by block as it streams.
            return app_iter
        if check.started and check.expected is None:
            return app_iter
        return _VerifiedBody(app_iter, check)


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#checksum``."""
    conf = config.parse(OPTS, global_conf, local_conf, OWNER)

    def checksum_filter(app):
        return ChecksumMiddleware(app, conf)
    return checksum_filter
