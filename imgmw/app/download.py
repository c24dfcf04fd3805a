"""Download: ``GET /v2/images/{id}/file`` (contract section 5).

Rows 2 to 5 (visibility, deactivation, policy) are checked by
:mod:`imgmw.app.api` before :func:`serve`; this module answers rows 6 and
7: no data (204), data missing from every store (503, logged), and serves
the data: the whole image (200), or the one byte range the download filter
validated and published as ``environ['imgmw.range']`` (206 with
``Content-Range``). The HTTP semantics of a download (``HEAD``, a body on
a ``GET``, ``Range`` parsing and validation, ``If-Range``,
``If-None-Match``, ``ETag``, ``Accept-Ranges``, ``Want-Repr-Digest``) are
the download filter's (:mod:`imgmw.filters.download`): the app reads no
``Range`` header. Its answers carry ``Content-Type``, ``Content-Length``,
``Content-MD5`` (hex, of the whole image, as Glance) and ``Repr-Digest``
(from ``os_hash_*`` when it is SHA-256 or SHA-512), which the filter and
the checksum filter read.

The body is the store's file-like object, through ``wsgi.file_wrapper``
when the server offers one (sendfile for whole files), else an iterator of
``read_chunk_size`` chunks. Integrity of a full download is checked by the
checksum filter on its way out.
"""

import collections.abc
import logging
import typing

import webob
import webob.exc

from imgmw.app import errors
from imgmw.app import stores
from imgmw import environ as keys
from imgmw import hashing


LOG = logging.getLogger(__name__)

#: Statuses whose image has data.
WITH_DATA = frozenset(('active', 'deactivated'))


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
    """Answer rows 6, 7, 13 and 14 for a visible, downloadable image."""
    if record['status'] not in WITH_DATA:
        return no_content()
    size = record['size'] or 0
    byte_range = _published_range(req.environ, record)
    first, last = byte_range if byte_range else (0, size - 1)
    length = last - first + 1
    body = open_data(record, locate, first, length)
    resp = webob.Response(status=206 if byte_range else 200,
                          content_type='application/octet-stream',
                          charset=None)
    resp.app_iter = body_iter(req.environ, body, chunk_size)
    # After app_iter, which resets it.
    resp.content_length = length
    if byte_range:
        resp.headers['Content-Range'] = 'bytes %d-%d/%d' % (first, last,
                                                            size)
    if record.get('checksum'):
        resp.headers['Content-MD5'] = record['checksum']
    digest = _repr_digest(record)
    if digest is not None:
        resp.headers['Repr-Digest'] = digest
    return resp


def _published_range(environ: dict, record: typing.Mapping
                     ) -> typing.Optional[typing.Tuple[int, int]]:
    """The download filter's range, when it fits the image."""
    byte_range = environ.get(keys.RANGE)
    if byte_range is None:
        return None
    first, last = byte_range
    if not 0 <= first <= last < (record['size'] or 0):
        LOG.error('Image %s: range %s-%s is outside its %s bytes; the '
                  'whole image is sent', record['id'], first, last,
                  record['size'])
        return None
    return first, last


def _repr_digest(record: typing.Mapping) -> typing.Optional[str]:
    algorithm = record.get('os_hash_algo')
    value = record.get('os_hash_value')
    if not (algorithm and value):
        return None
    try:
        return hashing.repr_digest(algorithm, value)
    except ValueError:
        LOG.error('Image %s: os_hash_value is not hex', record['id'])
        return None


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
