"""Download: conditional requests and ranges of image data (contract 5).

The ``download`` filter gives ``GET`` and ``HEAD /v2/images/{id}/file``
their HTTP semantics in front of any app that answers a full download as
``200`` with ``Content-Length`` and a validator: an ``ETag``, or a
``Content-MD5`` as Glance sends it (hex, of the whole image). imgmw's data
app and Glance both do; each serves a single byte range itself, which the
filter hands on once it has validated it.

What it answers, in the contract's order (section 5):

===  =====  ==============================================================
row  code   condition
===  =====  ==============================================================
2    400    ``GET`` or ``HEAD`` with a body (``Content-Length`` above 0,
            or a ``Transfer-Encoding``): ``A body is not expected with
            this request.``; before the app is called
6    204    no data (the app's 204), with or without ``Range``; the app
            never sees the ``Range``
7    503    ``Image data for <id> is unavailable.``: an app that answers
            204 for an ``active`` image whose data is gone (Glance), when
            ``image_record`` is on; logged as an error
8    200    ``Range`` in another unit than ``bytes``: ignored
9    400    several ranges
10   416    malformed ``bytes`` range (``bytes=``, ``bytes=-``,
            ``bytes=3-1``, ...): ``Invalid Range header.``
11   416    start at or beyond the size
12   304    ``If-None-Match`` matches the ETag (``*`` matches any)
13   206    a valid range, and ``If-Range`` (when sent) equal to the ETag;
            the end is clamped to the size, a suffix longer than the image
            is the whole image
14   200    otherwise
===  =====  ==============================================================

Every 416 carries ``Content-Range: bytes */<size>``. The legacy
``Content-Range`` request header (Glance's, before ``Range`` existed) is
honoured when no ``Range`` is sent, its end clamped to the image, so what
is announced is what is sent; a malformed one (``bytes */N`` included) is
416 ``Invalid Content-Range header.``. Other methods on the path than
``GET``, ``HEAD`` and ``PUT`` are answered 405 with ``Allow: GET, HEAD,
PUT`` (Glance would read a ``POST`` body as JSON).

On the way out, a 200 or 206 gains ``ETag: "<md5>"`` (from
``Content-MD5`` when the app sent no ETag) and ``Accept-Ranges: bytes``;
``Repr-Digest`` (RFC 9530) is left out when the client's
``Want-Repr-Digest`` refuses it, and added from the image record when the
app sent none and ``image_record`` is on. ``HEAD`` is answered as ``GET``
without a body: the app is asked a ``GET`` (Glance answers ``HEAD`` 405)
and its body closed unread.

How the app is asked
--------------------
A plain ``GET`` goes to the app as it came (no ``Range``, no
``If-None-Match``) and its answer is decorated on the way. Otherwise the
filter first asks the app for the full image, without ``Range``,
``Content-Range``, ``If-Range`` or ``If-None-Match``, and reads only the
answer's headers: the size and the validator decide the answer. A 304, an
error, a 204, an ignored range or a ``HEAD`` is answered from those
headers and the body is closed unread. A valid range is then asked of the
app as ``Range: bytes=<first>-<last>`` (the only form it ever sees; also
published as ``environ['imgmw.range']``); so inputs that crash Glance
(``bytes=-``, ``Content-Range: bytes */N``, any range on an image without
data) never reach it. A ranged download costs the app two requests, of
which the first reads no data.

With ``ranges = none`` (an app that cannot serve a range), ``Range`` and
``Content-Range`` are ignored, as RFC 9110 lets a server do, the answer is
the whole image (200, ``Accept-Ranges: none``): the filter never reads
an image to cut a slice out of it.

What it cannot do: it adds no validator to an app that sends none (the
answer then passes with ``Accept-Ranges`` only, and conditional requests
are answered as plain ones); it cannot tell an image without data from
an image whose data is lost unless the app says so (imgmw's app answers
503 itself) or ``image_record`` lets it ask.

Where it goes
-------------
Before the ``checksum`` filter (which verifies full downloads the app
sends), after ``context`` (the 401 comes first). imgmw's pipeline
(``etc/api-paste.ini``):

.. code-block:: ini

    [pipeline:keystone-api]
    pipeline = request_id authtoken context size stores quota download
               checksum inspect imgmw

    [filter:download]
    use = egg:imgmw#download

In front of Glance, after Glance's ``context`` filter; ``image_record``
makes the filter ask Glance for the image (``GET /v2/images/<id>``, with
the caller's identity) when Glance answers 204, to tell lost data (503)
from none, and when a download lacks ``Repr-Digest``:

.. code-block:: ini

    [pipeline:glance-api-keystone]
    pipeline = cors healthcheck http_proxy_to_wsgi versionnegotiation
               osprofiler authtoken context imgmw_download rootapp

    [filter:imgmw_download]
    paste.filter_factory = imgmw.filters.download:filter_factory
    image_record = true

Options
-------
================  =======  ==================================================
option            default  meaning
================  =======  ==================================================
``ranges``        app      ``app``: the app serves a single ``bytes`` range
                           it is given; ``none``: ranges are ignored
``image_record``  false    ask the app for the image record (one more
                           request on a 204 and on a download without
                           ``Repr-Digest``)
================  =======  ==================================================

Headers read: ``Range``, ``Content-Range``, ``If-Range``,
``If-None-Match``, ``Want-Repr-Digest``; of the app's answer,
``Content-Length``, ``ETag``, ``Content-MD5``, ``Content-Range`` and
``Repr-Digest``. Logged: lost data (ERROR), an app that answers a range
with another range (ERROR), an app answer without a usable
``Content-Length`` (WARNING). Never a body.
"""

