"""The data app's routing and controllers (contract section 1).

:class:`DataApp` answers every endpoint of the contract that is not a
filter's: versions, schemas, image records, deactivate/reactivate,
``/v2/info/import``, ``/v2/info/stores`` (and ``/detail``), upload
(:mod:`imgmw.app.upload`), download (:mod:`imgmw.app.download`), stage
(:mod:`imgmw.app.stage`) and import (:mod:`imgmw.app.importer`). Paths
are recognised by :mod:`imgmw.paths`; another method on a known path is
405 with ``Allow``, an unknown path 404.
Errors are ``webob.exc`` responses from :mod:`imgmw.errors`; an
unreachable registry is 503 (contract 3.22); anything unexpected is
logged and answered 500.
"""

import json
import logging
import re
import typing

import webob
import webob.exc

from imgmw.app import blocks
from imgmw.app import copier
from imgmw.app import download
from imgmw.app import errors
from imgmw.app import forward
from imgmw.app import images
from imgmw.app import importer
from imgmw.app import registry as registry_mod
from imgmw.app import stage
from imgmw.app import stores
from imgmw.app import tasks
from imgmw.app import upload
from imgmw import backends
from imgmw import environ as keys
from imgmw import paths
from imgmw import streams


LOG = logging.getLogger(__name__)

READER = 'data app'

IMPORT_METHODS = importer.METHODS


def import_methods(store_set: 'StoreSet') -> typing.Tuple[str, ...]:
    """The import methods offered: copy-image too with several stores."""
    if copier.offered(store_set):
        return IMPORT_METHODS + (copier.METHOD,)
    return IMPORT_METHODS


#: The most tags an image may have (Glance's ``image_tag_quota``).
TAG_LIMIT = 128

_MINOR = re.compile(r'/v2\.([0-9]+)(?:/|$)')


def versions(multi_store: bool) -> typing.List[typing.Tuple[str, str]]:
    """``(id, status)`` of the listed versions, newest first (section 6)."""
    minors = list(range(13, 7, -1)) if multi_store else [9]
    minors += list(range(7, -1, -1))
    return [('v2.%d' % minor, 'CURRENT' if index == 0 else 'SUPPORTED')
            for index, minor in enumerate(minors)]


def json_response(body: typing.Any, status: int = 200) -> webob.Response:
    return webob.Response(
        status=status, content_type='application/json', charset=None,
        body=json.dumps(body, ensure_ascii=False).encode('utf-8'))


class StoreSet:
    """The configured stores, the default one and whether multi-store is on.

    Single-store sites have one store, :data:`SINGLE_STORE_ID`.
    ``staging`` is this node's :class:`imgmw.app.stage.StagingArea` (not a
    store: never listed, never chosen for an upload).
    """

    SINGLE_STORE_ID = 'default'

    def __init__(self, by_id: typing.Mapping[str, stores.Store],
                 default_id: str, multi_store: bool,
                 staging: typing.Optional[stage.StagingArea] = None,
                 conf: typing.Optional[backends.Backends] = None):
        self.by_id = dict(by_id)
        self.default_id = default_id
        self.multi_store = multi_store
        self.staging = staging
        #: The configuration the stores were built from (descriptions,
        #: weights, properties), for ``/v2/info/stores``.
        self.conf = conf

    def listing(self, detail: bool) -> typing.List[dict]:
        """The ``stores`` of ``/v2/info/stores`` (contract section 6).

        ``description`` only when set; ``"default": "true"`` a string, as
        Glance sends it; reserved ids never listed. ``detail`` adds
        ``type``, ``properties`` (never credentials) and ``weight``.
        """
        listed = []
        for store_id in self.by_id:
            if backends.Backends.is_reserved(store_id):
                continue
            store_conf = self.conf.stores.get(store_id) if self.conf else None
            entry = {'id': store_id}
            if store_conf is not None and store_conf.description:
                entry['description'] = store_conf.description
            if store_id == self.default_id:
                entry['default'] = 'true'
            if detail and store_conf is not None:
                entry['type'] = store_conf.type
                entry['properties'] = store_conf.properties()
                entry['weight'] = store_conf.weight
            listed.append(entry)
        return listed

    def remove_partial(self, image_id: str) -> None:
        """Remove unfinished data of ``image_id`` everywhere (recovery).

        From every store, and its staged data from the staging area.
        """
        for store in self.by_id.values():
            store.remove_partial(image_id)
        if self.staging is not None:
            self.staging.remove(image_id)

    def for_upload(self, store_id: typing.Optional[str]) -> stores.Store:
        """The store the stores filter chose (None: the default).

        :raises webob.exc.HTTPException: 400 (contract 3.7) for a store
            this app does not have.
        """
        chosen = store_id if store_id is not None else self.default_id
        try:
            return self.by_id[chosen]
        except KeyError:
            raise errors.store_not_found(chosen)

    def locate(self, location: typing.Mapping) -> typing.Optional[
            stores.Store]:
        """The store of a location: by id, else the one owning its URL."""
        store = self.by_id.get(location['store'])
        if store is not None:
            return store
        for store in self.by_id.values():
            if store.owns(location['url']):
                return store
        return None


