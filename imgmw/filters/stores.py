"""Which store an upload goes to, and store discovery (contract section 6).

With multi-store on (``enabled_backends`` in ``[DEFAULT]``, see
:mod:`imgmw.backends`), the ``stores`` filter:

* on ``PUT /v2/images/{id}/file`` and ``POST /v2/images/{id}/import``,
  checks the store named by ``X-Image-Meta-Store``, or ``default_backend``
  when the header is absent, and publishes its id in
  ``environ['imgmw.store']``. An unknown id, or a reserved one
  (``os_glance_*``), is refused with ``Store for identifier <x> not found``:
  400 on upload (contract 3.7), 409 on import (section 4, as Glance).
  On import the data app still sees the header, to refuse it together with
  a ``stores`` list in the body;
* answers ``GET /v2/info/stores``:
  ``{"stores": [{"id": "fast", "description": "...", "default": "true"},
  {"id": "cheap"}]}`` (``description`` only when set; ``"true"`` is a
  string, as Glance sends it; reserved stores never appear);
* answers ``GET /v2/info/stores/detail``, which adds ``type``,
  ``properties`` (``data_dir`` of a file store; ``bucket`` and the part
  sizes of an s3 store; never credentials) and ``weight``, to callers that
  the policy rule ``stores_info_detail`` allows (admin or service by
  default; otherwise 403).

With multi-store off, ``X-Image-Meta-Store`` is ignored,
``environ['imgmw.store']`` is ``None``, and both discovery paths answer 404
``Multi backend is not supported at this site.``. Other methods on the
discovery paths get 405 with ``Allow: GET``. ``PUT .../stage`` ignores the
header (the store is chosen at import).

Place it after ``context`` (the detail listing needs
``environ['imgmw.authorize']``; a missing context filter gives a 500 naming
it) and after ``size``, so the checks of contract 3.2 to 3.6 answer before
3.7:

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

The filter has no options of its own: it reads ``enabled_backends``,
``default_backend`` and ``default_store`` from ``[DEFAULT]`` and the
``[store:<id>]`` sections of the same file, exactly as the data app does.

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
DETAIL_ACTION = 'stores_info_detail'


class StoresMiddleware:
    """Store selection and discovery (see the module).

    :param conf: ``[DEFAULT]`` of the paste file (``global_conf``).
    :param sections: the ``[store:<id>]`` sections; read from
        ``conf['__file__']`` when omitted.
    """

    def __init__(self, app, conf: typing.Mapping, logger=None,
                 sections: typing.Optional[typing.Mapping] = None):
        self.app = app
        self.logger = logger or LOG
        self.backends: backends.Backends = backends.load(conf, sections)

    def __call__(self, environ: dict, start_response):
        route = paths.route_of(environ)
        if route is None:
            return self.app(environ, start_response)
        if route.kind in (paths.STORES_INFO, paths.STORES_DETAIL):
            return self._discovery(route.kind, environ)(environ,
                                                        start_response)
        method = environ.get('REQUEST_METHOD')
        if ((route.kind == paths.IMAGE_DATA and method == 'PUT')
                or (route.kind == paths.IMPORT and method == 'POST')):
            status = 409 if route.kind == paths.IMPORT else 400
            refusal = self._choose_store(environ, status)
            if refusal is not None:
                return refusal(environ, start_response)
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

    def _discovery(self, kind: str, environ: dict):
        allowed = paths.ALLOWED[kind]
        if environ.get('REQUEST_METHOD') not in allowed:
            return errors.method_not_allowed(allowed)
        if not self.backends.multi:
            return errors.multi_store_off()
        if kind == paths.STORES_INFO:
            return self._listing(detail=False)
        try:
            authorize = env_keys.require(environ, env_keys.AUTHORIZE, OWNER)
            authorize(DETAIL_ACTION, {})
        except errors.MissingFilter as err:
            self.logger.error('Pipeline misconfigured: %s', err)
            return webob.exc.HTTPInternalServerError(explanation=str(err))
        except webob.exc.HTTPForbidden as denial:
            return denial
        return self._listing(detail=True)

    def _listing(self, detail: bool) -> webob.Response:
        stores = [self._describe(store, detail)
                  for store in self.backends.stores.values()
                  if not self.backends.is_reserved(store.id)]
        return webob.Response(json_body={'stores': stores})

    def _describe(self, store: backends.StoreConf, detail: bool) -> dict:
        entry = {'id': store.id}
        if store.description:
            entry['description'] = store.description
        if store.id == self.backends.default:
            entry['default'] = 'true'
        if detail:
            entry['type'] = store.type
            entry['properties'] = store.properties()
            entry['weight'] = store.weight
        return entry


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#stores``.

    The configuration is checked here, at start-up.
    """
    config.parse((), global_conf, local_conf, OWNER)
    backends.load(global_conf)

    def stores_filter(app):
        return StoresMiddleware(app, global_conf)
    return stores_filter
