"""copy-image: an active image's data copied into more stores.

``POST /v2/images/{id}/import`` with ``{"method": {"name": "copy-image"}}``
and ``"stores": [...]`` (or ``X-Image-Meta-Store``, or ``"all_stores":
true``), as Glance 33 offers it: only with several stores (multi-store
on and at least two stores), when ``/v2/info/import`` lists it. With one
store the method is unknown (400), as before.

Checks, in Glance's order:

====  ================================================  ======  ==========
#     condition                                         status  message
====  ================================================  ======  ==========
1     body not JSON, no ``method`` with a ``name``,     400     as for
      unknown method (:mod:`imgmw.app.importer`)                ``glance-
                                                                direct``
2     ``all_stores_must_succeed`` or ``all_stores``     400     ``'<f>'
      not a boolean                                             must be
                                                                boolean
                                                                value
                                                                only``
3     image unknown or invisible                        404     ``No image
                                                                found with
                                                                ID <id>``
4     image not ``active``                              409     ``Only
                                                                images
                                                                with
                                                                status
                                                                active can
                                                                be
                                                                targeted
                                                                for
                                                                copying``
5     ``container_format`` or ``disk_format`` unset     409     as for
                                                                ``glance-
                                                                direct``
6     policy ``copy_image`` denies (admin by default)   403
7     another copy of the image under way (its lock     409     ``Image
      ``os_glance_import_task`` held by a live task)            has active
                                                                task``
8     ``stores``/``all_stores`` with the header, or     400,    as for
      both; a store unknown or reserved                 409     ``glance-
                                                                direct``
9     with ``stores`` (or the header): a store that     400     ``Image is
      holds the image already                                   already
                                                                present at
                                                                store
                                                                '<s>'``
10    with ``all_stores``: every store holds it         202     nothing
                                                                done
11    the storage quota (through the quota filter):     413     contract
      the image's size once per location, those                 3.13
      copied to included
12    lost the race for the lock to another copy        409     ``New
                                                                operation
                                                                on image
                                                                '<id>' is
                                                                not
                                                                permitted
                                                                as prior
                                                                operation
                                                                is still
                                                                in
                                                                progress``
13    accepted                                          202     no body
====  ================================================  ======  ==========

With ``all_stores``, the stores that hold the image already are left out
(row 10). The image stays ``active`` throughout.

**The copy** runs in a thread of the worker, one store after the other,
and is recorded as a task of the image (``GET /v2/images/{id}/tasks``,
:mod:`imgmw.app.tasks`), as an import is. Accepting it takes the image's
lock (the hidden-from-nobody property ``os_glance_import_task``, the
task's id, as Glance) and lists the stores in
``os_glance_importing_to_stores``, removing them from
``os_glance_failed_import``. For each store, the data is read from one of
the image's locations and streamed into the store, in ``read_chunk_size``
pieces (memory stays bounded whatever the image's size), and verified as
an upload is: each 1 MiB block against the location's block digests as it
is read (:mod:`imgmw.app.blocks`: a corrupt block is never written), then
the size, MD5 ``checksum`` and multihash (``os_hash_algo``) against the
image's record. Only then is the location added, in one transaction that
also checks that the copy still holds the lock and that the image's data
is unchanged; the store leaves ``os_glance_importing_to_stores``. A store
whose copy fails keeps no data (the store removes a partial write; a
complete one that does not verify is deleted) and joins
``os_glance_failed_import`` (the registry writes both lists, for the
``glance-direct`` import too: :mod:`imgmw.app.registry`). With
``all_stores_must_succeed`` (the default), the first failure ends the
copy and the stores copied by it are removed again; with ``false`` the
copy goes on with the next store. At the
end the lock is released and the task records ``success`` or ``failure``.

The job refreshes its task every ``heartbeat_interval`` seconds, with
Glance's message ``Copied <n> MiB``; the task records the process running
the copy (its holder, :func:`imgmw.holders.holder_id`). A lock whose task
is no longer ``processing``, is gone, or has not been refreshed for
:data:`imgmw.app.registry.DEFAULT_STALE_AFTER` (a crashed worker) is
stale: the next copy takes it over (Glance busts such locks too, after an
hour).

**Recovery** (:func:`recover_copies`: ``imgmw-manage recover``, and each
API worker as it starts) does not wait for that: it releases at once the
lock of a copy whose holder is a dead process of this host, and the lock
of any copy stale as above (``--older-than``). For each, in this order:
the unfinished writes of the copy's stores that do not hold the image
(temporary files, multipart uploads, and a complete copy not yet
recorded) are removed, while the dead copy still holds the lock, so no
new copy is writing there; then, compare-and-set on the lock and on the
task's last refresh (a copy that heartbeats meanwhile is left alone),
the lock is released, the copy's stores still in
``os_glance_importing_to_stores`` leave it and join
``os_glance_failed_import``, as for a failed copy, and its task ends in
``failure``. The image stays ``active`` with the locations it had, and
the next copy is accepted at once. A copy whose holder runs (or runs on
another host and heartbeats) is never touched. A copy on another host
that stops heartbeating for ``--older-than`` is taken for dead: its
writes then fail, and it records nothing.

**The orphan sweep** (``imgmw-manage sweep``) keeps whatever data an
image has in the stores of ``os_glance_importing_to_stores`` while its
copy is live (:func:`copy_is_dead` says no), whatever its age: a copy
longer than the sweep's grace period (an s3 multipart upload of hours)
is never swept. A copy that was complete in a store but not yet recorded
when its worker died is removed by recovery, or else, once the lock is
gone, is an orphan for the sweep.
"""

