"""Tests of imgmw.filters.quota.glance: usage read from Glance's tables."""

import os

import fixtures
import sqlalchemy as sa
import testtools

from imgmw import config
from imgmw.filters import quota as quota_filter
from imgmw.filters.quota import glance
from imgmw.filters.quota import limits
from imgmw.filters.quota import reservations
from imgmw.filters.quota import schema
from imgmw.filters.quota import usage

OWNER = 'p1'

# The columns of Glance's tables that its quota code reads, as Glance's
# migrations create them.
_metadata = sa.MetaData()
_images = sa.Table(
    'images', _metadata,
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('owner', sa.String(255)),
    sa.Column('status', sa.String(30), nullable=False),
    sa.Column('size', sa.BigInteger),
    sa.Column('deleted', sa.Boolean, nullable=False, default=False))
_locations = sa.Table(
    'image_locations', _metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('image_id', sa.String(36), nullable=False),
    sa.Column('value', sa.Text, nullable=False),
    sa.Column('deleted', sa.Boolean, nullable=False, default=False),
    sa.Column('status', sa.String(30), nullable=False, default='active'))
_properties = sa.Table(
    'image_properties', _metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('image_id', sa.String(36), nullable=False),
    sa.Column('name', sa.String(255), nullable=False),
    sa.Column('value', sa.Text),
    sa.Column('deleted', sa.Boolean, nullable=False, default=False))


class GlanceDatabase(fixtures.Fixture):
    """A SQLite file with Glance's three tables."""

    def _setUp(self):
        path = self.useFixture(fixtures.TempDir()).path
        self.url = 'sqlite:///%s' % os.path.join(path, 'glance.sqlite')
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)
        _metadata.create_all(self.engine)
        self.count = 0

    def image(self, status, size, owner=OWNER, locations=('active',),
              properties=None):
        self.count += 1
        image_id = 'image-%d' % self.count
        with self.engine.begin() as connection:
            connection.execute(_images.insert().values(
                id=image_id, owner=owner, status=status, size=size))
            for location_status in locations:
                connection.execute(_locations.insert().values(
                    image_id=image_id, value='file:///x',
                    status=location_status,
                    deleted=location_status == 'deleted'))
            for name, value in (properties or {}).items():
                connection.execute(_properties.insert().values(
                    image_id=image_id, name=name, value=value))
        return image_id


