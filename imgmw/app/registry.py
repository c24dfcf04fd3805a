"""The image registry: image records in SQL, status changes compare-and-set.

One :class:`Registry` per process holds an SQLAlchemy 2 engine on the
``database_connection`` URL of ``[DEFAULT]`` in ``api-paste.ini``:

=========================  ==================================================
``database_connection``    SQLAlchemy URL of the registry. Default: SQLite in
                           the state directory (one API node). Several API
                           nodes share PostgreSQL
                           (``postgresql+psycopg2://user:pw@host/imgmw``) or
                           MySQL/MariaDB
                           (``mysql+pymysql://user:pw@host/imgmw?charset=utf8mb4``).
``state_dir``              Directory of the default SQLite database
                           (``./state``), created when missing.
=========================  ==================================================

SQLite runs in WAL mode (readers never wait for the writer) with a busy
timeout and foreign keys on; every write transaction starts with ``BEGIN
IMMEDIATE`` so two writers queue instead of failing. Other databases get
``pool_pre_ping`` and ``pool_recycle``, so a restarted database server or a
proxy closing idle connections costs one reconnect, not an error.

The schema is managed by Alembic (``imgmw/app/migrations``; no
``alembic.ini`` needed): ``imgmw-manage db sync`` upgrades it, and the API
runs the same upgrade at start-up for SQLite.

**Statuses** follow Glance (:data:`TRANSITIONS`). A status change is one
``UPDATE images SET status = <to> ... WHERE id = <id> AND status = <from>``:
of two uploads racing from ``queued`` to ``saving`` exactly one matches the
row, the other gets ``None`` and answers 409. Nothing reads a status and then
writes it.

**Crash recovery.** An image in ``saving``, ``uploading`` or ``importing``
records its *holder* (:func:`holder_id`: host, pid and process start time)
and a heartbeat that the holder refreshes while it streams
(:meth:`Registry.heartbeat`, at least every :data:`HEARTBEAT_INTERVAL`).
:meth:`Registry.recover_stale` returns to ``queued`` the images whose holder
is a dead process of this host, or whose heartbeat is older than
:data:`DEFAULT_STALE_AFTER`; ``imgmw-manage recover`` and the API's start-up
call it, and the stores remove the partial data of the images it returns.
A ``copy-image`` leaves its image ``active`` and holds its import lock
(:data:`IMPORT_TASK_PROPERTY`) instead; its task records the holder, and
:meth:`Registry.release_dead_copy` releases the lock of one found dead
(:func:`imgmw.app.copier.recover_copies`).

**Staged images.** A stage (``PUT .../stage``) streams as ``uploading``
with a holder; :meth:`Registry.finish_stage` then records the size and the
node holding the staged file (the hidden property
:data:`STAGE_HOST_PROPERTY`, as Glance's ``os_glance_stage_host``) and
releases the hold. An ``uploading`` image without a holder is staged and
waits for its import: it is never stale. Leaving ``uploading`` or
``importing`` for ``queued`` or ``active`` forgets the stage host.

**The stores of an import or a copy.** The registry alone keeps Glance's
:data:`IMPORTING_PROPERTY` (the stores still being written) and
:data:`FAILED_PROPERTY` (those that failed), for the ``glance-direct``
import and the ``copy-image`` copy alike, each change in the transaction
that changes the image: the stores join the first and leave the second
when the import enters ``importing`` (:meth:`Registry.transition`) or the
copy takes the image's lock (:meth:`Registry.lock_for_copy`); a store
leaves the first in the transaction that records its location, or joins
the second when its copy fails (:meth:`Registry.import_store_done`,
:meth:`Registry.copy_done`); the rest leave the first when the import
leaves ``importing`` (committed, failed or recovered) or the copy unlocks.
The stores a copy whose worker died left in the first move to the second
when recovery releases its lock (:meth:`Registry.release_dead_copy`).
A store is thus always counted once by the quota's usage
(:mod:`imgmw.app.usage`): being written, or as a location.

**Errors.** A database that cannot be reached (connection refused, server
gone, SQLite file locked past the timeout or unreadable) raises
:class:`RegistryUnavailable`, which the app answers with 503 ``Image
registry is unavailable.`` (contract 3.22). A write transaction that
loses a deadlock (MySQL/MariaDB, PostgreSQL) is run again, up to
:data:`DEADLOCK_RETRIES` times, then answered as unavailable. Programming
errors (bad SQL, an unknown field) are never masked as unavailability.

**Reads.** A record is read with two statements in one transaction: its
row, then its tags, properties and locations together (one ``UNION ALL``
in every database), whether one image is read or a page of them; a
download reads the block digests of its locations in the same transaction
(:meth:`Registry.get_for_download`). The statements of every read are
built once, at import; a listing's first
page (no ``marker``) is built once per distinct listing, the last
:data:`FIRST_PAGES_KEPT` of them kept. Building and running a statement
in SQLAlchemy costs several times what SQLite takes to answer it.

A record is a plain ``dict`` (:data:`RECORD_KEYS`), times timezone-aware UTC.
"""

import contextlib
import datetime
import functools
import logging
import os
import typing
import uuid

import sqlalchemy as sa

from imgmw.app import migrations
from imgmw.app import models
from imgmw import db
from imgmw.filters.quota import migrations as quota_migrations
from imgmw.filters.quota import reservations as quota_reservations
from imgmw import hashing
from imgmw import holders

LOG = logging.getLogger(__name__)

STATUSES = ('queued', 'saving', 'uploading', 'importing', 'active',
            'deactivated', 'killed', 'deleted')

#: Statuses in which one process owns the image's data stream.
IN_PROGRESS = frozenset(('saving', 'uploading', 'importing'))

#: Allowed ``from -> to`` status changes, as Glance's domain model.
TRANSITIONS = {
    'queued': frozenset(('saving', 'uploading', 'importing', 'active',
                         'deleted')),
    'saving': frozenset(('active', 'killed', 'deleted', 'queued')),
    'uploading': frozenset(('importing', 'queued', 'deleted')),
    'importing': frozenset(('active', 'deleted', 'queued')),
    'active': frozenset(('deleted', 'deactivated')),
    'killed': frozenset(('deleted',)),
    'deactivated': frozenset(('active', 'deleted')),
    'deleted': frozenset(),
}

VISIBILITIES = ('public', 'community', 'shared', 'private')

RECORD_KEYS = ('id', 'name', 'status', 'visibility', 'protected',
               'os_hidden', 'checksum', 'os_hash_algo', 'os_hash_value',
               'size', 'virtual_size', 'disk_format', 'container_format',
               'owner', 'min_ram', 'min_disk', 'created_at', 'updated_at',
               'deleted_at', 'tags', 'properties', 'locations', 'holder',
               'held_since', 'heartbeat_at')

#: Fields of :meth:`Registry.create` and :meth:`Registry.update`.
METADATA_FIELDS = frozenset(('name', 'visibility', 'protected', 'os_hidden',
                             'disk_format', 'container_format', 'owner',
                             'min_ram', 'min_disk', 'tags', 'properties'))

#: Fields of :meth:`Registry.create_task`: ``input`` and ``result`` are
#: JSON text.
TASK_FIELDS = frozenset(('image_id', 'type', 'status', 'owner', 'user_id',
                         'request_id', 'input', 'result', 'message',
                         'expires_at', 'holder'))

#: Fields a status change may set (:meth:`Registry.transition`).
DATA_FIELDS = frozenset(('size', 'virtual_size', 'checksum', 'os_hash_algo',
                         'os_hash_value', 'locations'))

