"""Import: ``POST /v2/images/{id}/import`` with ``glance-direct`` (section 4).

The second half of Glance's interoperable import: the data staged by
``PUT .../stage`` (:mod:`imgmw.app.stage`) is moved into one or more stores,
and the image becomes ``active``. The request is checked, the image moves
``uploading`` to ``importing`` by compare-and-set with this process as its
holder, and the answer is 202 with no body; the move then runs in a thread
of the worker, as Glance runs a task, and clients poll the image's status.

Checks, in this order:

====  ===============================================  ======  ============
#     condition                                        status  message
====  ===============================================  ======  ============
1     body not JSON                                    400     ``Malformed
                                                               JSON in
                                                               request
                                                               body.``
2     no ``method`` object with a ``name``             400     names the
                                                               field
3     method other than ``glance-direct``              400     ``Unknown
                                                               import
                                                               method name
                                                               '<m>'.``
4     image unknown or invisible                       404     ``No image
                                                               found with
                                                               ID <id>``
5     policy ``modify_image`` denies                   403
6     ``stores``/``all_stores`` with the header, or    400     as Glance
      both
7     a store in ``stores`` unknown or reserved        409     ``Store for
      (the header is checked by the ``stores``                 identifier
      filter, also 409)                                        <x> not
                                                               found``
8     ``container_format`` or ``disk_format`` unset    409     ``'<f>' needs
                                                               to be set
                                                               before
                                                               import``
9     not staged (status other than ``uploading``,     409     ``Image needs
      or the stage still streaming)                            to be staged
                                                               before
                                                               'glance-
                                                               direct'
                                                               method can
                                                               be used``
10    staged by another node: forwarded to it          its     its message
      (:mod:`imgmw.app.forward`), or, when that node   answer  or names
      has no URL, 409                                  or 409  that node
11    staged data gone from this node (the image       409     ``The staged
      returns to ``queued``)                                   data of image
                                                               <id> is gone;
                                                               stage it
                                                               again.``
12    lost the race to another import                  409     ``Image
                                                               status
                                                               transition
                                                               from <s> to
                                                               importing is
                                                               not allowed``
13    accepted                                         202     no body
====  ===============================================  ======  ============

Stores: with multi-store on, ``X-Image-Meta-Store`` (validated by the
``stores`` filter, which publishes ``environ['imgmw.store']``), or
``"stores": [...]`` in the body, or ``"all_stores": true``; without any,
``default_backend``. With multi-store off these are ignored and the one
store is used. ``all_stores_must_succeed`` (default true; 400 ``'<f>' must
be boolean value only`` when not a boolean, checked before the image
lookup, as Glance) decides what a store that fails does: with true it
fails the import; with false the import goes on with the next store, and
succeeds when at least one store took the data.

The move reads the staged file once per store, in the order of the
request, and computes MD5 and the multihash (``hashing_algorithm`` of
``[DEFAULT]``, as the checksum filter) on the first pass that succeeds,
with :class:`imgmw.hashing.MultiHasher`; it refreshes the registry's
heartbeat every ``heartbeat_interval`` seconds. At the end, ``importing``
to ``active`` records size, checksums and ``virtual_size``, and the staged
file is removed. With the inspect filter in the pipeline, that pass also
inspects the format of the data, and a refusal fails the import whatever
``all_stores_must_succeed`` says (:mod:`imgmw.app.inspection`);
``virtual_size`` is then the inspection's, else the size for ``raw``. On
a failure the data written is removed, the image returns to ``queued``
and the staged file is removed (contract section 9): the client stages
again.

**The stores' progress**, on the image as Glance 33 shows it (each change
is one transaction of the registry, which alone writes these properties,
for the ``copy-image`` copy too, :mod:`imgmw.app.copier`):

the import is accepted (``importing``)
    ``os_glance_importing_to_stores``: its stores; they leave
    ``os_glance_failed_import``.
a store took the data
    its location is recorded (the image's ``stores`` grows) and it leaves
    ``os_glance_importing_to_stores``, in one transaction.
a store failed
    it leaves ``os_glance_importing_to_stores`` and joins
    ``os_glance_failed_import``.
the import ends (``active`` or ``queued``)
    ``os_glance_importing_to_stores`` is ``""``;
    ``os_glance_failed_import`` lists the stores that failed (an earlier
    import's too, unless this one tried them again).

Both lists are sorted, without duplicates, and written even when empty
(``""``), as Glance writes them; an image that was never imported has
neither. With ``all_stores_must_succeed`` true, a failed import forgets
the locations of the stores that had taken the data (their data is
removed) without listing them as failed; the stores not yet tried leave
``os_glance_importing_to_stores`` too, where Glance leaves them listed
for good (and counts the image as being imported in its quota usage). A
recovered import (a dead worker, below) also empties the list. The quota
usage (:mod:`imgmw.app.usage`) counts the image's size once per store
listed or recorded as a location, so each store of a running import
counts exactly once: it leaves the list in the transaction that records
its location.
If the worker dies meanwhile, the image stays ``importing`` with a dead
holder; start-up of the API and ``imgmw-manage recover`` return it to
``queued`` and remove its staged and partial data.

Staging is per node: the stage records the node (hidden property
``os_glance_stage_host``): its ``worker_self_reference_url`` when set, and
an import that reaches another node of a multi-node deployment is
forwarded to it, as Glance does (row 10, :mod:`imgmw.app.forward`).
Without that option the property holds the node's host name and staging
directory, and such an import is refused with 409: route ``POST
.../import`` of an image to the node that took its stage (e.g. sticky
sessions), or share ``staging_dir`` between the nodes over a network file
system and give them the same host name in it.
"""

