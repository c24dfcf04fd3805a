"""The errors the filters answer, with the contract's exact message.

The messages only the data app answers are in :mod:`imgmw.app.errors`;
this module keeps those of the filters (some of which the app answers too)
and renders both.

Each function returns a ``webob.exc`` response (also an exception), so the
body follows the request's ``Accept`` header as Glance's does:
``application/json`` alone gives ``{"message", "code", "title"}``, HTML or
``*/*`` a small page, anything else plain text. Clients and scripts match on
these texts: change one only with the contract (``image-data.md``), whose
section and row each function names.
"""

import typing

import webob.exc


class MissingFilter(RuntimeError):
    """A filter or the app needs an environ key that nobody set.

    This is a deployment error (a filter missing from the pipeline, or in
    the wrong order) and surfaces as a 500 with this message in the log.
    """

    def __init__(self, key: str, publisher: str, reader: str):
        super().__init__(
            '%s needs environ[%r], which the %s filter sets; add that filter '
            'before it in the pipeline' % (reader, key, publisher))
        self.key = key


#: WebOb's usual body: the explanation (our message), then any detail.
_BODY_TEMPLATE = webob.exc.WSGIHTTPException.body_template_obj.template


def _error(cls, message: str, **kwargs) -> webob.exc.HTTPException:
    if cls.body_template_obj is not \
            webob.exc.WSGIHTTPException.body_template_obj:
        # Some classes (415) have a body of their own that leaves the
        # explanation out; the contract's message must be the body.
        kwargs.setdefault('body_template', _BODY_TEMPLATE)
    return cls(explanation=message, **kwargs)


# Section 3, upload: rows 2 to 23.

def invalid_content_type(content_type: typing.Optional[str]):
    """3.2 (and 4): 415."""
    return _error(webob.exc.HTTPUnsupportedMediaType,
                  'Invalid content type %s' % content_type)


def invalid_image_size():
    """3.3: the x-openstack-image-size header is malformed."""
    return _error(webob.exc.HTTPBadRequest,
                  'Invalid or missing image size in request headers.')


def content_coding_refused(coding: str):
    """3.2's companion: a content coding would be stored still encoded."""
    err = _error(webob.exc.HTTPUnsupportedMediaType,
                 'Content-Encoding %s is not accepted: image data is stored '
                 'as it is sent.' % coding)
    err.headers['Accept-Encoding'] = 'identity'
    return err


def transfer_coding_refused(codings: str):
    """3.4's companion: a transfer coding applied before chunked."""
    return _error(webob.exc.HTTPBadRequest,
                  'Transfer-Encoding %s is not accepted: send image data as '
                  'it is, chunked or with Content-Length.' % codings)


def length_required():
    """3.4: neither Content-Length nor chunked framing."""
    return _error(webob.exc.HTTPLengthRequired,
                  'A request body with a declared length or chunked '
                  'encoding is required.')


def invalid_content_length():
    """3.4's companion: a Content-Length that is not a decimal integer.

    Servers usually refuse such a request themselves.
    """
    return _error(webob.exc.HTTPBadRequest, 'Invalid Content-Length header.')


def size_header_mismatch(declared: int, content_length: int):
    """3.5: x-openstack-image-size and Content-Length disagree."""
    return _error(webob.exc.HTTPBadRequest,
                  'Size mismatch: x-openstack-image-size %d does not match '
                  'Content-Length %d' % (declared, content_length))


def image_too_large():
    """3.6 and 3.16: above ``image_size_cap``."""
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'The incoming image is too large: The provided image is '
                  'too large.')


def store_not_found(store_id: str, status: int = 400):
    """3.7 (400) and section 4's import (409): unknown or reserved store."""
    cls = webob.exc.HTTPConflict if status == 409 else webob.exc.HTTPBadRequest
    return _error(cls, 'Store for identifier %s not found' % store_id)


def not_authorized(action: str):
    """3.9, 5.5 and every other policy denial."""
    return _error(webob.exc.HTTPForbidden,
                  'You are not authorized to complete %s action.' % action)


def storage_quota_exceeded(size: int, remaining: int):
    """3.13 and 3.17: above the caller's remaining storage quota."""
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'Image exceeds the storage quota: The size of the data %d '
                  'will exceed the limit. %d bytes remaining.'
                  % (size, remaining))


def storage_quota_used_up(usage: int, limit: int):
    """3.17 before any byte: an upload of unknown size, no quota left."""
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'Image exceeds the storage quota: The project stores %d '
                  'bytes of its limit of %d bytes; no data can be added.'
                  % (usage, limit))


def over_limit(project_id: str, resource: str, limit: int, usage: int,
               delta: int):
    """Section 8: another quota (``image_count_uploading``) is breached.

    Worded as Glance words oslo.limit's refusal.
    """
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'Project %s is over a limit for [Resource %s is over limit '
                  'of %d due to current usage %d and delta %d]'
                  % (project_id, resource, limit, usage, delta))


def limits_unavailable():
    """Section 8: the limits in force could not be read (Keystone)."""
    return _error(webob.exc.HTTPServiceUnavailable,
                  'Quota limits are unavailable.')


def size_exceeds(expected: int, got: int):
    """3.14: more bytes than declared."""
    return _error(webob.exc.HTTPBadRequest,
                  'Size exceeds: expected %d bytes, got %d bytes'
                  % (expected, got))


def size_mismatch(expected: int, got: int):
    """3.15: fewer bytes than declared."""
    return _error(webob.exc.HTTPBadRequest,
                  'Size mismatch: expected %d bytes, got %d bytes'
                  % (expected, got))


def empty_chunked_body():
    """3.18: chunked, undeclared and empty."""
    return _error(webob.exc.HTTPBadRequest,
                  'Image data is empty. Declare x-openstack-image-size: 0 '
                  'to store an empty image.')