_CLEARED_ON_QUEUED = ('size', 'virtual_size', 'checksum', 'os_hash_algo',
                      'os_hash_value')

SORT_KEYS = frozenset(('created_at', 'updated_at', 'id', 'name', 'status',
                       'visibility', 'size', 'virtual_size', 'disk_format',
                       'container_format', 'owner', 'min_ram', 'min_disk'))

LIST_FILTERS = frozenset(('name', 'status', 'visibility', 'os_hidden',
                          'owner', 'conditions', 'tags', 'properties'))

#: Columns a listing's ``conditions`` may compare, and their operators.
FILTER_COLUMNS = frozenset(('id', 'name', 'status', 'container_format',
                            'disk_format', 'checksum', 'os_hash_algo',
                            'os_hash_value', 'owner', 'protected', 'size',
                            'virtual_size', 'min_ram', 'min_disk',
                            'created_at', 'updated_at'))
FILTER_OPERATORS = frozenset(('eq', 'neq', 'in', 'gt', 'gte', 'lt', 'lte'))

#: The hidden property naming the node whose staging area holds the data
#: of a staged image (Glance's name).
STAGE_HOST_PROPERTY = 'os_glance_stage_host'

#: The properties of a copy between stores (``copy-image``), Glance's
#: names: the task holding the image's import lock, the stores being
#: copied to and those whose copy failed (comma-separated, sorted).
IMPORT_TASK_PROPERTY = 'os_glance_import_task'
IMPORTING_PROPERTY = 'os_glance_importing_to_stores'
FAILED_PROPERTY = 'os_glance_failed_import'

#: How often a holder should call :meth:`Registry.heartbeat`, in seconds.
HEARTBEAT_INTERVAL = 30

#: A heartbeat older than this marks an upload as abandoned.
DEFAULT_STALE_AFTER = datetime.timedelta(seconds=300)

SQLITE_BUSY_TIMEOUT = db.SQLITE_BUSY_TIMEOUT

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              'migrations')


class RegistryUnavailable(Exception):
    """The database cannot be reached; the app answers 503."""


class _Deadlock(RegistryUnavailable):
    """A write transaction lost a deadlock; :func:`_retried` runs it again.

    A RegistryUnavailable, so that one never retried still answers 503.
    """


#: A write transaction that lost a deadlock is run again this many times.
DEADLOCK_RETRIES = 3


def _retried(method):
    """Run a write method again when its transaction lost a deadlock.

    InnoDB aborts one of two transactions whose locks cross (concurrent
    status changes on MySQL/MariaDB, e.g. the gap locks of replacing
    locations); the aborted one changed nothing and is simply run again.
    """
    @functools.wraps(method)
    def retrying(self, *args, **kwargs):
        for attempt in range(DEADLOCK_RETRIES, -1, -1):
            try:
                return method(self, *args, **kwargs)
            except _Deadlock as err:
                if not attempt:
                    LOG.error('Image registry: %s deadlocked %d times: %s',
                              method.__name__, DEADLOCK_RETRIES + 1, err)
                    raise
                LOG.debug('%s deadlocked; running it again',
                          method.__name__)
    return retrying


class MarkerNotFound(LookupError):
    """The ``marker`` of a listing is unknown, deleted or not visible."""


class ImageExists(Exception):
    """:meth:`Registry.create` was given the id of an existing image."""


class InvalidTransition(ValueError):
    """A status change that no image may make (a programming error)."""


Record = typing.Dict[str, typing.Any]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def database_url(conf: typing.Mapping[str, str]) -> str:
    """The registry URL from ``[DEFAULT]`` (``database_connection``).

    Without one, SQLite in ``state_dir`` (default ``./state``), which is
    created when missing.
    """
    return db.default_url(conf, 'database_connection')


def alembic_config():
    """Alembic's configuration of the registry, without an ini file.

    Alembic is imported here and in the schema methods only: a server
    whose database is migrated by ``imgmw-manage db sync`` never loads it
    (about 11 MiB of each worker's memory).
    """
    import alembic.config
    config = alembic.config.Config()
    config.set_main_option('script_location', MIGRATIONS_DIR)
    return config


# Holders: which process streams an image (one definition, shared with the
# quota filter's reservations).

holder_id = holders.holder_id
holder_is_alive = holders.holder_is_alive


# The engine.

def create_engine(url: str) -> sa.engine.Engine:
    """An engine for ``url``, configured for the registry's use."""
    return db.create_engine(url)


def _unavailable(err: sa.exc.DBAPIError) -> RegistryUnavailable:
    reason = '%s: %s' % (type(err.orig).__name__, err.orig)
    LOG.error('Image registry database error: %s', reason)
    return RegistryUnavailable(reason)


