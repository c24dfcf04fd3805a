"""Tests of imgmw.db: engines shared by the registry and the quota filter."""

import os
import threading

import fixtures
import sqlalchemy as sa
import testtools

from imgmw import db


class DefaultUrlTest(testtools.TestCase):

    def test_first_key_set_wins(self):
        conf = {'quota_connection': ' postgresql://q ',
                'database_connection': 'mysql://d'}
        self.assertEqual('postgresql://q', db.default_url(
            conf, 'quota_connection', 'database_connection'))
        self.assertEqual('mysql://d', db.default_url(
            {'quota_connection': '', 'database_connection': 'mysql://d'},
            'quota_connection', 'database_connection'))

    def test_sqlite_in_the_state_dir_is_created(self):
        state = os.path.join(self.useFixture(fixtures.TempDir()).path, 's')
        url = db.default_url({'state_dir': state}, 'database_connection')
        self.assertEqual('sqlite:///%s/imgmw.sqlite' % state, url)
        self.assertTrue(os.path.isdir(state))


class SqliteEngineTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'x.db')
        self.engine = db.create_engine('sqlite:///%s' % path)
        self.addCleanup(self.engine.dispose)

    def test_wal_busy_timeout_and_foreign_keys(self):
        with self.engine.connect() as conn:
            self.assertEqual('wal', conn.exec_driver_sql(
                'PRAGMA journal_mode').scalar())
            self.assertEqual(db.SQLITE_BUSY_TIMEOUT * 1000,
                             conn.exec_driver_sql(
                                 'PRAGMA busy_timeout').scalar())
            self.assertEqual(1, conn.exec_driver_sql(
                'PRAGMA foreign_keys').scalar())

    def test_a_read_sees_one_snapshot_and_its_begin_is_the_drivers(self):
        with self.engine.begin() as conn:
            conn.exec_driver_sql('CREATE TABLE t (x INTEGER)')
        executed = []

        def seen(conn, cursor, statement, *args):
            executed.append(statement)
        sa.event.listen(self.engine, 'before_cursor_execute', seen)
        self.addCleanup(sa.event.remove, self.engine,
                        'before_cursor_execute', seen)
        with self.engine.connect() as reader, reader.begin():
            count = 'SELECT count(*) FROM t'
            self.assertEqual(0, reader.exec_driver_sql(count).scalar())
            with self.engine.connect() as writer:
                with db.for_writing(writer).begin():
                    writer.exec_driver_sql('INSERT INTO t VALUES (1)')
            self.assertEqual(0, reader.exec_driver_sql(count).scalar())
        self.assertNotIn('BEGIN', executed)
        self.assertIn('BEGIN IMMEDIATE', executed)
        with self.engine.connect() as reader, reader.begin():
            self.assertEqual(1, reader.exec_driver_sql(count).scalar())

    def test_a_failed_begin_is_sqlalchemys_error(self):
        with self.engine.connect() as conn:
            conn.connection.driver_connection.execute('BEGIN')
            self.assertRaises(sa.exc.OperationalError, conn.begin)

    def test_writers_queue_on_the_write_lock(self):
        """A writer holds the lock from BEGIN; a second one waits.

        It does not fail on a snapshot older than the first one's commit.
        """
        with self.engine.begin() as conn:
            conn.exec_driver_sql('CREATE TABLE t (n INTEGER)')
        entered = threading.Event()
        order = []

        def second_writer():
            with self.engine.connect() as conn:
                db.for_writing(conn)
                entered.set()
                with conn.begin():
                    order.append('second')
                    conn.exec_driver_sql('INSERT INTO t VALUES (2)')

        with self.engine.connect() as conn:
            db.for_writing(conn)
            with conn.begin():
                thread = threading.Thread(target=second_writer)
                thread.start()
                entered.wait(5)
                thread.join(0.3)
                self.assertTrue(thread.is_alive(),
                                'the second writer did not wait')
                order.append('first')
                conn.exec_driver_sql('INSERT INTO t VALUES (1)')
        thread.join(10)
        self.assertEqual(['first', 'second'], order)
        with self.engine.connect() as conn:
            self.assertEqual([1, 2], [row[0] for row in conn.execute(
                sa.text('SELECT n FROM t ORDER BY rowid'))])


class UnavailableTest(testtools.TestCase):

    def test_operational_error_is_unavailable(self):
        err = sa.exc.OperationalError('SELECT 1', {}, Exception('gone'))
        self.assertTrue(db.is_unavailable(err))

    def test_integrity_error_is_not(self):
        err = sa.exc.IntegrityError('INSERT', {}, Exception('dup'))
        self.assertFalse(db.is_unavailable(err))

    def test_unreachable_server(self):
        engine = db.create_engine(
            'postgresql+psycopg2://nobody@127.0.0.1:1/none')
        self.addCleanup(engine.dispose)
        try:
            with engine.connect():
                pass
        except sa.exc.DBAPIError as err:
            self.assertTrue(db.is_unavailable(err))
        else:
            self.fail('connected to a closed port')


class DeadlockTest(testtools.TestCase):

    def error(self, orig):
        return sa.exc.OperationalError('UPDATE', {}, orig)

    def test_mysql_deadlock_and_lock_wait_timeout(self):
        self.assertTrue(db.is_deadlock(self.error(Exception(1213, 'x'))))
        self.assertTrue(db.is_deadlock(self.error(Exception(1205, 'x'))))
        self.assertFalse(db.is_deadlock(self.error(Exception(2003, 'x'))))

    def test_postgresql_deadlock_and_serialization_failure(self):
        for code, expected in (('40P01', True), ('40001', True),
                               ('08006', False)):
            orig = Exception('x')
            orig.pgcode = code
            self.assertEqual(expected, db.is_deadlock(self.error(orig)))
