"""Image records as the API shows and takes them (contract section 7).

:func:`view` turns a registry record into Glance's image JSON;
:func:`creation_values` checks a ``POST /v2/images`` body against the image
schema and Glance's rules (read-only and reserved attributes) and returns
the registry's values; :func:`list_query` reads the query of
``GET /v2/images``.

Every body the schema accepts is also one the registry stores, the same on
SQLite, PostgreSQL and MySQL/MariaDB (:func:`check_storable`): what a
column cannot hold is refused with 400 and a message before anything is
written.

========================  ====================================================
refused                   why
========================  ====================================================
a lone surrogate          ``"\\ud800"`` is valid JSON syntax but no Unicode
                          text (RFC 8259 section 8.2, RFC 7493): no database
                          stores it, no response could show it. Any JSON body.
a NUL character           PostgreSQL refuses it in text; no name, tag or
                          property holds one
``min_ram``, ``min_disk``  Glance's limits: not negative, at most 2^31 - 1
                          (a 4-byte ``INTEGER`` column)
an ``id`` with anything   the schema's pattern ends in ``$``, which matches
around its UUID           before a final newline: the id is matched whole
property name             at most 255 characters (its ``VARCHAR(255)``)
property value            at most 65535 bytes of UTF-8 (MySQL's ``TEXT``)
two tags or property      MySQL/MariaDB compare with trailing spaces ignored
names equal but for       (``PAD SPACE``): ``a`` and ``a `` would collide
trailing spaces
========================  ====================================================
"""

import csv
import datetime
import functools
import json
import os
import re
import typing
import urllib.parse

import jsonschema
import webob

from imgmw.app import errors


SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          'schemas')

#: Top-level fields that are not extra properties.
BASE_FIELDS = ('id', 'name', 'status', 'visibility', 'protected',
               'os_hidden', 'checksum', 'os_hash_algo', 'os_hash_value',
               'size', 'virtual_size', 'disk_format', 'container_format',
               'owner', 'min_ram', 'min_disk', 'tags')

#: Set by the service only (Glance's ``ReadonlyProperty``).
READ_ONLY = ('created_at', 'updated_at', 'status', 'checksum',
             'os_hash_algo', 'os_hash_value', 'size', 'virtual_size',
             'direct_url', 'self', 'file', 'schema', 'stores')

#: Never settable through the API (Glance's ``ReservedProperty``).
RESERVED = ('location', 'locations', 'deleted', 'deleted_at')

#: Extra properties with this prefix are the service's own, never set by
#: a client; shown only when in :data:`SHOWN_RESERVED`.
RESERVED_PREFIX = 'os_glance'

#: The service's own properties an image shows, as Glance: the progress of
#: an import or a copy between stores (:mod:`imgmw.app.importer`,
#: :mod:`imgmw.app.copier`).
SHOWN_RESERVED = ('os_glance_import_task', 'os_glance_importing_to_stores',
                  'os_glance_failed_import')

#: Settable fields of the registry, besides ``properties``.
SETTABLE = ('id', 'name', 'visibility', 'protected', 'os_hidden',
            'disk_format', 'container_format', 'owner', 'min_ram',
            'min_disk', 'tags')


@functools.lru_cache(maxsize=None)
def schema(name: str) -> dict:
    """The JSON schema ``image`` or ``images`` (``schemas/<name>.json``)."""
    with open(os.path.join(SCHEMA_DIR, name + '.json'), 'rb') as source:
        return json.load(source)


def timestamp(value) -> typing.Optional[str]:
    return value.strftime('%Y-%m-%dT%H:%M:%SZ') if value else None


