"""Reservations of uploads in progress, shared by every API node via SQL.

A reservation is a row of ``quota_reservations``
(:mod:`imgmw.filters.quota.schema`) in the registry's database. Every
decision that grants bytes or an upload slot to a project is one
transaction of :meth:`ReservationStore.reserve`:

1. lock the project: insert its ``quota_locks`` row if absent, then
   ``SELECT ... FOR UPDATE`` it (PostgreSQL, MySQL/MariaDB); SQLite
   serializes every writer with ``BEGIN IMMEDIATE``;
2. delete the project's expired reservations;
3. compute its usage: what the usage source reads from the image records
   (a :class:`imgmw.filters.quota.usage.UsageProvider`, reading on a connection
   of its own), plus its live reservations but this one;
4. refuse (:class:`OverLimit`) when ``usage + delta > limit``, else insert
   or grow this reservation and push its expiry ``ttl`` seconds ahead;
5. commit, which releases the lock.

Two nodes deciding for one project therefore decide one after the other,
each seeing what the other granted. Reservations end with their request
(:meth:`ReservationStore.release`); a process that dies leaves its rows to
expire after ``ttl`` seconds unless refreshed (:meth:`ReservationStore.
refresh`). Nodes' clocks must agree to well within ``ttl`` (NTP).

Images change status outside this lock, but only in the safe direction: an
upload's bytes are recorded (``active``) before its reservation is
released, never after. While its reservation lives, the image counts by
its reservation alone (the usage provider leaves out the images that have
one), so a project is charged once for it, never zero times.
"""

import contextlib
import dataclasses
import datetime
import logging
import threading
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from imgmw import db
from imgmw.filters.quota import limits as limits_mod
from imgmw.filters.quota import migrations
from imgmw.filters.quota import resources
from imgmw.filters.quota import schema
from imgmw.filters.quota import usage as usage_mod
from imgmw import holders as holders_mod


LOG = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The quota database cannot be reached; the filter answers 503."""


class OverLimit(Exception):
    """A reservation would take ``resource`` over its limit.

    ``usage`` excludes the refused request, ``requested`` is what it
    asked (bytes, or 1 upload); ``limit`` is in the same unit.
    """

    def __init__(self, project_id: str, resource: str, limit: int,
                 usage: int, requested: int):
        super().__init__('project %s: %s over limit of %d due to usage %d '
                         'and delta %d' % (project_id, resource, limit,
                                           usage, requested))
        self.project_id = project_id
        self.resource = resource
        self.limit = limit
        self.usage = usage
        self.requested = requested

    @property
    def remaining(self) -> int:
        return max(self.limit - self.usage, 0)


@dataclasses.dataclass(frozen=True)
class Usage:
    """A project's usage: bytes stored, uploads in progress, bytes staged."""

    image_size_total: int = 0
    image_count_uploading: int = 0
    image_stage_total: int = 0

    def get(self, resource: str) -> int:
        return getattr(self, resource)


def utcnow() -> datetime.datetime:
    """Naive UTC, as the quota tables store times."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


# The engine.

def create_engine(url: str) -> sa.engine.Engine:
    """An engine for ``url``: SQLite as the registry opens it, else pooled.

    MySQL and MariaDB run the quota transactions in ``READ COMMITTED``, so
    that the usage read after taking the project's lock sees every commit
    made before it.
    """
    backend = sa.engine.make_url(url).get_backend_name()
    return db.create_engine(
        url, isolation_level=('READ COMMITTED'
                              if backend in ('mysql', 'mariadb') else None))


#: Transactions that lost a deadlock are retried this many times.
DEADLOCK_RETRIES = 3


def _insert_lock_row(dialect_name: str, project_id: str):
    """``INSERT`` of the project's lock row that does nothing if present."""
    if dialect_name == 'postgresql':
        return pg_dialect.insert(schema.locks).values(
            project_id=project_id).on_conflict_do_nothing()
    if dialect_name == 'sqlite':
        return sqlite_dialect.insert(schema.locks).values(
            project_id=project_id).on_conflict_do_nothing()
    if dialect_name in ('mysql', 'mariadb'):
        return mysql_dialect.insert(schema.locks).values(
            project_id=project_id).prefix_with('IGNORE')
    raise NotImplementedError('quota reservations do not support %s'
                              % dialect_name)


# Reservations.

