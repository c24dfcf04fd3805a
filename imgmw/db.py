"""SQL engines as imgmw opens them, for the registry and the quota filter.

Both keep their rows in the database named by ``database_connection``
(SQLite in ``state_dir`` by default), and both need the same care: SQLite
in WAL mode whose writers queue on the write lock instead of failing, and
pooled connections to PostgreSQL or MySQL that survive a database restart.
This module holds that once; it knows nothing of the tables.

On SQLite every transaction is begun by this module: ``BEGIN IMMEDIATE``
for a writer (:func:`for_writing`), a plain ``BEGIN`` for a reader, sent
on the driver's connection directly (it takes no lock, and through
SQLAlchemy's execution it cost as much as a read's statement).
"""

import os
import typing

import sqlalchemy as sa


#: SQLite: how long a writer waits for another one, in seconds.
SQLITE_BUSY_TIMEOUT = 30

#: Other databases: connections older than this are replaced, in seconds.
POOL_RECYCLE = 3600

#: The execution option that marks a connection's transaction as a writer
#: (``BEGIN IMMEDIATE`` on SQLite). Set it with :func:`for_writing`.
WRITE_OPTION = 'imgmw_write'


def default_url(conf: typing.Mapping[str, typing.Any],
                *keys: str) -> str:
    """The first of ``keys`` set in ``conf``, else SQLite in ``state_dir``.

    ``state_dir`` (default ``./state``) is created when missing.
    """
    for key in keys:
        url = (conf.get(key) or '').strip()
        if url:
            return url
    state_dir = os.path.abspath(conf.get('state_dir') or 'state')
    os.makedirs(state_dir, exist_ok=True)
    return 'sqlite:///%s' % os.path.join(state_dir, 'imgmw.sqlite')


def create_engine(url: str,
                  isolation_level: typing.Optional[str] = None
                  ) -> sa.engine.Engine:
    """An engine for ``url``.

    :param isolation_level: for PostgreSQL and MySQL; SQLite transactions
        are serializable whatever is asked.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == 'sqlite':
        return _sqlite_engine(parsed)
    kwargs = {}
    if isolation_level is not None:
        kwargs['isolation_level'] = isolation_level
    return sa.create_engine(parsed, pool_pre_ping=True,
                            pool_recycle=POOL_RECYCLE, **kwargs)


def for_writing(connection: sa.engine.Connection) -> sa.engine.Connection:
    """Mark ``connection``'s next transaction as one that writes."""
    return connection.execution_options(**{WRITE_OPTION: True})


def is_deadlock(err: sa.exc.DBAPIError) -> bool:
    """A deadlock or serialization failure: the transaction may be run again.

    MySQL/MariaDB 1213 (deadlock) and 1205 (lock wait timeout),
    PostgreSQL 40P01 and 40001.
    """
    orig = err.orig
    if getattr(orig, 'pgcode', None) in ('40P01', '40001'):
        return True
    args = getattr(orig, 'args', ())
    return bool(args) and args[0] in (1205, 1213)


def is_unavailable(err: sa.exc.DBAPIError) -> bool:
    """Whether ``err`` says the database cannot be reached (not a bug)."""
    return (isinstance(err, (sa.exc.OperationalError,
                             sa.exc.InterfaceError))
            or err.connection_invalidated)


def _sqlite_engine(url: sa.engine.URL) -> sa.engine.Engine:
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, 'connect')
    def configure(dbapi_connection, connection_record):
        # Transactions are begun below, not by the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute('PRAGMA journal_mode=WAL')
            cursor.execute('PRAGMA busy_timeout=%d'
                           % (SQLITE_BUSY_TIMEOUT * 1000))
            cursor.execute('PRAGMA foreign_keys=ON')
        finally:
            cursor.close()

    @sa.event.listens_for(engine, 'begin')
    def begin(connection):
        # A writer takes the write lock first, so it waits (busy_timeout)
        # instead of failing when its snapshot is older than another
        # writer's commit.
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql('BEGIN IMMEDIATE')
        else:
            _begin_deferred(connection)

    return engine


def _begin_deferred(connection: sa.engine.Connection) -> None:
    """``BEGIN`` on the driver's connection itself.

    A deferred ``BEGIN`` takes no lock (the snapshot starts at the first
    read); sent through SQLAlchemy's execution, it cost as much as a read's
    statement. An error is raised as SQLAlchemy raises the driver's.
    """
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute('BEGIN')
    except dbapi.Error as err:
        raise sa.exc.DBAPIError.instance('BEGIN', (), err,
                                         dbapi.Error) from err
    finally:
        cursor.close()