import contextlib
import datetime
import logging
import time
import typing
import uuid

import webob

from imgmw.app import blocks as blocks_mod
from imgmw.app import errors
from imgmw.app import images
from imgmw.app import importer
from imgmw.app import registry as registry_mod
from imgmw.app import stores
from imgmw.app import tasks
from imgmw import backends
from imgmw import environ as keys
from imgmw import hashing
from imgmw import holders


LOG = logging.getLogger(__name__)

METHOD = 'copy-image'

MiB = 1024 * 1024


def offered(store_set) -> bool:
    """Whether copy-image is offered: multi-store with two stores or more."""
    return store_set.multi_store and sum(
        1 for store_id in store_set.by_id
        if not backends.Backends.is_reserved(store_id)) >= 2


class CopyLost(Exception):
    """The copy no longer holds the image's lock, or the image changed."""


class CopyFailed(Exception):
    """The data copied does not match the image's record."""


def stale_after(app) -> datetime.timedelta:
    return getattr(app, 'copy_stale_after', registry_mod.DEFAULT_STALE_AFTER)


def is_stale(task: typing.Optional[typing.Mapping],
             older_than: datetime.timedelta) -> bool:
    """Whether a lock held by ``task`` is abandoned (see the module)."""
    return (task is None or task['status'] != 'processing'
            or registry_mod.utcnow() - task['updated_at'] >= older_than)


def lock_holder(registry, record: typing.Mapping
                ) -> typing.Tuple[typing.Optional[str],
                                  typing.Optional[dict]]:
    """The task id in the image's lock, and that task if still listed."""
    held = record['properties'].get(registry_mod.IMPORT_TASK_PROPERTY)
    if held is None:
        return None, None
    for task in registry.tasks(record['id']):
        if task['id'] == held:
            return held, task
    return held, None


def copy_is_dead(record: typing.Mapping, task: typing.Optional[typing.Mapping],
                 older_than: datetime.timedelta = (
                     registry_mod.DEFAULT_STALE_AFTER),
                 holder_alive: typing.Optional[
                     typing.Callable[[str], bool]] = holders.holder_is_alive
                 ) -> bool:
    """Whether the copy holding ``record``'s lock is over (see the module).

    Dead: its task is stale (:func:`is_stale`), or its holder is a dead
    process (``holder_alive(holder)`` is False). A lock without a task
    (the lock is taken just before its task is recorded) is judged by
    the image's last change.
    """
    if task is None:
        return registry_mod.utcnow() - record['updated_at'] >= older_than
    if is_stale(task, older_than):
        return True
    holder = task.get('holder')
    return bool(holder_alive is not None and holder
                and not holder_alive(holder))


def task_stores(task: typing.Optional[typing.Mapping]) -> typing.List[str]:
    """The stores a task was started for (its input's ``backend``)."""
    if task is None:
        return []
    try:
        return list(tasks.view(task)['input'].get('backend') or [])
    except (ValueError, AttributeError):
        return []