def incomplete_body(expected: typing.Optional[int], got: int):
    """A body that broke off; the contract treats it as row 3.15."""
    if expected is not None:
        return size_mismatch(expected, got)
    return _error(webob.exc.HTTPBadRequest,
                  'Size mismatch: the request body ended after %d bytes '
                  'before its end' % got)


def body_too_slow(got: int):
    """A body that stopped arriving, or came below the server's pace.

    The server waited as long as it was prepared to (RFC 9110 section
    15.5.9): 408, not a short body's 400, so the client knows to retry.
    """
    return _error(webob.exc.HTTPRequestTimeout,
                  'Request Timeout: the request body came too slowly and '
                  'was cut after %d bytes' % got)


def malformed_chunks(got: int, detail: str):
    """A chunked body the server could not decode (bad chunk size, ...)."""
    return _error(webob.exc.HTTPBadRequest,
                  'Malformed chunked request body after %d bytes: %s'
                  % (got, detail[:200]))


def checksum_mismatch(algorithm: str):
    """3.19: a client digest does not match the data."""
    return _error(webob.exc.HTTPBadRequest,
                  'Checksum verification failed: %s mismatch' % algorithm)


def invalid_digest_header(header: str, reason: str):
    """3.19's companion: a malformed client digest header, before reading.

    ``header`` is ``Content-MD5``, ``Content-Digest`` or ``Repr-Digest``.
    """
    return _error(webob.exc.HTTPBadRequest,
                  'Invalid %s header: %s' % (header, reason))


def unsupported_digest_algorithms(header: str, names: typing.Sequence[str],
                                  want: str):
    """3.19's companion: a digest field naming no algorithm imgmw knows.

    ``want`` is the RFC 9530 ``Want-<header>`` value listing those it does.
    """
    return _error(webob.exc.HTTPBadRequest,
                  'Unsupported digest algorithm(s) in %s: %s. Supported: %s'
                  % (header, ', '.join(names), want),
                  headers={'Want-' + header: want})


def registry_unavailable():
    """3.22."""
    return _error(webob.exc.HTTPServiceUnavailable,
                  'Image registry is unavailable.')


# Section 3, format inspection (the paragraph after the table).

def format_mismatch(disk_format: str, detected: str):
    """The data is not what the image's ``disk_format`` says."""
    return _error(webob.exc.HTTPUnsupportedMediaType,
                  'Image disk_format %s does not match stream data %s'
                  % (disk_format, detected))


def formats_ambiguous(detected: typing.Sequence[str]):
    """The data matches several formats at once (as Glance words it)."""
    return _error(webob.exc.HTTPUnsupportedMediaType,
                  'Multiple formats detected: %s' % ','.join(detected))


def unsafe_image():
    """The data fails a safety check (backing file, external extent...)."""
    return _error(webob.exc.HTTPUnsupportedMediaType,
                  'Image failed safety checks')


def inspection_failed():
    """The format inspector could not judge the data, matching required."""
    return _error(webob.exc.HTTPUnsupportedMediaType,
                  'Image format inspection failed')


def invalid_identity_header(header: str):
    """A trusted identity header (noauth) that no identity could carry."""
    return _error(webob.exc.HTTPBadRequest,
                  'Invalid %s header: expected 1 to 255 visible ASCII '
                  'characters.' % header)


# Section 6.

# Section 3, row 10 and 12: answered by the quota filter too.

def bad_transition(current: str, target: str):
    """3.10, 3.12 and section 4: the status does not allow the change."""
    return _error(webob.exc.HTTPConflict,
                  'Image status transition from %s to %s is not allowed'
                  % (current, target))


# Section 5, download: answered by the download filter and the data app.

def body_not_expected():
    """5.2."""
    return _error(webob.exc.HTTPBadRequest,
                  'A body is not expected with this request.')


def data_unavailable(image_id: str):
    """5.7."""
    return _error(webob.exc.HTTPServiceUnavailable,
                  'Image data for %s is unavailable.' % image_id)


def multiple_ranges():
    """5.9."""
    return _error(webob.exc.HTTPBadRequest,
                  'Requests with multiple ranges are not supported in '
                  'Glance. You may make multiple single-range requests '
                  'instead.')


def invalid_range(size: int):
    """5.10."""
    return _error(webob.exc.HTTPRequestRangeNotSatisfiable,
                  'Invalid Range header.',
                  headers={'Content-Range': 'bytes */%d' % size})


def invalid_content_range(size: int):
    """5 (legacy ``Content-Range`` request header): malformed."""
    return _error(webob.exc.HTTPRequestRangeNotSatisfiable,
                  'Invalid Content-Range header.',
                  headers={'Content-Range': 'bytes */%d' % size})


def invalid_content_range_stop(size: int):
    """5 (legacy ``Content-Range``): the stop is beyond the image."""
    return _error(webob.exc.HTTPRequestRangeNotSatisfiable,
                  'Invalid stop position in Content-Range header. The stop '
                  'position MUST be in the inclusive range [0, %d].'
                  % (size - 1),
                  headers={'Content-Range': 'bytes */%d' % size})


def invalid_range_start(size: int, header: str = 'Range'):
    """5.11."""
    return _error(webob.exc.HTTPRequestRangeNotSatisfiable,
                  'Invalid start position in %s header. Start position MUST '
                  'be in the inclusive range [0, %d].' % (header, size - 1),
                  headers={'Content-Range': 'bytes */%d' % size})


# Section 1.

def method_not_allowed(allowed: typing.Sequence[str]):
    """Any other method on a known path: 405 with ``Allow``."""
    return webob.exc.HTTPMethodNotAllowed(
        headers={'Allow': ', '.join(allowed)})
