"""Upload: ``PUT /v2/images/{id}/file`` (contract section 3).

Rows 8 to 12 are checked in the contract's order, then the image moves
``queued`` to ``saving`` by compare-and-set with this process as its holder,
``environ['imgmw.image']`` is published, and the body streams into the
store (the filters' checks run inside ``read()``). The registry is told
the upload is alive every ``heartbeat_interval`` seconds of streaming. At
the end, ``saving`` to ``active`` records size, checksums (from the
checksum filter's ``environ['imgmw.digests']``; the app never hashes),
the location and ``virtual_size``.

Whatever fails after the image went to ``saving`` (a check of a filter, a
client that went away, the store, the registry), the data written is
removed and the image returns to ``queued`` with size and checksums
cleared, so a retry just works; the filters' errors are re-raised for them
to answer.

When the registry itself is what failed, the image cannot be returned to
``queued`` at once: the process's :class:`Requeuer` keeps trying in the
background, with backoff, until the database answers again, so the image
is ``queued`` moments after the registry is back, not only when recovery
of stale uploads finds it. Each try is a compare-and-set on the status,
holder and heartbeat the registry then shows: an image that was recovered,
deleted or taken by another upload meanwhile is left alone.
"""

import logging
import threading
import time
import typing

import webob
import webob.exc

from imgmw.app import download
from imgmw.app import errors
from imgmw.app import images
from imgmw.app import registry as registry_mod
from imgmw.app import stores
from imgmw import environ as keys
from imgmw import holders
from imgmw import streams


LOG = logging.getLogger(__name__)

READER = 'data app'


class UploadLost(Exception):
    """The registry no longer records this process as the uploader."""


class InputFailed(Exception):
    """The server's input failed with no stream filter in front."""

    def __init__(self, received: int, too_slow: bool = False):
        super().__init__('request body broke off after %d bytes' % received)
        self.received = received
        #: The server stopped waiting (a timeout), not the client.
        self.too_slow = too_slow


class HeartbeatReader:
    """``wsgi.input`` as the store reads it, keeping the upload alive.

    Every ``interval`` seconds (checked at each read) it refreshes the
    registry's heartbeat, and stops the upload with :class:`UploadLost`
    when the image is no longer held.
    """

    def __init__(self, wsgi_input, beat: typing.Callable[[], bool],
                 interval: float, clock=time.monotonic):
        self.wsgi_input = wsgi_input
        self.heartbeat = holders.Heartbeat(beat, interval, UploadLost,
                                           clock)
        self.received = 0

    def keep_alive(self) -> None:
        """Beat while the store waits (:func:`stores.kept_alive`)."""
        self.heartbeat.check()

    def read(self, size: int = -1) -> bytes:
        self.heartbeat.check()
        try:
            chunk = self.wsgi_input.read(size)
        except streams.StreamIOError:
            raise
        except Exception as err:
            # A raw server input (no stream filter): a disconnect.
            LOG.info('Request body broke off after %d bytes: %s',
                     self.received, err)
            raise InputFailed(self.received,
                              isinstance(err, TimeoutError)) from err
        self.received += len(chunk)
        return chunk