class CopyRequest(importer.ImportRequest):
    """The checks of one copy-image request and the start of its job.

    Built with the parsed body (``request``).
    """

    def __call__(self) -> webob.Response:
        must_succeed = importer.flag(self.request,
                                     'all_stores_must_succeed', True)
        every = importer.flag(self.request, 'all_stores', False)
        record = self.app.visible(self.req, self.image_id)
        if record['status'] != 'active':
            raise errors.copy_needs_active()
        for name in ('container_format', 'disk_format'):
            if not record[name]:
                raise errors.format_unset_for_import(name)
        self.app.authorize(self.req, 'copy_image',
                           images.policy_target(record))
        stale, stale_task = self.check_lock(record)
        store_ids = importer.requested_stores(self.request, self.req.environ,
                                              self.app.stores)
        present = [location['store'] for location in record['locations']]
        if every:
            store_ids = [store_id for store_id in store_ids
                         if store_id not in present]
            if not store_ids:
                LOG.info('Image %s: already in every store; nothing to '
                         'copy', self.image_id)
                return importer.accepted()
        for store_id in store_ids:
            if store_id in present:
                raise errors.already_in_store(store_id)
        task_id = str(uuid.uuid4())
        release = self.reserve_quota(record, len(present) + len(store_ids))
        try:
            outcome = self.registry.lock_for_copy(
                self.image_id, task_id, store_ids, stale,
                task_stores(stale_task))
        finally:
            # Locked, the stores being copied to count as stored (the
            # usage counts os_glance_importing_to_stores); or it failed.
            release()
        if outcome == 'missing':
            raise errors.image_not_found(self.image_id)
        if outcome == 'status':
            raise errors.copy_needs_active()
        if outcome == 'busy':
            raise errors.operation_in_progress(self.image_id)
        if stale is not None:
            LOG.warning('Image %s: took over the lock of copy %s, which '
                        'was abandoned', self.image_id, stale)
            if stale_task is not None and stale_task['status'] == (
                    'processing'):
                tasks.finish(self.registry, stale, self.image_id,
                             CopyLost('Expired lock preempted'))
        tasks.start(self.registry, self.req.environ,
                    self.app.context(self.req), self.image_id,
                    self.request, store_ids, task_id=task_id)
        job = CopyJob(self.app, self.image_id, store_ids, task_id,
                      must_succeed)
        try:
            self.app.spawn(job.run, 'imgmw-copy-%s' % self.image_id)
        except BaseException as err:
            job.end([], err)
            raise
        LOG.info('Image %s: copy into %s started', self.image_id,
                 ', '.join(store_ids))
        return importer.accepted()

    def check_lock(self, record: typing.Mapping
                   ) -> typing.Tuple[typing.Optional[str],
                                     typing.Optional[dict]]:
        """Row 7: 409 when another copy holds the lock.

        :returns: the id and task of a stale lock to take over, or
            ``(None, None)`` when the image is not locked.
        """
        held, task = lock_holder(self.registry, record)
        if held is None:
            return None, None
        if is_stale(task, stale_after(self.app)):
            return held, task
        raise errors.image_has_active_task()

    def reserve_quota(self, record: typing.Mapping,
                      copies: int = 1) -> typing.Callable[[], None]:
        """Row 11: the image's bytes once per copy it will have.

        Through the quota filter's ``imgmw.reserve``, whose reservation
        stands for the image (its recorded bytes are then left out of the
        usage): the image's size times its locations and the new stores.
        Without the filter, no limit.
        """
        reserve = self.req.environ.get(keys.QUOTA_IMPORT)
        project_id = (record['owner']
                      or self.app.context(self.req).project_id)
        if reserve is None or not project_id:
            return lambda: None
        return reserve(project_id, self.image_id,
                       (record['size'] or 0) * copies)


class CopyReader:
    """The source's data as the target store reads it: hashed, beating.

    :param beat: refreshes the task with the bytes copied so far; False
        when the copy no longer holds the image's lock.
    """

    def __init__(self, source, hasher: hashing.MultiHasher,
                 beat: typing.Callable[[int], bool], interval: float,
                 clock=time.monotonic):
        self.source = source
        self.hasher = hasher
        self.copied = 0
        self.heartbeat = holders.Heartbeat(
            lambda: beat(self.copied), interval,
            lambda: CopyLost('the copy lost the image\'s lock'), clock)

    def keep_alive(self) -> None:
        """Beat while the store waits (:func:`stores.kept_alive`)."""
        self.heartbeat.check()

    def read(self, size: int = -1) -> bytes:
        self.heartbeat.check()
        chunk = self.source.read(size)
        if chunk:
            self.hasher.update(chunk)
            self.copied += len(chunk)
        return chunk


