"""Store configuration, shared by the stores filter and the data app.

Stores are configured in ``api-paste.ini`` with glance_store's names, so an
operator's Glance settings carry over. ``[DEFAULT]`` says which stores
exist; each store has a ``[store:<id>]`` section of its own (paste.deploy
ignores those sections)::

    [DEFAULT]
    enabled_backends = fast:file, cheap:s3
    default_backend = fast

    [store:fast]
    filesystem_store_datadir = %(here)s/images
    store_description = Local disks
    weight = 100

    [store:cheap]
    s3_store_host = https://rgw.example:8080
    s3_store_access_key = ...
    s3_store_secret_key = ...
    s3_store_bucket = images

``enabled_backends`` turns multi-store on (contract section 6): uploads may
pick a store with ``X-Image-Meta-Store`` and ``/v2/info/stores`` answers.
Without it there is one implicit store, id ``default``, of the type
``default_store`` (``file`` unless set), whose options come from a
``[store:default]`` section or, failing that, from ``[DEFAULT]``; its
``filesystem_store_datadir`` may be left unset for the app to choose.

Everything is checked once, at start-up; :class:`imgmw.config.ConfigError`
names the offending option: an unknown store type or option, a missing
required option, ``default_backend`` not among the enabled stores, an id
with the reserved ``os_glance_`` prefix, two file stores sharing a
directory. A ``[store:<id>]`` section for a store that is not enabled is
logged as a warning.

==================================  =====  ==================================
option                              type   meaning
==================================  =====  ==================================
``store_description``               any    shown by ``/v2/info/stores``
``weight``                          any    integer, default 0; higher is
                                           preferred for downloads
``filesystem_store_datadir``        file   directory of the images;
                                           required with multi-store
``s3_store_host``                   s3     endpoint URL; required
``s3_store_access_key``             s3     required
``s3_store_secret_key``             s3     required; never shown
``s3_store_bucket``                 s3     required
``s3_store_create_bucket_on_put``   s3     boolean, default false
``s3_store_large_object_size``      s3     MiB from which uploads are
                                           multipart, default 100
``s3_store_large_object_chunk_size``  s3   MiB per part, default 10, min 5
``s3_store_region_name``            s3     optional region
``s3_store_bucket_url_format``      s3     ``auto`` (default), ``path`` or
                                           ``virtual``
``s3_store_cacert``                 s3     CA bundle of an https endpoint
``s3_store_thread_pools``           s3     parts of an upload buffered and
                                           sent at a time, default 2
==================================  =====  ==================================
"""

import collections
import configparser
import dataclasses
import logging
import os
import typing

from imgmw import config


LOG = logging.getLogger(__name__)

RESERVED_PREFIX = 'os_glance_'
IMPLICIT_ID = 'default'
SECTION_PREFIX = 'store:'
TYPES = ('file', 's3')

_COMMON = (
    config.Opt('store_description', config.string, None,
               'Shown by /v2/info/stores.'),
    config.Opt('weight', config.integer(), 0,
               'Preference for downloads; higher first.'),
)
OPTS = {
    'file': _COMMON + (
        config.Opt('filesystem_store_datadir', config.string, None,
                   'Directory of the images.'),
    ),
    's3': _COMMON + (
        config.Opt('s3_store_host', config.string, None, 'Endpoint URL.'),
        config.Opt('s3_store_access_key', config.string, None,
                   'Access key.'),
        config.Opt('s3_store_secret_key', config.string, None,
                   'Secret key.'),
        config.Opt('s3_store_bucket', config.string, None, 'Bucket.'),
        config.Opt('s3_store_create_bucket_on_put', config.boolean, False,
                   'Create the bucket when missing.'),
        config.Opt('s3_store_large_object_size', config.integer(minimum=1),
                   100, 'MiB from which uploads are multipart.'),
        config.Opt('s3_store_large_object_chunk_size',
                   config.integer(minimum=5), 10, 'MiB per part.'),
        config.Opt('s3_store_region_name', config.string, None, 'Region.'),
        config.Opt('s3_store_bucket_url_format',
                   config.choice('auto', 'path', 'virtual'), 'auto',
                   'Bucket addressing: auto, path or virtual.'),
        config.Opt('s3_store_cacert', config.string, None,
                   'CA bundle verifying an https endpoint.'),
        config.Opt('s3_store_thread_pools', config.integer(minimum=1), 2,
                   'Parts of an upload buffered and sent at a time.'),
    ),
}
REQUIRED = {
    'file': (),
    's3': ('s3_store_host', 's3_store_access_key', 's3_store_secret_key',
           's3_store_bucket'),
}
GLOBAL_OPTS = (
    config.Opt('enabled_backends', config.backends, None,
               'id:type, ... turns multi-store on.'),
    config.Opt('default_backend', config.string, None,
               'The store of uploads that name none (multi-store).'),
    config.Opt('default_store', config.choice(*TYPES), 'file',
               'The type of the single store (no multi-store).'),
)


@dataclasses.dataclass(frozen=True)
class StoreConf:
    """One store: its id, type and typed options (glance_store's names)."""

    id: str
    type: str
    description: typing.Optional[str]
    weight: int
    options: typing.Mapping[str, typing.Any] = dataclasses.field(repr=False)

    def properties(self) -> typing.Dict[str, typing.Any]:
        """What ``/v2/info/stores/detail`` shows; never a secret."""
        if self.type == 'file':
            return {'data_dir': self.options['filesystem_store_datadir']}
        return {
            'bucket': self.options['s3_store_bucket'],
            's3_store_large_object_size':
                self.options['s3_store_large_object_size'],
            's3_store_large_object_chunk_size':
                self.options['s3_store_large_object_chunk_size'],
        }