import base64
import binascii
import dataclasses
import io
import json
import logging
import re
import typing

import webob
import webob.exc

from imgmw import chunked
from imgmw import config
from imgmw import environ as env_keys
from imgmw import errors
from imgmw import hashing
from imgmw import paths
from imgmw import streams


LOG = logging.getLogger(__name__)

OWNER = 'download filter'

APP = 'app'
NONE = 'none'

#: Statuses of an image that has data.
WITH_DATA = frozenset(('active', 'deactivated'))

OPTS = (
    config.Opt('ranges', config.choice(APP, NONE), APP,
               'Who serves a byte range: the app, or nobody.'),
    config.Opt('image_record', config.boolean, False,
               'Ask the app for the image record on a 204 and for a '
               'missing Repr-Digest.'),
)

#: Request headers the app never sees on its first (full) answer.
_CONDITIONAL = ('HTTP_RANGE', 'HTTP_CONTENT_RANGE', 'HTTP_IF_RANGE',
                'HTTP_IF_NONE_MATCH', 'HTTP_IF_MATCH',
                'HTTP_IF_MODIFIED_SINCE', 'HTTP_IF_UNMODIFIED_SINCE')

_RANGE = re.compile(r'\s*([0-9]*)\s*-\s*([0-9]*)\s*')
_CONTENT_RANGE = re.compile(r'\s*bytes\s+([0-9]+)-([0-9]+)/([0-9]+|\*)\s*',
                            re.IGNORECASE)