@dataclasses.dataclass
class Reservation:
    """One upload's claim: its row id, project, image, kind and size."""

    project_id: str
    image_id: str
    kind: str = schema.UPLOAD
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    size: int = 0
    held: bool = False
    #: Whether its upload slot (``image_count_uploading``) was checked.
    counted: bool = False

    @property
    def resource(self) -> str:
        """The size resource this reservation counts against."""
        if self.kind == schema.STAGE:
            return resources.IMAGE_STAGE_TOTAL
        return resources.IMAGE_SIZE_TOTAL


#: Names the one reservation an image may have at a time (a claim).
CLAIM_NAMESPACE = uuid.UUID('5b0e3f3c-8d47-4f57-9a51-7f0d6e0c9a11')


def claim_id(image_id: str) -> str:
    """The reservation id of the claim on ``image_id``'s data."""
    return str(uuid.uuid5(CLAIM_NAMESPACE, image_id))


class ReservationStore:
    """Reservations in SQL; see the module documentation.

    :param url: SQLAlchemy URL of the registry's database.
    :param usage_source: the
        :class:`imgmw.filters.quota.usage.UsageProvider` of the records
        (none: nothing recorded, reservations only).
    :param ttl: seconds a reservation lives unless refreshed.
    :param clock: the time now, in UTC (tests pass their own).
    :param create_schema: create the quota tables at first use when
        absent: for a database of the quota's own (in front of Glance),
        which no migration of imgmw's registry manages.
    :param holder: the holder written in the rows, asked at each write;
        default :func:`imgmw.holders.holder_id` of the process that writes
        (a worker forked after the store was built writes its own), the
        holder the data app records and recovery declares dead.
    """

    def __init__(self, url: str,
                 usage_source: typing.Optional[
                     usage_mod.UsageProvider] = None,
                 ttl: int = 300,
                 clock: typing.Callable[[], datetime.datetime] = utcnow,
                 create_schema: bool = False,
                 holder: typing.Optional[typing.Callable[[], str]] = None):
        self.url = url
        self.create_schema = create_schema
        self.usage_source = usage_source
        self.ttl = datetime.timedelta(seconds=ttl)
        self.clock = clock
        self._holder = holder
        self._engine = None
        self._engine_lock = threading.Lock()
        self._lock_rows: typing.Set[str] = set()

    @property
    def holder(self) -> str:
        """The holder of the rows this process writes now."""
        if self._holder is not None:
            return self._holder()
        return holders_mod.holder_id()

    @property
    def engine(self) -> sa.engine.Engine:
        # Made at first use, after the server forked its workers; by one
        # thread (Alembic's migration context is global to the process).
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    engine = create_engine(self.url)
                    if self.create_schema:
                        self._create_schema(engine)
                    self._engine = engine
        return self._engine

    @staticmethod
    def _create_schema(engine: sa.engine.Engine) -> None:
        """Migrate the quota tables (their own chain).

        Errors reach :meth:`_transaction`.
        """
        try:
            with engine.begin() as connection:
                migrations.upgrade(connection)
        except sa.exc.DBAPIError:
            # Another process may have migrated them meanwhile.
            with engine.connect() as connection:
                if migrations.current(connection) != migrations.HEAD:
                    raise

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self.usage_source is not None:
            self.usage_source.dispose()

    @contextlib.contextmanager
    def _transaction(self):
        try:
            with self.engine.connect() as connection:
                db.for_writing(connection)
                with connection.begin():
                    yield connection
        except sa.exc.DBAPIError as err:
            if db.is_deadlock(err):
                raise
            if db.is_unavailable(err):
                LOG.error('Quota database error: %s: %s',
                          type(err.orig).__name__, err.orig)
                raise StoreUnavailable(str(err.orig)) from err
            raise

    def _ensure_lock_row(self, project_id: str) -> None:
        """Create the project's lock row, in a transaction of its own.

        Inserting it in the locking transaction would let two first
        reservations of a project deadlock on MySQL. Rows are never
        deleted, so each process inserts each project's once.
        """
        if project_id in self._lock_rows:
            return
        with self._transaction() as connection:
            connection.execute(_insert_lock_row(connection.dialect.name,
                                                project_id))
        self._lock_rows.add(project_id)

    def _lock(self, connection, project_id: str) -> None:
        connection.execute(
            sa.select(schema.locks.c.project_id)
            .where(schema.locks.c.project_id == project_id)
            .with_for_update()).scalar_one()

    def _usage(self, connection, project_id: str, now: datetime.datetime,
               exclude: typing.Optional[str] = None) -> Usage:
        """Recorded usage plus live reservations (but ``exclude``).

        An image with a live reservation counts by its reservation alone,
        not in the records too: an upload's image is recorded with its
        data a moment before its reservation ends.
        """
        table = schema.reservations
        query = (sa.select(table.c.id, table.c.kind, table.c.size,
                           table.c.image_id)
                 .where(table.c.project_id == project_id,
                        table.c.expires_at > now))
        counts = {schema.UPLOAD: [0, 0], schema.STAGE: [0, 0]}
        reserved_images = set()
        for row in connection.execute(query):
            reserved_images.add(row.image_id)
            if row.id != exclude:
                counts[row.kind][0] += 1
                counts[row.kind][1] += int(row.size)
        recorded = usage_mod.RecordedUsage()
        if self.usage_source is not None:
            recorded = self.usage_source.recorded(
                project_id, frozenset(reserved_images))
        return Usage(
            image_size_total=(recorded.stored_bytes
                              + counts[schema.UPLOAD][1]),
            image_count_uploading=(recorded.busy_images
                                   + counts[schema.UPLOAD][0]
                                   + counts[schema.STAGE][0]),
            image_stage_total=(recorded.staged_bytes
                               + counts[schema.STAGE][1]))

    def usage(self, project_id: str) -> Usage:
        """The project's usage, live reservations included."""
        with self._transaction() as connection:
            return self._usage(connection, project_id, self.clock())

    def reserve(self, reservation: Reservation, minimum: int, wanted: int,
                project_limits: limits_mod.ProjectLimits) -> int:
        """Grow ``reservation`` to ``minimum`` bytes or more, or refuse.

        It gets ``wanted`` bytes far from the limit, else ``minimum`` (see
        :func:`_granted`), and takes an upload slot if it holds none.

        :returns: the bytes now reserved (also ``reservation.size``).
        :raises OverLimit: ``minimum`` bytes, or one more upload, would
            breach a limit. The reservation ends in the same transaction:
            its upload fails, and what it held is at once free for the
            uploads that go on (otherwise uploads that grow together could
            all be refused, each for what the others hold).
        :raises StoreUnavailable: the database cannot be reached.
        """
        self._ensure_lock_row(reservation.project_id)
        for attempt in range(DEADLOCK_RETRIES, -1, -1):
            try:
                return self._reserve(reservation, minimum, wanted,
                                     project_limits)
            except sa.exc.DBAPIError as err:
                if not attempt or not db.is_deadlock(err):
                    raise
                LOG.debug('Quota reservation deadlocked; retrying')

    def _reserve(self, reservation: Reservation, minimum: int, wanted: int,
                 project_limits: limits_mod.ProjectLimits) -> int:
        project = reservation.project_id
        resource = reservation.resource
        with self._transaction() as connection:
            now = self.clock()
            self._lock(connection, project)
            self._delete_expired(connection, project, now)
            alive = self._alive(connection, reservation, now)
            usage = self._usage(connection, project, now,
                                exclude=reservation.id)
            size_limit = project_limits.get(resource)
            used = usage.get(resource)
            try:
                if not (alive and reservation.counted):
                    _check(project, resources.IMAGE_COUNT_UPLOADING,
                           project_limits.image_count_uploading,
                           usage.image_count_uploading, 1)
                _check(project, resource, size_limit, used, minimum)
            except OverLimit as over:
                refused = over
                self._delete(connection, reservation)
            else:
                refused = None
                granted = _granted(minimum, wanted, size_limit, used,
                                   usage.image_count_uploading)
                self._write(connection, reservation, granted, now, alive)
        if refused is not None:
            reservation.held = False
            raise refused
        reservation.size = granted
        reservation.held = True
        reservation.counted = True
        return granted

    def claim(self, reservation: Reservation) -> bool:
        """Insert ``reservation`` (0 bytes) unless its id is live.

        With the id of :func:`claim_id`, one upload at a time per image:
        the second gets False. No limit is checked here; the first
        :meth:`reserve` checks them.

        :raises StoreUnavailable: the database cannot be reached.
        """
        table = schema.reservations
        now = self.clock()
        try:
            with self._transaction() as connection:
                connection.execute(table.delete().where(
                    table.c.id == reservation.id, table.c.expires_at <= now))
                self._write(connection, reservation, 0, now, alive=False,
                            replace=False)
        except sa.exc.IntegrityError:
            return False
        reservation.held = True
        return True

    def _alive(self, connection, reservation: Reservation,
               now: datetime.datetime) -> bool:
        if not reservation.held:
            return False
        table = schema.reservations
        found = connection.execute(
            sa.select(table.c.id).where(table.c.id == reservation.id,
                                        table.c.expires_at > now)).first()
        if found is None:
            LOG.warning('Reservation of image %s expired while its upload '
                        'went on; reserving again', reservation.image_id)
        return found is not None

    @staticmethod
    def _delete(connection, reservation: Reservation) -> None:
        table = schema.reservations
        connection.execute(table.delete().where(
            table.c.id == reservation.id))

    def _write(self, connection, reservation: Reservation, size: int,
               now: datetime.datetime, alive: bool,
               replace: bool = True) -> None:
        table = schema.reservations
        expires_at = now + self.ttl
        if alive:
            connection.execute(
                table.update().where(table.c.id == reservation.id)
                .values(size=size, expires_at=expires_at,
                        project_id=reservation.project_id))
            return
        if replace:
            connection.execute(table.delete().where(
                table.c.id == reservation.id))
        connection.execute(table.insert().values(
            id=reservation.id, project_id=reservation.project_id,
            image_id=reservation.image_id, kind=reservation.kind, size=size,
            holder=self.holder, created_at=now, expires_at=expires_at))

    def _delete_expired(self, connection, project_id: str,
                        now: datetime.datetime) -> None:
        table = schema.reservations
        result = connection.execute(table.delete().where(
            table.c.project_id == project_id, table.c.expires_at <= now))
        if result.rowcount:
            LOG.info('Deleted %d expired quota reservation(s) of project '
                     '%s', result.rowcount, project_id)

    def refresh(self, reservation: Reservation) -> bool:
        """Push the reservation's expiry ahead; False if it had expired."""
        table = schema.reservations
        now = self.clock()
        with self._transaction() as connection:
            result = connection.execute(
                table.update().where(table.c.id == reservation.id,
                                     table.c.expires_at > now)
                .values(expires_at=now + self.ttl))
        return result.rowcount == 1

    def release(self, reservation: Reservation) -> None:
        """End the reservation. Never raises: it would expire anyway."""
        if not reservation.held:
            return
        try:
            with self._transaction() as connection:
                self._delete(connection, reservation)
        except Exception:
            LOG.exception('Could not release the quota reservation of '
                          'image %s; it expires in %s', reservation.image_id,
                          self.ttl)
            return
        reservation.held = False


