"""The Image API v2 paths that imgmw's filters and app recognise.

One parser for every filter, so that they agree on what an upload is.
``/v2.N/...`` is the same path as ``/v2/...`` for any minor version N (the
versions document says which ones a client may use). A trailing slash is
tolerated as Glance's router does, but not an empty image id:
``/v2/images/`` names nothing (404), as on Glance.
"""

import dataclasses
import re
import typing


@dataclasses.dataclass(frozen=True)
class Route:
    """What a request path names.

    ``kind`` is one of :data:`KINDS`; ``image_id`` is set for image routes;
    ``name`` is the tag of :data:`TAG` and the store of :data:`STORE_IMAGE`.
    """

    kind: str
    image_id: typing.Optional[str] = None
    name: typing.Optional[str] = None


IMAGE_DATA = 'image_data'        # /v2/images/{id}/file
STAGE = 'stage'                  # /v2/images/{id}/stage
IMPORT = 'import'                # /v2/images/{id}/import
IMAGE = 'image'                  # /v2/images/{id}
TAG = 'tag'                      # /v2/images/{id}/tags/{tag}
IMAGE_TASKS = 'image_tasks'      # /v2/images/{id}/tasks
STORE_IMAGE = 'store_image'      # /v2/stores/{store_id}/{id}
IMAGES = 'images'                # /v2/images
DEACTIVATE = 'deactivate'        # /v2/images/{id}/actions/deactivate
REACTIVATE = 'reactivate'        # /v2/images/{id}/actions/reactivate
STORES_INFO = 'stores_info'      # /v2/info/stores
STORES_DETAIL = 'stores_detail'  # /v2/info/stores/detail
IMPORT_INFO = 'import_info'      # /v2/info/import
USAGE_INFO = 'usage_info'        # /v2/info/usage
SCHEMA_IMAGE = 'schema_image'    # /v2/schemas/image
SCHEMA_IMAGES = 'schema_images'  # /v2/schemas/images
VERSIONS = 'versions'            # / and /versions

KINDS = (IMAGE_DATA, STAGE, IMPORT, IMAGE, IMAGES, DEACTIVATE, REACTIVATE,
         TAG, IMAGE_TASKS, STORE_IMAGE, STORES_INFO, STORES_DETAIL,
         IMPORT_INFO, USAGE_INFO, SCHEMA_IMAGE,
         SCHEMA_IMAGES, VERSIONS)

#: The methods each route answers; any other gets 405 with ``Allow``.
ALLOWED = {
    IMAGE_DATA: ('GET', 'HEAD', 'PUT'),
    STAGE: ('PUT',),
    IMPORT: ('POST',),
    IMAGE: ('GET', 'PATCH', 'DELETE'),
    IMAGES: ('GET', 'POST'),
    DEACTIVATE: ('POST',),
    REACTIVATE: ('POST',),
    TAG: ('PUT', 'DELETE'),
    IMAGE_TASKS: ('GET',),
    STORE_IMAGE: ('DELETE',),
    STORES_INFO: ('GET',),
    STORES_DETAIL: ('GET',),
    IMPORT_INFO: ('GET',),
    USAGE_INFO: ('GET',),
    SCHEMA_IMAGE: ('GET',),
    SCHEMA_IMAGES: ('GET',),
    VERSIONS: ('GET',),
}

#: Routes whose request body is image data.
DATA_ROUTES = frozenset((IMAGE_DATA, STAGE))

_V2 = r'/v2(?:\.[0-9]+)?'
_ID = r'([^/]+)'
_PATTERNS = [
    (re.compile(_V2 + r'/images/' + _ID + r'/file/?'), IMAGE_DATA),
    (re.compile(_V2 + r'/images/' + _ID + r'/stage/?'), STAGE),
    (re.compile(_V2 + r'/images/' + _ID + r'/import/?'), IMPORT),
    (re.compile(_V2 + r'/images/' + _ID + r'/actions/deactivate/?'),
     DEACTIVATE),
    (re.compile(_V2 + r'/images/' + _ID + r'/actions/reactivate/?'),
     REACTIVATE),
    (re.compile(_V2 + r'/images/' + _ID + r'/tags/' + _ID + r'/?'), TAG),
    (re.compile(_V2 + r'/images/' + _ID + r'/tasks/?'), IMAGE_TASKS),
    (re.compile(_V2 + r'/images/' + _ID + r'/?'), IMAGE),
    (re.compile(_V2 + r'/images'), IMAGES),
    (re.compile(_V2 + r'/stores/' + _ID + r'/' + _ID + r'/?'), STORE_IMAGE),
    (re.compile(_V2 + r'/info/stores/?'), STORES_INFO),
    (re.compile(_V2 + r'/info/stores/detail/?'), STORES_DETAIL),
    (re.compile(_V2 + r'/info/import/?'), IMPORT_INFO),
    (re.compile(_V2 + r'/info/usage/?'), USAGE_INFO),
    (re.compile(_V2 + r'/schemas/image/?'), SCHEMA_IMAGE),
    (re.compile(_V2 + r'/schemas/images/?'), SCHEMA_IMAGES),
    (re.compile(r'/(?:versions/?)?'), VERSIONS),
]


def route(path: str) -> typing.Optional[Route]:
    """Return the :class:`Route` a path names, or ``None``."""
    for pattern, kind in _PATTERNS:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        groups = match.groups()
        if kind == STORE_IMAGE:
            return Route(kind, groups[1], groups[0])
        if kind == TAG:
            return Route(kind, groups[0], groups[1])
        return Route(kind, groups[0] if groups else None)
    return None


def route_of(environ: dict) -> typing.Optional[Route]:
    """The route of a WSGI request (``PATH_INFO``)."""
    return route(environ.get('PATH_INFO') or '/')


def is_data_upload(environ: dict) -> typing.Optional[Route]:
    """The route, when the request is a ``PUT`` of image data."""
    if environ.get('REQUEST_METHOD') != 'PUT':
        return None
    found = route_of(environ)
    if found is not None and found.kind in DATA_ROUTES:
        return found
    return None