class Registry:
    """Image records in one SQL database; see the module documentation.

    :param url: SQLAlchemy URL.
    :param sync: run the migrations now (the API does so for SQLite).
    """

    def __init__(self, url: str, sync: bool = False):
        self.url = url
        self._engine = create_engine(url)
        if sync:
            self.sync()

    def __repr__(self) -> str:
        return '<Registry %s>' % self._engine.url.render_as_string(
            hide_password=True)

    def dispose(self) -> None:
        """Close the pooled connections (tests, and before a fork)."""
        self._engine.dispose()

    @contextlib.contextmanager
    def _transaction(self, write: bool = False):
        try:
            with self._engine.connect() as connection:
                if write:
                    db.for_writing(connection)
                with connection.begin():
                    yield connection
        except sa.exc.DBAPIError as err:
            if write and db.is_deadlock(err):
                raise _Deadlock(str(err.orig)) from err
            if db.is_unavailable(err):
                raise _unavailable(err) from err
            raise

    # Schema.

    def sync(self) -> None:
        """Upgrade the schema to the newest migration (idempotent).

        A schema already at :data:`imgmw.app.migrations.HEAD` is left as it
        is without loading Alembic (a restart of an API on SQLite).
        """
        if (self._revision() == migrations.HEAD
                and self._revision(quota_migrations.current)
                == quota_migrations.HEAD):
            return
        import alembic.command
        config = alembic_config()
        with self._transaction(write=True) as connection:
            config.attributes['connection'] = connection
            alembic.command.upgrade(config, 'head')
            # The quota tables' own chain, which adopts what 0002 made.
            quota_migrations.upgrade(connection)

    def _revision(self, read=None) -> typing.Optional[str]:
        """The ``alembic_version`` row, read plainly; None if there is none.

        :param read: reads another chain's revision from a connection.

        A database that cannot be read answers None too: the migration
        that follows then reports what is wrong.
        """
        try:
            with self._engine.connect() as connection:
                if read is not None:
                    return read(connection)
                if not sa.inspect(connection).has_table('alembic_version'):
                    return None
                return connection.execute(sa.text(
                    'SELECT version_num FROM alembic_version')).scalar()
        except sa.exc.DBAPIError:
            return None

    def version(self) -> typing.Optional[str]:
        """The schema's migration, or None for an empty database."""
        import alembic.runtime.migration
        with self._transaction() as connection:
            context = alembic.runtime.migration.MigrationContext.configure(
                connection)
            return context.get_current_revision()

    @staticmethod
    def head() -> str:
        """The newest migration this code ships."""
        import alembic.script
        script = alembic.script.ScriptDirectory.from_config(
            alembic_config())
        return script.get_current_head()

    # Records.

    @_retried
    def create(self, values: typing.Mapping[str, typing.Any]) -> Record:
        """A new ``queued`` image.

        ``values`` are :data:`METADATA_FIELDS` and optionally ``id``
        (else a new UUID).

        :raises ImageExists: the id is taken.
        """
        _check_fields(values, METADATA_FIELDS | {'id'})
        now = utcnow()
        row = {'id': values.get('id') or str(uuid.uuid4()),
               'status': 'queued', 'visibility': 'shared',
               'protected': False, 'os_hidden': False, 'min_ram': 0,
               'min_disk': 0, 'created_at': now, 'updated_at': now}
        row.update(_columns(values))
        _check_visibility(row['visibility'])
        try:
            with self._transaction(write=True) as connection:
                connection.execute(models.images.insert().values(**row))
                _replace_tags(connection, row['id'], values.get('tags', ()))
                _replace_properties(connection, row['id'],
                                    values.get('properties', {}))
                return _load(connection, row['id'])
        except sa.exc.IntegrityError as err:
            if self._exists(row['id']):
                raise ImageExists(row['id']) from err
            raise

    def _exists(self, image_id: str) -> bool:
        with self._transaction() as connection:
            return _load(connection, image_id) is not None

    def get(self, image_id: str) -> typing.Optional[Record]:
        """The image, or None when unknown or deleted."""
        with self._transaction() as connection:
            record = _load(connection, image_id)
        if record is None or record['status'] == 'deleted':
            return None
        return record

    def get_for_download(self, image_id: str) -> typing.Tuple[
            typing.Optional[Record], typing.Dict[str, hashing.BlockDigests]]:
        """:meth:`get` and :meth:`block_digests`, in one transaction.

        ``(None, {})`` when the image is unknown or deleted; the digests
        are read only for an image with locations.
        """
        with self._transaction() as connection:
            record = _load(connection, image_id)
            if record is None or record['status'] == 'deleted':
                return None, {}
            if not record['locations']:
                return record, {}
            return record, _block_digests(connection, image_id)

    def list(self, *, project_id: typing.Optional[str], is_admin: bool,
             filters: typing.Mapping[str, typing.Any], limit: int,
             marker: typing.Optional[str],
             sort_key: typing.Union[str, typing.Sequence[str]] = 'created_at',
             sort_dir: typing.Union[str, typing.Sequence[str]] = 'desc'
             ) -> typing.List[Record]:
        """One page of the images the caller may see, as Glance lists them.

        A caller sees the images of ``project_id`` and the public and
        community ones (an admin sees all). As Glance, community images of
        other projects are listed only with the filter
        ``visibility=community``, and ``visibility=all`` lists every
        visible image. ``os_hidden`` defaults to False (hidden images are
        left out); None lists both. Deleted images are never listed.

        More filters: ``conditions``, a list of ``(column, operator,
        value)`` (:data:`FILTER_COLUMNS`, :data:`FILTER_OPERATORS`; ``in``
        takes a list), ``tags`` (every one of them) and ``properties``, a
        list of ``(name, value)`` extra properties that must all match.

        :param sort_key: one key or several (:data:`SORT_KEYS`), the first
            deciding first; the id breaks the remaining ties.
        :param sort_dir: ``asc`` or ``desc``, one for every key or one for
            all of them.
        :param marker: id of the last image of the previous page.
        :raises MarkerNotFound: the marker is not a visible image.
        """
        _check_fields(filters, LIST_FILTERS)
        order = _sorting(sort_key, sort_dir)
        if marker is None:
            query = _first_page(project_id, is_admin, filters, order, limit)
            with self._transaction() as connection:
                rows = connection.execute(query).mappings().all()
                return _records(connection, rows)
        images = models.images
        access = _access(project_id, is_admin)
        query = sa.select(images).where(
            access, *_list_conditions(project_id, filters))
        with self._transaction() as connection:
            after = connection.execute(
                sa.select(images).where(images.c.id == marker, access)
            ).mappings().first()
            if after is None:
                raise MarkerNotFound(marker)
            query = query.where(_after(after, order))
            query = query.order_by(*_order(order)).limit(limit)
            rows = connection.execute(query).mappings().all()
            return _records(connection, rows)

    @_retried
    def update(self, image_id: str,
               values: typing.Mapping[str, typing.Any]
               ) -> typing.Optional[Record]:
        """Change metadata (:data:`METADATA_FIELDS`).

        ``tags`` and ``properties``, when given, replace the old ones whole.

        :returns: the new record, or None when unknown or deleted.
        """
        _check_fields(values, METADATA_FIELDS)
        columns = _columns(values)
        if 'visibility' in columns:
            _check_visibility(columns['visibility'])
        images = models.images
        with self._transaction(write=True) as connection:
            result = connection.execute(
                images.update()
                .where(images.c.id == image_id, images.c.status != 'deleted')
                .values(updated_at=utcnow(), **columns))
            if result.rowcount != 1:
                return None
            if 'tags' in values:
                _replace_tags(connection, image_id, values['tags'])
            if 'properties' in values:
                _replace_properties(connection, image_id,
                                    values['properties'])
            return _load(connection, image_id)

    @_retried
    def add_tag(self, image_id: str, tag: str,
                limit: typing.Optional[int] = None) -> typing.Optional[bool]:
        """Tag the image (a tag it has already is kept as it is).

        :param limit: the most tags an image may have.
        :returns: True when tagged, False when ``limit`` forbids the new
            tag, None when the image is unknown or deleted.
        """
        tags = models.image_tags
        with self._transaction(write=True) as connection:
            if not _touch(connection, image_id):
                return None
            present = connection.execute(
                sa.select(tags.c.value).where(tags.c.image_id == image_id)
            ).scalars().all()
            if tag in present:
                return True
            if limit is not None and len(present) >= limit:
                return False
            connection.execute(tags.insert().values(image_id=image_id,
                                                    value=tag))
            return True

    @_retried
    def remove_tag(self, image_id: str, tag: str) -> typing.Optional[bool]:
        """Untag the image.

        :returns: True when removed, False when the image had no such tag,
            None when the image is unknown or deleted.
        """
        tags = models.image_tags
        with self._transaction(write=True) as connection:
            if not _touch(connection, image_id):
                return None
            result = connection.execute(
                tags.delete().where(tags.c.image_id == image_id,
                                    tags.c.value == tag))
            return result.rowcount == 1

    @_retried
    def remove_location(self, image_id: str, store_id: str
                        ) -> typing.Tuple[str, typing.Optional[dict]]:
        """Forget the image's data in one store (not the last one).

        In one transaction, with the image's row locked: the image must be
        ``active`` and have data in ``store_id`` and in another store.

        :returns: ``(outcome, location)``: ``('removed', location)``, the
            caller then deletes the data; ``('missing', None)`` for an
            unknown or deleted image; ``('status', None)`` when it is not
            active; ``('absent', None)`` when it has no data in that store;
            ``('last', None)`` when that store holds its only copy.
        """
        with self._transaction(write=True) as connection:
            record = _load(connection, image_id, for_update=True)
            if record is None or record['status'] == 'deleted':
                return 'missing', None
            if record['status'] != 'active':
                return 'status', None
            locations = record['locations']
            found = [location for location in locations
                     if location['store'] == store_id]
            if not found:
                return 'absent', None
            if len(locations) == 1:
                return 'last', None
            _replace_locations(connection, image_id,
                               [location for location in locations
                                if location is not found[0]])
            connection.execute(
                models.images.update().where(models.images.c.id == image_id)
                .values(updated_at=utcnow()))
            return 'removed', found[0]

    # Copies between stores (copy-image).

    @_retried
    def lock_for_copy(self, image_id: str, task_id: str,
                      store_ids: typing.Sequence[str],
                      stale: typing.Optional[str] = None,
                      stale_stores: typing.Sequence[str] = ()) -> str:
        """Take the image's import lock for a copy into ``store_ids``.

        In one transaction with the image's row locked: the image must be
        ``active`` and its lock (:data:`IMPORT_TASK_PROPERTY`) free, or
        held by ``stale``, a task the caller found abandoned, whose stores
        ``stale_stores`` then leave both lists. ``store_ids`` join
        :data:`IMPORTING_PROPERTY` and leave :data:`FAILED_PROPERTY`.

        :returns: ``'locked'``; ``'missing'`` for an unknown or deleted
            image; ``'status'`` when it is not active; ``'busy'`` when
            another task holds the lock.
        """
        with self._transaction(write=True) as connection:
            record = _load(connection, image_id, for_update=True)
            if record is None or record['status'] == 'deleted':
                return 'missing'
            if record['status'] != 'active':
                return 'status'
            properties = record['properties']
            held = properties.get(IMPORT_TASK_PROPERTY)
            if held is not None and (stale is None or held != stale):
                return 'busy'
            _set_property(connection, image_id, IMPORT_TASK_PROPERTY,
                          task_id)
            _stores_begin(connection, image_id, store_ids, stale_stores,
                          properties)
            _touch(connection, image_id)
            return 'locked'

    @_retried
    def copy_done(self, image_id: str, task_id: str, store_id: str,
                  location: typing.Optional[typing.Mapping] = None,
                  checksum: typing.Optional[str] = None) -> bool:
        """One store of ``task_id``'s copy is over: copied, or failed.

        With ``location`` (``{'store', 'url', 'blocks'}``) the copy
        succeeded: the location is added after the others, provided the
        image is still ``active`` or ``deactivated`` with ``checksum``
        (its data unchanged) and has no data in that store yet. Without
        it the store joins :data:`FAILED_PROPERTY`. Either way it leaves
        :data:`IMPORTING_PROPERTY`. Nothing is written unless ``task_id``
        holds the image's lock.

        :returns: False when nothing was recorded (lock lost, image
            deleted or changed): the caller removes the data it wrote.
        """
        with self._transaction(write=True) as connection:
            record = _load(connection, image_id, for_update=True)
            if (record is None or record['status'] == 'deleted'
                    or record['properties'].get(IMPORT_TASK_PROPERTY)
                    != task_id):
                return False
            if location is not None and (
                    record['status'] not in ('active', 'deactivated')
                    or record['checksum'] != checksum
                    or any(known['store'] == store_id
                           for known in record['locations'])):
                return False
            _store_over(connection, image_id, store_id, location,
                        record['properties'])
            _touch(connection, image_id)
            return True

    @_retried
    def import_store_done(self, image_id: str, holder: str, store_id: str,
                          location: typing.Optional[typing.Mapping] = None
                          ) -> bool:
        """One store of ``holder``'s ``glance-direct`` import is over.

        As :meth:`copy_done`, for an image ``importing`` held by
        ``holder``: with ``location`` the store's data is recorded
        (after the other locations), without it the store joins
        :data:`FAILED_PROPERTY`; either way it leaves
        :data:`IMPORTING_PROPERTY`. The image stays ``importing``.

        :returns: False when nothing was recorded (the image was
            deleted, recovered, or is held by another process).
        """
        with self._transaction(write=True) as connection:
            record = _load(connection, image_id, for_update=True)
            if (record is None or record['status'] != 'importing'
                    or record['holder'] != holder):
                return False
            _store_over(connection, image_id, store_id, location,
                        record['properties'])
            _touch(connection, image_id)
            return True

    @_retried
    def unlock_copy(self, image_id: str, task_id: str,
                    store_ids: typing.Sequence[str] = ()) -> bool:
        """Release ``task_id``'s lock; ``store_ids`` leave the copying list.

        :returns: False when ``task_id`` did not hold the lock (nothing
            changed).
        """
        with self._transaction(write=True) as connection:
            record = _load(connection, image_id, for_update=True)
            if (record is None or record['properties'].get(
                    IMPORT_TASK_PROPERTY) != task_id):
                return False
            _set_property(connection, image_id, IMPORT_TASK_PROPERTY, None)
            _stores_end(connection, image_id, store_ids,
                        record['properties'])
            _touch(connection, image_id)
            return True

    @_retried
    def release_dead_copy(self, image_id: str, task_id: str,
                          seen: typing.Optional[datetime.datetime],
                          store_ids: typing.Optional[
                              typing.Sequence[str]] = None
                          ) -> typing.Optional[typing.List[str]]:
        """Release the lock of a copy found dead (recovery), unless it moved.

        Compare-and-set, in one transaction with the image's row locked:
        ``task_id`` must still hold the lock and its task must still have
        been refreshed last at ``seen`` (None: the task was not recorded,
        and still is not), so a copy that heartbeats meanwhile is left
        alone. Its stores still in :data:`IMPORTING_PROPERTY` (of
        ``store_ids``, the stores it was started for; None: any) leave it
        and join :data:`FAILED_PROPERTY`, as for a failed copy.

        :returns: the stores the copy failed in (sorted), or None when
            nothing changed.
        """
        tasks = models.image_tasks
        with self._transaction(write=True) as connection:
            record = _load(connection, image_id, for_update=True)
            if (record is None or record['properties'].get(
                    IMPORT_TASK_PROPERTY) != task_id):
                return None
            updated_at = connection.execute(
                sa.select(tasks.c.updated_at)
                .where(tasks.c.id == task_id)).scalar()
            if updated_at != seen:
                return None
            properties = record['properties']
            failed = [store for store in merge_stores(
                properties.get(IMPORTING_PROPERTY)).split(',') if store
                and (store_ids is None or store in store_ids)]
            _set_property(connection, image_id, IMPORT_TASK_PROPERTY, None)
            _stores_failed(connection, image_id, failed, properties)
            _touch(connection, image_id)
            return failed

    def copies_in_progress(self) -> typing.List[Record]:
        """The images whose import lock is held (copies under way)."""
        images = models.images
        properties = models.image_properties
        with self._transaction() as connection:
            rows = connection.execute(
                sa.select(images).where(
                    images.c.status != 'deleted',
                    sa.exists().where(
                        properties.c.image_id == images.c.id,
                        properties.c.name == IMPORT_TASK_PROPERTY))
                .order_by(images.c.created_at, images.c.id)
            ).mappings().all()
            return _records(connection, rows)

    # Import tasks.

    @_retried
    def create_task(self, values: typing.Mapping[str, typing.Any]) -> dict:
        """Record a task (:data:`TASK_FIELDS`, and ``id`` if chosen).

        Returns it with its id.
        """
        _check_fields(values, TASK_FIELDS | {'id'})
        now = utcnow()
        row = {'id': str(uuid.uuid4()), 'status': 'pending', 'message': '',
               'created_at': now, 'updated_at': now}
        row.update(values)
        with self._transaction(write=True) as connection:
            connection.execute(models.image_tasks.insert().values(**row))
        return row

    @_retried
    def update_task(self, task_id: str,
                    values: typing.Mapping[str, typing.Any]) -> bool:
        """Change a task's ``status``, ``result``, ``message`` or expiry.

        :returns: False when there is no such task.
        """
        _check_fields(values, frozenset(('status', 'result', 'message',
                                         'expires_at')))
        tasks = models.image_tasks
        with self._transaction(write=True) as connection:
            result = connection.execute(
                tasks.update().where(tasks.c.id == task_id)
                .values(updated_at=utcnow(), **values))
            return result.rowcount == 1

    def tasks(self, image_id: str) -> typing.List[dict]:
        """The image's tasks that have not expired, oldest first."""
        tasks = models.image_tasks
        with self._transaction() as connection:
            rows = connection.execute(
                sa.select(tasks).where(
                    tasks.c.image_id == image_id,
                    sa.or_(tasks.c.expires_at.is_(None),
                           tasks.c.expires_at >= utcnow()))
                .order_by(tasks.c.created_at, tasks.c.id)).mappings().all()
        return [dict(row) for row in rows]

    @_retried
    def transition(self, image_id: str, from_status: str, to_status: str,
                   values: typing.Optional[typing.Mapping] = None,
                   holder: typing.Optional[str] = None,
                   stores: typing.Sequence[str] = ()
                   ) -> typing.Optional[Record]:
        """Compare-and-set the status from ``from_status`` to ``to_status``.

        ``values`` (:data:`DATA_FIELDS`) are set in the same statement;
        ``locations`` (a list of ``{'store', 'url'}``, each with its
        optional ``blocks``, a :class:`imgmw.hashing.BlockDigests`)
        replaces the old ones. Going to ``queued`` clears the size,
        checksums, locations and holder. Entering ``saving``,
        ``uploading`` or ``importing`` records ``holder`` (default:
        :func:`holder_id`) and starts its heartbeat; leaving them clears
        it. Entering ``importing``, the import's ``stores`` join
        :data:`IMPORTING_PROPERTY` and leave :data:`FAILED_PROPERTY`;
        leaving it, every store leaves :data:`IMPORTING_PROPERTY`.

        :returns: the new record, or None when the image was not in
            ``from_status`` (changed meanwhile, deleted or unknown).
        :raises InvalidTransition: Glance allows no such change.
        """
        values = dict(values or {})
        _check_transition(from_status, to_status, values)
        now = utcnow()
        row = {key: value for key, value in values.items()
               if key != 'locations'}
        row.update(_status_columns(to_status, now, holder))
        images = models.images
        with self._transaction(write=True) as connection:
            result = connection.execute(
                images.update()
                .where(images.c.id == image_id,
                       images.c.status == from_status)
                .values(status=to_status, updated_at=now, **row))
            if result.rowcount != 1:
                return None
            if to_status == 'queued':
                _replace_locations(connection, image_id, ())
            elif 'locations' in values:
                _replace_locations(connection, image_id, values['locations'])
            if (from_status in ('uploading', 'importing')
                    and to_status in ('queued', 'active')):
                _set_property(connection, image_id, STAGE_HOST_PROPERTY,
                              None)
            if to_status == 'importing':
                _stores_begin(connection, image_id, stores)
            elif from_status == 'importing':
                _stores_end(connection, image_id)
            return _load(connection, image_id)

    @_retried
    def finish_stage(self, image_id: str, holder: str, size: int,
                     stage_host: str) -> typing.Optional[Record]:
        """Record a finished stage of ``holder``; the image stays uploading.

        Sets ``size`` and :data:`STAGE_HOST_PROPERTY` and releases the hold
        (a staged image is never stale), by compare-and-set on the status
        ``uploading`` and the holder.

        :returns: the new record, or None when ``holder`` no longer holds
            the image (recovered, deleted).
        """
        images = models.images
        with self._transaction(write=True) as connection:
            result = connection.execute(
                images.update()
                .where(images.c.id == image_id,
                       images.c.status == 'uploading',
                       images.c.holder == holder)
                .values(size=size, updated_at=utcnow(),
                        **_holder_columns(None, None)))
            if result.rowcount != 1:
                return None
            _set_property(connection, image_id, STAGE_HOST_PROPERTY,
                          stage_host)
            return _load(connection, image_id)

    @_retried
    def heartbeat(self, image_id: str, holder: str) -> bool:
        """Refresh ``holder``'s hold on an upload in progress.

        :returns: False when the image is no longer held by ``holder``
            (recovered, deleted): the upload should stop.
        """
        images = models.images
        with self._transaction(write=True) as connection:
            result = connection.execute(
                images.update()
                .where(images.c.id == image_id, images.c.holder == holder,
                       images.c.status.in_(IN_PROGRESS))
                .values(heartbeat_at=utcnow()))
            return result.rowcount == 1

    @_retried
    def delete(self, image_id: str) -> typing.Optional[Record]:
        """Mark the image deleted.

        :returns: the record as it was before, locations included, so the
            caller removes its data; None when unknown or already deleted.
        """
        images = models.images
        with self._transaction(write=True) as connection:
            record = _load(connection, image_id, for_update=True)
            if record is None or record['status'] == 'deleted':
                return None
            now = utcnow()
            connection.execute(
                images.update().where(images.c.id == image_id)
                .values(status='deleted', deleted_at=now, updated_at=now,
                        **_holder_columns(None, None)))
            return record

    # Crash recovery and the orphan sweep.

    def stale_uploads(self, *, older_than: datetime.timedelta,
                      holder_alive: typing.Optional[
                          typing.Callable[[str], bool]] = None
                      ) -> typing.List[Record]:
        """Uploads in progress that nobody streams any more.

        Images in ``saving``/``uploading``/``importing`` whose heartbeat is
        older than ``older_than``, or whose holder is dead
        (``holder_alive(holder)`` is False).
        """
        limit = utcnow() - older_than
        images = models.images
        with self._transaction() as connection:
            rows = connection.execute(
                sa.select(images).where(images.c.status.in_(IN_PROGRESS))
                .order_by(images.c.created_at, images.c.id)
            ).mappings().all()
            stale = [row for row in rows
                     if _is_stale(row, limit, holder_alive)]
            return _records(connection, stale)

    @_retried
    def requeue_stale(self, record: Record) -> typing.Optional[Record]:
        """Return a stale upload to ``queued``, unless it moved meanwhile.

        Compare-and-set on the status, holder and heartbeat of ``record``
        (from :meth:`stale_uploads`), so an upload whose holder proved
        alive since is left alone.

        :returns: the new record, or None when the image moved.
        """
        _check_transition(record['status'], 'queued', {})
        images = models.images
        now = utcnow()
        with self._transaction(write=True) as connection:
            result = connection.execute(
                images.update()
                .where(images.c.id == record['id'],
                       images.c.status == record['status'],
                       _equals(images.c.holder, record['holder']),
                       _equals(images.c.heartbeat_at,
                               record['heartbeat_at']))
                .values(status='queued', updated_at=now,
                        **_status_columns('queued', now, None)))
            if result.rowcount != 1:
                return None
            _replace_locations(connection, record['id'], ())
            if record['status'] == 'importing':
                _stores_end(connection, record['id'])
            if record['holder']:
                # The upload is over: so is its quota reservation.
                quota_reservations.release_held(
                    connection, record['holder'], record['id'])
            return _load(connection, record['id'])

    def recover_stale(self, older_than: datetime.timedelta =
                      DEFAULT_STALE_AFTER,
                      holder_alive: typing.Optional[
                          typing.Callable[[str], bool]] = holder_is_alive
                      ) -> typing.List[Record]:
        """Return every stale upload to ``queued``.

        :returns: the records as they were (status, holder), one for each
            image reset, so the caller removes their partial data.
        """
        recovered = []
        for record in self.stale_uploads(older_than=older_than,
                                         holder_alive=holder_alive):
            if self.requeue_stale(record) is not None:
                LOG.warning('Image %s was %s by %s, heartbeat %s: back to '
                            'queued', record['id'], record['status'],
                            record['holder'], record['heartbeat_at'])
                recovered.append(record)
        if holder_alive is not None:
            self.release_dead_reservations(holder_alive)
        return recovered

    # Block digests.

    def block_digests(self, image_id: str
                      ) -> typing.Dict[str, hashing.BlockDigests]:
        """The block digests of the image's locations, by location URL.

        Locations recorded without any are left out.
        """
        with self._transaction() as connection:
            return _block_digests(connection, image_id)

    def locations_without_blocks(self, limit: int,
                                 after: typing.Optional[
                                     typing.Tuple[str, int]] = None
                                 ) -> typing.List[Record]:
        """Locations without block digests, at most ``limit``.

        Those of ``active`` and ``deactivated`` images, in (image id,
        position) order.

        Each is a dict of ``image_id``, ``position``, ``store``, ``url``,
        ``size``, ``checksum``, ``os_hash_algo`` and ``os_hash_value``.

        :param after: the ``(image_id, position)`` to continue after.
        """
        images = models.images
        table = models.image_locations
        query = (
            sa.select(table.c.image_id, table.c.position, table.c.store,
                      table.c.url, images.c.size, images.c.checksum,
                      images.c.os_hash_algo, images.c.os_hash_value)
            .join(images, images.c.id == table.c.image_id)
            .where(images.c.status.in_(('active', 'deactivated')),
                   table.c.block_digests.is_(None))
            .order_by(table.c.image_id, table.c.position).limit(limit))
        if after is not None:
            query = query.where(sa.tuple_(table.c.image_id, table.c.position)
                                > sa.tuple_(*after))
        with self._transaction() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    @_retried
    def set_block_digests(self, image_id: str, url: str, checksum: str,
                          blocks: hashing.BlockDigests) -> bool:
        """Record ``blocks`` for the location ``url`` of an image.

        Only while the image is still ``active`` or ``deactivated`` with
        the ``checksum`` its data was checked against, and the location
        has none: False otherwise (the image changed meanwhile).
        """
        images = models.images
        table = models.image_locations
        current = (sa.select(images.c.id)
                   .where(images.c.id == image_id,
                          images.c.checksum == checksum,
                          images.c.status.in_(('active', 'deactivated')))
                   .scalar_subquery())
        with self._transaction(write=True) as connection:
            result = connection.execute(
                table.update()
                .where(table.c.image_id == current, table.c.url == url,
                       table.c.block_digests.is_(None))
                .values(_block_columns(blocks)))
            return result.rowcount > 0

    @_retried
    def release_dead_reservations(
            self, holder_alive: typing.Callable[[str], bool]) -> int:
        """Release the quota reservations of every holder declared dead.

        :returns: how many were released.
        """
        released = 0
        with self._transaction(write=True) as connection:
            for holder in quota_reservations.holders(connection):
                if not holder_alive(holder):
                    count = quota_reservations.release_held(connection,
                                                            holder)
                    LOG.warning('Released %d quota reservation(s) of %s, '
                                'which no longer runs', count, holder)
                    released += count
        return released

    def all_locations(self) -> typing.Set[typing.Tuple[str, str]]:
        """``(store, url)`` of every image not deleted."""
        images = models.images
        locations = models.image_locations
        with self._transaction() as connection:
            rows = connection.execute(
                sa.select(locations.c.store, locations.c.url)
                .join(images, images.c.id == locations.c.image_id)
                .where(images.c.status != 'deleted'))
            return {(row.store, row.url) for row in rows}


