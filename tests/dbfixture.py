"""A fresh, empty registry database for each test.

``Database(kind)`` gives ``.url``; ``kind`` defaults to the environment
variable ``IMGMW_TEST_DATABASE``:

==============  ==============================================================
``sqlite``      (default) a file in a temporary directory
``postgresql``  ``CREATE DATABASE imgmw_test_<random>`` on 127.0.0.1:5432 as
                ``postgres`` (trust authentication); dropped at clean-up
``mysql``       the same on MySQL or MariaDB at 127.0.0.1:3306 as ``root``
                without a password, ``utf8mb4``
==============  ==============================================================

The servers are those of the developer machines and CI. One that does not
answer fails the test with a message saying which server to start: a test
that silently skips would hide a registry broken on that database.
"""

import os
import uuid

import fixtures
import sqlalchemy as sa

KINDS = ('sqlite', 'postgresql', 'mysql')

SERVERS = {
    'postgresql': 'postgresql+psycopg2://postgres@127.0.0.1:5432/',
    'mysql': 'mysql+pymysql://root@127.0.0.1:3306/',
}

URL_SUFFIX = {'postgresql': '', 'mysql': '?charset=utf8mb4'}


def default_kind() -> str:
    return os.environ.get('IMGMW_TEST_DATABASE') or 'sqlite'


class DatabaseUnreachable(AssertionError):
    """The test database server does not answer."""


class Database(fixtures.Fixture):
    """An empty database; see the module documentation."""

    def __init__(self, kind: str = None):
        super().__init__()
        self.kind = kind or default_kind()
        if self.kind not in KINDS:
            raise ValueError('IMGMW_TEST_DATABASE=%s: expected one of %s'
                             % (self.kind, ', '.join(KINDS)))
        self.url = None

    def _setUp(self) -> None:
        if self.kind == 'sqlite':
            tempdir = self.useFixture(fixtures.TempDir())
            self.url = 'sqlite:///%s' % os.path.join(tempdir.path,
                                                     'imgmw.sqlite')
            return
        name = 'imgmw_test_%s' % uuid.uuid4().hex[:12]
        server = sa.create_engine(SERVERS[self.kind],
                                  isolation_level='AUTOCOMMIT',
                                  poolclass=sa.pool.NullPool)
        self.addCleanup(server.dispose)
        self._execute(server, self._create(name))
        self.addCleanup(self._drop, server, name)
        self.url = SERVERS[self.kind] + name + URL_SUFFIX[self.kind]

    def _create(self, name: str) -> str:
        if self.kind == 'mysql':
            return 'CREATE DATABASE %s CHARACTER SET utf8mb4' % name
        return 'CREATE DATABASE %s' % name

    def _drop(self, server: sa.engine.Engine, name: str) -> None:
        if self.kind == 'postgresql':
            self._execute(
                server, 'SELECT pg_terminate_backend(pid) '
                'FROM pg_stat_activity WHERE datname = %r' % name)
        self._execute(server, 'DROP DATABASE IF EXISTS %s' % name)

    def _execute(self, server: sa.engine.Engine, statement: str) -> None:
        try:
            with server.connect() as connection:
                connection.exec_driver_sql(statement)
        except sa.exc.OperationalError as err:
            raise DatabaseUnreachable(
                'The %s test server %s does not answer (%s): start it, or '
                'set IMGMW_TEST_DATABASE=sqlite' % (
                    self.kind, server.url.render_as_string(), err.orig)
            ) from err
