"""The data app: image records in SQL, image bytes in stores.

The last element of every imgmw pipeline. It answers the Image API v2
endpoints that are not a filter's (contract section 1): the versions
document, the schemas, image records (create, list, show, delete,
deactivate, reactivate), ``/v2/info/import``, upload
(``PUT /v2/images/{id}/file``), download (``GET``/``HEAD``), stage
(``PUT /v2/images/{id}/stage``) and import (``POST /v2/images/{id}/import``,
``glance-direct``). It needs
the ``context``, ``stores`` and ``checksum`` filters in front of it (and
says which one is missing when one is), reads the request body only for
uploads, stages and JSON requests, and hashes only on import (digests of
uploads come from the checksum filter).

.. code-block:: ini

    [DEFAULT]
    # state_dir = ./state
    # database_connection = postgresql+psycopg2://imgmw@db/imgmw
    # enabled_backends = fast:file, cheap:file
    # default_backend = fast

    [app:imgmw]
    use = egg:imgmw#main
    # filesystem_store_datadir = /var/lib/imgmw/images
    # read_chunk_size = 1MB
    # staging_dir = /var/lib/imgmw/staging

Options (in ``[DEFAULT]`` or the app's section; an unknown key in the app's
section stops start-up):

==============================  =============================================
option                          meaning (default)
==============================  =============================================
``state_dir``                   directory of the default database and file
                                store (``./state``)
``database_connection``         SQLAlchemy URL of the registry
                                (``sqlite:///<state_dir>/imgmw.sqlite``;
                                SQLite is migrated at start-up)
``filesystem_store_datadir``    the file store's directory without
                                multi-store (``<state_dir>/images``)
``read_chunk_size``             bytes asked of each read of the request
                                body and of a store (``1MB``)
``heartbeat_interval``          seconds between an upload's heartbeats
                                (``30``)
``public_endpoint``             URL of the API for ``Location`` and the
                                versions document (the request's host)
``limit_param_default``         images per page of a listing (``25``)
``api_limit_max``               most images per page (``1000``)
``recover_stale_uploads``       return stale ``saving``, ``uploading``
                                and ``importing`` images to ``queued`` at
                                start-up, removing their partial and staged
                                data, and release the import locks of dead
                                ``copy-image`` copies, removing their
                                unfinished writes (``true``)
``staging_dir``                 this node's staging area of
                                ``glance-direct`` imports
                                (``<state_dir>/staging``)
``hashing_algorithm``           the multihash computed on import, as the
                                checksum filter's option, best set in
                                ``[DEFAULT]`` (``sha512``)
``worker_self_reference_url``  this node's own URL, reachable from the
                                other API nodes, best set in
                                ``[DEFAULT]``: a stage records it, and
                                the other nodes forward the image's import
                                to it (:mod:`imgmw.app.forward`; none:
                                imports must reach the staging node)
``verify_downloads``            verify every download, full or ranged,
                                block by block as it streams
                                (:mod:`imgmw.app.blocks`); set in
                                ``[DEFAULT]`` it is also the checksum
                                filter's option (``true``)
==============================  =============================================

The process's allocator is tuned at start-up so that chunks of image data
reuse the heaps' memory and two heaps serve the threads, which keeps an
upload's CPU down and a worker's memory flat (:mod:`imgmw.malloc`).

Stores (``enabled_backends``, ``default_backend``, ``[store:<id>]``) are
configured as :mod:`imgmw.backends` says; without multi-store there is one
store, id ``default``.
"""

import logging
import os
import typing

from imgmw.app import api
from imgmw.app import copier
from imgmw.app import forward
from imgmw.app import registry as registry_mod
from imgmw.app import stage
from imgmw.app import stores
from imgmw import config
from imgmw import hashing
from imgmw import malloc


LOG = logging.getLogger(__name__)

MiB = 1 << 20


OPTS = (
    config.Opt('state_dir', config.string, 'state',
               'Directory of the default database and file store.'),
    config.Opt('database_connection', config.string, None,
               'SQLAlchemy URL of the registry.'),
    config.Opt('filesystem_store_datadir', config.string, None,
               'The file store directory without multi-store.'),
    config.Opt('read_chunk_size', config.byte_size, MiB,
               'Bytes per read of request bodies and stores.'),
    config.Opt('heartbeat_interval', config.integer(1), 30,
               'Seconds between the heartbeats of an upload.'),
    config.Opt('public_endpoint', config.string, None,
               'URL of the API, for Location and the versions document.'),
    config.Opt('limit_param_default', config.integer(1), 25,
               'Images per page of a listing.'),
    config.Opt('api_limit_max', config.integer(1), 1000,
               'Most images per page of a listing.'),
    config.Opt('recover_stale_uploads', config.boolean, True,
               'Return stale uploads and imports to queued, and release the '
               'locks of dead copies, at start-up.'),
    config.Opt('staging_dir', config.string, None,
               'Staging area of glance-direct imports on this node.'),
    hashing.HASHING_ALGORITHM_OPT,
    config.Opt('worker_self_reference_url', config.validated(
        forward.node_url), None,
        'URL of this node for the other API nodes; imports of the images '
        'it staged are forwarded to it.'),
    config.Opt('verify_downloads', config.boolean, True,
               'Verify downloads block by block against the block digests '
               'recorded with each location.'),
)


def app_factory(global_conf: typing.Mapping, **local_conf) -> api.DataApp:
    """paste.deploy factory of the data app (``egg:imgmw#main``)."""
    options = config.parse(OPTS, global_conf, local_conf, 'data app')
    options['read_chunk_size'] = max(options['read_chunk_size'], 1)
    malloc.tune()
    store_set = load_stores(global_conf, options)
    url = registry_mod.database_url({
        'database_connection': options['database_connection'],
        'state_dir': options['state_dir']})
    registry = registry_mod.Registry(url, sync=url.startswith('sqlite'))
    if options['recover_stale_uploads']:
        recover(registry, store_set)
    return api.DataApp(registry, store_set, options)


def load_stores(global_conf: typing.Mapping,
                options: typing.Mapping) -> api.StoreSet:
    """The stores of :func:`imgmw.backends.load`, built.

    Without multi-store, the file store's directory is the app's
    ``filesystem_store_datadir``, else ``<state_dir>/images``.
    """
    from imgmw import backends
    conf = backends.load(global_conf)
    built = {}
    for store_id, store_conf in conf.stores.items():
        store_options = dict(store_conf.options)
        if store_conf.type == 'file' and not conf.multi:
            store_options['filesystem_store_datadir'] = (
                options['filesystem_store_datadir']
                or store_options.get('filesystem_store_datadir')
                or os.path.join(options['state_dir'], 'images'))
        built[store_id] = stores.load(store_id, store_conf.type,
                                      store_options)
    return api.StoreSet(built, conf.default, conf.multi,
                        stage.staging_area(options), conf)


def recover(registry, store_set: api.StoreSet) -> None:
    """Return stale uploads to ``queued`` and remove their partial data.

    Then release the locks of dead copies and remove their unfinished
    writes (:func:`imgmw.app.copier.recover_copies`).
    """
    try:
        recovered = registry.recover_stale()
    except registry_mod.RegistryUnavailable:
        LOG.warning('Registry unavailable: stale uploads not recovered at '
                    'start-up (run imgmw-manage)')
        return
    for record in recovered:
        store_set.remove_partial(record['id'])
    try:
        copier.recover_copies(registry, store_set)
    except registry_mod.RegistryUnavailable:
        LOG.warning('Registry unavailable: stale copies not recovered at '
                    'start-up (run imgmw-manage)')