# Query helpers.

def merge_stores(listed: typing.Optional[str],
                 added: typing.Iterable[str] = (),
                 removed: typing.Iterable[str] = ()) -> str:
    """A comma-separated store list with stores added and removed.

    Sorted, without duplicates nor empty names, as Glance writes
    :data:`IMPORTING_PROPERTY` and :data:`FAILED_PROPERTY`.
    """
    stores = {store for store in (listed or '').split(',') if store}
    stores |= set(added)
    stores -= set(removed)
    return ','.join(sorted(stores))


# The stores of an import or a copy: the one place that writes
# IMPORTING_PROPERTY and FAILED_PROPERTY (see the module).

_PROPERTIES_OF_ONE = (
    sa.select(models.image_properties.c.name,
              models.image_properties.c.value)
    .where(models.image_properties.c.image_id
           == sa.bindparam('image_id')))


def _properties(connection, image_id: str) -> typing.Dict[str, str]:
    return {name: value for name, value in connection.execute(
        _PROPERTIES_OF_ONE, {'image_id': image_id})}


def _stores_begin(connection, image_id: str,
                  store_ids: typing.Iterable[str],
                  cleared: typing.Iterable[str] = (),
                  properties: typing.Optional[typing.Mapping] = None
                  ) -> None:
    """An import or a copy into ``store_ids`` begins.

    They join :data:`IMPORTING_PROPERTY` and leave
    :data:`FAILED_PROPERTY` (both written, as Glance, even when empty);
    ``cleared`` (an abandoned copy's stores) leave both.
    """
    if properties is None:
        properties = _properties(connection, image_id)
    store_ids, cleared = list(store_ids), list(cleared)
    _set_property(connection, image_id, IMPORTING_PROPERTY,
                  merge_stores(properties.get(IMPORTING_PROPERTY),
                               store_ids, cleared))
    _set_property(connection, image_id, FAILED_PROPERTY,
                  merge_stores(properties.get(FAILED_PROPERTY), (),
                               store_ids + cleared))