class Requeuer:
    """Returns to ``queued``, once the registry answers, held images.

    :meth:`add` an image this process held (``holder``) in ``status`` and
    failed to return to ``queued``; a daemon thread, started at the first
    :meth:`add`, tries every ``delay`` seconds, doubling up to
    ``max_delay``, and forgets an image after ``give_up_after`` seconds
    (recovery of stale uploads then returns it).

    A registry that fails mid-statement leaves its outcome unknown: a
    status change may have been made and only its answer lost. So nothing
    is assumed: an image is returned to ``queued`` only if it is still in
    ``status`` and held by ``holder``, and ``cleanup`` (removing the data
    the upload wrote) runs only then, just before. An image found
    ``active`` keeps its data: its commit went through.
    """

    def __init__(self, registry, delay: float = 0.5, max_delay: float = 30,
                 give_up_after: float = 3600, clock=time.monotonic):
        self.registry = registry
        self.delay = delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self.clock = clock
        self._pending: typing.Dict[
            str, typing.Tuple[str, str, float,
                              typing.Optional[typing.Callable[[], None]]]
        ] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    def add(self, image_id: str, holder: str, status: str,
            cleanup: typing.Optional[typing.Callable[[], None]] = None
            ) -> None:
        with self._lock:
            self._pending[image_id] = (holder, status, self.clock(), cleanup)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name='imgmw-requeue', daemon=True)
                self._thread.start()
        self._wake.set()

    def pending(self) -> typing.List[str]:
        with self._lock:
            return sorted(self._pending)

    def _run(self) -> None:
        delay = self.delay
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self.run_once():
                delay = self.delay
            else:
                delay = min(delay * 2, self.max_delay)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return

    def run_once(self) -> bool:
        """Try every pending image once; False while the registry fails."""
        with self._lock:
            pending = list(self._pending.items())
        for image_id, (holder, status, since, cleanup) in pending:
            try:
                self._requeue(image_id, holder, status, cleanup)
            except registry_mod.RegistryUnavailable:
                if self.clock() - since > self.give_up_after:
                    LOG.warning('Image %s: registry away for too long; '
                                'left to recovery of stale uploads',
                                image_id)
                    self._forget(image_id)
                return False
            except Exception:
                LOG.exception('Image %s: could not return it to queued; '
                              'left to recovery of stale uploads', image_id)
            self._forget(image_id)
        return True

    def _forget(self, image_id: str) -> None:
        with self._lock:
            self._pending.pop(image_id, None)

    def _requeue(self, image_id: str, holder: str, status: str,
                 cleanup: typing.Optional[typing.Callable[[], None]]
                 ) -> None:
        record = self.registry.get(image_id)
        if (record is None or record['status'] != status
                or record['holder'] != holder):
            return
        # The image is this upload's, and only this upload could make it
        # active: its data goes first, so that a retry that starts once it
        # is queued never has its new data removed.
        if cleanup is not None:
            cleanup()
        if self.registry.requeue_stale(record) is not None:
            LOG.info('Image %s: back to queued now that the registry '
                     'answers', image_id)