@dataclasses.dataclass(frozen=True)
class Backends:
    """The configured stores.

    :ivar multi: whether multi-store is on (``enabled_backends`` set).
    :ivar default: the id of the store of uploads that name none.
    :ivar stores: id to :class:`StoreConf`, in configuration order.
    """

    multi: bool
    default: str
    stores: typing.Mapping[str, StoreConf]

    @staticmethod
    def is_reserved(store_id: str) -> bool:
        """Whether ``store_id`` is reserved (never listed nor accepted)."""
        return store_id.startswith(RESERVED_PREFIX)

    def get(self, store_id: str) -> typing.Optional[StoreConf]:
        """The store a client may name, or ``None``."""
        if self.is_reserved(store_id):
            return None
        return self.stores.get(store_id)


def load(global_conf: typing.Mapping,
         sections: typing.Optional[typing.Mapping[str, typing.Mapping]]
         = None) -> Backends:
    """Parse and check the store configuration.

    :param global_conf: ``[DEFAULT]`` of the paste file, as paste.deploy
        passes it to factories (with ``__file__`` and ``here``).
    :param sections: ``{'store:<id>': {option: value}}``; by default read
        from the file named by ``global_conf['__file__']``.
    :raises config.ConfigError: naming the offending option.
    """
    if sections is None:
        sections = read_sections(global_conf.get('__file__'))
    values = config.parse(GLOBAL_OPTS, global_conf, {}, '[DEFAULT]')
    enabled = values['enabled_backends'] or {}
    if not enabled:
        return _single(values, global_conf, sections)
    _check_enabled(enabled, values['default_backend'])
    stores = collections.OrderedDict(
        (store_id, _store(store_id, store_type,
                          sections.get(SECTION_PREFIX + store_id, {}), {},
                          multi=True))
        for store_id, store_type in enabled.items())
    _warn_unused(sections, stores)
    _check_distinct_dirs(stores)
    return Backends(True, values['default_backend'], stores)


def read_sections(path: typing.Optional[str]
                  ) -> typing.Dict[str, typing.Dict[str, str]]:
    """The ``[store:<id>]`` sections of a paste file, ``%(here)s`` expanded.

    Values of ``[DEFAULT]`` are not merged into the sections.
    """
    if not path:
        return {}
    # A default section name that no file uses: [DEFAULT] stays apart.
    parser = configparser.ConfigParser(interpolation=None, strict=False,
                                       default_section='\0')
    with open(path, encoding='utf-8') as f:
        parser.read_file(f)
    here = os.path.dirname(os.path.abspath(path))
    return {
        name: {key: value.replace('%(here)s', here)
               for key, value in parser.items(name)}
        for name in parser.sections() if name.startswith(SECTION_PREFIX)
    }


def _single(values: typing.Mapping, global_conf: typing.Mapping,
            sections: typing.Mapping) -> Backends:
    if values['default_backend']:
        raise config.ConfigError(
            '[DEFAULT]: default_backend is set but enabled_backends is not')
    store = _store(IMPLICIT_ID, values['default_store'],
                   sections.get(SECTION_PREFIX + IMPLICIT_ID, {}),
                   global_conf, multi=False)
    stores = collections.OrderedDict([(IMPLICIT_ID, store)])
    _warn_unused(sections, stores)
    return Backends(False, IMPLICIT_ID, stores)


def _check_enabled(enabled: typing.Mapping[str, str],
                   default: typing.Optional[str]) -> None:
    for store_id, store_type in enabled.items():
        if Backends.is_reserved(store_id):
            raise config.ConfigError(
                '[DEFAULT]: enabled_backends: the store id %s is reserved '
                '(prefix %s)' % (store_id, RESERVED_PREFIX))
        if store_type not in TYPES:
            raise config.ConfigError(
                '[DEFAULT]: enabled_backends: unknown store type %s for %s; '
                'expected one of %s' % (store_type, store_id,
                                        ', '.join(TYPES)))
    if not default:
        raise config.ConfigError(
            '[DEFAULT]: default_backend is required with enabled_backends')
    if default not in enabled:
        raise config.ConfigError(
            '[DEFAULT]: default_backend %s is not in enabled_backends'
            % default)


def _store(store_id: str, store_type: str, section: typing.Mapping,
           fallback: typing.Mapping, multi: bool) -> StoreConf:
    owner = '[%s%s]' % (SECTION_PREFIX, store_id)
    options = config.parse(OPTS[store_type], fallback, section, owner)
    required = REQUIRED[store_type]
    if multi and store_type == 'file':
        required = ('filesystem_store_datadir',)
    for name in required:
        if not options[name]:
            raise config.ConfigError('%s: %s is required for a %s store'
                                     % (owner, name, store_type))
    return StoreConf(store_id, store_type, options['store_description'],
                     options['weight'], options)


def _warn_unused(sections: typing.Mapping,
                 stores: typing.Mapping[str, StoreConf]) -> None:
    for name in sections:
        if name[len(SECTION_PREFIX):] not in stores:
            LOG.warning('[%s] ignored: no such store is enabled', name)


def _check_distinct_dirs(stores: typing.Mapping[str, StoreConf]) -> None:
    seen = {}
    for store in stores.values():
        if store.type != 'file':
            continue
        path = os.path.realpath(store.options['filesystem_store_datadir'])
        if path in seen:
            raise config.ConfigError(
                '[%s%s]: filesystem_store_datadir %s is also the directory '
                'of store %s' % (SECTION_PREFIX, store.id, path, seen[path]))
        seen[path] = store.id
