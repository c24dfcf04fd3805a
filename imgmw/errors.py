"""Every error imgmw answers, with the contract's exact message.

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


def image_not_found(image_id: str):
    """3.8 and 5.3: unknown, or invisible to the caller."""
    return _error(webob.exc.HTTPNotFound, 'No image found with ID %s'
                  % image_id)


def not_authorized(action: str):
    """3.9, 5.5 and every other policy denial."""
    return _error(webob.exc.HTTPForbidden,
                  'You are not authorized to complete %s action.' % action)


def bad_transition(current: str, target: str):
    """3.10, 3.12 and section 4: the status does not allow the change."""
    return _error(webob.exc.HTTPConflict,
                  'Image status transition from %s to %s is not allowed'
                  % (current, target))


def formats_unset(missing: typing.Sequence[str]):
    """3.11: disk_format and/or container_format unset."""
    if len(missing) == 1:
        message = ('Property %s must be set prior to saving data.'
                   % missing[0])
    else:
        message = ('Properties %s must be set prior to saving data.'
                   % ', '.join(missing))
    return _error(webob.exc.HTTPBadRequest, message)


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


def storage_full(detail: str):
    """3.20."""
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'Image storage media is full: %s' % detail)


def storage_unavailable(detail: str):
    """3.21."""
    return _error(webob.exc.HTTPServiceUnavailable,
                  'Image storage is unavailable: %s' % detail)


def registry_unavailable():
    """3.22."""
    return _error(webob.exc.HTTPServiceUnavailable,
                  'Image registry is unavailable.')


def deleted_during_upload(image_id: str):
    """3.23."""
    return _error(webob.exc.HTTPGone,
                  'Image %s could not be found after upload. The image may '
                  'have been deleted during the upload, cleaning up the '
                  'chunks uploaded.' % image_id)


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


# Section 5, download.

def body_not_expected():
    """5.2."""
    return _error(webob.exc.HTTPBadRequest,
                  'A body is not expected with this request.')


def image_deactivated():
    """5.4."""
    return _error(webob.exc.HTTPForbidden,
                  'The requested image has been deactivated. Image data '
                  'download is forbidden.')


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


# Section 6.

def multi_store_off():
    return _error(webob.exc.HTTPNotFound,
                  'Multi backend is not supported at this site.')


# Section 4, import.

def unknown_import_method(name: str):
    return _error(webob.exc.HTTPBadRequest,
                  "Unknown import method name '%s'." % name)


def bad_import_request(reason: str):
    """An import body that is not ``{"method": {"name": ...}, ...}``."""
    return _error(webob.exc.HTTPBadRequest, reason)


def stores_header_and_body():
    return _error(webob.exc.HTTPBadRequest,
                  "Stores parameter and x-image-meta-store header can't be "
                  "both specified")


def all_stores_with_stores():
    return _error(webob.exc.HTTPBadRequest,
                  "All_stores parameter can't be used with x-image-meta-store "
                  "header or stores parameter")


def format_unset_for_import(name: str):
    """An import of an image whose disk or container format is unset."""
    return _error(webob.exc.HTTPConflict,
                  "'%s' needs to be set before import" % name)


def not_staged(method: str):
    """An import of an image that was not staged (Glance's text)."""
    return _error(webob.exc.HTTPConflict,
                  "Image needs to be staged before '%s' method can be used"
                  % method)


def staged_elsewhere(image_id: str, stage_host: str):
    """An import sent to a node that does not hold the staged data."""
    return _error(webob.exc.HTTPConflict,
                  'Image %s was staged on another node (%s); send the import '
                  'to that node.' % (image_id, stage_host))


def staged_data_lost(image_id: str):
    """The staged data of an image is gone; it was returned to queued."""
    return _error(webob.exc.HTTPConflict,
                  'The staged data of image %s is gone; stage it again.'
                  % image_id)


# Section 1.

def method_not_allowed(allowed: typing.Sequence[str]):
    """Any other method on a known path: 405 with ``Allow``."""
    return webob.exc.HTTPMethodNotAllowed(
        headers={'Allow': ', '.join(allowed)})


# Section 1 and 7: image records (as Glance words them).

def json_body_too_large(limit: int):
    """A metadata request body above the app's limit."""
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'Request body too large: at most %d bytes of JSON are '
                  'accepted.' % limit)