def _store_over(connection, image_id: str, store_id: str,
                location: typing.Optional[typing.Mapping],
                properties: typing.Mapping) -> None:
    """One store is over: its ``location`` recorded, or it failed.

    With ``location`` (``{'store', 'url', 'blocks'}``) it is added after
    the image's others; without it the store joins
    :data:`FAILED_PROPERTY`. Either way it leaves
    :data:`IMPORTING_PROPERTY`, in the same transaction.
    """
    if location is not None:
        table = models.image_locations
        last = connection.execute(
            sa.select(sa.func.max(table.c.position))
            .where(table.c.image_id == image_id)).scalar()
        connection.execute(table.insert().values(
            image_id=image_id, position=0 if last is None else last + 1,
            store=location['store'], url=location['url'],
            **_block_columns(location.get('blocks'))))
    else:
        _set_property(connection, image_id, FAILED_PROPERTY,
                      merge_stores(properties.get(FAILED_PROPERTY),
                                   [store_id]))
    _set_property(connection, image_id, IMPORTING_PROPERTY,
                  merge_stores(properties.get(IMPORTING_PROPERTY), (),
                               [store_id]))


def _stores_failed(connection, image_id: str, store_ids: typing.List[str],
                   properties: typing.Mapping) -> None:
    """``store_ids`` (a dead copy's) leave :data:`IMPORTING_PROPERTY`.

    They join :data:`FAILED_PROPERTY`, in the same transaction, as when
    a copy fails in them (:func:`_store_over`).
    """
    _set_property(connection, image_id, FAILED_PROPERTY,
                  merge_stores(properties.get(FAILED_PROPERTY), store_ids))
    _set_property(connection, image_id, IMPORTING_PROPERTY,
                  merge_stores(properties.get(IMPORTING_PROPERTY), (),
                               store_ids))