def view(record: typing.Mapping, multi_store: bool) -> dict:
    """Glance's JSON of an image record."""
    image = {key: record[key] for key in BASE_FIELDS}
    image['created_at'] = timestamp(record['created_at'])
    image['updated_at'] = timestamp(record['updated_at'])
    for key, value in record['properties'].items():
        if key not in image and (not key.startswith(RESERVED_PREFIX)
                                 or key in SHOWN_RESERVED):
            image[key] = value
    image['self'] = '/v2/images/%s' % record['id']
    image['file'] = '/v2/images/%s/file' % record['id']
    image['schema'] = '/v2/schemas/image'
    if multi_store and record['locations']:
        image['stores'] = ','.join(
            location['store'] for location in record['locations'])
    return image


def policy_target(record: typing.Mapping) -> dict:
    """The policy target of an image (as Glance's ``ImageTarget``)."""
    return {'project_id': record['owner'], 'owner': record['owner'],
            'visibility': record['visibility'], 'image_id': record['id']}


#: The largest JSON request body read, as Glance's ``max_request_body_size``.
MAX_JSON_BODY = 114688


def read_json(req: webob.Request) -> typing.Any:
    """The JSON body of a metadata request, read to at most its limit.

    Bodies of create, update and import requests are small; a larger one is
    refused with 413 before it is read (``Content-Length``) or as soon as
    the limit is passed (chunked), so no client can make the app buffer an
    arbitrary amount.
    """
    length = req.content_length
    if length is not None and length > MAX_JSON_BODY:
        raise errors.json_body_too_large(MAX_JSON_BODY)
    if length is None and not req.is_body_readable:
        return parse_json(b'')
    try:
        body = req.body_file.read(MAX_JSON_BODY + 1)
    except Exception:
        # The body ended early or broke (client gone, a chunk cut short:
        # gunicorn's ParseException, an OSError elsewhere): malformed.
        raise errors.malformed_json()
    if len(body) > MAX_JSON_BODY:
        raise errors.json_body_too_large(MAX_JSON_BODY)
    return parse_json(body)


def parse_json(body: bytes) -> typing.Any:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise errors.malformed_json()
    if _holds_surrogate(parsed):
        raise errors.lone_surrogate()
    return parsed


