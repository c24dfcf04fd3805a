"""Tests of imgmw.filters.quota.migrations: the quota's own Alembic chain."""

import datetime

import sqlalchemy as sa
import testtools

from imgmw.app import registry
from imgmw.filters.quota import migrations
from imgmw.filters.quota import schema
from tests import dbfixture


class QuotaMigrationTests:

    KIND = None

    def setUp(self):
        super().setUp()
        self.database = self.useFixture(dbfixture.Database(self.KIND))
        self.engine = sa.create_engine(self.database.url,
                                       poolclass=sa.pool.NullPool)
        self.addCleanup(self.engine.dispose)

    def tables(self):
        return set(sa.inspect(self.engine).get_table_names())

    def current(self):
        with self.engine.connect() as connection:
            return migrations.current(connection)

    def test_an_empty_database_gets_the_tables_and_the_version(self):
        with self.engine.begin() as connection:
            migrations.upgrade(connection)
        self.assertEqual({schema.locks.name, schema.reservations.name,
                          migrations.VERSION_TABLE}, self.tables())
        self.assertEqual(migrations.HEAD, self.current())
        with self.engine.begin() as connection:
            migrations.upgrade(connection)
        self.assertEqual(migrations.HEAD, self.current())

    def test_head_is_what_alembic_finds(self):
        import alembic.script
        script = alembic.script.ScriptDirectory.from_config(
            migrations.alembic_config())
        self.assertEqual(migrations.HEAD, script.get_current_head())

    def test_the_tables_of_the_registry_0002_are_adopted_with_their_rows(self):
        # Earlier releases: the registry's chain alone, up to 0002.
        import alembic.command
        config = registry.alembic_config()
        with self.engine.begin() as connection:
            config.attributes['connection'] = connection
            alembic.command.upgrade(config, '0002')
        now = datetime.datetime(2026, 1, 1)
        with self.engine.begin() as connection:
            connection.execute(schema.reservations.insert().values(
                id='r1', project_id='p1', image_id='i1', kind=schema.UPLOAD,
                size=7, holder='h:1:1', created_at=now, expires_at=now))
        self.assertIsNone(self.current())
        # imgmw-manage db sync of this release.
        upgraded = registry.Registry(self.database.url)
        self.addCleanup(upgraded.dispose)
        upgraded.sync()
        self.assertEqual(migrations.HEAD, self.current())
        with self.engine.connect() as connection:
            self.assertEqual([7], list(connection.execute(
                sa.select(schema.reservations.c.size)).scalars()))


class TestQuotaMigrations(QuotaMigrationTests, testtools.TestCase):
    pass


class TestQuotaMigrationsMySQL(QuotaMigrationTests, testtools.TestCase):
    KIND = 'mysql'