import contextlib
import logging
import threading
import time
import typing

import webob
import webob.exc

from imgmw.app import errors
from imgmw.app import forward
from imgmw.app import images
from imgmw.app import inspection
from imgmw.app import registry as registry_mod
from imgmw.app import stores
from imgmw.app import tasks
from imgmw import environ as keys
from imgmw import hashing
from imgmw import holders


LOG = logging.getLogger(__name__)

READER = 'data app'

#: Import methods this site offers (``/v2/info/import``).
METHODS = ('glance-direct',)


class ImportLost(Exception):
    """The registry no longer records this process as the importer."""


class ImportFailed(Exception):
    """The staged data does not match the image's record."""


def parse_body(request: typing.Any,
               methods: typing.Collection[str] = METHODS) -> dict:
    """The import request of a parsed JSON body; rows 1 to 3.

    :param methods: the methods offered (copy-image too with several
        stores, :mod:`imgmw.app.copier`).

    :raises webob.exc.HTTPException: 400.
    """
    if not isinstance(request, dict) or not isinstance(
            request.get('method'), dict):
        raise errors.bad_import_request(
            "Import request requires a 'method' object.")
    name = request['method'].get('name')
    if not isinstance(name, str):
        raise errors.bad_import_request(
            "Import request requires a 'method' object with a 'name'.")
    if name not in methods:
        raise errors.unknown_import_method(name)
    return request


def flag(request: typing.Mapping, name: str, default: bool) -> bool:
    """A boolean of the import request, e.g. ``all_stores``.

    :raises webob.exc.HTTPException: 400, as Glance, when not a boolean.
    """
    value = request.get(name, default)
    if not isinstance(value, bool):
        raise errors.not_boolean(name)
    return value


def requested_stores(request: typing.Mapping, environ: dict,
                     store_set) -> typing.List[str]:
    """The ids of the stores to import into; rows 6 and 7."""
    if not store_set.multi_store:
        return [store_set.default_id]
    header = environ.get('HTTP_X_IMAGE_META_STORE') is not None
    listed = request.get('stores')
    every = request.get('all_stores')
    if every is not None and every is not False and (
            header or listed is not None):
        raise errors.all_stores_with_stores()
    if header and listed is not None:
        raise errors.stores_header_and_body()
    if every is True:
        return list(store_set.by_id)
    if every is not None and every is not False:
        raise errors.bad_import_request("'all_stores' must be a boolean.")
    if listed is None:
        return [keys.require(environ, keys.STORE, READER)]
    if not isinstance(listed, list) or not listed or not all(
            isinstance(store_id, str) for store_id in listed):
        raise errors.bad_import_request(
            "'stores' must be a list of store identifiers.")
    for store_id in listed:
        if store_id not in store_set.by_id:
            raise errors.store_not_found(store_id, 409)
    return list(dict.fromkeys(listed))