class TestGlanceUsage(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(GlanceDatabase())
        self.usage = glance.GlanceUsage(self.db.url)
        self.addCleanup(self.usage.dispose)

    def test_empty_project_uses_nothing(self):
        self.assertEqual(0, self.usage.recorded(OWNER).stored_bytes)
        self.assertEqual(0, self.usage.recorded(OWNER).staged_bytes)
        self.assertEqual(0, self.usage.recorded(OWNER).busy_images)

    def test_stored_bytes_count_images_with_data_per_live_location(self):
        self.db.image('active', 100)
        self.db.image('deactivated', 10)
        self.db.image('active', 1000, locations=('active', 'active'))
        self.db.image('active', 7, locations=('active', 'deleted'))
        self.assertEqual(100 + 10 + 2000 + 7,
                         self.usage.recorded(OWNER).stored_bytes)

    def test_stored_bytes_skip_gone_empty_and_foreign_images(self):
        self.db.image('killed', 100)
        self.db.image('deleted', 100)
        self.db.image('pending_delete', 100)
        self.db.image('queued', None, locations=())
        self.db.image('active', 0)
        self.db.image('active', 100, owner='p2')
        self.db.image('active', 100, locations=())
        self.assertEqual(0, self.usage.recorded(OWNER).stored_bytes)

    def test_excluded_images_are_not_counted(self):
        kept = self.db.image('active', 5)
        left_out = self.db.image('active', 7)
        staged = self.db.image('uploading', 11, locations=())
        importing = self.db.image('importing', 13, locations=())
        self.assertEqual(glance.usage.RecordedUsage(12, 24, 1),
                         self.usage.recorded(OWNER))
        self.assertEqual(glance.usage.RecordedUsage(5, 0, 0),
                         self.usage.recorded(OWNER, frozenset(
                             (left_out, staged, importing))))
        self.assertNotIn(kept, (left_out, staged))

    def test_staged_bytes_count_staged_importing_and_copying(self):
        self.db.image('uploading', 5, locations=())
        self.db.image('importing', 7, locations=())
        self.db.image('active', 11, properties={
            glance.COPYING_PROPERTY: 'fast'})
        self.db.image('active', 13, properties={
            glance.COPYING_PROPERTY: ''})
        self.assertEqual(5 + 7 + 11, self.usage.recorded(OWNER).staged_bytes)

    def test_busy_images_are_importing_and_copying_not_uploads(self):
        # Uploads (saving) and stages (uploading) hold reservations.
        self.db.image('saving', None, locations=())
        self.db.image('uploading', 5, locations=())
        self.db.image('importing', 7, locations=())
        self.db.image('active', 11, properties={
            glance.COPYING_PROPERTY: 'fast'})
        self.db.image('deleted', 11, properties={
            glance.COPYING_PROPERTY: 'fast'})
        self.assertEqual(2, self.usage.recorded(OWNER).busy_images)


class TestReservationsWithGlanceUsage(testtools.TestCase):
    """The reservation store over a database of its own (contract 3.13)."""

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(GlanceDatabase())
        path = self.useFixture(fixtures.TempDir()).path
        self.quota_url = 'sqlite:///%s' % os.path.join(path, 'quota.sqlite')
        self.store = reservations.ReservationStore(
            self.quota_url, glance.GlanceUsage(self.db.url),
            create_schema=True)
        self.addCleanup(self.store.dispose)

    def test_tables_created_at_first_use(self):
        self.assertEqual(0, self.store.usage(OWNER).image_size_total)
        self.assertTrue(schema.exists(self.store.engine))

    def test_first_use_by_many_threads_migrates_once(self):
        """Alembic's context is global: one thread migrates."""
        import threading
        store = reservations.ReservationStore(
            'sqlite:///%s' % os.path.join(
                self.useFixture(fixtures.TempDir()).path, 'q.sqlite'),
            glance.GlanceUsage(self.db.url), create_schema=True)
        self.addCleanup(store.dispose)
        barrier = threading.Barrier(6)
        failures = []

        def first_use():
            barrier.wait()
            try:
                store.usage(OWNER)
            except Exception as err:
                failures.append(err)
        threads = [threading.Thread(target=first_use) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual([], failures)

    def test_creation_is_idempotent(self):
        self.store.usage(OWNER)
        other = reservations.ReservationStore(
            self.quota_url, glance.GlanceUsage(self.db.url),
            create_schema=True)
        self.addCleanup(other.dispose)
        self.assertEqual(0, other.usage(OWNER).image_count_uploading)

    def test_glance_images_and_reservations_add_up(self):
        self.db.image('active', 600)
        project_limits = limits.ProjectLimits(image_size_total=1000)
        first = reservations.Reservation(OWNER, 'new-1')
        self.assertEqual(300, self.store.reserve(first, 300, 300,
                                                 project_limits))
        second = reservations.Reservation(OWNER, 'new-2')
        over = self.assertRaises(
            reservations.OverLimit, self.store.reserve, second, 101, 101,
            project_limits)
        self.assertEqual(900, over.usage)
        self.assertEqual(100, over.remaining)


class TestUsageSourceOption(testtools.TestCase):

    def test_glance_needs_glance_connection(self):
        err = self.assertRaises(config.ConfigError, usage.load, 'glance',
                                {'glance_connection': None})
        self.assertIn('glance_connection', str(err))

    def test_imgmw_is_the_registry_of_the_app(self):
        provider = usage.load('imgmw', {
            'database_connection': 'postgresql://registry'})
        self.assertEqual('imgmw', provider.name)
        self.assertEqual('postgresql://registry', provider.url)

    def test_filter_factory_builds_glance_usage(self):
        db = self.useFixture(GlanceDatabase())
        path = self.useFixture(fixtures.TempDir()).path
        quota_url = 'sqlite:///%s' % os.path.join(path, 'quota.sqlite')
        middleware = quota_filter.filter_factory(
            {}, usage_source='glance', glance_connection=db.url,
            quota_connection=quota_url)(lambda environ, start: [])
        self.addCleanup(middleware.store.dispose)
        self.assertIsInstance(middleware.store.usage_source,
                              glance.GlanceUsage)
        self.assertEqual(db.url, middleware.store.usage_source.url)
        self.assertTrue(middleware.store.create_schema)