class CopyJob:
    """Copies an active image's data into more stores (runs in a thread)."""

    def __init__(self, app, image_id: str, store_ids: typing.Sequence[str],
                 task_id: str, must_succeed: bool = True):
        self.app = app
        self.registry = app.registry
        self.image_id = image_id
        self.store_ids = list(store_ids)
        self.task_id = task_id
        self.must_succeed = must_succeed

    def run(self) -> None:
        """Copy into each store; record, roll back, unlock. Never raises."""
        copied: typing.List[str] = []
        error: typing.Optional[BaseException] = None
        try:
            record = self.registry.get(self.image_id)
            if record is None:
                raise CopyLost('the image was deleted')
            for store_id in self.store_ids:
                try:
                    self.copy_to(record, store_id)
                except CopyLost:
                    raise
                except Exception as err:
                    LOG.error('Image %s: copy into store %s failed: %s: %s',
                              self.image_id, store_id, type(err).__name__,
                              err)
                    self.registry.copy_done(self.image_id, self.task_id,
                                            store_id)
                    if self.must_succeed:
                        error = err
                        self.roll_back(copied)
                        break
                    continue
                copied.append(store_id)
        except BaseException as err:
            error = err
            LOG.error('Image %s: copy abandoned: %s: %s', self.image_id,
                      type(err).__name__, err)
        self.end(copied, error)

    def end(self, copied: typing.Sequence[str],
            error: typing.Optional[BaseException]) -> None:
        """Release the lock and record how the task ended. Never raises."""
        try:
            self.registry.unlock_copy(self.image_id, self.task_id,
                                      self.store_ids)
        except Exception:
            LOG.exception('Image %s: could not release the lock of copy %s; '
                          'it expires', self.image_id, self.task_id)
        tasks.finish(self.registry, self.task_id, self.image_id, error)
        if error is None:
            LOG.info('Image %s: copied into %s', self.image_id,
                     ', '.join(copied) or 'no store')

    def beat(self, copied: int) -> bool:
        """Refresh the task; False when the copy lost the lock."""
        record = self.registry.get(self.image_id)
        if record is None or record['properties'].get(
                registry_mod.IMPORT_TASK_PROPERTY) != self.task_id:
            return False
        self.registry.update_task(self.task_id, {
            'message': 'Copied %d MiB' % (copied // MiB)})
        return True

    def sources(self, record: typing.Mapping):
        """``(store, url, blocks)`` of each readable location, in order."""
        recorded = self.registry.block_digests(self.image_id)
        for location in record['locations']:
            store = self.app.stores.locate(location)
            if store is None:
                continue
            found = recorded.get(location['url'])
            if found is not None and not found.usable_for(
                    record['size'] or 0):
                found = None
            yield store, location['url'], found

    def open_source(self, record: typing.Mapping):
        """A reader of the image's data, verified by blocks if possible.

        The first location that opens is used.

        :returns: ``(reader, blocks)``.
        :raises stores.StoreError: no location could be opened.
        """
        size = record['size'] or 0
        last: typing.Optional[Exception] = None
        for store, url, found in self.sources(record):
            try:
                body = store.open(url, 0, size)
            except stores.StoreError as err:
                LOG.warning('Image %s: cannot read its data in %s: %s',
                            self.image_id, store.store_id, err)
                last = err
                continue
            if found is None:
                return body, None
            where = 'Image %s, store %s' % (self.image_id, store.store_id)
            return blocks_mod.VerifiedSlice(body, found, size, 0, size,
                                            where), found
        raise last or stores.DataNotFound(
            'no location of image %s can be read' % self.image_id)

    def copy_to(self, record: typing.Mapping, store_id: str) -> None:
        """Copy, verify and record the image's data in one store."""
        target = self.app.stores.by_id[store_id]
        algorithms = ['md5']
        if record['os_hash_algo']:
            algorithms.append(record['os_hash_algo'])
        source, recorded = self.open_source(record)
        # A source verified by blocks has, when read whole, the recorded
        # block digests: they are the copy's, not computed again.
        hasher = hashing.MultiHasher(
            algorithms,
            block_size=None if recorded is not None else hashing.BLOCK_SIZE)
        with contextlib.closing(source):
            reader = CopyReader(source, hasher, self.beat,
                                self.app.heartbeat_interval)
            stored = target.add(self.image_id, reader, self.app.chunk_size)
        blocks = recorded if recorded is not None else hasher.block_digests()
        try:
            self.verify(record, stored, hasher)
            recorded_now = self.registry.copy_done(
                self.image_id, self.task_id, store_id,
                {'store': store_id, 'url': stored.url, 'blocks': blocks},
                checksum=record['checksum'])
        except BaseException:
            self.discard(target, stored.url)
            raise
        if not recorded_now:
            self.discard(target, stored.url)
            raise CopyLost('the image changed or was deleted during the '
                           'copy')
        LOG.info('Image %s: %d bytes copied into %s', self.image_id,
                 stored.size, store_id)

    def verify(self, record: typing.Mapping, stored: stores.Stored,
               hasher: hashing.MultiHasher) -> None:
        """The copy against the image's record.

        Its blocks were checked as they were read, when the source has
        block digests (:class:`imgmw.app.blocks.VerifiedSlice`).

        :raises CopyFailed: size, checksum or multihash differ.
        """
        if stored.size != (record['size'] or 0):
            raise CopyFailed('%d bytes copied, the image has %s'
                             % (stored.size, record['size']))
        if record['checksum'] and hasher.hexdigest('md5') != (
                record['checksum']):
            raise CopyFailed('the data copied does not match the image\'s '
                             'checksum')
        algo = record['os_hash_algo']
        if algo and record['os_hash_value'] and hasher.hexdigest(algo) != (
                record['os_hash_value']):
            raise CopyFailed('the data copied does not match the image\'s '
                             '%s' % algo)

    def discard(self, store: stores.Store, url: str) -> None:
        try:
            store.delete(url)
        except Exception:
            LOG.exception('Image %s: could not delete %s; the orphan sweep '
                          'will', self.image_id, url)

    def roll_back(self, copied: typing.Sequence[str]) -> None:
        """Remove the copies made before a failure (all must succeed)."""
        for store_id in copied:
            outcome, location = self.registry.remove_location(
                self.image_id, store_id)
            if outcome != 'removed':
                LOG.warning('Image %s: its copy in %s was not removed (%s)',
                            self.image_id, store_id, outcome)
                continue
            self.discard(self.app.stores.by_id[store_id], location['url'])


class RecoveredCopy(typing.NamedTuple):
    """A dead copy :func:`recover_copies` released."""

    image_id: str
    task_id: str
    holder: typing.Optional[str]
    #: When its task was last refreshed (None: no task recorded).
    heartbeat_at: typing.Optional[datetime.datetime]
    #: The stores it had not finished, now in ``os_glance_failed_import``.
    failed: typing.List[str]


def _unfinished_stores(record: typing.Mapping,
                       task: typing.Optional[typing.Mapping]
                       ) -> typing.List[str]:
    """The stores a dead copy may have written without recording.

    Those of its task still in ``os_glance_importing_to_stores`` (any
    store there, without a task), less the stores holding the image.
    """
    importing = [store for store in (record['properties'].get(
        registry_mod.IMPORTING_PROPERTY) or '').split(',') if store]
    started = task_stores(task) if task is not None else importing
    holding = {location['store'] for location in record['locations']}
    return [store for store in importing
            if store in started and store not in holding]


def recover_copies(registry, store_set=None,
                   older_than: datetime.timedelta = (
                       registry_mod.DEFAULT_STALE_AFTER),
                   holder_alive: typing.Optional[
                       typing.Callable[[str], bool]] = (
                           holders.holder_is_alive)
                   ) -> typing.List[RecoveredCopy]:
    """Release the locks of dead copies; remove their unfinished writes.

    See the module. ``store_set`` (:class:`imgmw.app.api.StoreSet`) is
    where the unfinished writes are removed from (None: left to the
    sweep). A store that fails to remove them is logged; the lock is
    released all the same.

    :returns: one :class:`RecoveredCopy` for each lock released.
    """
    recovered = []
    for record in registry.copies_in_progress():
        held, task = lock_holder(registry, record)
        if held is None or not copy_is_dead(record, task, older_than,
                                            holder_alive):
            continue
        image_id = record['id']
        if store_set is not None:
            for store_id in _unfinished_stores(record, task):
                store = store_set.by_id.get(store_id)
                if store is None:
                    continue
                try:
                    store.remove_partial(image_id)
                except Exception as err:
                    LOG.error('Image %s: cannot remove the unfinished copy '
                              'in store %s: %s: %s', image_id, store_id,
                              type(err).__name__, err)
        failed = registry.release_dead_copy(
            image_id, held, task['updated_at'] if task else None,
            task_stores(task) if task is not None else None)
        if failed is None:
            LOG.info('Image %s: copy %s moved meanwhile; left alone',
                     image_id, held)
            continue
        holder = task.get('holder') if task is not None else None
        LOG.warning('Image %s: released the lock of copy %s (holder %s), '
                    'which no longer runs; failed in %s', image_id, held,
                    holder, ', '.join(failed) or 'no store')
        if task is not None and task['status'] == 'processing':
            tasks.finish(registry, held, image_id, CopyLost(
                'the copy\'s worker died; recovered'))
        recovered.append(RecoveredCopy(
            image_id, held, holder,
            task['updated_at'] if task is not None else None, failed))
    return recovered