def _stores_end(connection, image_id: str,
                store_ids: typing.Optional[typing.Iterable[str]] = None,
                properties: typing.Optional[typing.Mapping] = None
                ) -> None:
    """``store_ids`` (None: every store) leave :data:`IMPORTING_PROPERTY`.

    Nothing is written when the image has no such property.
    """
    if properties is None:
        properties = _properties(connection, image_id)
    listed = properties.get(IMPORTING_PROPERTY)
    if listed is None:
        return
    _set_property(connection, image_id, IMPORTING_PROPERTY,
                  merge_stores(listed, (), listed.split(',')
                               if store_ids is None else store_ids))


def _check_fields(values: typing.Mapping, allowed: typing.AbstractSet[str]
                  ) -> None:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError('unknown field(s): %s' % ', '.join(unknown))


def _check_visibility(visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise ValueError('unknown visibility %r' % visibility)


def _check_transition(from_status: str, to_status: str,
                      values: typing.Mapping) -> None:
    if to_status not in TRANSITIONS.get(from_status, ()):
        raise InvalidTransition('no transition from %s to %s'
                                % (from_status, to_status))
    _check_fields(values, DATA_FIELDS)
    if to_status == 'queued' and values:
        raise ValueError('going to queued clears %s' % ', '.join(values))


def _columns(values: typing.Mapping) -> dict:
    return {key: value for key, value in values.items()
            if key not in ('tags', 'properties')}


def _holder_columns(holder: typing.Optional[str],
                    now: typing.Optional[datetime.datetime]) -> dict:
    return {'holder': holder, 'held_since': now, 'heartbeat_at': now}


def _status_columns(to_status: str, now: datetime.datetime,
                    holder: typing.Optional[str]) -> dict:
    if to_status in IN_PROGRESS:
        columns = _holder_columns(holder or holder_id(), now)
    else:
        columns = _holder_columns(None, None)
    if to_status == 'queued':
        columns.update(dict.fromkeys(_CLEARED_ON_QUEUED))
    elif to_status == 'deleted':
        columns['deleted_at'] = now
    return columns


def _equals(column, value):
    return column.is_(None) if value is None else column == value


def _is_stale(row, limit: datetime.datetime,
              holder_alive: typing.Optional[typing.Callable[[str], bool]]
              ) -> bool:
    if row['status'] == 'uploading' and row['holder'] is None:
        return False  # staged, waiting for its import
    if row['heartbeat_at'] is None or row['heartbeat_at'] < limit:
        return True
    return bool(holder_alive and row['holder']
                and not holder_alive(row['holder']))


def _access(project_id: typing.Optional[str], is_admin: bool):
    images = models.images
    if is_admin:
        return images.c.status != 'deleted'
    shown = images.c.visibility.in_(('public', 'community'))
    if project_id is not None:
        shown = sa.or_(images.c.owner == project_id, shown)
    return sa.and_(images.c.status != 'deleted', shown)


#: First pages of listings whose statements are kept (see _first_page).
FIRST_PAGES_KEPT = 256


def _first_page(project_id: typing.Optional[str], is_admin: bool,
                filters: typing.Mapping, order: typing.Sequence[tuple],
                limit: int):
    """The statement of a listing's first page, built once per listing.

    Clients list the same way again and again (a project's images, a
    dashboard's page), and building the statement costs more than running
    it: the last :data:`FIRST_PAGES_KEPT` are kept, keyed on every
    argument (values with their types, so that ``1`` and ``True`` stay
    apart). Arguments that cannot be a key are built each time.
    """
    try:
        key = (project_id, is_admin, _frozen(filters), tuple(order), limit)
        hash(key)
    except TypeError:
        return _page_statement(project_id, is_admin, filters, order, limit)
    return _kept_first_page(*key)


def _frozen(value):
    """``value`` as a hashable key that tells types apart."""
    if isinstance(value, typing.Mapping):
        return ('mapping', tuple(sorted(
            (key, _frozen(item)) for key, item in value.items())))
    if isinstance(value, (list, tuple)):
        return ('sequence', tuple(_frozen(item) for item in value))
    return (type(value), value)


def _thawed(key):
    """The value that :func:`_frozen` made ``key`` of (lists as tuples)."""
    kind, value = key
    if kind == 'mapping':
        return {name: _thawed(item) for name, item in value}
    if kind == 'sequence':
        return tuple(_thawed(item) for item in value)
    return value


@functools.lru_cache(maxsize=FIRST_PAGES_KEPT)
def _kept_first_page(project_id, is_admin, frozen_filters, order, limit):
    return _page_statement(project_id, is_admin, _thawed(frozen_filters),
                           order, limit)


def _page_statement(project_id: typing.Optional[str], is_admin: bool,
                    filters: typing.Mapping, order: typing.Sequence[tuple],
                    limit: int):
    return (sa.select(models.images)
            .where(_access(project_id, is_admin),
                   *_list_conditions(project_id, filters))
            .order_by(*_order(order)).limit(limit))


def _list_conditions(project_id: typing.Optional[str],
                     filters: typing.Mapping) -> list:
    images = models.images
    conditions = []
    visibility = filters.get('visibility')
    if visibility is None:
        conditions.append(sa.or_(images.c.visibility != 'community',
                                 _equals(images.c.owner, project_id)))
    elif visibility != 'all':
        conditions.append(images.c.visibility == visibility)
    hidden = filters.get('os_hidden', False)
    if hidden is not None:
        conditions.append(images.c.os_hidden == bool(hidden))
    for key in ('name', 'status', 'owner'):
        if filters.get(key) is not None:
            conditions.append(images.c[key] == filters[key])
    for column, operator, value in filters.get('conditions', ()):
        conditions.append(_compare(column, operator, value))
    tags = models.image_tags
    for tag in filters.get('tags', ()):
        conditions.append(sa.exists().where(tags.c.image_id == images.c.id,
                                            tags.c.value == tag))
    properties = models.image_properties
    for name, value in filters.get('properties', ()):
        conditions.append(sa.exists().where(
            properties.c.image_id == images.c.id,
            properties.c.name == name, properties.c.value == value))
    return conditions


def _compare(name: str, operator: str, value):
    """One condition of a listing's ``conditions``."""
    if name not in FILTER_COLUMNS:
        raise ValueError('unknown filter column %r' % name)
    column = models.images.c[name]
    if operator == 'in':
        return column.in_(list(value))
    comparisons = {'eq': column.__eq__, 'neq': column.__ne__,
                   'gt': column.__gt__, 'gte': column.__ge__,
                   'lt': column.__lt__, 'lte': column.__le__}
    if operator not in comparisons:
        raise ValueError('unknown filter operator %r' % operator)
    return comparisons[operator](value)


def _sorting(sort_key, sort_dir) -> typing.List[typing.Tuple[str, str]]:
    """``[(key, direction), ...]`` of :meth:`Registry.list`'s arguments."""
    keys = [sort_key] if isinstance(sort_key, str) else list(sort_key)
    dirs = [sort_dir] if isinstance(sort_dir, str) else list(sort_dir)
    if not keys:
        keys = ['created_at']
    if len(dirs) == 1:
        dirs = dirs * len(keys)
    if len(dirs) != len(keys):
        raise ValueError('%d sort directions for %d sort keys'
                         % (len(dirs), len(keys)))
    for key, direction in zip(keys, dirs):
        if key not in SORT_KEYS:
            raise ValueError('unknown sort key %r' % key)
        if direction not in ('asc', 'desc'):
            raise ValueError('unknown sort direction %r' % direction)
    order = list(zip(keys, dirs))
    if 'id' in keys:
        # Unique: the keys after it never decide.
        return order[:keys.index('id') + 1]
    # The id breaks ties, in the direction of the last key.
    return order + [('id', dirs[-1])]


def _order(order: typing.Sequence[typing.Tuple[str, str]]) -> list:
    """ORDER BY with NULL as the smallest value on every database."""
    clauses = []
    for key, sort_dir in order:
        column = models.images.c[key]
        direction = sa.asc if sort_dir == 'asc' else sa.desc
        if column.nullable:
            clauses.append(direction(sa.case((column.is_(None), 0),
                                             else_=1)))
        clauses.append(direction(column))
    return clauses


def _beyond(column, value, sort_dir: str):
    """Rows strictly after ``value`` in one key's order (NULL smallest)."""
    if sort_dir == 'asc':
        if value is None:
            return column.is_not(None)
        return column > value
    if value is None:
        return sa.false()
    return sa.or_(column < value, column.is_(None))


def _after(marker, order: typing.Sequence[typing.Tuple[str, str]]):
    """Rows after ``marker`` in the order of :func:`_order`.

    Lexicographic over the keys: beyond on the first key, or equal on it
    and after on the rest.
    """
    condition = sa.false()
    for key, sort_dir in reversed(order):
        column = models.images.c[key]
        value = marker[key]
        condition = sa.or_(_beyond(column, value, sort_dir),
                           sa.and_(_equals(column, value), condition))
    return condition


def _touch(connection, image_id: str) -> bool:
    """Set ``updated_at`` of an image not deleted; False when none.

    The row stays locked to the end of the transaction.
    """
    images = models.images
    result = connection.execute(
        images.update()
        .where(images.c.id == image_id, images.c.status != 'deleted')
        .values(updated_at=utcnow()))
    return result.rowcount == 1


def _replace_tags(connection, image_id: str,
                  tags: typing.Iterable[str]) -> None:
    table = models.image_tags
    connection.execute(table.delete().where(table.c.image_id == image_id))
    unique = sorted(set(tags))
    if unique:
        connection.execute(table.insert(), [
            {'image_id': image_id, 'value': tag} for tag in unique])


def _replace_properties(connection, image_id: str,
                        properties: typing.Mapping[str, str]) -> None:
    table = models.image_properties
    connection.execute(table.delete().where(table.c.image_id == image_id))
    if properties:
        connection.execute(table.insert(), [
            {'image_id': image_id, 'name': name, 'value': value}
            for name, value in properties.items()])


def _set_property(connection, image_id: str, name: str,
                  value: typing.Optional[str]) -> None:
    """Set one property (None removes it), leaving the others alone."""
    table = models.image_properties
    connection.execute(table.delete().where(table.c.image_id == image_id,
                                            table.c.name == name))
    if value is not None:
        connection.execute(table.insert().values(
            image_id=image_id, name=name, value=value))


def _replace_locations(connection, image_id: str,
                       locations: typing.Iterable[typing.Mapping]) -> None:
    table = models.image_locations
    connection.execute(table.delete().where(table.c.image_id == image_id))
    rows = [{'image_id': image_id, 'position': position,
             'store': location['store'], 'url': location['url'],
             **_block_columns(location.get('blocks'))}
            for position, location in enumerate(locations)]
    if rows:
        connection.execute(table.insert(), rows)


def _block_columns(blocks: typing.Optional[hashing.BlockDigests]
                   ) -> typing.Dict[str, typing.Any]:
    if blocks is None:
        return {'block_algorithm': None, 'block_size': None,
                'block_digests': None}
    return {'block_algorithm': blocks.algorithm,
            'block_size': blocks.block_size,
            'block_digests': blocks.digests}


# The statements of every read, built once (building a statement costs
# more than SQLAlchemy's cached compilation of it).
_IMAGE_BY_ID = sa.select(models.images).where(
    models.images.c.id == sa.bindparam('image_id'))
_IMAGE_BY_ID_FOR_UPDATE = _IMAGE_BY_ID.with_for_update()
_IDS = sa.bindparam('ids', expanding=True)

#: The ``kind`` of a row of :func:`_children_of`.
_TAG, _PROPERTY, _LOCATION = 0, 1, 2


def _children_of(matches) -> sa.CompoundSelect:
    """One statement for the tags, properties and locations of images.

    Rows ``(image_id, kind, position, a, b)``: a tag is ``(_TAG, 0,
    value, NULL)``, a property ``(_PROPERTY, 0, name, value)``, a location
    ``(_LOCATION, position, store, url)``; tags in their value's order and
    locations in their position's, as each table was read alone before.
    One statement instead of three: SQLAlchemy's work for each one costs
    more than the database's.

    :param matches: ``matches(table)``, the condition on the table's
        ``image_id``.
    """
    tags = models.image_tags
    properties = models.image_properties
    locations = models.image_locations

    def constant(value: int):
        return sa.literal_column(str(value), sa.Integer)

    children = sa.union_all(
        sa.select(tags.c.image_id, constant(_TAG).label('kind'),
                  constant(0).label('position'), tags.c.value.label('a'),
                  sa.null().label('b'))
        .where(matches(tags)),
        sa.select(properties.c.image_id, constant(_PROPERTY), constant(0),
                  properties.c.name, properties.c.value)
        .where(matches(properties)),
        sa.select(locations.c.image_id, constant(_LOCATION),
                  locations.c.position, locations.c.store, locations.c.url)
        .where(matches(locations)))
    columns = children.selected_columns
    return children.order_by(columns.kind, columns.position, columns.a)


_CHILDREN_OF_ONE = _children_of(
    lambda table: table.c.image_id == sa.bindparam('image_id'))
_CHILDREN_OF = _children_of(lambda table: table.c.image_id.in_(_IDS))
_BLOCK_DIGESTS_OF = (
    sa.select(models.image_locations.c.url,
              models.image_locations.c.block_algorithm,
              models.image_locations.c.block_size,
              models.image_locations.c.block_digests)
    .where(models.image_locations.c.image_id == sa.bindparam('image_id'),
           models.image_locations.c.block_digests.is_not(None)))


def _block_digests(connection, image_id: str
                   ) -> typing.Dict[str, hashing.BlockDigests]:
    rows = connection.execute(_BLOCK_DIGESTS_OF, {'image_id': image_id})
    return {row.url: hashing.BlockDigests(
        row.block_algorithm, row.block_size, bytes(row.block_digests))
        for row in rows}


def _load(connection, image_id: str,
          for_update: bool = False) -> typing.Optional[Record]:
    query = _IMAGE_BY_ID_FOR_UPDATE if for_update else _IMAGE_BY_ID
    row = connection.execute(query, {'image_id': image_id}).mappings().first()
    if row is None:
        return None
    return _records(connection, [row])[0]


def _records(connection, rows) -> typing.List[Record]:
    """Records of ``rows``, with their tags, properties and locations."""
    records = {row['id']: dict(row, tags=[], properties={}, locations=[])
               for row in rows}
    if not records:
        return []
    if len(records) == 1:
        children = connection.execute(_CHILDREN_OF_ONE,
                                      {'image_id': next(iter(records))})
    else:
        children = connection.execute(_CHILDREN_OF, {'ids': list(records)})
    for image_id, kind, _position, first, second in children:
        record = records[image_id]
        if kind == _TAG:
            record['tags'].append(first)
        elif kind == _PROPERTY:
            record['properties'][first] = second
        else:
            record['locations'].append({'store': first, 'url': second})
    return [records[row['id']] for row in rows]