def spawn_thread(target: typing.Callable[[], None], name: str) -> None:
    """Run ``target`` in a daemon thread of this worker."""
    threading.Thread(target=target, name=name, daemon=True).start()


def accepted() -> webob.Response:
    """202 with no body: the import (or copy) runs on."""
    resp = webob.Response(status=202)
    del resp.content_type
    resp.content_length = 0
    return resp


class ImportRequest:
    """The checks of one ``POST .../import`` and the start of its job."""

    def __init__(self, app, req: webob.Request, image_id: str,
                 request: typing.Optional[dict] = None):
        self.app = app
        self.registry = app.registry
        self.req = req
        self.image_id = image_id
        #: The parsed body, when the caller read it already.
        self.request = request

    def __call__(self) -> webob.Response:
        request = self.request
        if request is None:
            request = parse_body(images.read_json(self.req))
        must_succeed = flag(request, 'all_stores_must_succeed', True)
        record = self.app.visible(self.req, self.image_id)
        self.app.authorize(self.req, 'modify_image',
                           images.policy_target(record))
        store_ids = requested_stores(request, self.req.environ,
                                     self.app.stores)
        stage_host = self.check(record, request['method']['name'])
        if stage_host is not None:
            return self.app.forward(self.req, self.image_id, stage_host,
                                    request)
        release = self.reserve_quota(record, len(store_ids))
        holder = registry_mod.holder_id()
        try:
            self.start(holder, store_ids)
        finally:
            # Importing, its bytes count as stored, once per store in
            # os_glance_importing_to_stores: or it failed to start.
            release()
        job = ImportJob(self.app, record, store_ids, holder, must_succeed)
        environ = self.req.environ
        job.new_scan = lambda: inspection.scan_for(environ, record)
        job.task_id = tasks.start(self.registry, self.req.environ,
                                  self.app.context(self.req), self.image_id,
                                  request, store_ids)
        try:
            self.app.spawn(job.run, 'imgmw-import-%s' % self.image_id)
        except BaseException as err:
            job.fail([], err)
            tasks.finish(self.registry, job.task_id, self.image_id, err)
            raise
        LOG.info('Image %s: import into %s started', self.image_id,
                 ', '.join(store_ids))
        return accepted()

    def check(self, record: typing.Mapping,
              method: str) -> typing.Optional[str]:
        """Rows 8 to 11.

        :returns: the URL of the node to forward the import to (row 10),
            or None when the data is staged here.
        """
        for name in ('container_format', 'disk_format'):
            if not record[name]:
                raise errors.format_unset_for_import(name)
        if record['status'] != 'uploading' or record['holder'] is not None:
            raise errors.not_staged(method)
        staging = self.app.stores.staging
        stage_host = record['properties'].get(
            registry_mod.STAGE_HOST_PROPERTY)
        if stage_host != staging.host:
            if forward.forwardable(stage_host, self.req.environ):
                return stage_host
            raise errors.staged_elsewhere(self.image_id, stage_host)
        try:
            staging.size(self.image_id)
        except stores.DataNotFound:
            LOG.error('Image %s: its staged data is missing from %s; back '
                      'to queued', self.image_id, staging.directory)
            self.registry.transition(self.image_id, 'uploading', 'queued')
            raise errors.staged_data_lost(self.image_id)
        return None

    def reserve_quota(self, record: typing.Mapping, copies: int = 1
                      ) -> typing.Callable[[], None]:
        """The storage quota of the staged bytes, once per store (413).

        Through the quota filter's ``imgmw.reserve``; without it, no
        limit.
        """
        reserve = self.req.environ.get(keys.QUOTA_IMPORT)
        if reserve is None:
            return lambda: None
        project_id = (record['owner']
                      or self.app.context(self.req).project_id)
        if not project_id:
            return lambda: None
        return reserve(project_id, self.image_id,
                       self.app.stores.staging.size(self.image_id) * copies)

    def start(self, holder: str, store_ids: typing.Sequence[str]) -> None:
        """Row 12: win ``uploading`` to ``importing``.

        The stores join ``os_glance_importing_to_stores`` and leave
        ``os_glance_failed_import`` in the same transaction.
        """
        importing = self.registry.transition(self.image_id, 'uploading',
                                             'importing', holder=holder,
                                             stores=store_ids)
        if importing is None:
            current = self.registry.get(self.image_id)
            if current is None:
                raise errors.image_not_found(self.image_id)
            raise errors.bad_transition(current['status'], 'importing')