_UNIT = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=(.*)", re.DOTALL)
_HEX_MD5 = re.compile(r'[0-9a-fA-F]{32}')
_FILE_SUFFIX = re.compile(r'/file/?$')
# Python refuses to convert longer digit strings (CVE-2020-10735 limit); a
# position that long is refused as malformed (416) rather than crashing.
_MAX_DIGITS = 4000


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """Bytes ``first`` to ``last`` inclusive, of an image of ``size``."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        return 'bytes %d-%d/%d' % (self.first, self.last, self.size)


# Parsing the request (rows 8 to 11).

def parse_range(header: str, size: int) -> typing.Optional[ByteRange]:
    """The range a ``Range`` header asks of an image of ``size`` bytes.

    :returns: None when the header is to be ignored (a unit other than
        ``bytes``, row 8).
    :raises webob.exc.HTTPException: rows 9 to 11.
    """
    match = _UNIT.fullmatch(header)
    if match is None:
        if header.strip().lower().startswith('bytes'):
            raise errors.invalid_range(size)
        return None
    if match.group(1).lower() != 'bytes':
        return None
    spec = match.group(2)
    if ',' in spec:
        raise errors.multiple_ranges()
    bounds = _RANGE.fullmatch(spec)
    if bounds is None or bounds.group(1) == bounds.group(2) == '':
        raise errors.invalid_range(size)
    first, last = bounds.groups()
    if _too_long(first, last):
        raise errors.invalid_range(size)
    if first == '':
        suffix = int(last)
        # As Glance: a suffix as long as the image, or bytes=-0, is all.
        start = size - suffix if 0 < suffix < size else 0
        end = size - 1
    else:
        start = int(first)
        if last != '' and int(last) < start:
            raise errors.invalid_range(size)
        end = size - 1 if last == '' else min(int(last), size - 1)
    if start >= size:
        raise errors.invalid_range_start(size)
    return ByteRange(start, end, size)


def parse_content_range(header: str, size: int) -> ByteRange:
    """The range of a legacy ``Content-Range`` request header (Glance).

    The end is clamped to the image, so what is announced is what is sent.

    :raises webob.exc.HTTPException: 416 when malformed (``bytes */N``
        included) or outside the image.
    """
    match = _CONTENT_RANGE.fullmatch(header)
    if match is None or _too_long(*match.groups()):
        raise errors.invalid_content_range(size)
    start, last = int(match.group(1)), int(match.group(2))
    length = match.group(3)
    if last < start or (length != '*' and last >= int(length)):
        raise errors.invalid_content_range(size)
    if length == '*' and last >= size:
        raise errors.invalid_content_range_stop(size)
    if start >= size:
        raise errors.invalid_range_start(size, 'Content-Range')
    return ByteRange(start, min(last, size - 1), size)


def _too_long(*numbers: str) -> bool:
    """True when a number has more digits than int() takes."""
    return any(len(number) > _MAX_DIGITS for number in numbers)


def requested_range(environ: dict, size: int,
                    etag: typing.Optional[str]) -> typing.Optional[ByteRange]:
    """The range to send, or None for the whole image.

    ``Range`` wins over the legacy ``Content-Range``; an ``If-Range`` that
    is not the ETag (strong comparison) makes both ignored.

    :raises webob.exc.HTTPException: rows 9 to 11.
    """
    header = environ.get('HTTP_RANGE')
    legacy = environ.get('HTTP_CONTENT_RANGE')
    if header is None and legacy is None:
        return None
    if_range = environ.get('HTTP_IF_RANGE')
    if if_range is not None and (etag is None or if_range.strip() != etag):
        return None
    if header is not None:
        return parse_range(header, size)
    return parse_content_range(legacy, size)


def has_body(environ: dict) -> bool:
    """Contract 5.2: ``Content-Length`` above 0, or a Transfer-Encoding.

    A ``Content-Type`` alone is not a body.
    """
    if chunked.transfer_encoding(environ):
        return True
    length = (environ.get('CONTENT_LENGTH') or '0').strip()
    if not (length.isascii() and length.isdigit()):
        return True
    return length.strip('0') != ''


# Reading the app's answer.

def etag_of(headers: webob.headers.ResponseHeaders) -> typing.Optional[str]:
    """The answer's ETag, else ``"<md5 hex>"`` from its ``Content-MD5``."""
    if 'ETag' in headers:
        return headers['ETag']
    md5 = (headers.get('Content-MD5') or '').strip()
    if _HEX_MD5.fullmatch(md5):
        return '"%s"' % md5.lower()
    try:
        raw = base64.b64decode(md5.encode('ascii'), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return '"%s"' % raw.hex() if len(raw) == 16 else None


def wants_repr_digest(field: str, want: typing.Optional[str]) -> bool:
    """False when ``Want-Repr-Digest`` refuses the algorithm of ``field``.

    A preference that gives the algorithm the weight 0, or lists others
    only, refuses it.
    """
    if want is None:
        return True
    name = field.split('=', 1)[0].strip().lower()
    for item in want.split(','):
        algorithm, _, weight = item.strip().partition('=')
        if algorithm.strip().lower() == name:
            return weight.strip() not in ('0', '0.0')
    return False


class Answer:
    """A status, headers and body iterable of the app (or the filter)."""

    def __init__(self, status: str, headers, app_iter):
        self.status = status
        self.headers = webob.headers.ResponseHeaders(headers)
        self.app_iter = app_iter

    @property
    def code(self) -> int:
        return int(self.status.split(None, 1)[0])

    def size(self) -> typing.Optional[int]:
        length = (self.headers.get('Content-Length') or '').strip()
        if length.isascii() and length.isdigit():
            return int(length)
        return None

    def close(self) -> None:
        streams.close_if_possible(self.app_iter)

    def send(self, start_response, body: bool = True):
        start_response(self.status, list(self.headers.items()))
        if body:
            return self.app_iter
        self.close()
        return []


class DownloadMiddleware:
    """Conditional requests and ranges of downloads (see the module)."""

    def __init__(self, app, conf: typing.Mapping, logger=None):
        self.app = app
        self.logger = logger or LOG
        values = config.parse(OPTS, {}, conf, OWNER)
        self.ranges: str = values['ranges']
        self.image_record: bool = values['image_record']

    def __call__(self, environ: dict, start_response):
        route = paths.route_of(environ)
        if route is None or route.kind != paths.IMAGE_DATA:
            return self.app(environ, start_response)
        method = environ.get('REQUEST_METHOD')
        if method == 'PUT':
            return self.app(environ, start_response)
        allowed = paths.ALLOWED[paths.IMAGE_DATA]
        if method not in allowed:
            return errors.method_not_allowed(allowed)(environ,
                                                      start_response)
        if has_body(environ):
            return errors.body_not_expected()(environ, start_response)
        return _Download(self, environ, route.image_id).answer(
            start_response)


class _Download:
    """One download request."""

    def __init__(self, middleware: DownloadMiddleware, environ: dict,
                 image_id: str):
        self.middleware = middleware
        self.logger = middleware.logger
        self.environ = environ
        self.image_id = image_id
        self.head = environ['REQUEST_METHOD'] == 'HEAD'
        if middleware.ranges == NONE:
            for key in ('HTTP_RANGE', 'HTTP_CONTENT_RANGE'):
                environ.pop(key, None)

    def answer(self, start_response):
        if not self.head and not any(key in self.environ
                                     for key in _CONDITIONAL):
            full = self.ask(None)
            return self.decorated(full).send(start_response)
        full = self.ask(None)
        if full.code == 204:
            return self.no_data(full).send(start_response,
                                           body=not self.head)
        if full.code != 200:
            return full.send(start_response, body=not self.head)
        size = full.size()
        if size is None:
            self.logger.warning('Image %s: the app answered a download '
                                'without a usable Content-Length; sent as '
                                'it is', self.image_id)
            return full.send(start_response, body=not self.head)
        etag = etag_of(full.headers)
        try:
            byte_range = requested_range(self.environ, size, etag)
        except webob.exc.HTTPException as err:
            full.close()
            return err(self.environ, start_response)
        if etag is not None and etag.strip('"') in webob.Request(
                self.environ).if_none_match:
            full.close()
            return self.not_modified(etag)(self.environ, start_response)
        if byte_range is None:
            return self.decorated(full).send(start_response,
                                             body=not self.head)
        full.close()
        if self.head:
            return self.decorated(self.partial_headers(
                full, byte_range)).send(start_response, body=False)
        part = self.ask(byte_range)
        if part.code == 206 and (part.headers.get('Content-Range')
                                 == byte_range.content_range()):
            return self.decorated(part).send(start_response)
        if part.code == 206:
            part.close()
            self.logger.error('Image %s: asked %s, the app answered %s',
                              self.image_id, byte_range.content_range(),
                              part.headers.get('Content-Range'))
            return webob.exc.HTTPInternalServerError()(self.environ,
                                                       start_response)
        if part.code == 200:
            return self.decorated(part).send(start_response)
        return part.send(start_response)

    # Asking the app.

    def ask(self, byte_range: typing.Optional[ByteRange]) -> Answer:
        """The app's answer to a ``GET`` of the whole image or a range."""
        environ = dict(self.environ)
        environ['REQUEST_METHOD'] = 'GET'
        for key in _CONDITIONAL:
            environ.pop(key, None)
        environ.pop(env_keys.RANGE, None)
        if byte_range is not None:
            environ['HTTP_RANGE'] = 'bytes=%d-%d' % (byte_range.first,
                                                     byte_range.last)
            environ[env_keys.RANGE] = (byte_range.first, byte_range.last)
        status, headers, app_iter = webob.Request(environ).call_application(
            self.middleware.app)
        return Answer(status, headers, app_iter)

    def record(self) -> typing.Optional[dict]:
        """The image record the app answers, or None."""
        environ = dict(self.environ)
        environ['REQUEST_METHOD'] = 'GET'
        environ['PATH_INFO'] = _FILE_SUFFIX.sub('', environ['PATH_INFO'])
        environ['HTTP_ACCEPT'] = 'application/json'
        environ['wsgi.input'] = io.BytesIO(b'')
        for key in _CONDITIONAL + ('CONTENT_LENGTH', 'CONTENT_TYPE',
                                   'HTTP_TRANSFER_ENCODING'):
            environ.pop(key, None)
        resp = webob.Request(environ).get_response(self.middleware.app)
        if resp.status_int != 200:
            return None
        try:
            record = json.loads(resp.body)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    # Answers.

    def no_data(self, answer: Answer) -> Answer:
        """Row 6, or row 7 when the record says the data should be there."""
        if not self.middleware.image_record:
            return answer
        record = self.record()
        if record is None or record.get('status') not in WITH_DATA:
            return answer
        answer.close()
        self.logger.error('Image %s is %s but the app has no data for it',
                          self.image_id, record.get('status'))
        err = errors.data_unavailable(self.image_id)
        resp = webob.Request(self.environ).get_response(err)
        return Answer(resp.status, resp.headerlist,
                      [] if self.head else resp.app_iter)

    @staticmethod
    def not_modified(etag: str) -> webob.Response:
        resp = webob.Response(status=304)
        del resp.content_type
        del resp.content_length
        resp.headers['ETag'] = etag
        return resp

    @staticmethod
    def partial_headers(full: Answer, byte_range: ByteRange) -> Answer:
        """The headers of a 206 for ``HEAD``, from the full answer's."""
        headers = full.headers.copy()
        headers['Content-Length'] = str(byte_range.length)
        headers['Content-Range'] = byte_range.content_range()
        return Answer('206 Partial Content', headers.items(), [])

    def decorated(self, answer: Answer) -> Answer:
        """``ETag``, ``Accept-Ranges`` and ``Repr-Digest`` on a success."""
        if answer.code not in (200, 206):
            if answer.code == 204:
                return self.no_data(answer)
            return answer
        headers = answer.headers
        etag = etag_of(headers)
        if etag is not None:
            headers['ETag'] = etag
        headers['Accept-Ranges'] = ('none' if self.middleware.ranges == NONE
                                    else 'bytes')
        if 'Repr-Digest' not in headers and self.middleware.image_record:
            digest = self.repr_digest()
            if digest is not None:
                headers['Repr-Digest'] = digest
        want = self.environ.get('HTTP_WANT_REPR_DIGEST')
        if 'Repr-Digest' in headers and not wants_repr_digest(
                headers['Repr-Digest'], want):
            del headers['Repr-Digest']
        return answer

    def repr_digest(self) -> typing.Optional[str]:
        record = self.record()
        if record is None:
            return None
        algorithm = record.get('os_hash_algo')
        value = record.get('os_hash_value')
        if not (isinstance(algorithm, str) and isinstance(value, str)):
            return None
        try:
            return hashing.repr_digest(algorithm, value)
        except ValueError:
            self.logger.error('Image %s: os_hash_value is not hex',
                              self.image_id)
            return None


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#download``."""
    conf = config.parse(OPTS, global_conf, local_conf, OWNER)

    def download_filter(app):
        return DownloadMiddleware(app, conf)
    return download_filter
