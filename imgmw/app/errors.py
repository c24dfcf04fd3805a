"""The messages only the data app answers, with the contract's exact text.

As :mod:`imgmw.errors`, whose rendering they share (the body follows
``Accept``), each function returns a ``webob.exc`` response and names the
contract's section and row; change a text only with the contract
(``image-data.md``). The messages the filters answer too stay in
:mod:`imgmw.errors`; those the app answers are re-exported here, so that a
module of the app imports only this one.
"""

import typing

import webob.exc

from imgmw.errors import _error
from imgmw.errors import bad_transition  # noqa: F401
from imgmw.errors import body_too_slow  # noqa: F401
from imgmw.errors import data_unavailable  # noqa: F401
from imgmw.errors import incomplete_body  # noqa: F401
from imgmw.errors import method_not_allowed  # noqa: F401
from imgmw.errors import MissingFilter  # noqa: F401
from imgmw.errors import registry_unavailable  # noqa: F401
from imgmw.errors import store_not_found  # noqa: F401


# Section 3, upload: rows 2 to 23.

def image_not_found(image_id: str):
    """3.8 and 5.3: unknown, or invisible to the caller."""
    return _error(webob.exc.HTTPNotFound, 'No image found with ID %s'
                  % image_id)


def formats_unset(missing: typing.Sequence[str]):
    """3.11: disk_format and/or container_format unset."""
    if len(missing) == 1:
        message = ('Property %s must be set prior to saving data.'
                   % missing[0])
    else:
        message = ('Properties %s must be set prior to saving data.'
                   % ', '.join(missing))
    return _error(webob.exc.HTTPBadRequest, message)


def storage_full(detail: str):
    """3.20."""
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'Image storage media is full: %s' % detail)


def storage_unavailable(detail: str):
    """3.21."""
    return _error(webob.exc.HTTPServiceUnavailable,
                  'Image storage is unavailable: %s' % detail)


def deleted_during_upload(image_id: str):
    """3.23."""
    return _error(webob.exc.HTTPGone,
                  'Image %s could not be found after upload. The image may '
                  'have been deleted during the upload, cleaning up the '
                  'chunks uploaded.' % image_id)


# Section 5, download.


def image_deactivated():
    """5.4."""
    return _error(webob.exc.HTTPForbidden,
                  'The requested image has been deactivated. Image data '
                  'download is forbidden.')


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


def stage_host_unavailable(status: int):
    """The node that staged an image did not answer a forwarded import.

    ``status`` is Glance's: 504 when it could not be reached, 502 when it
    was and the exchange failed.
    """
    cls = (webob.exc.HTTPGatewayTimeout if status == 504
           else webob.exc.HTTPBadGateway)
    return _error(cls, 'Stage host is unavailable')


def staged_data_lost(image_id: str):
    """The staged data of an image is gone; it was returned to queued."""
    return _error(webob.exc.HTTPConflict,
                  'The staged data of image %s is gone; stage it again.'
                  % image_id)


# copy-image: a copy of an active image's data into more stores.

def copy_needs_active():
    """copy-image of an image that is not ``active`` (Glance's text)."""
    return _error(webob.exc.HTTPConflict,
                  'Only images with status active can be targeted for '
                  'copying')


def image_has_active_task():
    """Another import or copy of the image holds its lock."""
    return _error(webob.exc.HTTPConflict, 'Image has active task')


def operation_in_progress(image_id: str):
    """Another copy took the image's lock first (Glance's text)."""
    return _error(webob.exc.HTTPConflict,
                  "New operation on image '%s' is not permitted as prior "
                  "operation is still in progress" % image_id)


def already_in_store(store_id: str):
    """copy-image into a store that holds the image already."""
    return _error(webob.exc.HTTPBadRequest,
                  "Image is already present at store '%s'" % store_id)


def not_boolean(name: str):
    """``all_stores`` or ``all_stores_must_succeed`` not a boolean."""
    return _error(webob.exc.HTTPBadRequest,
                  "'%s' must be boolean value only" % name)


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


def tag_not_found(tag: str):
    return _error(webob.exc.HTTPNotFound, 'Tag %s not found.' % tag)


def invalid_tag(reason: str):
    return _error(webob.exc.HTTPBadRequest,
                  'Could not update image: %s' % reason)


def tag_limit_exceeded(image_id: str, limit: int):
    return _error(webob.exc.HTTPRequestEntityTooLarge,
                  'Image tag limit exceeded for image %s: at most %d tags.'
                  % (image_id, limit))


def store_unavailable_here(store_id: str):
    return _error(webob.exc.HTTPConflict,
                  'The selected store %s is not available on this node.'
                  % store_id)


def store_delete_needs_active():
    return _error(webob.exc.HTTPConflict,
                  "It's not allowed to remove image data from store if "
                  "image status is not 'active'")


def last_store():
    return _error(webob.exc.HTTPForbidden,
                  'Cannot delete image data from the only store containing '
                  'it. Consider deleting the image instead.')


def not_in_store(image_id: str, store_id: str):
    return _error(webob.exc.HTTPNotFound,
                  'Image %s is not stored in store %s.' % (image_id, store_id))


def owner_change_not_permitted():
    return _error(webob.exc.HTTPForbidden,
                  "You are not permitted to modify 'owner' on this image.")


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


def multi_store_off():
    return _error(webob.exc.HTTPNotFound,
                  'Multi backend is not supported at this site.')