# Recovery (imgmw's registry calls these in its own transactions).

def holders(connection) -> typing.Set[str]:
    """The holders of every reservation, on the caller's ``connection``."""
    table = schema.reservations
    return set(connection.execute(
        sa.select(table.c.holder).distinct()).scalars())


def release_held(connection, holder: str,
                 image_id: typing.Optional[str] = None) -> int:
    """Delete the reservations ``holder`` holds (of ``image_id`` only).

    For recovery, which declared the holder dead, or its upload over.

    :returns: how many were deleted.
    """
    table = schema.reservations
    query = table.delete().where(table.c.holder == holder)
    if image_id is not None:
        query = query.where(table.c.image_id == image_id)
    return connection.execute(query).rowcount


def _granted(minimum: int, wanted: int, limit: typing.Optional[int],
             used: int, others: int) -> int:
    """Bytes to grant: ``wanted`` far from the limit, else ``minimum``.

    A step ahead (``wanted - minimum``) is granted only while the limit
    leaves room for it and for one step of each other upload in progress
    besides (``others``) and one more; nearer the limit a reservation
    grows by exactly what its body brought, so an upload never holds bytes
    that another one, which fits, needs. The quota is never handed out
    whole to one upload of unknown size.
    """
    step = max(wanted - minimum, 0)
    if limit is None:
        return minimum + step
    if limit - used - minimum >= step * (others + 2):
        return minimum + step
    return minimum


def _check(project_id: str, resource: str, limit: typing.Optional[int],
           usage: int, delta: int) -> None:
    """oslo.limit's rule: over when ``usage + delta > limit``."""
    if limit is not None and usage + delta > limit:
        raise OverLimit(project_id, resource, limit, usage, delta)