class DataApp:
    """The WSGI data app.

    :param registry: a :class:`imgmw.app.registry.Registry`.
    :param store_set: the stores.
    :param options: the parsed options of :mod:`imgmw.app`.
    """

    def __init__(self, registry, store_set: StoreSet,
                 options: typing.Mapping[str, typing.Any]):
        self.registry = registry
        self.stores = store_set
        #: Returns uploads the registry failed under to ``queued`` later.
        self.requeuer = upload.Requeuer(registry)
        self.chunk_size = options['read_chunk_size']
        self.heartbeat_interval = options['heartbeat_interval']
        self.public_endpoint = options['public_endpoint']
        self.default_limit = options['limit_param_default']
        self.max_limit = options['api_limit_max']
        self.hashing_algorithm = options.get('hashing_algorithm', 'sha512')
        #: Sends an import on to the node that staged the image.
        self.forward = forward.Forwarder(
            options.get('worker_self_reference_url'))
        self.verify_downloads = options.get('verify_downloads', True)
        #: ``spawn(target, name)`` runs an import job (a thread).
        self.spawn = importer.spawn_thread
        self.listed = {version for version, _ in
                       versions(store_set.multi_store)}
        #: ``/v2/info/import`` and ``OpenStack-image-import-methods``.
        self.import_methods = import_methods(store_set)

    def __call__(self, environ: dict, start_response):
        req = webob.Request(environ)
        try:
            resp = self.dispatch(req)
        except webob.exc.HTTPException as err:
            resp = err
        except registry_mod.RegistryUnavailable:
            resp = errors.registry_unavailable()
        except streams.StreamError:
            raise
        except streams.StreamIOError as err:
            raise err.stream_error from err
        except Exception:
            LOG.exception('%s %s failed', req.method, req.path)
            resp = webob.exc.HTTPInternalServerError()
        return resp(environ, start_response)

    def dispatch(self, req: webob.Request) -> webob.Response:
        found = paths.route_of(req.environ)
        if found is None or not _nameable(req.environ):
            raise errors.not_found()
        if req.method not in paths.ALLOWED[found.kind]:
            raise errors.method_not_allowed(paths.ALLOWED[found.kind])
        minor = _MINOR.match(req.path_info)
        if minor and 'v2.%s' % minor.group(1) not in self.listed:
            return self.versions_document(req, 300)
        handler = getattr(self, 'on_' + found.kind)
        return handler(req, found.image_id)

    # Helpers.

    def context(self, req: webob.Request):
        return keys.require(req.environ, keys.CONTEXT, READER)

    def authorize(self, req: webob.Request, action: str,
                  target: typing.Mapping, do_raise: bool = True) -> bool:
        check = keys.require(req.environ, keys.AUTHORIZE, READER)
        return check(action, target, do_raise=do_raise)

    def visible(self, req: webob.Request, image_id: str) -> dict:
        """The image, or 404 when unknown or not visible (get_image)."""
        return self.shown(req, image_id, self.registry.get(image_id))

    def shown(self, req: webob.Request, image_id: str,
              record: typing.Optional[dict]) -> dict:
        """The image read as ``record``, or 404 as :meth:`visible`."""
        if record is None or not self.authorize(
                req, 'get_image', images.policy_target(record),
                do_raise=False):
            raise errors.image_not_found(image_id)
        return record

    def endpoint(self, req: webob.Request) -> str:
        return (self.public_endpoint or req.application_url).rstrip('/')

    # Discovery.

    def versions_document(self, req: webob.Request,
                          status: int) -> webob.Response:
        href = self.endpoint(req) + '/v2/'
        return json_response({'versions': [
            {'id': version, 'status': state,
             'links': [{'rel': 'self', 'href': href}]}
            for version, state in versions(self.stores.multi_store)]},
            status)

    def on_versions(self, req: webob.Request, _) -> webob.Response:
        return self.versions_document(
            req, 200 if req.path_info.startswith('/versions') else 300)

    def on_schema_image(self, req: webob.Request, _) -> webob.Response:
        return json_response(images.schema('image'))

    def on_schema_images(self, req: webob.Request, _) -> webob.Response:
        return json_response(images.schema('images'))

    def on_import_info(self, req: webob.Request, _) -> webob.Response:
        return json_response({'import-methods': {
            'description': 'Import methods available.', 'type': 'array',
            'value': list(self.import_methods)}})

    def on_stores_info(self, req: webob.Request, _) -> webob.Response:
        if not self.stores.multi_store:
            raise errors.multi_store_off()
        return json_response({'stores': self.stores.listing(detail=False)})

    def on_stores_detail(self, req: webob.Request, _) -> webob.Response:
        if not self.stores.multi_store:
            raise errors.multi_store_off()
        self.authorize(req, 'stores_info_detail', {})
        return json_response({'stores': self.stores.listing(detail=True)})

    def on_usage_info(self, req: webob.Request, _) -> webob.Response:
        """The quota filter's figures; without it no limits, as Glance."""
        usage = req.environ.get(keys.QUOTA_USAGE)
        context = self.context(req)
        if usage is None or not context.project_id:
            return json_response({'usage': {}})
        return json_response({'usage': usage(context.project_id)})

    # Images.

    def on_images(self, req: webob.Request, _) -> webob.Response:
        if req.method == 'POST':
            return self.create(req)
        return self.list(req)

    def create(self, req: webob.Request) -> webob.Response:
        context = self.context(req)
        values = images.creation_values(images.read_json(req),
                                        context)
        self.authorize(req, 'add_image', {
            'project_id': values['owner'], 'owner': values['owner'],
            'visibility': values.get('visibility', 'shared')})
        try:
            record = self.registry.create(values)
        except registry_mod.ImageExists:
            raise errors.image_exists(values['id'])
        resp = json_response(images.view(record, self.stores.multi_store),
                             201)
        resp.location = '%s/v2/images/%s' % (self.endpoint(req),
                                             record['id'])
        resp.headers['OpenStack-image-import-methods'] = ','.join(
            self.import_methods)
        if self.stores.multi_store:
            resp.headers['OpenStack-image-store-ids'] = ','.join(
                store['id'] for store in self.stores.listing(detail=False))
        return resp

    def list(self, req: webob.Request) -> webob.Response:
        context = self.context(req)
        self.authorize(req, 'get_images', {'project_id': context.project_id})
        try:
            params = req.GET
        except UnicodeError:
            raise errors.bad_query('The query string is not UTF-8.')
        query = images.list_query(params, self.default_limit,
                                  self.max_limit)
        try:
            records = self.registry.list(project_id=context.project_id,
                                         is_admin=context.is_admin, **query)
        except registry_mod.MarkerNotFound:
            raise errors.marker_not_found(query['marker'])
        except ValueError as err:
            raise errors.bad_query(str(err))
        return json_response(images.page(records, params, query,
                                         self.stores.multi_store))

    def on_image(self, req: webob.Request, image_id: str) -> webob.Response:
        record = self.visible(req, image_id)
        if req.method == 'DELETE':
            return self.delete(req, record)
        if req.method == 'PATCH':
            return self.update(req, record)
        return json_response(images.view(record, self.stores.multi_store))

    def update(self, req: webob.Request, record: dict) -> webob.Response:
        if req.content_type not in images.PATCH_MEDIA_TYPES:
            raise errors.unsupported_patch_type(req.content_type or None)
        self.authorize(req, 'modify_image', images.policy_target(record))
        changes = images.patch_operations(images.read_json(req),
                                          req.content_type)
        values = images.update_values(record, changes, self.context(req))
        updated = self.registry.update(record['id'], values)
        if updated is None:
            raise errors.image_not_found(record['id'])
        return json_response(images.view(updated, self.stores.multi_store))

    def delete(self, req: webob.Request, record: dict) -> webob.Response:
        self.authorize(req, 'delete_image', images.policy_target(record))
        if record['protected']:
            raise errors.image_protected(record['id'])
        deleted = self.registry.delete(record['id'])
        if deleted is None:
            raise errors.image_not_found(record['id'])
        for location in deleted['locations']:
            self.delete_location(record['id'], location)
        return download.no_content()

    def delete_location(self, image_id: str,
                        location: typing.Mapping) -> None:
        store = self.stores.locate(location)
        if store is None:
            LOG.error('Image %s: no store for location %s (%s); left for '
                      'the orphan sweep', image_id, location['url'],
                      location['store'])
            return
        try:
            store.delete(location['url'])
        except stores.StoreError as err:
            LOG.error('Image %s: could not delete its data from %s (%s); '
                      'left for the orphan sweep', image_id,
                      store.store_id, err)

    # Tags, tasks and per-store data.

    def on_tag(self, req: webob.Request, image_id: str) -> webob.Response:
        """``PUT`` or ``DELETE /v2/images/{id}/tags/{tag}``: 204."""
        tag = paths.route_of(req.environ).name
        record = self.visible(req, image_id)
        self.authorize(req, 'modify_image', images.policy_target(record))
        if req.method == 'DELETE':
            removed = self.registry.remove_tag(image_id, tag)
            if removed is None:
                raise errors.image_not_found(image_id)
            if not removed:
                raise errors.tag_not_found(tag)
            return download.no_content()
        if len(tag) > 255:
            raise errors.invalid_tag('a tag is at most 255 characters')
        added = self.registry.add_tag(image_id, tag, TAG_LIMIT)
        if added is None:
            raise errors.image_not_found(image_id)
        if not added:
            raise errors.tag_limit_exceeded(image_id, TAG_LIMIT)
        return download.no_content()

    def on_image_tasks(self, req: webob.Request,
                       image_id: str) -> webob.Response:
        """``GET /v2/images/{id}/tasks``: the image's import tasks."""
        self.visible(req, image_id)
        return json_response({'tasks': [
            tasks.view(task) for task in self.registry.tasks(image_id)]})

    def on_store_image(self, req: webob.Request,
                       image_id: str) -> webob.Response:
        """``DELETE /v2/stores/{store_id}/{id}``: drop one store's copy."""
        store_id = paths.route_of(req.environ).name
        if not self.stores.multi_store:
            raise errors.not_found()
        if store_id not in self.stores.by_id:
            raise errors.store_unavailable_here(store_id)
        record = self.visible(req, image_id)
        self.authorize(req, 'modify_image', images.policy_target(record))
        outcome, location = self.registry.remove_location(image_id,
                                                          store_id)
        if outcome == 'missing':
            raise errors.image_not_found(image_id)
        if outcome == 'status':
            raise errors.store_delete_needs_active()
        if outcome == 'last':
            raise errors.last_store()
        if outcome == 'absent':
            raise errors.not_in_store(image_id, store_id)
        self.delete_location(image_id, location)
        return download.no_content()

    def on_deactivate(self, req: webob.Request,
                      image_id: str) -> webob.Response:
        return self.toggle(req, image_id, 'deactivate', 'active',
                           'deactivated')

    def on_reactivate(self, req: webob.Request,
                      image_id: str) -> webob.Response:
        return self.toggle(req, image_id, 'reactivate', 'deactivated',
                           'active')

    def toggle(self, req: webob.Request, image_id: str, action: str,
               from_status: str, to_status: str) -> webob.Response:
        record = self.visible(req, image_id)
        self.authorize(req, action, images.policy_target(record))
        status = record['status']
        if status == from_status:
            changed = self.registry.transition(image_id, from_status,
                                               to_status)
            if changed is None:
                current = self.registry.get(image_id)
                if current is None:
                    raise errors.image_not_found(image_id)
                status = current['status']
            else:
                status = to_status
        if status != to_status:
            raise errors.status_forbids(action, status)
        return download.no_content()

    # Data.

    def on_image_data(self, req: webob.Request,
                      image_id: str) -> webob.Response:
        if req.method == 'PUT':
            return upload.Upload(self, req, self.visible(req, image_id))()
        if self.verify_downloads:
            # The block digests in the record's transaction: one less.
            record, digests = self.registry.get_for_download(image_id)
            record = self.shown(req, image_id, record)
        else:
            record = self.visible(req, image_id)
        if record['status'] == 'deactivated' and not self.context(
                req).is_admin:
            raise errors.image_deactivated()
        self.authorize(req, 'download_image', images.policy_target(record))
        locate = self.stores.locate
        if self.verify_downloads:
            locate = blocks.verifying_locator(locate, self.registry, record,
                                              req.environ, digests)
        return download.serve(req, record, locate, self.chunk_size)

    def upload_store(self, store_id: typing.Optional[str]) -> stores.Store:
        return self.stores.for_upload(store_id)

    def on_stage(self, req: webob.Request, image_id: str) -> webob.Response:
        if self.stores.staging is None:
            raise errors.not_implemented('Staging image data')
        return stage.Stage(self, req, self.visible(req, image_id))()

    def on_import(self, req: webob.Request,
                  image_id: str) -> webob.Response:
        request = importer.parse_body(images.read_json(req),
                                      self.import_methods)
        if request['method']['name'] == copier.METHOD:
            return copier.CopyRequest(self, req, image_id, request)()
        if self.stores.staging is None:
            raise errors.not_implemented('Importing image data')
        return importer.ImportRequest(self, req, image_id, request)()


def _nameable(environ: dict) -> bool:
    """True when ``PATH_INFO`` may name a resource.

    No name holds bytes that are not UTF-8 (WebOb could not even decode
    them) or a NUL (PostgreSQL refuses it in a query).
    """
    path = environ.get('PATH_INFO', '')
    try:
        path.encode('latin-1').decode('utf-8')
    except UnicodeError:
        return False
    return '\x00' not in path
