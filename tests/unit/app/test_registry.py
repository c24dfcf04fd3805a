"""Tests of imgmw.app.registry on SQLite, PostgreSQL and MySQL/MariaDB.

``TestRegistry`` runs on the database of ``IMGMW_TEST_DATABASE`` (SQLite by
default); ``tests/integration/test_registry.py`` runs the same tests and
``ServerTests`` on the local servers (see ``tests/dbfixture.py``).
"""

import datetime
import socket
import subprocess
import sys
import threading
import uuid

import alembic.autogenerate
import alembic.runtime.migration
import sqlalchemy as sa
import testtools

from imgmw.app import migrations
from imgmw.app import models
from imgmw.app import registry
from imgmw.filters.quota import migrations as quota_migrations
from imgmw.filters.quota import schema as quota_schema
from imgmw import hashing
from tests import dbfixture

HOUR = datetime.timedelta(hours=1)


class RegistryTests:
    """The registry's behaviour; mixed into one TestCase per database."""

    KIND = None

    def setUp(self):
        super().setUp()
        self.database = self.useFixture(dbfixture.Database(self.KIND))
        self.registry = registry.Registry(self.database.url, sync=True)
        self.addCleanup(self.registry.dispose)

    def create(self, **values):
        values.setdefault('owner', 'p1')
        return self.registry.create(values)

    def saving(self, image_id, holder=None):
        return self.registry.transition(image_id, 'queued', 'saving',
                                        holder=holder)

    # Schema.

    def test_sync_is_idempotent(self):
        self.registry.sync()
        self.assertEqual(registry.Registry.head(), self.registry.version())

    def test_empty_database_has_no_version(self):
        other = dbfixture.Database(self.KIND)
        self.useFixture(other)
        empty = registry.Registry(other.url)
        self.addCleanup(empty.dispose)
        self.assertIsNone(empty.version())
        empty.sync()
        self.assertEqual(registry.Registry.head(), empty.version())

    def test_migrations_match_models(self):
        engine = sa.create_engine(self.database.url,
                                  poolclass=sa.pool.NullPool)
        self.addCleanup(engine.dispose)
        with engine.connect() as connection:
            context = alembic.runtime.migration.MigrationContext.configure(
                connection, opts={
                    'compare_type': True,
                    # The quota tables' chain records its own version.
                    'include_name': lambda name, kind, parents: (
                        name != quota_migrations.VERSION_TABLE)})
            diff = alembic.autogenerate.compare_metadata(
                context, models.metadata)
        self.assertEqual([], diff)

    # create and get.

    def test_create_gives_a_queued_image_with_defaults(self):
        image = self.registry.create({})
        self.assertEqual('queued', image['status'])
        self.assertEqual(image['id'], str(uuid.UUID(image['id'])))
        self.assertEqual(
            {'visibility': 'shared', 'protected': False, 'os_hidden': False,
             'min_ram': 0, 'min_disk': 0, 'tags': [], 'properties': {},
             'locations': [], 'size': None, 'checksum': None,
             'holder': None, 'deleted_at': None, 'owner': None},
            {key: image[key] for key in (
                'visibility', 'protected', 'os_hidden', 'min_ram',
                'min_disk', 'tags', 'properties', 'locations', 'size',
                'checksum', 'holder', 'deleted_at', 'owner')})
        self.assertEqual(set(registry.RECORD_KEYS), set(image))

    def test_times_are_aware_utc(self):
        before = registry.utcnow()
        image = self.create()
        self.assertEqual(datetime.timezone.utc, image['created_at'].tzinfo)
        self.assertEqual(image['created_at'], image['updated_at'])
        self.assertLessEqual(before, image['created_at'])
        self.assertEqual(image['created_at'],
                         self.registry.get(image['id'])['created_at'])

    def test_create_stores_given_values(self):
        image = self.create(
            id='5e1d2b8c-2d4f-4c52-9d6f-5a0e6e2c1b11', name='cirros',
            visibility='public', protected=True, os_hidden=True,
            disk_format='qcow2', container_format='bare', min_ram=64,
            min_disk=1, tags=['Foo', 'foo', 'foo'],
            properties={'os_distro': 'cirros', 'note': 'é' * 300})
        self.assertEqual(image, self.registry.get(image['id']))
        self.assertEqual('5e1d2b8c-2d4f-4c52-9d6f-5a0e6e2c1b11', image['id'])
        self.assertEqual(['Foo', 'foo'], image['tags'])
        self.assertEqual({'os_distro': 'cirros', 'note': 'é' * 300},
                         image['properties'])
        self.assertEqual((True, True, 64, 'qcow2'),
                         (image['protected'], image['os_hidden'],
                          image['min_ram'], image['disk_format']))

    def test_create_with_a_taken_id_raises_image_exists(self):
        image = self.create()
        self.assertRaises(registry.ImageExists,
                          self.registry.create, {'id': image['id']})

    def test_create_refuses_unknown_fields_and_visibilities(self):
        self.assertRaises(ValueError, self.registry.create,
                          {'status': 'active'})
        self.assertRaises(ValueError, self.registry.create,
                          {'visibility': 'everyone'})

    def test_get_unknown_is_none(self):
        self.assertIsNone(self.registry.get(str(uuid.uuid4())))

    # update.

    def test_update_replaces_metadata_tags_and_properties(self):
        image = self.create(name='a', tags=['x', 'y'],
                            properties={'k': '1', 'j': '2'})
        updated = self.registry.update(
            image['id'], {'name': 'b', 'protected': True, 'tags': ['z'],
                          'properties': {'k': '3'}})
        self.assertEqual(('b', True, ['z'], {'k': '3'}),
                         (updated['name'], updated['protected'],
                          updated['tags'], updated['properties']))
        self.assertGreater(updated['updated_at'], image['updated_at'])
        self.assertEqual(updated, self.registry.get(image['id']))

    def test_update_leaves_tags_and_properties_not_given(self):
        image = self.create(tags=['x'], properties={'k': '1'})
        updated = self.registry.update(image['id'], {'min_disk': 2})
        self.assertEqual((['x'], {'k': '1'}, 2),
                         (updated['tags'], updated['properties'],
                          updated['min_disk']))

    def test_update_of_unknown_or_deleted_image_is_none(self):
        self.assertIsNone(self.registry.update(str(uuid.uuid4()),
                                               {'name': 'x'}))
        image = self.create()
        self.registry.delete(image['id'])
        self.assertIsNone(self.registry.update(image['id'], {'name': 'x'}))

    def test_update_cannot_change_status_or_data(self):
        image = self.create()
        for values in ({'status': 'active'}, {'size': 4},
                       {'locations': []}):
            self.assertRaises(ValueError, self.registry.update,
                              image['id'], values)
        self.assertEqual('queued', self.registry.get(image['id'])['status'])

    # transition: contract 3.10, 3.12 and the invariants of section 3.

    def test_entering_saving_records_holder_and_heartbeat(self):
        image = self.create()
        saving = self.saving(image['id'])
        self.assertEqual('saving', saving['status'])
        self.assertEqual(registry.holder_id(), saving['holder'])
        self.assertIsNotNone(saving['held_since'])
        self.assertEqual(saving['held_since'], saving['heartbeat_at'])

    def test_explicit_holder_is_recorded(self):
        image = self.create()
        self.assertEqual('other:1:2',
                         self.saving(image['id'], 'other:1:2')['holder'])

    def test_contract_3_12_second_upload_loses_the_queued_race(self):
        image = self.create()
        self.assertIsNotNone(self.saving(image['id'], 'first:1:1'))
        self.assertIsNone(self.saving(image['id'], 'second:1:1'))
        self.assertEqual('first:1:1',
                         self.registry.get(image['id'])['holder'])

    def test_contract_3_12_concurrent_uploads_exactly_one_wins(self):
        image = self.create()
        start = threading.Barrier(6)
        results = []

        def race(number):
            start.wait()
            results.append(self.saving(image['id'], 'h:%d:0' % number))

        threads = [threading.Thread(target=race, args=(number,))
                   for number in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [result for result in results if result is not None]
        self.assertEqual(6, len(results))
        self.assertEqual(1, len(winners))
        self.assertEqual(winners[0]['holder'],
                         self.registry.get(image['id'])['holder'])

    def test_activation_sets_data_and_releases_the_holder(self):
        image = self.create()
        self.saving(image['id'])
        active = self.registry.transition(
            image['id'], 'saving', 'active',
            {'size': 5 << 30, 'virtual_size': 5 << 30,
             'checksum': 'c' * 32, 'os_hash_algo': 'sha512',
             'os_hash_value': 'f' * 128,
             'locations': [{'store': 'fast', 'url': 'file:///a'},
                           {'store': 'cheap', 'url': 's3://b/c'}]})
        self.assertEqual(
            ('active', 5 << 30, 'c' * 32, 'f' * 128, None, None),
            (active['status'], active['size'], active['checksum'],
             active['os_hash_value'], active['holder'],
             active['heartbeat_at']))
        self.assertEqual([{'store': 'fast', 'url': 'file:///a'},
                          {'store': 'cheap', 'url': 's3://b/c'}],
                         active['locations'])
        self.assertEqual(active, self.registry.get(image['id']))

    def test_failed_upload_back_to_queued_clears_data(self):
        image = self.create()
        self.registry.transition(
            image['id'], 'queued', 'uploading',
            {'size': 4, 'checksum': 'c' * 32, 'os_hash_algo': 'sha512',
             'os_hash_value': 'f' * 128, 'virtual_size': 4,
             'locations': [{'store': 's', 'url': 'u'}]})
        queued = self.registry.transition(image['id'], 'uploading',
                                          'queued')
        self.assertEqual('queued', queued['status'])
        for key in ('size', 'virtual_size', 'checksum', 'os_hash_algo',
                    'os_hash_value', 'holder', 'held_since',
                    'heartbeat_at'):
            self.assertIsNone(queued[key], key)
        self.assertEqual([], queued['locations'])
        self.assertEqual(set(), self.registry.all_locations())

    def test_locations_given_replace_the_old_ones(self):
        image = self.create()
        self.registry.transition(image['id'], 'queued', 'active', {
            'locations': [{'store': 'a', 'url': 'u1'}]})
        self.registry.transition(image['id'], 'active', 'deactivated')
        again = self.registry.transition(image['id'], 'deactivated',
                                         'active', {
                                             'locations': [{'store': 'b',
                                                            'url': 'u2'}]})
        self.assertEqual([{'store': 'b', 'url': 'u2'}], again['locations'])

    def test_transition_from_a_status_the_image_is_not_in_is_none(self):
        image = self.create()
        self.assertIsNone(self.registry.transition(image['id'], 'saving',
                                                   'active'))
        self.assertIsNone(self.registry.transition(str(uuid.uuid4()),
                                                   'queued', 'saving'))
        self.assertEqual('queued', self.registry.get(image['id'])['status'])

    def test_upload_finishing_after_delete_finds_nothing(self):
        image = self.create()
        self.saving(image['id'])
        self.registry.delete(image['id'])
        self.assertIsNone(self.registry.transition(
            image['id'], 'saving', 'active', {'size': 1}))

    def test_transitions_glance_forbids_raise(self):
        image = self.create()
        self.assertRaises(registry.InvalidTransition,
                          self.registry.transition, image['id'], 'active',
                          'queued')
        self.assertRaises(registry.InvalidTransition,
                          self.registry.transition, image['id'], 'queued',
                          'bogus')
        self.assertRaises(ValueError, self.registry.transition, image['id'],
                          'saving', 'queued', {'size': 1})
        self.assertRaises(ValueError, self.registry.transition, image['id'],
                          'queued', 'active', {'name': 'x'})

    # heartbeat.

    def test_heartbeat_refreshes_only_the_holders_upload(self):
        image = self.create()
        saving = self.saving(image['id'], 'me:1:1')
        self.assertFalse(self.registry.heartbeat(image['id'], 'you:1:1'))
        self.assertTrue(self.registry.heartbeat(image['id'], 'me:1:1'))
        refreshed = self.registry.get(image['id'])
        self.assertGreater(refreshed['heartbeat_at'], saving['heartbeat_at'])
        self.assertEqual(saving['held_since'], refreshed['held_since'])
        self.registry.transition(image['id'], 'saving', 'queued')
        self.assertFalse(self.registry.heartbeat(image['id'], 'me:1:1'))

    # delete.

    def test_delete_returns_the_record_as_it_was(self):
        image = self.create()
        active = self.registry.transition(image['id'], 'queued', 'active', {
            'size': 3, 'locations': [{'store': 'a', 'url': 'u1'}]})
        deleted = self.registry.delete(image['id'])
        self.assertEqual(active, deleted)
        self.assertIsNone(self.registry.get(image['id']))
        self.assertIsNone(self.registry.delete(image['id']))
        self.assertIsNone(self.registry.delete(str(uuid.uuid4())))
        self.assertEqual(set(), self.registry.all_locations())

    def test_delete_of_an_upload_in_progress_releases_it(self):
        image = self.create()
        self.saving(image['id'], 'me:1:1')
        self.assertEqual('saving',
                         self.registry.delete(image['id'])['status'])
        self.assertFalse(self.registry.heartbeat(image['id'], 'me:1:1'))
        self.assertEqual([], self.registry.stale_uploads(
            older_than=datetime.timedelta(0)))

    def test_all_locations_of_images_not_deleted(self):
        kept = self.create()
        gone = self.create()
        for image, url in ((kept, 'u1'), (gone, 'u2')):
            self.registry.transition(image['id'], 'queued', 'active', {
                'locations': [{'store': 'a', 'url': url},
                              {'store': 'b', 'url': url}]})
        self.registry.delete(gone['id'])
        self.assertEqual({('a', 'u1'), ('b', 'u1')},
                         self.registry.all_locations())

    def with_children(self, name, tags, properties, stores):
        image = self.create(name=name, tags=tags, properties=properties)
        return self.registry.transition(image['id'], 'queued', 'active', {
            'locations': [{'store': store, 'url': '%s/%s' % (name, store)}
                          for store in stores]})

    def test_records_carry_their_own_tags_properties_and_locations(self):
        first = self.with_children('a', ['z', 'b', 'm'],
                                   {'k': '1', 'j': '2'}, ['s2', 's1', 's3'])
        second = self.with_children('b', ['c'], {'k': '3'}, ['s1'])
        bare = self.create(name='c')
        self.assertEqual((['b', 'm', 'z'], {'k': '1', 'j': '2'}, [
            {'store': 's2', 'url': 'a/s2'}, {'store': 's1', 'url': 'a/s1'},
            {'store': 's3', 'url': 'a/s3'}]),
            (first['tags'], first['properties'], first['locations']))
        listed = self.registry.list(
            project_id='p1', is_admin=False, filters={}, limit=10,
            marker=None, sort_key='name', sort_dir='asc')
        self.assertEqual([first, second, bare], listed)
        self.assertEqual([first, second, bare], [
            self.registry.get(image['id']) for image in (first, second,
                                                         bare)])

    def selects(self, read):
        """The SELECT statements ``read()`` sends to the database."""
        sent = []

        def count(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith('SELECT'):
                sent.append(statement)
        sa.event.listen(self.registry._engine, 'before_cursor_execute',
                        count)
        self.addCleanup(sa.event.remove, self.registry._engine,
                        'before_cursor_execute', count)
        read()
        return sent

    def test_get_for_download_is_the_record_and_its_block_digests(self):
        image = self.with_children('a', [], {}, ['s1', 's2'])
        blocks = hashing.BlockDigests('xxh3_64', 4, b'12345678')
        self.registry.set_block_digests(image['id'], 'a/s2',
                                        image['checksum'], blocks)
        self.assertEqual((image, {'a/s2': blocks}),
                         self.registry.get_for_download(image['id']))
        self.assertEqual(3, len(self.selects(
            lambda: self.registry.get_for_download(image['id']))))
        queued = self.create()
        self.assertEqual((queued, {}),
                         self.registry.get_for_download(queued['id']))
        self.assertEqual(2, len(self.selects(
            lambda: self.registry.get_for_download(queued['id']))))
        self.registry.delete(queued['id'])
        for image_id in (queued['id'], str(uuid.uuid4())):
            self.assertEqual((None, {}),
                             self.registry.get_for_download(image_id))

    def test_a_read_is_two_selects_whatever_the_children(self):
        images = [self.with_children(name, ['t1', 't2'], {'k': 'v'},
                                     ['s1', 's2']) for name in 'abc']
        self.assertEqual(2, len(self.selects(
            lambda: self.registry.get(images[0]['id']))))
        self.assertEqual(2, len(self.selects(lambda: self.registry.list(
            project_id='p1', is_admin=False, filters={}, limit=10,
            marker=None))))

    # list.

    def list(self, project_id='p1', is_admin=False, limit=100, marker=None,
             **filters):
        return [image['name'] for image in self.registry.list(
            project_id=project_id, is_admin=is_admin, filters=filters,
            limit=limit, marker=marker, sort_key='name', sort_dir='asc')]

    def make_catalogue(self):
        for name, owner, visibility in (
                ('own-private', 'p1', 'private'),
                ('own-shared', 'p1', 'shared'),
                ('own-community', 'p1', 'community'),
                ('other-private', 'p2', 'private'),
                ('other-shared', 'p2', 'shared'),
                ('other-public', 'p2', 'public'),
                ('other-community', 'p2', 'community')):
            self.create(name=name, owner=owner, visibility=visibility)

    def test_list_shows_own_and_public_images(self):
        self.make_catalogue()
        self.assertEqual(['other-public', 'own-community', 'own-private',
                          'own-shared'], self.list())
        self.assertEqual(['other-public'], self.list(project_id=None))

    def test_list_shows_community_images_on_request(self):
        self.make_catalogue()
        self.assertEqual(['other-community', 'own-community'],
                         self.list(visibility='community'))
        self.assertEqual(['other-community', 'other-public',
                          'own-community', 'own-private', 'own-shared'],
                         self.list(visibility='all'))

    def test_list_for_admin_shows_every_image(self):
        self.make_catalogue()
        self.assertEqual(['other-private', 'other-public', 'other-shared',
                          'own-community', 'own-private', 'own-shared'],
                         self.list(is_admin=True))
        self.assertEqual(7, len(self.list(is_admin=True, visibility='all')))
        self.assertEqual(['other-private', 'own-private'],
                         self.list(is_admin=True, visibility='private'))

    def test_list_filters(self):
        self.make_catalogue()
        self.assertEqual(['own-shared'], self.list(name='own-shared'))
        self.assertEqual(['other-public'], self.list(owner='p2'))
        image = self.create(name='hidden', os_hidden=True)
        self.registry.transition(image['id'], 'queued', 'active')
        self.assertNotIn('hidden', self.list())
        self.assertEqual(['hidden'], self.list(os_hidden=True))
        self.assertEqual(['hidden'], self.list(status='active',
                                               os_hidden=None))
        self.assertIn('hidden', self.list(os_hidden=None))
        self.assertRaises(ValueError, self.list, size=3)

    def test_first_pages_are_built_once_and_see_new_images(self):
        self.create(name='a')
        self.assertEqual(['a'], self.list())
        kept = registry._kept_first_page.cache_info()
        self.create(name='b')
        self.assertEqual(['a', 'b'], self.list())
        self.assertEqual((kept.hits + 1, kept.misses),
                         registry._kept_first_page.cache_info()[:2])
        self.assertEqual(['b'], self.list(marker=self.registry.list(
            project_id='p1', is_admin=False, filters={}, limit=1,
            marker=None, sort_key='name', sort_dir='asc')[0]['id']))

    def test_list_never_shows_deleted_images(self):
        image = self.create(name='gone', visibility='public')
        self.registry.delete(image['id'])
        self.assertEqual([], self.list(is_admin=True, visibility='all',
                                       os_hidden=None))
        self.assertEqual([], self.list(status='deleted', is_admin=True))

    def test_list_pages_in_every_order(self):
        names = ['b', None, 'a', 'b', None, 'c', 'a']
        for number, name in enumerate(names):
            image = self.create(name=name)
            if number % 2:
                self.registry.transition(image['id'], 'queued', 'active',
                                         {'size': number % 3 or None})
        for sort_key in ('created_at', 'name', 'size', 'id', 'status'):
            for sort_dir in ('asc', 'desc'):
                self.assert_pages(sort_key, sort_dir, len(names))

    def assert_pages(self, sort_key, sort_dir, total):
        everything = self.registry.list(
            project_id='p1', is_admin=False, filters={}, limit=100,
            marker=None, sort_key=sort_key, sort_dir=sort_dir)
        self.assertEqual(total, len(everything))
        keys = [(image[sort_key] is not None, image[sort_key] or 0,
                 image['id']) for image in everything]
        self.assertEqual(sorted(keys, reverse=sort_dir == 'desc'), keys,
                         (sort_key, sort_dir))
        pages, marker = [], None
        while True:
            page = self.registry.list(
                project_id='p1', is_admin=False, filters={}, limit=2,
                marker=marker, sort_key=sort_key, sort_dir=sort_dir)
            if not page:
                break
            pages.extend(page)
            marker = page[-1]['id']
        self.assertEqual([image['id'] for image in everything],
                         [image['id'] for image in pages],
                         (sort_key, sort_dir))

    def test_list_limit(self):
        self.make_catalogue()
        self.assertEqual(['other-public', 'own-community'],
                         self.list(limit=2))
        self.assertEqual([], self.list(limit=0))

    def test_list_marker_must_be_a_visible_image(self):
        self.make_catalogue()
        hidden = self.registry.list(project_id='p2', is_admin=False,
                                    filters={'name': 'other-private'},
                                    limit=1, marker=None)[0]
        self.assertRaises(registry.MarkerNotFound, self.list,
                          marker=hidden['id'])
        self.assertRaises(registry.MarkerNotFound, self.list,
                          marker=str(uuid.uuid4()))

    def test_list_refuses_unknown_sort(self):
        for sort_key, sort_dir in (('holder', 'asc'), ('name', 'up')):
            self.assertRaises(ValueError, self.registry.list,
                              project_id='p1', is_admin=False, filters={},
                              limit=1, marker=None, sort_key=sort_key,
                              sort_dir=sort_dir)

    # Crash recovery (issue 9).

    def test_fresh_upload_is_not_stale(self):
        image = self.create()
        self.saving(image['id'])
        self.assertEqual([], self.registry.stale_uploads(older_than=HOUR))
        self.assertEqual([image['id']], [
            stale['id'] for stale in self.registry.stale_uploads(
                older_than=datetime.timedelta(0))])

    def test_upload_of_a_dead_holder_is_stale(self):
        image = self.create()
        self.saving(image['id'], 'dead:1:1')
        other = self.create()
        self.saving(other['id'], 'alive:1:1')
        stale = self.registry.stale_uploads(
            older_than=HOUR, holder_alive=lambda holder: holder != 'dead:1:1')
        self.assertEqual([image['id']], [record['id'] for record in stale])

    def test_recover_stale_returns_uploads_to_queued(self):
        uploads = [self.create() for _ in range(3)]
        self.saving(uploads[0]['id'], 'dead:1:1')
        self.registry.transition(uploads[1]['id'], 'queued', 'uploading',
                                 {'size': 4}, holder='dead:1:1')
        self.saving(uploads[2]['id'], 'alive:1:1')
        done = self.create()
        self.registry.transition(done['id'], 'queued', 'active')
        recovered = self.registry.recover_stale(
            older_than=HOUR, holder_alive=lambda holder: holder != 'dead:1:1')
        self.assertEqual(
            sorted([(uploads[0]['id'], 'saving'),
                    (uploads[1]['id'], 'uploading')]),
            sorted((record['id'], record['status']) for record in recovered))
        statuses = [self.registry.get(image['id'])['status']
                    for image in uploads + [done]]
        self.assertEqual(['queued', 'queued', 'saving', 'active'], statuses)
        self.assertIsNone(self.registry.get(uploads[1]['id'])['size'])

    def reserve(self, image_id, holder, project='p1', size=5):
        """A quota reservation row, as the quota filter writes it."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None)
        row_id = str(uuid.uuid4())
        engine = sa.create_engine(self.database.url,
                                  poolclass=sa.pool.NullPool)
        self.addCleanup(engine.dispose)
        with engine.begin() as connection:
            connection.execute(quota_schema.reservations.insert().values(
                id=row_id, project_id=project, image_id=image_id,
                kind=quota_schema.UPLOAD, size=size, holder=holder,
                created_at=now, expires_at=now + HOUR))
        return row_id

    def reservation_ids(self):
        engine = sa.create_engine(self.database.url,
                                  poolclass=sa.pool.NullPool)
        self.addCleanup(engine.dispose)
        with engine.connect() as connection:
            return set(connection.execute(
                sa.select(quota_schema.reservations.c.id)).scalars())

    def test_recover_stale_releases_the_quota_of_dead_holders(self):
        """Issue 17 item 3: the retry is not refused for a dead upload."""
        dead_upload = self.create()
        self.saving(dead_upload['id'], 'dead:1:1')
        alive_upload = self.create()
        self.saving(alive_upload['id'], 'alive:1:1')
        released = {self.reserve(dead_upload['id'], 'dead:1:1'),
                    # A dead holder's reservation whose image moved on.
                    self.reserve(str(uuid.uuid4()), 'dead:1:1')}
        kept = {self.reserve(alive_upload['id'], 'alive:1:1'),
                # The retry of the dead upload, by a live process.
                self.reserve(dead_upload['id'], 'alive:1:1')}
        self.registry.recover_stale(
            older_than=HOUR, holder_alive=lambda holder: holder != 'dead:1:1')
        self.assertEqual(kept, self.reservation_ids())
        self.assertFalse(released & self.reservation_ids())

    def test_recover_stale_releases_the_quota_of_a_silent_upload(self):
        # A holder that may live but stopped beating: its upload is over.
        image = self.create()
        self.saving(image['id'], 'slow:1:1')
        self.reserve(image['id'], 'slow:1:1')
        self.registry.recover_stale(older_than=datetime.timedelta(0),
                                    holder_alive=lambda holder: True)
        self.assertEqual(set(), self.reservation_ids())

    def test_requeue_leaves_an_upload_whose_holder_came_back(self):
        image = self.create()
        self.saving(image['id'], 'slow:1:1')
        stale, = self.registry.stale_uploads(older_than=datetime.timedelta(0))
        self.assertTrue(self.registry.heartbeat(image['id'], 'slow:1:1'))
        self.assertIsNone(self.registry.requeue_stale(stale))
        self.assertEqual('saving', self.registry.get(image['id'])['status'])
        stale, = self.registry.stale_uploads(older_than=datetime.timedelta(0))
        self.assertEqual('queued',
                         self.registry.requeue_stale(stale)['status'])

    # Listing conditions, tags, tasks and locations.

    def test_list_conditions_tags_and_properties(self):
        for name, size, tags, disk in (('a', 10, ['x'], 'raw'),
                                       ('b', 20, ['x', 'y'], 'qcow2'),
                                       ('c', None, [], 'iso')):
            image = self.create(name=name, tags=tags, disk_format=disk,
                                properties={'colour': name})
            if size is not None:
                self.registry.transition(image['id'], 'queued', 'active',
                                         {'size': size})
        self.assertEqual(['b'], self.list(conditions=[('size', 'gte', 15)]))
        self.assertEqual(['a', 'b'], self.list(
            conditions=[('disk_format', 'in', ['raw', 'qcow2'])]))
        self.assertEqual(['b'], self.list(tags=['x', 'y']))
        self.assertEqual(['c'], self.list(properties=[('colour', 'c')]))
        self.assertRaises(ValueError, self.list,
                          conditions=[('holder', 'eq', 'x')])
        self.assertRaises(ValueError, self.list,
                          conditions=[('size', 'like', 1)])

    def test_list_pages_on_several_keys(self):
        for number in range(7):
            image = self.create(name='n%d' % (number % 3),
                                disk_format=('raw', 'iso')[number % 2])
            self.registry.transition(image['id'], 'queued', 'active',
                                     {'size': number % 2 or None})
        for keys, dirs in ((['disk_format', 'name'], ['asc', 'desc']),
                           (['size', 'name'], ['desc']),
                           (['name', 'id', 'size'], ['asc'])):
            everything = self.registry.list(
                project_id='p1', is_admin=False, filters={}, limit=100,
                marker=None, sort_key=keys, sort_dir=dirs)
            pages, marker = [], None
            while True:
                page = self.registry.list(
                    project_id='p1', is_admin=False, filters={}, limit=3,
                    marker=marker, sort_key=keys, sort_dir=dirs)
                if not page:
                    break
                pages.extend(page)
                marker = page[-1]['id']
            self.assertEqual([image['id'] for image in everything],
                             [image['id'] for image in pages], keys)
        self.assertRaises(ValueError, self.registry.list, project_id='p1',
                          is_admin=False, filters={}, limit=1, marker=None,
                          sort_key=['name', 'size', 'id'],
                          sort_dir=['asc', 'desc'])

    def test_tags(self):
        image = self.create(tags=['a'])
        self.assertTrue(self.registry.add_tag(image['id'], 'b', limit=2))
        self.assertTrue(self.registry.add_tag(image['id'], 'b', limit=2))
        self.assertFalse(self.registry.add_tag(image['id'], 'c', limit=2))
        self.assertEqual(['a', 'b'], self.registry.get(image['id'])['tags'])
        self.assertTrue(self.registry.remove_tag(image['id'], 'a'))
        self.assertFalse(self.registry.remove_tag(image['id'], 'a'))
        self.assertEqual(['b'], self.registry.get(image['id'])['tags'])
        self.registry.delete(image['id'])
        self.assertIsNone(self.registry.add_tag(image['id'], 'c'))
        self.assertIsNone(self.registry.remove_tag(image['id'], 'b'))

    def test_tasks(self):
        image = self.create()
        task = self.registry.create_task({
            'image_id': image['id'], 'type': 'api_image_import',
            'status': 'processing', 'input': '{}'})
        self.assertTrue(self.registry.update_task(task['id'], {
            'status': 'success', 'result': '{}',
            'expires_at': registry.utcnow() + HOUR}))
        listed, = self.registry.tasks(image['id'])
        self.assertEqual(('success', '{}'), (listed['status'],
                                             listed['result']))
        self.registry.update_task(task['id'], {
            'expires_at': registry.utcnow() - HOUR})
        self.assertEqual([], self.registry.tasks(image['id']))
        self.assertFalse(self.registry.update_task('missing',
                                                   {'status': 'failure'}))

    def test_remove_location(self):
        image = self.create()
        self.assertEqual(('status', None), self.registry.remove_location(
            image['id'], 'a'))
        self.registry.transition(image['id'], 'queued', 'active', {
            'locations': [{'store': 'a', 'url': 'u1'},
                          {'store': 'b', 'url': 'u2'}]})
        self.assertEqual(('absent', None), self.registry.remove_location(
            image['id'], 'c'))
        self.assertEqual(('removed', {'store': 'a', 'url': 'u1'}),
                         self.registry.remove_location(image['id'], 'a'))
        self.assertEqual([{'store': 'b', 'url': 'u2'}],
                         self.registry.get(image['id'])['locations'])
        self.assertEqual(('last', None), self.registry.remove_location(
            image['id'], 'b'))
        self.assertEqual(('missing', None), self.registry.remove_location(
            'unknown', 'b'))


class TestRegistry(RegistryTests, testtools.TestCase):
    """On the database of IMGMW_TEST_DATABASE (SQLite by default)."""


class ServerTests(RegistryTests):
    """What only a database server shows."""

    def test_programming_errors_are_not_masked(self):
        engine = sa.create_engine(self.database.url,
                                  poolclass=sa.pool.NullPool)
        self.addCleanup(engine.dispose)
        image = self.create()
        with engine.begin() as connection:
            connection.exec_driver_sql('DROP TABLE image_tags')
        self.assertRaises(sa.exc.ProgrammingError, self.registry.get,
                          image['id'])


class TestFirstPages(testtools.TestCase):

    def page(self, filters):
        return registry._first_page('p1', False, filters,
                                    [('created_at', 'desc'), ('id', 'desc')],
                                    25)

    def test_the_same_listing_is_the_same_statement(self):
        filters = {'os_hidden': False, 'tags': ['a', 'b'],
                   'conditions': [('size', 'in', [1, 2])]}
        self.assertIs(self.page(filters), self.page(dict(filters)))
        self.assertIsNot(self.page(filters), self.page({'os_hidden': False}))

    def test_values_of_other_types_are_other_listings(self):
        one = self.page({'conditions': [('min_ram', 'eq', 1)]})
        self.assertIsNot(one, self.page(
            {'conditions': [('min_ram', 'eq', True)]}))
        self.assertIsNot(one, self.page(
            {'conditions': [('min_ram', 'eq', 1.0)]}))
        self.assertIs(one, self.page({'conditions': [('min_ram', 'eq', 1)]}))

    def test_a_listing_that_cannot_be_a_key_is_built_each_time(self):
        filters = {'conditions': [('id', 'in', {'x', 'y'})]}
        self.assertIsNot(self.page(filters), self.page(filters))
        self.assertIn('IN', str(self.page(filters)))


class TestSQLite(testtools.TestCase):

    def test_journal_is_wal_with_foreign_keys_and_busy_timeout(self):
        database = self.useFixture(dbfixture.Database('sqlite'))
        image_registry = registry.Registry(database.url, sync=True)
        self.addCleanup(image_registry.dispose)
        with image_registry._transaction() as connection:
            pragmas = [connection.exec_driver_sql('PRAGMA %s' % name).scalar()
                       for name in ('journal_mode', 'foreign_keys',
                                    'busy_timeout')]
        self.assertEqual(['wal', 1, registry.SQLITE_BUSY_TIMEOUT * 1000],
                         pragmas)

    def test_database_url_defaults_to_sqlite_in_the_state_dir(self):
        tempdir = self.useFixture(dbfixture.fixtures.TempDir()).path
        state = tempdir + '/state'
        self.assertEqual('sqlite:///%s/imgmw.sqlite' % state,
                         registry.database_url({'state_dir': state}))
        self.assertEqual('mysql+pymysql://u@h/d', registry.database_url(
            {'database_connection': 'mysql+pymysql://u@h/d',
             'state_dir': state}))


class TestUnavailable(testtools.TestCase):
    """Contract 3.22: an unreachable database is RegistryUnavailable."""

    def assert_unavailable(self, url):
        image_registry = registry.Registry(url)
        self.addCleanup(image_registry.dispose)
        self.assertRaises(registry.RegistryUnavailable, image_registry.get,
                          str(uuid.uuid4()))
        self.assertRaises(registry.RegistryUnavailable, image_registry.sync)

    def test_postgresql_refusing_connections(self):
        self.assert_unavailable('postgresql+psycopg2://postgres@127.0.0.1:1/x')

    def test_mysql_refusing_connections(self):
        self.assert_unavailable('mysql+pymysql://root@127.0.0.1:1/x')

    def test_sqlite_file_that_cannot_be_opened(self):
        self.assert_unavailable('sqlite:////nonexistent/imgmw/x.sqlite')


class TestHolders(testtools.TestCase):

    def test_holder_id_names_host_pid_and_start_time(self):
        host, pid, started = registry.holder_id().split(':')
        self.assertEqual(socket.gethostname(), host)
        self.assertEqual(str(registry.os.getpid()), pid)
        self.assertGreater(float(started), 0)
        self.assertTrue(registry.holder_is_alive(registry.holder_id()))

    def test_holder_of_an_exited_process_is_dead(self):
        child = subprocess.Popen([sys.executable, '-c', 'pass'])
        child.wait()
        holder = '%s:%d:1.00' % (socket.gethostname(), child.pid)
        self.assertFalse(registry.holder_is_alive(holder))

    def test_recycled_pid_is_not_the_holder(self):
        host, pid, started = registry.holder_id().split(':')
        earlier = '%.2f' % (float(started) - 60)
        self.assertFalse(registry.holder_is_alive(
            ':'.join((host, pid, earlier))))

    def test_holder_on_another_host_is_presumed_alive(self):
        self.assertTrue(registry.holder_is_alive('elsewhere.example:1:1.00'))
        self.assertTrue(registry.holder_is_alive('garbage'))


class MigrationsHeadTest(testtools.TestCase):

    def test_head_constant_is_alembics_head(self):
        """imgmw.app.migrations.HEAD must name the newest migration."""
        self.assertEqual(registry.Registry.head(), migrations.HEAD)

    def test_sync_of_a_current_schema_does_not_load_alembic(self):
        url = self.useFixture(dbfixture.Database(kind='sqlite')).url
        registry.Registry(url, sync=True).dispose()
        code = ('import sys\n'
                'from imgmw.app import registry\n'
                'registry.Registry(%r, sync=True)\n'
                'print(sorted(m for m in sys.modules\n'
                '             if m.split(".")[0] == "alembic"))\n' % url)
        out = subprocess.run([sys.executable, '-c', code], check=True,
                             capture_output=True, text=True).stdout
        self.assertEqual('[]', out.strip())