def _holds_surrogate(value: typing.Any) -> bool:
    """Whether a string anywhere in a parsed JSON value is not Unicode."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_surrogate(key) or _holds_surrogate(item)
                   for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_surrogate(item) for item in value)
    return False


_SURROGATE = re.compile('[\ud800-\udfff]')

#: ``min_ram`` and ``min_disk``: Glance's range, a 4-byte INTEGER column.
INTEGER_FIELDS = ('min_ram', 'min_disk')
MAX_INTEGER = 2 ** 31 - 1

#: Longest extra property name, in characters (``VARCHAR(255)``).
MAX_PROPERTY_NAME = 255

#: Longest extra property value, in bytes of UTF-8 (MySQL's ``TEXT``).
MAX_PROPERTY_VALUE = 65535


def check_storable(image: typing.Mapping[str, typing.Any]) -> None:
    """400 unless the registry stores ``image`` as it is, on every database.

    ``image`` has passed the schema; see the module's table.
    """
    for key, value in image.items():
        if '\x00' in key:
            raise errors.nul_character('a property name')
        if isinstance(value, str) and '\x00' in value:
            raise errors.nul_character(key)
        if isinstance(value, list) and any('\x00' in item for item in value
                                           if isinstance(item, str)):
            raise errors.nul_character(key)
    if 'id' in image and _ID.fullmatch(image['id']) is None:
        raise errors.schema_mismatch('image', '%r does not match %r' % (
            image['id'], schema('image')['properties']['id']['pattern']))
    for key in INTEGER_FIELDS:
        value = image.get(key)
        if value is not None and value < 0:
            raise errors.negative_value(key, value)
        if value is not None and value > MAX_INTEGER:
            raise errors.out_of_range(key, MAX_INTEGER)
    extra = [key for key in image
             if key not in BASE_FIELDS and key not in READ_ONLY]
    for key in extra:
        if len(key) > MAX_PROPERTY_NAME:
            raise errors.property_name_too_long(key, MAX_PROPERTY_NAME)
        if len(image[key].encode('utf-8', 'surrogatepass')) > \
                MAX_PROPERTY_VALUE:
            raise errors.property_value_too_long(key, MAX_PROPERTY_VALUE)
    _check_distinct('Property names', extra)
    _check_distinct('Tags', image.get('tags') or ())


#: The id, matched whole (``re.fullmatch``; ``\Z``, not ``$``).
_ID = re.compile('[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                 '[0-9a-fA-F]{4}-[0-9a-fA-F]{12}')


def _check_distinct(what: str, names: typing.Iterable[str]) -> None:
    """400 for two names the same to a ``PAD SPACE`` collation."""
    seen = {}
    for name in sorted(set(names)):
        padded = name.rstrip(' ')
        if padded in seen:
            raise errors.names_collide(what, seen[padded], name)
        seen[padded] = name


def creation_values(body: typing.Any, context) -> dict:
    """The registry values of a ``POST /v2/images`` body.

    :raises webob.exc.HTTPException: 403 for read-only or reserved
        attributes and another project's owner, 400 for a body the schema
        refuses.
    """
    if not isinstance(body, dict):
        raise errors.schema_mismatch('image', 'the body is not an object')
    for key in body:
        if key in READ_ONLY:
            raise errors.read_only_attribute(key)
        if key in RESERVED or key.startswith(RESERVED_PREFIX):
            raise errors.reserved_attribute(key)
    validate(body)
    check_storable(body)
    values = {key: body[key] for key in SETTABLE if key in body}
    values['properties'] = {key: value for key, value in body.items()
                            if key not in SETTABLE}
    owner = values.get('owner', context.project_id)
    if owner != context.project_id and not context.is_admin:
        raise errors.owner_not_permitted(owner)
    values['owner'] = owner
    return values


def validate(body: typing.Mapping) -> None:
    """Check ``body`` against the image schema (400 on a mismatch)."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft4Validator(schema('image')).iter_errors(body))
    if error is not None:
        raise errors.schema_mismatch('image', error.message)


# Listing.

#: Parameters of ``GET /v2/images`` that are not filters.
LIST_PARAMS = ('limit', 'marker', 'sort', 'sort_key', 'sort_dir', 'tag',
               'member_status')

#: Filters on a column, with Glance's ``in:`` operator (``name=in:a,b``).
IN_FILTERS = ('id', 'name', 'status', 'container_format', 'disk_format')

#: Filters compared for equality with the column.
EQUAL_FILTERS = ('owner', 'checksum', 'os_hash_algo', 'os_hash_value')

#: Integer columns: equality, and ``<column>_min``/``<column>_max`` ranges.
INTEGER_FILTERS = ('size', 'virtual_size', 'min_ram', 'min_disk')

#: Times compared with ``gt:``, ``gte:``, ``lt:``, ``lte:``, ``neq:``,
#: ``eq:`` and an ISO 8601 time.
TIME_FILTERS = ('created_at', 'updated_at')

#: Sort keys of ``sort_key`` and ``sort`` (Glance's, and a few more).
SORT_KEYS = ('name', 'status', 'container_format', 'disk_format', 'size',
             'id', 'created_at', 'updated_at', 'visibility', 'virtual_size',
             'owner', 'min_ram', 'min_disk')

#: Fields of an image that are not filters: asked for, they are 400 rather
#: than a filter on an extra property of that name.
NOT_FILTERS = READ_ONLY + RESERVED + (
    'tags', 'os_hash_algo', 'self', 'file', 'schema')

_VISIBILITIES = ('community', 'public', 'private', 'shared', 'all')