class ImportReader:
    """The staged file as a store reads it: hashed, keeping the hold.

    :param hasher: a :class:`imgmw.hashing.MultiHasher`, or None.
    :param beat: refreshes the heartbeat; False when the hold is lost.
    """

    def __init__(self, source, hasher, beat: typing.Callable[[], bool],
                 interval: float, clock=time.monotonic, scan=None):
        self.source = source
        self.hasher = hasher
        self.scan = scan
        self.heartbeat = holders.Heartbeat(beat, interval, ImportLost, clock)

    def keep_alive(self) -> None:
        """Beat while the store waits (:func:`stores.kept_alive`)."""
        self.heartbeat.check()

    def read(self, size: int = -1) -> bytes:
        self.heartbeat.check()
        chunk = self.source.read(size)
        if self.hasher is not None and chunk:
            self.hasher.update(chunk)
        if self.scan is not None:
            self.scan.eat(chunk)
        return chunk


class ImportJob:
    """Moves a staged image into its stores (runs in a thread).

    :param must_succeed: ``all_stores_must_succeed``: the first store that
        fails fails the import; else the import goes on with the next
        store and succeeds when one store took the data.
    """

    def __init__(self, app, record: typing.Mapping,
                 store_ids: typing.Sequence[str], holder: str,
                 must_succeed: bool = True):
        self.app = app
        self.registry = app.registry
        self.staging = app.stores.staging
        self.image_id = record['id']
        self.size = record['size']
        self.disk_format = record['disk_format']
        self.targets = [app.stores.by_id[store_id] for store_id in store_ids]
        self.holder = holder
        self.must_succeed = must_succeed
        #: The import's task (:mod:`imgmw.app.tasks`), told how it ended.
        self.task_id = None
        #: Starts the inspect filter's scan of the staged data, which
        #: returns None without that filter (:mod:`imgmw.app.inspection`).
        self.new_scan: typing.Callable[[], typing.Any] = lambda: None
        self.inspection = None

    def run(self) -> None:
        """Copy, hash and commit; on any failure clean up. Never raises."""
        written: typing.List[typing.Tuple[stores.Store, stores.Stored]] = []
        try:
            hasher = None
            for store in self.targets:
                first = not written
                if first:
                    # Until one store took the data, each pass hashes and
                    # inspects it.
                    hasher = hashing.MultiHasher(
                        ['md5', self.app.hashing_algorithm],
                        block_size=hashing.BLOCK_SIZE)
                scan = self.new_scan() if first else None
                try:
                    stored = self.copy(store, hasher if first else None,
                                       scan)
                except ImportLost:
                    inspection.release(scan)
                    raise
                except Exception as err:
                    inspection.release(scan)
                    self.store_failed(store, err)
                    continue
                try:
                    if first:
                        self.inspection = inspection.verdict(scan)
                    self.record(store, stored, hasher)
                except BaseException:
                    self.discard_data([(store, stored)])
                    raise
                written.append((store, stored))
            if not written:
                raise ImportFailed('no store took the data')
            self.commit(written, hasher)
        except BaseException as err:
            self.fail(written, err)
            tasks.finish(self.registry, self.task_id, self.image_id, err)
            return
        tasks.finish(self.registry, self.task_id, self.image_id)

    def beat(self) -> bool:
        return self.registry.heartbeat(self.image_id, self.holder)

    def copy(self, store: stores.Store, hasher, scan=None) -> stores.Stored:
        with contextlib.closing(self.staging.open(self.image_id)) as source:
            reader = ImportReader(source, hasher, self.beat,
                                  self.app.heartbeat_interval, scan=scan)
            stored = store.add(self.image_id, reader, self.app.chunk_size)
        if stored.size != self.size:
            store.delete(stored.url)
            raise ImportFailed('the staged data has %d bytes, the stage '
                               'recorded %s' % (stored.size, self.size))
        return stored

    def record(self, store: stores.Store, stored: stores.Stored,
               hasher: hashing.MultiHasher) -> None:
        """The store took the data: its location, in the registry.

        The store leaves ``os_glance_importing_to_stores`` in the same
        transaction.

        :raises ImportLost: the image is no longer this import's.
        """
        location = {'store': store.store_id, 'url': stored.url,
                    'blocks': hasher.block_digests()}
        if not self.registry.import_store_done(self.image_id, self.holder,
                                               store.store_id, location):
            raise ImportLost()

    def store_failed(self, store: stores.Store, err: Exception) -> None:
        """The store did not take the data: it is listed as failed.

        It joins ``os_glance_failed_import``.

        :raises: ``err`` again when every store must succeed.
        :raises ImportLost: the image is no longer this import's.
        """
        LOG.error('Image %s: import into store %s failed: %s: %s',
                  self.image_id, store.store_id, type(err).__name__, err)
        if not self.registry.import_store_done(self.image_id, self.holder,
                                               store.store_id):
            raise ImportLost()
        if self.must_succeed:
            raise err

    def commit(self, written, hasher) -> None:
        values = {
            'size': self.size,
            'checksum': hasher.hexdigest('md5'),
            'os_hash_algo': self.app.hashing_algorithm,
            'os_hash_value': hasher.hexdigest(self.app.hashing_algorithm),
            'virtual_size': inspection.virtual_size(
                self.inspection, self.disk_format, self.size),
            'locations': [{'store': store.store_id, 'url': stored.url,
                           'blocks': hasher.block_digests()}
                          for store, stored in written]}
        if not self.beat():
            raise ImportLost()
        if self.registry.transition(self.image_id, 'importing', 'active',
                                    values=values) is None:
            raise ImportLost()
        self.staging.remove(self.image_id)
        LOG.info('Image %s: %d bytes imported into %s', self.image_id,
                 self.size, ', '.join(store.store_id
                                      for store, _ in written))

    def fail(self, written, err: BaseException) -> None:
        """Remove what was written, requeue, empty the staging; log."""
        if written and isinstance(err, registry_mod.RegistryUnavailable):
            # The commit's outcome is unknown: the image may be active
            # with this data. The requeuer settles both once the registry
            # answers, and removes the data only if the image is still
            # this import's.
            LOG.error('Image %s: registry unavailable at the end of the '
                      'import; settled when it answers again', self.image_id)
            self.app.requeuer.add(self.image_id, self.holder, 'importing',
                                  cleanup=lambda: self.discard(written))
            return
        self.discard_data(written)
        if isinstance(err, ImportLost):
            LOG.warning('Image %s: import abandoned, the image was deleted '
                        'or recovered meanwhile', self.image_id)
            if not self.restaged():
                self.staging.remove(self.image_id)
            return
        LOG.error('Image %s: import failed, back to queued: %s: %s',
                  self.image_id, type(err).__name__, err)
        try:
            self.registry.transition(self.image_id, 'importing', 'queued')
        except registry_mod.RegistryUnavailable:
            self.app.requeuer.add(
                self.image_id, self.holder, 'importing',
                cleanup=lambda: self.staging.remove(self.image_id))
            return
        except Exception:
            LOG.exception('Image %s: could not return it to queued; '
                          'recovery of stale uploads will', self.image_id)
            return
        self.staging.remove(self.image_id)

    def discard(self, written) -> None:
        """Remove the copies written and the staged data."""
        self.discard_data(written)
        self.staging.remove(self.image_id)

    def discard_data(self, written) -> None:
        for store, stored in written:
            try:
                store.delete(stored.url)
            except Exception:
                LOG.exception('Image %s: could not delete %s; the orphan '
                              'sweep will', self.image_id, stored.url)

    def restaged(self) -> bool:
        """Whether the image was staged again since (its file is new)."""
        try:
            current = self.registry.get(self.image_id)
        except registry_mod.RegistryUnavailable:
            return True  # leave the file to the recovery
        return current is not None and current['status'] == 'uploading'