class Upload:
    """One upload of ``record`` by the data app ``app``.

    :class:`imgmw.app.stage.Stage` reuses it for ``PUT .../stage``, with
    its own :data:`IN_PROGRESS` status, checks and commit.
    """

    #: The status the image holds while its data streams.
    IN_PROGRESS = 'saving'

    def __init__(self, app, req: webob.Request, record: dict):
        self.app = app
        self.registry = app.registry
        self.req = req
        self.environ = req.environ
        self.record = record
        self.image_id = record['id']
        self.holder = registry_mod.holder_id()

    def __call__(self) -> webob.Response:
        digests = keys.require(self.environ, keys.DIGESTS, READER)
        store = self.app.upload_store(
            keys.require(self.environ, keys.STORE, READER))
        self.check()
        self.start()
        stored = self.stream(store)
        return self.commit(store, stored, digests)

    def check(self) -> None:
        """Rows 9 to 11 (row 8 was checked by the router)."""
        authorize = keys.require(self.environ, keys.AUTHORIZE, READER)
        authorize('upload_image', images.policy_target(self.record))
        status = self.record['status']
        if status != 'queued':
            raise errors.bad_transition(status, self.IN_PROGRESS)
        missing = [name for name in ('disk_format', 'container_format')
                   if not self.record[name]]
        if missing:
            raise errors.formats_unset(missing)

    def start(self) -> None:
        """Row 12: win ``queued`` to ``saving``, then publish the image."""
        try:
            saving = self.registry.transition(self.image_id, 'queued',
                                              self.IN_PROGRESS,
                                              holder=self.holder)
        except registry_mod.RegistryUnavailable:
            # The change may have been made, its answer lost: if this
            # process holds the image, it is handed back when the registry
            # answers again.
            self.app.requeuer.add(self.image_id, self.holder,
                                  self.IN_PROGRESS)
            raise
        if saving is None:
            current = self.registry.get(self.image_id)
            if current is None:
                raise errors.image_not_found(self.image_id)
            raise errors.bad_transition(current['status'], self.IN_PROGRESS)
        streams.announce_image(self.environ, {
            key: saving[key] for key in ('id', 'owner', 'disk_format',
                                         'container_format', 'status')})

    def stream(self, store: stores.Store) -> stores.Stored:
        reader = HeartbeatReader(
            self.environ['wsgi.input'],
            lambda: self.registry.heartbeat(self.image_id, self.holder),
            self.app.heartbeat_interval)
        try:
            return store.add(self.image_id, reader, self.app.chunk_size)
        except BaseException as err:
            self.fail(store, None, err)

    def commit(self, store: stores.Store, stored: stores.Stored,
               digests) -> webob.Response:
        """Rows 23 and 24: ``saving`` to ``active``, or clean up."""
        try:
            values = self.data_values(store, stored, digests)
            if not self.registry.heartbeat(self.image_id, self.holder):
                raise UploadLost()
            active = self.registry.transition(self.image_id, 'saving',
                                              'active', values=values)
        except BaseException as err:
            self.fail(store, stored, err)
        if active is None:
            self.delete_data(store, stored)
            raise errors.deleted_during_upload(self.image_id)
        LOG.info('Image %s: %d bytes stored in %s', self.image_id,
                 stored.size, store.store_id)
        return download.no_content()

    def data_values(self, store: stores.Store, stored: stores.Stored,
                    digests) -> dict:
        if not digests.md5 or not digests.os_hash_value:
            raise RuntimeError('the checksum filter published no digests '
                               'at end of stream')
        return {'size': stored.size, 'checksum': digests.md5,
                'os_hash_algo': digests.os_hash_algo,
                'os_hash_value': digests.os_hash_value,
                'virtual_size': self.virtual_size(stored.size),
                'locations': [{'store': store.store_id, 'url': stored.url,
                               'blocks': getattr(digests, 'blocks', None)}]}

    def virtual_size(self, size: int) -> typing.Optional[int]:
        inspection = self.environ.get(keys.INSPECTION)
        if inspection is not None:
            found = (inspection.get('virtual_size')
                     if isinstance(inspection, dict)
                     else getattr(inspection, 'virtual_size', None))
            if found is not None:
                return found
        if self.record['disk_format'] == 'raw' and size:
            return size
        return None

    # Failure.

    def fail(self, store: stores.Store,
             stored: typing.Optional[stores.Stored],
             err: BaseException) -> typing.NoReturn:
        """Clean up after ``err``, then raise the error to answer."""
        if (stored is not None
                and isinstance(err, registry_mod.RegistryUnavailable)):
            # The commit's outcome is unknown: the image may be active with
            # this data. Data and status are settled together once the
            # registry answers.
            self.app.requeuer.add(
                self.image_id, self.holder, self.IN_PROGRESS,
                cleanup=lambda: self.delete_data(store, stored))
            raise errors.registry_unavailable() from err
        if stored is not None:
            self.delete_data(store, stored)
        if not isinstance(err, UploadLost):
            # A lost image is someone else's now: leave its status alone.
            self.restore()
        translated = self.translate(err)
        if translated is err:
            raise err
        raise translated from err

    def restore(self) -> None:
        """Return the image to ``queued`` (clearing size and checksums).

        Never raises: the error that brought us here is the one to answer.
        When the registry cannot be reached, the app's :class:`Requeuer`
        retries.
        """
        try:
            self.registry.transition(self.image_id, self.IN_PROGRESS,
                                     'queued')
        except registry_mod.RegistryUnavailable:
            LOG.warning('Image %s: registry unavailable; it returns to '
                        'queued when the registry is back', self.image_id)
            self.app.requeuer.add(self.image_id, self.holder,
                                  self.IN_PROGRESS)
        except Exception:
            LOG.exception('Image %s: could not return it to queued; '
                          'recovery of stale uploads will', self.image_id)

    def delete_data(self, store: stores.Store,
                    stored: stores.Stored) -> None:
        try:
            store.delete(stored.url)
        except Exception:
            LOG.exception('Image %s: could not delete %s; the orphan sweep '
                          'will', self.image_id, stored.url)

    def translate(self, err: BaseException) -> BaseException:
        """The error to raise for ``err``: the filters' own unchanged."""
        if isinstance(err, stores.StorageFull):
            return errors.storage_full(str(err))
        if isinstance(err, stores.StorageUnavailable):
            return errors.storage_unavailable(str(err))
        if isinstance(err, registry_mod.RegistryUnavailable):
            return errors.registry_unavailable()
        if isinstance(err, InputFailed):
            if err.too_slow:
                return errors.body_too_slow(err.received)
            return errors.incomplete_body(None, err.received)
        if isinstance(err, UploadLost):
            try:
                current = self.registry.get(self.image_id)
            except registry_mod.RegistryUnavailable:
                return errors.registry_unavailable()
            if current is None:
                return self.deleted_error()
            return errors.bad_transition(current['status'], self.IN_PROGRESS)
        return err

    def deleted_error(self) -> webob.exc.HTTPException:
        """The answer when the image was deleted while its data streamed."""
        return errors.deleted_during_upload(self.image_id)
