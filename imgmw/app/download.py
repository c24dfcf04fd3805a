"""Download: ``GET`` and ``HEAD /v2/images/{id}/file`` (contract section 5).

Rows 2 to 5 (body, visibility, deactivation, policy) are checked by
:mod:`imgmw.app.api` before :func:`serve`; this module answers rows 6 to 14:
no data (204), data missing from every store (503, logged), ``Range``
(one ``bytes`` range; other units ignored), the legacy ``Content-Range``
request header, ``If-Range``, ``If-None-Match``, and the success headers.
The body is the store's file-like object, through ``wsgi.file_wrapper``
when the server offers one (sendfile for whole files), else an iterator of
``read_chunk_size`` chunks. Integrity of a full download is checked by the
checksum filter on its way out.
"""

import base64
import binascii
import collections.abc
import dataclasses
import logging
import re
import typing

import webob
import webob.exc

from imgmw.app import errors
from imgmw.app import stores


LOG = logging.getLogger(__name__)

#: Statuses whose image has data.
WITH_DATA = frozenset(('active', 'deactivated'))

#: os_hash_algo -> RFC 9530 algorithm name.
DIGEST_NAMES = {'sha256': 'sha-256', 'sha512': 'sha-512'}

_RANGE = re.compile(r'\s*([0-9]*)\s*-\s*([0-9]*)\s*')
_CONTENT_RANGE = re.compile(r'\s*bytes\s+([0-9]+)-([0-9]+)/([0-9]+|\*)\s*',
                            re.IGNORECASE)
_UNIT = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=(.*)", re.DOTALL)
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


# Range parsing (rows 8 to 11).

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
    if match is None or _too_long(match.group(1), match.group(2),
                                  match.group(3)):
        raise errors.invalid_content_range(size)
    start, last, length = int(match.group(1)), int(match.group(2)), \
        match.group(3)
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


def requested_range(req: webob.Request, size: int,
                    etag: typing.Optional[str]
                    ) -> typing.Optional[ByteRange]:
    """The range to send, or None for the whole image.

    ``Range`` wins over the legacy ``Content-Range``; an ``If-Range`` that
    does not match the ETag (strong comparison) makes both ignored.
    """
    header = req.headers.get('Range')
    legacy = req.headers.get('Content-Range')
    if header is None and legacy is None:
        return None
    if_range = req.headers.get('If-Range')
    if if_range is not None and (etag is None or if_range.strip() != etag):
        return None
    if header is not None:
        return parse_range(header, size)
    return parse_content_range(legacy, size)


# Headers.

def etag_of(record: typing.Mapping) -> typing.Optional[str]:
    checksum = record.get('checksum')
    return '"%s"' % checksum if checksum else None


def repr_digest(record: typing.Mapping,
                want: typing.Optional[str]) -> typing.Optional[str]:
    """The ``Repr-Digest`` value, unless ``Want-Repr-Digest`` refuses it.

    Sent when ``os_hash_algo`` is sha256 or sha512; a ``Want-Repr-Digest``
    that gives that algorithm the weight 0, or lists others only, turns it
    off.
    """
    name = DIGEST_NAMES.get(record.get('os_hash_algo') or '')
    value = record.get('os_hash_value')
    if name is None or not value:
        return None
    if want is not None and not _wanted(name, want):
        return None
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        LOG.error('Image %s: os_hash_value is not hex', record.get('id'))
        return None
    return '%s=:%s:' % (name, base64.b64encode(raw).decode('ascii'))


def _wanted(name: str, want: str) -> bool:
    for item in want.split(','):
        algorithm, _, weight = item.strip().partition('=')
        if algorithm.strip().lower() == name:
            return weight.strip() not in ('0', '0.0')
    return False


# The body.

class ChunkIter:
    """Iterate a file-like object in chunks; close it when closed."""

    def __init__(self, body, chunk_size: int):
        self.body = body
        self.chunk_size = chunk_size

    def __iter__(self):
        return iter(lambda: self.body.read(self.chunk_size), b'')

    def close(self) -> None:
        self.body.close()


def body_iter(environ: dict, body, chunk_size: int):
    wrapper = environ.get('wsgi.file_wrapper')
    if wrapper is not None:
        wrapped = wrapper(body, chunk_size)
        # uWSGI's wrapper returns the file itself, which a filter iterating
        # the response (checksum) could not iterate.
        if wrapped is not body or isinstance(body, collections.abc.Iterable):
            return wrapped
    return ChunkIter(body, chunk_size)


def no_content() -> webob.Response:
    """204 without a body or a ``Content-Type`` (rows 3.24 and 5.6)."""
    resp = webob.Response(status=204)
    del resp.content_type
    del resp.content_length
    return resp


# Serving.

Locator = typing.Callable[[typing.Mapping], typing.Optional[stores.Store]]


def serve(req: webob.Request, record: typing.Mapping, locate: Locator,
          chunk_size: int) -> webob.Response:
    """Answer rows 6 to 14 for a visible, downloadable image."""
    if record['status'] not in WITH_DATA:
        return no_content()
    size = record['size'] or 0
    etag = etag_of(record)
    byte_range = requested_range(req, size, etag)
    # webob compares the unquoted tags (weakly); "*" matches any.
    if etag is not None and record['checksum'] in req.if_none_match:
        return _not_modified(etag)
    first, length = ((byte_range.first, byte_range.length)
                     if byte_range else (0, size))
    body = open_data(record, locate, first, length)
    resp = webob.Response(status=206 if byte_range else 200,
                          content_type='application/octet-stream',
                          charset=None)
    resp.app_iter = body_iter(req.environ, body, chunk_size)
    # After app_iter, which resets it.
    resp.content_length = length
    if byte_range:
        resp.headers['Content-Range'] = byte_range.content_range()
    _success_headers(resp, record, etag, req.headers.get('Want-Repr-Digest'))
    return resp


def _not_modified(etag: str) -> webob.Response:
    resp = webob.Response(status=304)
    del resp.content_type
    del resp.content_length
    resp.headers['ETag'] = etag
    return resp


def _success_headers(resp: webob.Response, record: typing.Mapping,
                     etag: typing.Optional[str],
                     want: typing.Optional[str]) -> None:
    resp.headers['Accept-Ranges'] = 'bytes'
    if etag is not None:
        resp.headers['ETag'] = etag
        resp.headers['Content-MD5'] = record['checksum']
    digest = repr_digest(record, want)
    if digest is not None:
        resp.headers['Repr-Digest'] = digest


def open_data(record: typing.Mapping, locate: Locator, offset: int,
              length: int):
    """Open the first location whose data is there and of the right size.

    :raises webob.exc.HTTPException: 503 (row 7) when none is, logged.
    """
    for location in record['locations']:
        store = locate(location)
        if store is None:
            LOG.error('Image %s: no configured store holds location %s '
                      '(store %s)', record['id'], location['url'],
                      location['store'])
            continue
        try:
            actual = store.size(location['url'])
            if actual != record['size']:
                LOG.error('Image %s: store %s holds %d bytes, the record '
                          'says %s', record['id'], store.store_id, actual,
                          record['size'])
                continue
            return store.open(location['url'], offset, length)
        except stores.StoreError as err:
            LOG.error('Image %s: data unavailable in store %s: %s',
                      record['id'], store.store_id, err)
    LOG.error('Image %s is %s but its data is missing from every store',
              record['id'], record['status'])
    raise errors.data_unavailable(record['id'])
