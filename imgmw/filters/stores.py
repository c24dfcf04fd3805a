"""Which store an upload goes to (contract sections 3.7, 4 and 6).

With multi-store on (``enabled_backends`` in ``[DEFAULT]``, see
:mod:`imgmw.backends`), the ``stores`` filter, on ``PUT
/v2/images/{id}/file`` and ``POST /v2/images/{id}/import``, checks the
store named by ``X-Image-Meta-Store``, or ``default_backend`` when the
header is absent, and publishes its id in ``environ['imgmw.store']``. An
unknown id, or a reserved one (``os_glance_*``), is refused with ``Store
for identifier <x> not found``: 400 on upload (contract 3.7), 409 on
import (section 4, as Glance). On import the data app still sees the
header, to refuse it together with a ``stores`` list in the body.

With multi-store off, ``X-Image-Meta-Store`` is ignored and
``environ['imgmw.store']`` is ``None``. ``PUT .../stage`` ignores the
header (the store is chosen at import).

On every answer to ``POST /v2/images`` (image creation), reserved ids are
taken out of ``OpenStack-image-store-ids``: Glance lists its staging and
tasks stores there once a worker has looked a store up.

``GET /v2/info/stores`` and ``/detail`` are the app's (imgmw's data app
lists the same configuration; Glance its own): the filter does not answer
them.

Place it after ``context`` and after ``size``, so the checks of contract
3.2 to 3.6 answer before 3.7:

.. code-block:: ini

    [DEFAULT]
    enabled_backends = fast:file, cheap:file
    default_backend = fast

    [store:fast]
    filesystem_store_datadir = /srv/images/fast

    [store:cheap]
    filesystem_store_datadir = /srv/images/cheap

    [pipeline:keystone-api]
    pipeline = request_id authtoken context size stores quota checksum
               inspect imgmw

    [filter:stores]
    use = egg:imgmw#stores

The filter reads ``enabled_backends``, ``default_backend`` and
``default_store`` from ``[DEFAULT]`` and the ``[store:<id>]`` sections of
the same file, exactly as the data app does.

In front of Glance, whose stores are configured in ``glance-api.conf``,
set ``known_stores = glance``: the filter then refuses only the reserved
ids (Glance accepts ``X-Image-Meta-Store: os_glance_staging_store`` and
stores the image there), on upload and import, and leaves every
other id, and the choice of the default, to Glance. It publishes no
``imgmw.store`` then:

.. code-block:: ini

    [filter:imgmw_stores]
    use = egg:imgmw#stores
    known_stores = glance

What no filter can refuse: a reserved id in the ``stores`` list of an
import's JSON body (no filter reads a body).

================  ==========  ===============================================
option            default     meaning
================  ==========  ===============================================
``known_stores``  configured  ``configured``: the stores of this paste file;
                              ``glance``: the app knows its stores, refuse
                              only reserved ids
================  ==========  ===============================================

============================  ===============================================
header read                   meaning
============================  ===============================================
``X-Image-Meta-Store``        the store of an upload or import (multi-store)
============================  ===============================================
"""

import logging
import typing

import webob
import webob.exc

from imgmw import backends
from imgmw import config
from imgmw import environ as env_keys
from imgmw import errors
from imgmw import paths


LOG = logging.getLogger(__name__)

OWNER = 'stores filter'


CONFIGURED = 'configured'
GLANCE = 'glance'

OPTS = (
    config.Opt('known_stores', config.choice(CONFIGURED, GLANCE),
               CONFIGURED, 'Who knows the stores: this file, or Glance.'),
)

STORE_IDS_HEADER = 'OpenStack-image-store-ids'


class StoresMiddleware:
    """Store selection (see the module).

    :param conf: ``[DEFAULT]`` of the paste file (``global_conf``), with
        the filter's options.
    :param sections: the ``[store:<id>]`` sections; read from
        ``conf['__file__']`` when omitted.
    """

    def __init__(self, app, conf: typing.Mapping, logger=None,
                 sections: typing.Optional[typing.Mapping] = None):
        self.app = app
        self.logger = logger or LOG
        local = {key: conf[key] for key in ('known_stores',) if key in conf}
        self.known_stores: str = config.parse(OPTS, {}, local,
                                              OWNER)['known_stores']
        self.backends: typing.Optional[backends.Backends] = (
            backends.load(conf, sections)
            if self.known_stores == CONFIGURED else None)

    def __call__(self, environ: dict, start_response):
        route = paths.route_of(environ)
        if route is None:
            return self.app(environ, start_response)
        method = environ.get('REQUEST_METHOD')
        if route.kind == paths.IMAGES and method == 'POST':
            return self.app(environ, _without_reserved_ids(start_response))
        chooses = ((route.kind == paths.IMAGE_DATA and method == 'PUT')
                   or (route.kind == paths.IMPORT and method == 'POST'))
        status = 409 if route.kind == paths.IMPORT else 400
        if chooses and self.backends is not None:
            refusal = self._choose_store(environ, status)
            if refusal is not None:
                return refusal(environ, start_response)
        elif chooses:
            store_id = (environ.get('HTTP_X_IMAGE_META_STORE') or '').strip()
            if backends.Backends.is_reserved(store_id):
                return errors.store_not_found(store_id, status)(
                    environ, start_response)
        return self.app(environ, start_response)

    def _choose_store(self, environ: dict, status: int
                      ) -> typing.Optional[webob.exc.HTTPException]:
        if not self.backends.multi:
            environ[env_keys.STORE] = None
            return None
        store_id = environ.get('HTTP_X_IMAGE_META_STORE')
        store_id = (self.backends.default if store_id is None
                    else store_id.strip())
        if self.backends.get(store_id) is None:
            return errors.store_not_found(store_id, status)
        environ[env_keys.STORE] = store_id
        return None


def _without_reserved_ids(start_response):
    """Take reserved ids out of ``OpenStack-image-store-ids``."""
    def filtered_start_response(status, headers, exc_info=None):
        kept = []
        for name, value in headers:
            if name.lower() == STORE_IDS_HEADER.lower():
                value = ','.join(
                    store_id for store_id in
                    (item.strip() for item in value.split(','))
                    if store_id and not backends.Backends.is_reserved(
                        store_id))
            kept.append((name, value))
        return start_response(status, kept, exc_info)
    return filtered_start_response


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#stores``.

    The configuration is checked here, at start-up.
    """
    options = config.parse(OPTS, {}, local_conf, OWNER)
    if options['known_stores'] == CONFIGURED:
        backends.load(global_conf)
    conf = dict(global_conf, **options)

    def stores_filter(app):
        return StoresMiddleware(app, conf)
    return stores_filter
