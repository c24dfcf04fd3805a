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

**Staged images.** A stage (``PUT .../stage``) streams as ``uploading``
with a holder; :meth:`Registry.finish_stage` then records the size and the
node holding the staged file (the hidden property
:data:`STAGE_HOST_PROPERTY`, as Glance's ``os_glance_stage_host``) and
releases the hold. An ``uploading`` image without a holder is staged and
waits for its import: it is never stale. Leaving ``uploading`` or
``importing`` for ``queued`` or ``active`` forgets the stage host.

**Errors.** A database that cannot be reached (connection refused, server
gone, SQLite file locked past the timeout or unreadable) raises
:class:`RegistryUnavailable`, which the app answers with 503 ``Image
registry is unavailable.`` (contract 3.22). A write transaction that
loses a deadlock (MySQL/MariaDB, PostgreSQL) is run again, up to
:data:`DEADLOCK_RETRIES` times, then answered as unavailable. Programming
errors (bad SQL, an unknown field) are never masked as unavailability.

A record is a plain ``dict`` (:data:`RECORD_KEYS`), times timezone-aware UTC.
"""

import contextlib
import datetime
import functools
import logging
import os
import socket
import typing
import uuid

import psutil
import sqlalchemy as sa

from imgmw.app import migrations
from imgmw.app import models
from imgmw import db
from imgmw import hashing

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

#: Fields a status change may set (:meth:`Registry.transition`).
DATA_FIELDS = frozenset(('size', 'virtual_size', 'checksum', 'os_hash_algo',
                         'os_hash_value', 'locations'))

_CLEARED_ON_QUEUED = ('size', 'virtual_size', 'checksum', 'os_hash_algo',
                      'os_hash_value')

SORT_KEYS = frozenset(('created_at', 'updated_at', 'id', 'name', 'status',
                       'visibility', 'size', 'virtual_size', 'disk_format',
                       'container_format', 'owner', 'min_ram', 'min_disk'))

LIST_FILTERS = frozenset(('name', 'status', 'visibility', 'os_hidden',
                          'owner'))

#: The hidden property naming the node whose staging area holds the data
#: of a staged image (Glance's name).
STAGE_HOST_PROPERTY = 'os_glance_stage_host'

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


# Holders: which process streams an image.

_own_holder: typing.Dict[int, str] = {}


def _start_time(process: psutil.Process) -> str:
    return '%.2f' % process.create_time()


def holder_id() -> str:
    """``<hostname>:<pid>:<process start time>`` of this process.

    The start time tells a recycled pid from the process that held an
    image. Computed again after a fork (gunicorn workers).
    """
    pid = os.getpid()
    if pid not in _own_holder:
        _own_holder.clear()
        _own_holder[pid] = '%s:%d:%s' % (
            socket.gethostname(), pid, _start_time(psutil.Process(pid)))
    return _own_holder[pid]


def holder_is_alive(holder: str) -> bool:
    """Whether the process ``holder`` names may still be streaming.

    False only when the holder is a process of this host that no longer
    runs (or whose pid now belongs to another process). A holder on another
    host, or one this function cannot read, is presumed alive: the heartbeat
    age decides for it.
    """
    host, _, rest = holder.partition(':')
    pid, _, started = rest.partition(':')
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        process = psutil.Process(int(pid))
        return (_start_time(process) == started
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


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
        if self._revision() == migrations.HEAD:
            return
        import alembic.command
        config = alembic_config()
        with self._transaction(write=True) as connection:
            config.attributes['connection'] = connection
            alembic.command.upgrade(config, 'head')

    def _revision(self) -> typing.Optional[str]:
        """The ``alembic_version`` row, read plainly; None if there is none.

        A database that cannot be read answers None too: the migration
        that follows then reports what is wrong.
        """
        try:
            with self._engine.connect() as connection:
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

    def list(self, *, project_id: typing.Optional[str], is_admin: bool,
             filters: typing.Mapping[str, typing.Any], limit: int,
             marker: typing.Optional[str], sort_key: str = 'created_at',
             sort_dir: str = 'desc') -> typing.List[Record]:
        """One page of the images the caller may see, as Glance lists them.

        A caller sees the images of ``project_id`` and the public and
        community ones (an admin sees all). As Glance, community images of
        other projects are listed only with the filter
        ``visibility=community``, and ``visibility=all`` lists every
        visible image. ``os_hidden`` defaults to False (hidden images are
        left out); None lists both. Deleted images are never listed.

        :param marker: id of the last image of the previous page.
        :raises MarkerNotFound: the marker is not a visible image.
        """
        _check_fields(filters, LIST_FILTERS)
        if sort_key not in SORT_KEYS:
            raise ValueError('unknown sort key %r' % sort_key)
        if sort_dir not in ('asc', 'desc'):
            raise ValueError('unknown sort direction %r' % sort_dir)
        images = models.images
        access = _access(project_id, is_admin)
        query = sa.select(images).where(
            access, *_list_conditions(project_id, filters))
        with self._transaction() as connection:
            if marker is not None:
                after = connection.execute(
                    sa.select(images).where(images.c.id == marker, access)
                ).mappings().first()
                if after is None:
                    raise MarkerNotFound(marker)
                query = query.where(_after(after, sort_key, sort_dir))
            query = query.order_by(*_order(sort_key, sort_dir)).limit(limit)
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
    def transition(self, image_id: str, from_status: str, to_status: str,
                   values: typing.Optional[typing.Mapping] = None,
                   holder: typing.Optional[str] = None
                   ) -> typing.Optional[Record]:
        """Compare-and-set the status from ``from_status`` to ``to_status``.

        ``values`` (:data:`DATA_FIELDS`) are set in the same statement;
        ``locations`` (a list of ``{'store', 'url'}``, each with its
        optional ``blocks``, a :class:`imgmw.hashing.BlockDigests`)
        replaces the old ones. Going to ``queued`` clears the size,
        checksums, locations and holder. Entering ``saving``,
        ``uploading`` or ``importing`` records ``holder`` (default:
        :func:`holder_id`) and starts its heartbeat; leaving them clears
        it.

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
        return recovered

    # Block digests.

    def block_digests(self, image_id: str
                      ) -> typing.Dict[str, hashing.BlockDigests]:
        """The block digests of the image's locations, by location URL.

        Locations recorded without any are left out.
        """
        table = models.image_locations
        with self._transaction() as connection:
            rows = connection.execute(
                sa.select(table.c.url, table.c.block_algorithm,
                          table.c.block_size, table.c.block_digests)
                .where(table.c.image_id == image_id,
                       table.c.block_digests.is_not(None)))
            return {row.url: hashing.BlockDigests(
                row.block_algorithm, row.block_size,
                bytes(row.block_digests)) for row in rows}

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
    return conditions


def _order(sort_key: str, sort_dir: str) -> list:
    """ORDER BY with NULL as the smallest value on every database."""
    column = models.images.c[sort_key]
    direction = sa.asc if sort_dir == 'asc' else sa.desc
    order = [direction(column), direction(models.images.c.id)]
    if column.nullable:
        order.insert(0, direction(sa.case((column.is_(None), 0), else_=1)))
    return order


def _after(marker, sort_key: str, sort_dir: str):
    """Rows after ``marker`` in the order of :func:`_order`."""
    column = models.images.c[sort_key]
    image_id = models.images.c.id
    value = marker[sort_key]
    if sort_dir == 'asc':
        if value is None:
            return sa.or_(column.is_not(None),
                          sa.and_(column.is_(None), image_id > marker['id']))
        return sa.or_(column > value,
                      sa.and_(column == value, image_id > marker['id']))
    if value is None:
        return sa.and_(column.is_(None), image_id < marker['id'])
    return sa.or_(column < value, column.is_(None),
                  sa.and_(column == value, image_id < marker['id']))


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
_TAGS_OF = (
    sa.select(models.image_tags.c.image_id, models.image_tags.c.value)
    .where(models.image_tags.c.image_id.in_(_IDS))
    .order_by(models.image_tags.c.image_id, models.image_tags.c.value))
_PROPERTIES_OF = (
    sa.select(models.image_properties.c.image_id,
              models.image_properties.c.name,
              models.image_properties.c.value)
    .where(models.image_properties.c.image_id.in_(_IDS)))
_LOCATIONS_OF = (
    sa.select(models.image_locations.c.image_id,
              models.image_locations.c.store, models.image_locations.c.url)
    .where(models.image_locations.c.image_id.in_(_IDS))
    .order_by(models.image_locations.c.image_id,
              models.image_locations.c.position))


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
    ids = {'ids': list(records)}
    for image_id, value in connection.execute(_TAGS_OF, ids):
        records[image_id]['tags'].append(value)
    for image_id, name, value in connection.execute(_PROPERTIES_OF, ids):
        records[image_id]['properties'][name] = value
    for image_id, store, url in connection.execute(_LOCATIONS_OF, ids):
        records[image_id]['locations'].append({'store': store, 'url': url})
    return [records[row['id']] for row in rows]