def list_query(params, default_limit: int, max_limit: int) -> dict:
    """Keyword arguments of :meth:`Registry.list` from the query string.

    As Glance: ``tag`` (repeatable, every one must match), the columns of
    :data:`IN_FILTERS`, :data:`EQUAL_FILTERS`, :data:`INTEGER_FILTERS`
    (and their ``_min``/``_max``) and :data:`TIME_FILTERS`, ``visibility``,
    ``os_hidden``, ``protected``, and any other name as a filter on the
    extra property of that name. A parameter that is none of these (a
    read-only field such as ``stores``, a reserved ``os_glance_`` name, a
    range on another column, ``changes-since``) is 400 naming it: no filter
    is ever ignored.

    :raises webob.exc.HTTPException: 400 on a bad parameter.
    """
    for key, value in params.items():
        if '\x00' in value or '\x00' in key:
            # No name, id or key holds one, and PostgreSQL refuses it.
            raise errors.bad_query('Invalid value for %s: it contains a '
                                   'NUL character.' % key)
    limit = _limit(params.get('limit'), default_limit, max_limit)
    member_status = params.get('member_status', 'accepted')
    if member_status not in ('pending', 'accepted', 'rejected', 'all'):
        raise errors.bad_query('Invalid status: %s' % member_status)
    filters = {'conditions': [], 'properties': [],
               'tags': [tag.strip() for tag in params.getall('tag')]}
    for key, value in params.items():
        if key not in LIST_PARAMS:
            _add_filter(filters, key, value)
    if 'os_hidden' in params:
        filters['os_hidden'] = _boolean('os_hidden', params['os_hidden'])
    sort_keys, sort_dirs = _sorting(params)
    return {'filters': filters, 'limit': limit,
            'marker': params.get('marker'), 'sort_key': sort_keys,
            'sort_dir': sort_dirs}


def _add_filter(filters: dict, key: str, value: str) -> None:
    conditions = filters['conditions']
    if key in IN_FILTERS:
        operator, operand = _split_operator(value)
        if operator == 'in':
            conditions.append((key, 'in', _split_list(operand)))
        elif operator == 'eq':
            conditions.append((key, 'eq', operand))
        else:
            raise errors.bad_query("Unable to filter by unknown operator "
                                   "'%s'." % operator)
    elif key == 'visibility':
        if value not in _VISIBILITIES:
            raise errors.bad_query('Invalid visibility value: %s' % value)
        filters['visibility'] = value
    elif key == 'os_hidden':
        pass  # after the loop: one value
    elif key == 'protected':
        if value not in ('true', 'false'):
            raise errors.bad_query("Invalid value '%s' for 'protected' "
                                   "filter. Valid values are 'true' or "
                                   "'false'." % value)
        conditions.append((key, 'eq', value == 'true'))
    elif key in EQUAL_FILTERS:
        conditions.append((key, 'eq', value))
    elif key in INTEGER_FILTERS:
        conditions.append((key, 'eq', _integer(key, value)))
    elif key[-4:] in ('_min', '_max') and key[:-4] in INTEGER_FILTERS:
        conditions.append((key[:-4], 'gte' if key.endswith('_min')
                           else 'lte', _integer(key, value, range_=True)))
    elif key in TIME_FILTERS:
        operator, moment = _split_operator(value)
        if operator not in ('gt', 'gte', 'lt', 'lte', 'neq', 'eq'):
            raise errors.bad_query("Unable to filter by unknown operator "
                                   "'%s'." % operator)
        conditions.append((key, operator, _time(key, moment)))
    elif key == 'changes-since':
        raise errors.bad_query('The "changes-since" filter is no longer '
                               'available on v2.')
    elif (key in NOT_FILTERS or key.startswith(RESERVED_PREFIX)
          or key[-4:] in ('_min', '_max') or not key):
        raise errors.bad_query('Unknown filter: %s' % key)
    else:
        filters['properties'].append((key, value))


def _split_operator(value: str) -> typing.Tuple[str, str]:
    """``(operator, operand)`` as Glance's ``split_filter_op``."""
    operator, colon, operand = value.partition(':')
    if not colon or _parse_time(value) is not None:
        return 'eq', value
    return operator, operand