def malformed_json():
    return _error(webob.exc.HTTPBadRequest,
                  'Malformed JSON in request body.')


def schema_mismatch(schema: str, reason: str):
    """A request body that the image schema refuses."""
    return _error(webob.exc.HTTPBadRequest,
                  "Provided object does not match schema '%s': %s"
                  % (schema, reason))


def lone_surrogate():
    """A JSON string escaping half a surrogate pair: no Unicode text."""
    return _error(webob.exc.HTTPBadRequest,
                  'Invalid JSON in request body: a string holds a lone '
                  'surrogate (\\ud800 to \\udfff), which is not Unicode '
                  'text.')


def nul_character(name: str):
    """A NUL in an image attribute: no database column stores it alike."""
    return _error(webob.exc.HTTPBadRequest,
                  'Invalid value for %s: it contains a NUL character.'
                  % name)


def negative_value(name: str, value: int):
    """Glance's refusal of a negative ``min_ram`` or ``min_disk``."""
    return _error(webob.exc.HTTPBadRequest,
                  "Invalid value '%d' for parameter '%s': Cannot be a "
                  "negative value" % (value, name))


def out_of_range(name: str, maximum: int):
    """Glance's refusal of an integer its column cannot hold."""
    return _error(webob.exc.HTTPBadRequest,
                  "'%s' value out of range, must not exceed %d."
                  % (name, maximum))


def property_name_too_long(name: str, maximum: int):
    return _error(webob.exc.HTTPBadRequest,
                  'Property name %s... is too long: at most %d characters.'
                  % (name[:32], maximum))


def property_value_too_long(name: str, maximum: int):
    return _error(webob.exc.HTTPBadRequest,
                  'Property %s is too long: at most %d bytes of UTF-8.'
                  % (name, maximum))


def names_collide(what: str, first: str, second: str):
    """Two tags or property names that differ only in trailing spaces."""
    return _error(webob.exc.HTTPBadRequest,
                  '%s %r and %r differ only in trailing spaces, which the '
                  'registry does not tell apart.' % (what, first, second))


def read_only_attribute(name: str):
    return _error(webob.exc.HTTPForbidden,
                  "Attribute '%s' is read-only." % name)


def reserved_attribute(name: str):
    return _error(webob.exc.HTTPForbidden,
                  "Attribute '%s' is reserved." % name)


def owner_not_permitted(owner: str):
    return _error(webob.exc.HTTPForbidden,
                  "You are not permitted to create images owned by '%s'."
                  % owner)


def image_exists(image_id: str):
    return _error(webob.exc.HTTPConflict,
                  'An image with identifier %s already exists' % image_id)


def image_protected(image_id: str):
    return _error(webob.exc.HTTPForbidden,
                  'Image %s is protected and cannot be deleted.' % image_id)


def status_forbids(action: str, status: str):
    """deactivate or reactivate from a status that does not allow it."""
    return _error(webob.exc.HTTPForbidden,
                  "Not allowed to %s image in status '%s'" % (action, status))


def bad_query(message: str):
    """A malformed query parameter of a listing."""
    return _error(webob.exc.HTTPBadRequest, message)


def marker_not_found(marker: str):
    return _error(webob.exc.HTTPBadRequest,
                  'Marker %s could not be found.' % marker)


def unsupported_patch_type(content_type: typing.Optional[str]):
    return _error(webob.exc.HTTPUnsupportedMediaType,
                  'Invalid content type %s' % content_type)


def not_found():
    """An unknown path."""
    return webob.exc.HTTPNotFound()


def not_implemented(what: str):
    return _error(webob.exc.HTTPNotImplemented,
                  '%s is not available at this site yet.' % what)


def bad_patch(reason: str):
    """A JSON-patch body that is not a list of add/replace/remove."""
    return _error(webob.exc.HTTPBadRequest, reason)


def property_not_found(name: str):
    return _error(webob.exc.HTTPConflict, 'Property %s does not exist.'
                  % name)


def property_not_removable(name: str):
    return _error(webob.exc.HTTPForbidden,
                  "Attribute '%s' cannot be removed." % name)


def format_locked(name: str):
    return _error(webob.exc.HTTPForbidden,
                  'Attribute %s can be only replaced for a queued image.'
                  % name)