def _split_list(value: str) -> typing.List[str]:
    """The values of ``in:a,"b,c"`` (double quotes around commas)."""
    try:
        return next(csv.reader([value], escapechar='\\', strict=True))
    except (csv.Error, StopIteration):
        raise errors.bad_query('Invalid filter value %s. The quote is not '
                               'closed.' % value)


def _parse_time(value: str) -> typing.Optional[datetime.datetime]:
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def _time(key: str, value: str) -> datetime.datetime:
    moment = _parse_time(value)
    if moment is None:
        raise errors.bad_query('Bad "%s" query filter format. Use ISO 8601 '
                               'DateTime notation.' % key)
    return moment


def _integer(key: str, value: str, range_: bool = False) -> int:
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        if range_:
            raise errors.bad_query('Unable to filter on a range with a '
                                   'non-numeric value.')
        raise errors.bad_query('Invalid value for %s: %s' % (key, value))
    return int(value)


def _sorting(params) -> typing.Tuple[typing.List[str], typing.List[str]]:
    """Sort keys and directions, in Glance's two syntaxes.

    ``sort=name:asc,size`` (a key without direction is ``desc``), or
    ``sort_key=name&sort_key=size&sort_dir=asc`` (one direction for
    every key, or one per key); never both.
    """
    keys, dirs = [], []
    if 'sort' in params:
        if 'sort_key' in params or 'sort_dir' in params:
            raise errors.bad_query('Old and new sorting syntax cannot be '
                                   'combined')
        for item in params['sort'].strip().split(','):
            key, _, direction = item.partition(':')
            keys.append(_sort_key(key.strip()))
            dirs.append(_sort_dir(direction.strip() or 'desc'))
    else:
        keys = [_sort_key(key.strip()) for key in params.getall('sort_key')]
        dirs = [_sort_dir(d.strip()) for d in params.getall('sort_dir')]
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise errors.bad_query('Number of sort dirs does not match the '
                                   'number of sort keys')
    return keys or ['created_at'], dirs or ['desc']


def _sort_key(key: str) -> str:
    if key not in SORT_KEYS:
        raise errors.bad_query('Invalid sort key: %s. It should be one of '
                               'the following: %s.'
                               % (key, ', '.join(SORT_KEYS)))
    return key


def _sort_dir(direction: str) -> str:
    if direction not in ('asc', 'desc'):
        raise errors.bad_query('Invalid sort direction: %s' % direction)
    return direction


def _limit(raw: typing.Optional[str], default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise errors.bad_query('limit param must be an integer')
    digits = raw.lstrip('0') or '0'
    if len(digits) > len(str(maximum)):
        # Beyond the maximum, and maybe beyond what int() converts.
        return maximum
    return min(int(digits), maximum)


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ('true', '1', 'yes', 'on'):
        return True
    if lowered in ('false', '0', 'no', 'off'):
        return False
    raise errors.bad_query('Invalid value for %s: %s' % (name, raw))


def page(records: typing.Sequence[typing.Mapping], params,
         query: typing.Mapping, multi_store: bool) -> dict:
    """The body of ``GET /v2/images``: images, first, schema, next."""
    kept = [(key, value) for key, value in params.items()
            if key != 'marker']
    result = {'images': [view(record, multi_store) for record in records],
              'first': _link(kept),
              'schema': '/v2/schemas/images'}
    if records and len(records) == query['limit']:
        result['next'] = _link(kept + [('marker', records[-1]['id'])])
    return result


def _link(params: typing.Sequence[typing.Tuple[str, str]]) -> str:
    if not params:
        return '/v2/images'
    return '/v2/images?' + urllib.parse.urlencode(params)


# Updates (JSON patch, as Glance takes them).

PATCH_MEDIA_TYPES = ('application/openstack-images-v2.1-json-patch',
                     'application/openstack-images-v2.0-json-patch')

#: The operations of a JSON patch.
PATCH_OPERATIONS = ('add', 'replace', 'remove')


def patch_operations(changes: typing.Any, content_type: str) -> typing.Any:
    """The changes of a patch body, in the ``{"op", "path"}`` form.

    ``application/openstack-images-v2.0-json-patch`` also takes the older
    form of that media type, the operation as the member naming the path
    (``{"replace": "/name", "value": "x"}``), as Glance does; it is turned
    into ``{"op": "replace", "path": "/name", "value": "x"}``. Anything
    else is returned as it is, for :func:`update_values` to check.

    :raises webob.exc.HTTPException: 400 for an old-form operation with
        more than one operation member.
    """
    if (content_type != PATCH_MEDIA_TYPES[1]
            or not isinstance(changes, list)):
        return changes
    converted = []
    for change in changes:
        if isinstance(change, dict) and 'op' not in change:
            named = [op for op in PATCH_OPERATIONS if op in change]
            if len(named) > 1:
                raise errors.bad_patch(
                    'Operation objects must contain only one member named '
                    '"add", "remove", or "replace".')
            if named:
                change = dict(change, op=named[0], path=change[named[0]])
                del change[named[0]]
        converted.append(change)
    return converted


#: Changeable only while the image has no data.
FORMATS = ('disk_format', 'container_format')


def update_values(record: typing.Mapping, changes: typing.Any,
                  context=None) -> dict:
    """The registry values of a JSON patch of ``record``.

    Top-level paths only: ``add``, ``replace`` and ``remove`` of the
    settable fields and extra properties; the result must match the
    schema.

    :raises webob.exc.HTTPException: 400 malformed, 403 read-only,
        reserved or locked attributes, 409 replacing or removing an absent
        property.
    """
    if not isinstance(changes, list):
        raise errors.bad_patch('Request body must be a JSON array of '
                               'operation objects.')
    image = view(record, False)
    for change in changes:
        _apply(record, image, change)
    validate(image)
    if image['owner'] != record['owner'] and not (
            context is not None and context.is_admin):
        # As Glance: only an admin gives an image to another project.
        raise errors.owner_change_not_permitted()
    check_storable(image)
    values = {key: image[key] for key in SETTABLE
              if key in image and key != 'id'
              and image[key] != record[key]}
    values['properties'] = {key: value for key, value in image.items()
                            if key not in BASE_FIELDS
                            and key not in READ_ONLY}
    # The service's own hidden properties (the stage host) are kept.
    values['properties'].update(
        (key, value) for key, value in record['properties'].items()
        if key.startswith(RESERVED_PREFIX))
    return values


def _apply(record: typing.Mapping, image: dict, change: typing.Any) -> None:
    if not isinstance(change, dict) or change.get(
            'op') not in PATCH_OPERATIONS or not isinstance(
                change.get('path'), str) or not change['path'][1:]:
        raise errors.bad_patch('Operations must be JSON objects with an op '
                               'of add, replace or remove and a path.')
    op = change['op']
    key = change['path'][1:].replace('~1', '/').replace('~0', '~')
    if '/' in key or key == 'id' or key in READ_ONLY:
        raise errors.read_only_attribute(key)
    if key in RESERVED or key.startswith(RESERVED_PREFIX):
        raise errors.reserved_attribute(key)
    if key in FORMATS and record['status'] != 'queued':
        raise errors.format_locked(key)
    if op == 'remove':
        if key in BASE_FIELDS:
            raise errors.property_not_removable(key)
        if key not in image:
            raise errors.property_not_found(key)
        del image[key]
        return
    if 'value' not in change:
        raise errors.bad_patch('Operation %s of %s needs a value.'
                               % (op, key))
    if op == 'replace' and key not in image:
        raise errors.property_not_found(key)
    image[key] = change['value']
