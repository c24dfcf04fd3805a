"""Tests of imgmw-manage against a fresh registry database."""

import datetime
import hashlib
import io
import json
import os
import socket
import time
import uuid

import fixtures
import testtools

from imgmw.app import models
from imgmw.app import registry
from imgmw.cmd import manage
from imgmw import hashing
from tests import dbfixture

PASTE = """[DEFAULT]
database_connection = %(url)s
state_dir = %(state)s

[app:imgmw]
use = egg:imgmw#main
"""


class ManageTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.database = self.useFixture(dbfixture.Database())
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        self.state = os.path.join(self.tempdir, 'state')
        self.paste = os.path.join(self.tempdir, 'api-paste.ini')
        with open(self.paste, 'w') as paste:
            paste.write(PASTE % {'url': self.database.url.replace('%', '%%'),
                                 'state': self.state})
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', self.stdout))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))

    def manage(self, *argv):
        return manage.main(['--config-file', self.paste] + list(argv))

    def registry(self, sync=True):
        image_registry = registry.Registry(self.database.url, sync=sync)
        self.addCleanup(image_registry.dispose)
        return image_registry


class TestDb(ManageTestCase):

    def test_db_sync_creates_the_schema_once(self):
        self.assertEqual(0, self.manage('db', 'sync'))
        self.assertEqual(0, self.manage('db', 'sync'))
        self.assertEqual(registry.Registry.head(),
                         self.registry(sync=False).version())
        self.assertIn('Registry schema at %s' % registry.Registry.head(),
                      self.stdout.getvalue())

    def test_db_version_of_an_empty_database_asks_for_sync(self):
        self.assertEqual(manage.EXIT_BEHIND, self.manage('db', 'version'))
        self.assertIn('current: none', self.stdout.getvalue())
        self.assertIn('Run imgmw-manage db sync', self.stdout.getvalue())

    def test_db_version_after_sync(self):
        self.manage('db', 'sync')
        self.assertEqual(0, self.manage('db', 'version'))
        head = registry.Registry.head()
        self.assertIn('current: %s\nnewest: %s\n' % (head, head),
                      self.stdout.getvalue())

    def test_option_overrides_the_paste_file(self):
        other = self.useFixture(dbfixture.Database())
        self.assertEqual(0, self.manage(
            '-o', 'database_connection=%s' % other.url, 'db', 'sync'))
        self.assertIsNone(self.registry(sync=False).version())
        moved = registry.Registry(other.url)
        self.addCleanup(moved.dispose)
        self.assertEqual(registry.Registry.head(), moved.version())

    def test_default_database_is_sqlite_in_the_state_dir(self):
        with open(self.paste, 'w') as paste:
            paste.write('[DEFAULT]\n')
        self.assertEqual(0, self.manage('-o', 'state_dir=%s' % self.state,
                                        'db', 'sync'))
        self.assertTrue(os.path.isfile(os.path.join(self.state,
                                                    'imgmw.sqlite')))

    def test_unreachable_database(self):
        self.assertEqual(manage.EXIT_UNAVAILABLE, self.manage(
            '-o', 'database_connection=postgresql+psycopg2://'
                  'postgres@127.0.0.1:1/x', 'db', 'sync'))
        self.assertIn('unavailable', self.stderr.getvalue())

    def test_missing_config_file(self):
        self.assertEqual(manage.EXIT_CONFIG, manage.main(
            ['--config-file', os.path.join(self.tempdir, 'none.ini'),
             'db', 'version']))
        self.assertIn('none.ini', self.stderr.getvalue())


class TestRecover(ManageTestCase):

    def upload(self, image_registry, holder, heartbeat_age):
        image = image_registry.create({'owner': 'p1'})
        image_registry.transition(image['id'], 'queued', 'saving',
                                  holder=holder)
        images = models.images
        with image_registry._transaction(write=True) as connection:
            connection.execute(
                images.update().where(images.c.id == image['id'])
                .values(heartbeat_at=registry.utcnow() - heartbeat_age))
        return image['id']

    def test_recover_returns_stale_uploads_to_queued(self):
        image_registry = self.registry()
        stale = self.upload(image_registry, 'elsewhere:1:1',
                            datetime.timedelta(hours=1))
        fresh = self.upload(image_registry, 'elsewhere:2:1',
                            datetime.timedelta(seconds=10))
        self.assertEqual(0, self.manage('recover', '--older-than', '60'))
        self.assertEqual('queued', image_registry.get(stale)['status'])
        self.assertEqual('saving', image_registry.get(fresh)['status'])
        output = self.stdout.getvalue()
        self.assertIn('%s: saving -> queued (holder elsewhere:1:1' % stale,
                      output)
        self.assertNotIn(fresh, output)
        self.assertIn('1 stale upload(s) recovered', output)

    def test_recover_removes_partial_data_from_the_stores(self):
        image_registry = self.registry()
        stale = self.upload(image_registry, 'elsewhere:1:1',
                            datetime.timedelta(hours=1))
        fresh = self.upload(image_registry, 'elsewhere:2:1',
                            datetime.timedelta(0))
        datadir = os.path.join(self.state, 'images')
        os.makedirs(datadir)
        partials = [os.path.join(datadir, '.%s.1.partial' % image_id)
                    for image_id in (stale, fresh)]
        for partial in partials:
            with open(partial, 'wb') as data:
                data.write(b'half')
        self.assertEqual(0, self.manage('recover'))
        self.assertEqual([False, True],
                         [os.path.exists(path) for path in partials])

    def test_recover_resets_uploads_of_dead_local_processes(self):
        image_registry = self.registry()
        dead = '%s:%d:1.00' % (socket.gethostname(), 2 ** 22 + 1)
        stale = self.upload(image_registry, dead, datetime.timedelta(0))
        removed = []
        recovered = manage.recover(image_registry, datetime.timedelta(
            hours=1), removed.append, say=lambda line: None)
        self.assertEqual([stale], [record['id'] for record in recovered])
        self.assertEqual([stale], removed)
        self.assertEqual('queued', image_registry.get(stale)['status'])

    def test_recover_releases_the_lock_of_a_dead_copy(self):
        """A copy-image whose worker died: released, its stores failed."""
        with open(self.paste, 'a') as paste:
            paste.write(MULTI_STORE % {'state': self.state})
        image_registry = self.registry()
        fast, cheap = (os.path.join(self.state, store)
                       for store in ('fast', 'cheap'))
        os.makedirs(fast)
        os.makedirs(cheap)
        dead_id, dead_task = self.copying(image_registry, fast, DEAD_HOLDER)
        live_id, live_task = self.copying(image_registry, fast,
                                          registry.holder_id())
        partials = [os.path.join(cheap, '.%s.1.partial' % image_id)
                    for image_id in (dead_id, live_id)]
        for partial in partials:
            with open(partial, 'wb') as data:
                data.write(b'half')
        self.assertEqual(0, self.manage(
            '-o', 'enabled_backends=fast:file, cheap:file',
            '-o', 'default_backend=fast', 'recover'))
        output = self.stdout.getvalue()
        self.assertIn('%s: copy %s released, failed in cheap (holder %s, '
                      'last heartbeat ' % (dead_id, dead_task, DEAD_HOLDER),
                      output)
        self.assertNotIn(live_id, output)
        self.assertIn('1 stale copy lock(s) released', output)
        self.assertEqual([False, True],
                         [os.path.exists(path) for path in partials])
        self.assertEqual(sorted([dead_id, live_id]), sorted(os.listdir(fast)))
        dead = image_registry.get(dead_id)['properties']
        self.assertEqual((None, '', 'cheap'), (
            dead.get(registry.IMPORT_TASK_PROPERTY),
            dead[registry.IMPORTING_PROPERTY],
            dead[registry.FAILED_PROPERTY]))
        live = image_registry.get(live_id)['properties']
        self.assertEqual((live_task, 'cheap', ''), (
            live.get(registry.IMPORT_TASK_PROPERTY),
            live[registry.IMPORTING_PROPERTY],
            live[registry.FAILED_PROPERTY]))

    def copying(self, image_registry, datadir, holder):
        """An active image in ``fast``, copied into ``cheap`` by ``holder``.

        :returns: the image's id and the copy's task id.
        """
        image_id = str(uuid.uuid4())
        path = os.path.join(datadir, image_id)
        with open(path, 'wb') as data:
            data.write(b'data')
        image_registry.create({'id': image_id})
        image_registry.transition(image_id, 'queued', 'saving')
        image_registry.transition(image_id, 'saving', 'active', {
            'size': 4, 'locations': [{'store': 'fast',
                                      'url': 'file://' + path}]})
        task_id = str(uuid.uuid4())
        image_registry.lock_for_copy(image_id, task_id, ['cheap'])
        image_registry.create_task({
            'id': task_id, 'image_id': image_id, 'type': 'api_image_import',
            'status': 'processing', 'holder': holder,
            'input': json.dumps({'backend': ['cheap']})})
        return image_id, task_id

    def test_recover_on_an_empty_database_asks_for_sync(self):
        self.assertEqual(manage.EXIT_CONFIG, self.manage('recover'))
        self.assertIn('db sync', self.stderr.getvalue())

    def test_older_than_must_be_seconds(self):
        self.assertRaises(SystemExit, self.manage, 'recover',
                          '--older-than', 'soon')


HOURS_AGO = 2 * 3600

#: A holder of this host whose process does not run (pids stop below 2**22).
DEAD_HOLDER = '%s:%d:1.00' % (socket.gethostname(), 2 ** 22 + 1)

MULTI_STORE = """
[store:fast]
filesystem_store_datadir = %(state)s/fast

[store:cheap]
filesystem_store_datadir = %(state)s/cheap
"""


class TestSweep(ManageTestCase):
    """``imgmw-manage sweep``: the orphans of the stores and staging area."""

    def setUp(self):
        super().setUp()
        self.image_registry = self.registry()
        self.datadir = os.path.join(self.state, 'images')
        self.staging = os.path.join(self.state, 'staging')
        os.makedirs(self.datadir)
        os.makedirs(self.staging)

    def write(self, directory, name, age=HOURS_AGO):
        path = os.path.join(directory, name)
        with open(path, 'wb') as data:
            data.write(b'data')
        then = time.time() - age
        os.utime(path, (then, then))
        return path

    def image(self, status='queued', **values):
        """An image in ``status``, the way the data app brings it there."""
        image_id = self.image_registry.create({'owner': 'p1'})['id']
        steps = {'saving': ['saving'], 'active': ['saving', 'active'],
                 'deleted': ['saving', 'active', 'deleted'],
                 'uploading': ['uploading']}
        current = 'queued'
        for step in steps.get(status, []):
            if step == 'deleted':
                self.image_registry.delete(image_id)
            else:
                self.image_registry.transition(
                    image_id, current, step,
                    values if step == 'active' else None)
            current = step
        return image_id

    def active_with_file(self, **more):
        image_id = str(uuid.uuid4())
        path = os.path.join(self.datadir, image_id)
        created = self.image_registry.create({'id': image_id})['id']
        self.image_registry.transition(created, 'queued', 'saving')
        self.image_registry.transition(created, 'saving', 'active', {
            'size': 4, 'locations': [{'store': 'default',
                                      'url': 'file://' + path}]})
        self.write(self.datadir, image_id)
        return image_id, path

    def existing(self, *paths):
        return [path for path in paths if os.path.exists(path)]

    def test_dry_run_reports_orphans_and_removes_nothing(self):
        _, active = self.active_with_file()
        deleted_id, deleted = self.active_with_file()
        self.image_registry.delete(deleted_id)
        unknown = self.write(self.datadir, str(uuid.uuid4()))
        queued_id = self.image()
        partial = self.write(self.datadir, '.%s.x1_y.partial' % queued_id)
        self.assertEqual(0, self.manage('sweep'))
        output = self.stdout.getvalue()
        for path in (deleted, unknown, partial):
            self.assertIn('would remove default file://%s' % path, output)
        self.assertNotIn(active, output)
        self.assertIn('unfinished upload of image %s' % queued_id, output)
        self.assertIn('3 orphan(s) found; nothing removed', output)
        self.assertEqual([active, deleted, unknown, partial],
                         self.existing(active, deleted, unknown, partial))

    def test_apply_removes_the_orphans_only(self):
        _, active = self.active_with_file()
        deleted_id, deleted = self.active_with_file()
        self.image_registry.delete(deleted_id)
        unknown = self.write(self.datadir, str(uuid.uuid4()))
        self.assertEqual(0, self.manage('sweep', '--apply'))
        self.assertEqual([active], self.existing(active, deleted, unknown))
        output = self.stdout.getvalue()
        self.assertIn('removed default file://%s' % unknown, output)
        self.assertIn('2 orphan(s) found, 2 removed', output)

    def test_data_younger_than_the_grace_period_is_kept(self):
        young = self.write(self.datadir, str(uuid.uuid4()), age=60)
        old = self.write(self.datadir, str(uuid.uuid4()), age=600)
        self.assertEqual(0, self.manage('sweep', '--apply'))
        self.assertEqual([young, old], self.existing(young, old))
        self.assertEqual(0, self.manage('sweep', '--apply',
                                        '--older-than', '300'))
        self.assertEqual([young], self.existing(young, old))

    def test_uploads_in_progress_are_never_orphans(self):
        # A saving image's temporary file, and its whole file written just
        # before the registry records it: both are the live upload's.
        saving = self.image('saving')
        partial = self.write(self.datadir, '.%s.abc.partial' % saving)
        whole = self.write(self.datadir, saving)
        self.assertEqual(0, self.manage('sweep', '--apply'))
        self.assertEqual([partial, whole], self.existing(partial, whole))
        self.assertIn('0 orphan(s) found', self.stdout.getvalue())

    def test_staging_area(self):
        holder = registry.holder_id()
        staged = self.image('uploading')
        self.image_registry.finish_stage(staged, holder, 4, 'node:staging')
        staging_now = self.image('uploading')
        in_progress = self.write(self.staging,
                                 '.%s.q9.partial' % staging_now)
        kept = self.write(self.staging, staged)
        deleted = self.image('deleted')
        of_deleted = self.write(self.staging, deleted)
        queued = self.image()
        of_queued = self.write(self.staging, '.%s.zz.partial' % queued)
        active_id, _ = self.active_with_file()
        of_active = self.write(self.staging, active_id)
        self.assertEqual(0, self.manage('sweep', '--apply'))
        self.assertEqual([kept, in_progress], self.existing(
            kept, in_progress, of_deleted, of_queued, of_active))
        self.assertIn('removed staging file://%s' % of_deleted,
                      self.stdout.getvalue())

    def test_a_store_that_cannot_be_listed_fails_the_sweep(self):
        os.rmdir(self.datadir)
        self.write(self.state, 'images')  # a file where the directory was
        orphan = self.write(self.staging, str(uuid.uuid4()))
        self.assertEqual(manage.EXIT_INCOMPLETE,
                         self.manage('sweep', '--apply'))
        self.assertIn('cannot list default', self.stdout.getvalue())
        self.assertEqual([], self.existing(orphan))

    def test_a_candidate_recorded_meanwhile_is_kept(self):
        # The registry is read again for each candidate: data whose image
        # became active after the locations were read is kept.
        image_id = self.image('saving')
        path = self.write(self.datadir, image_id)
        store_set = manage.load_store_set(self.paste, {
            'state_dir': self.state})
        image_registry = self.image_registry

        class LateRegistry:
            def all_locations(self):
                found = image_registry.all_locations()
                image_registry.transition(image_id, 'saving', 'active', {
                    'locations': [{'store': 'default',
                                   'url': 'file://' + path}]})
                return found

            def get(self, image_id):
                return image_registry.get(image_id)

        result = manage.sweep(LateRegistry(), store_set,
                              datetime.timedelta(0), apply=True,
                              say=lambda line: None)
        self.assertEqual(([], 0, 0), result)
        self.assertEqual([path], self.existing(path))

    def test_a_live_copy_keeps_its_data_past_the_grace_period(self):
        """Data of a copy longer than the grace period is not swept.

        The image is active without data in the store its copy writes to;
        the copy's temporary file, and its whole file not yet recorded,
        are hours old. Kept while the copy's lock is live, swept once
        its holder is dead.
        """
        image_id = self.image('active')
        self.image_registry.lock_for_copy(image_id, 'copy', ['default'])
        self.image_registry.create_task({
            'id': 'copy', 'image_id': image_id, 'type': 'api_image_import',
            'status': 'processing', 'holder': registry.holder_id(),
            'input': json.dumps({'backend': ['default']})})
        partial = self.write(self.datadir, '.%s.ab.partial' % image_id)
        whole = self.write(self.datadir, image_id)
        other = self.write(self.datadir, str(uuid.uuid4()))
        self.assertEqual(0, self.manage('sweep', '--apply',
                                        '--older-than', '0'))
        self.assertEqual([partial, whole],
                         self.existing(partial, whole, other))
        self.assertIn('1 orphan(s) found, 1 removed', self.stdout.getvalue())
        self.image_registry.update_task('copy', {'status': 'failure'})
        self.assertEqual(0, self.manage('sweep', '--apply',
                                        '--older-than', '0'))
        self.assertEqual([], self.existing(partial, whole))

    def test_a_copy_keeps_only_the_stores_it_writes_to(self):
        image_id = self.image('active')
        self.image_registry.lock_for_copy(image_id, 'copy', ['elsewhere'])
        self.image_registry.create_task({
            'id': 'copy', 'image_id': image_id, 'type': 'api_image_import',
            'status': 'processing', 'holder': registry.holder_id(),
            'input': json.dumps({'backend': ['elsewhere']})})
        partial = self.write(self.datadir, '.%s.ab.partial' % image_id)
        self.assertEqual(0, self.manage('sweep', '--apply'))
        self.assertEqual([], self.existing(partial))

    def test_a_dead_copy_keeps_nothing(self):
        image_id = self.image('active')
        self.image_registry.lock_for_copy(image_id, 'copy', ['default'])
        self.image_registry.create_task({
            'id': 'copy', 'image_id': image_id, 'type': 'api_image_import',
            'status': 'processing', 'holder': DEAD_HOLDER,
            'input': json.dumps({'backend': ['default']})})
        partial = self.write(self.datadir, '.%s.ab.partial' % image_id)
        self.assertEqual(0, self.manage('sweep', '--apply'))
        self.assertEqual([], self.existing(partial))

    def test_sweep_on_an_empty_database_asks_for_sync(self):
        database = self.useFixture(dbfixture.Database())
        self.assertEqual(manage.EXIT_CONFIG, self.manage(
            '-o', 'database_connection=%s' % database.url, 'sweep'))


class TestBackfillBlocks(ManageTestCase):
    """``imgmw-manage backfill-blocks``: digests for older images."""

    def setUp(self):
        super().setUp()
        self.image_registry = self.registry()
        self.datadir = os.path.join(self.state, 'images')
        os.makedirs(self.datadir)

    def old_image(self, data, status='active'):
        """An image recorded as before block digests existed."""
        image_id = str(uuid.uuid4())
        path = os.path.join(self.datadir, image_id)
        with open(path, 'wb') as out:
            out.write(data)
        self.image_registry.create({'id': image_id})
        self.image_registry.transition(image_id, 'queued', 'saving')
        self.image_registry.transition(image_id, 'saving', 'active', {
            'size': len(data),
            'checksum': hashlib.md5(data).hexdigest(),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest(),
            'locations': [{'store': 'default', 'url': 'file://' + path}]})
        if status == 'deactivated':
            self.image_registry.transition(image_id, 'active',
                                           'deactivated')
        return image_id, path

    def blocks_of(self, image_id):
        return self.image_registry.block_digests(image_id)

    def test_dry_run_lists_and_records_nothing(self):
        image_id, path = self.old_image(b'x' * 3000)
        self.assertEqual(0, self.manage('backfill-blocks'))
        output = self.stdout.getvalue()
        self.assertIn('would compute block digests of default file://%s '
                      '(image %s, 3000 bytes)' % (path, image_id), output)
        self.assertIn('1 location(s) without block digests; nothing read',
                      output)
        self.assertEqual({}, self.blocks_of(image_id))

    def test_apply_records_digests_that_verify_the_data(self):
        data = os.urandom(hashing.BLOCK_SIZE * 2 + 99)
        image_id, path = self.old_image(data)
        other_id, _ = self.old_image(b'small', status='deactivated')
        self.assertEqual(0, self.manage('backfill-blocks', '--apply'))
        blocks = self.blocks_of(image_id)['file://' + path]
        expected = hashing.BlockHasher()
        expected.update(data)
        self.assertEqual(expected.result(), blocks)
        self.assertTrue(blocks.usable_for(len(data)))
        self.assertEqual(1, len(self.blocks_of(other_id)))
        self.assertIn('2 location(s) without block digests, 2 recorded, '
                      '0 failed', self.stdout.getvalue())
        # Resumable: a second run finds nothing left to do.
        self.assertEqual(0, self.manage('backfill-blocks', '--apply'))
        self.assertIn('0 location(s) without block digests',
                      self.stdout.getvalue())

    def test_data_not_matching_the_record_is_never_blessed(self):
        image_id, path = self.old_image(b'abcdef' * 1000)
        with open(path, 'r+b') as stored:
            stored.seek(10)
            stored.write(b'X')
        gone_id, gone = self.old_image(b'gone')
        os.remove(gone)
        good_id, _ = self.old_image(b'good')
        self.assertEqual(manage.EXIT_INCOMPLETE,
                         self.manage('backfill-blocks', '--apply'))
        output = self.stdout.getvalue()
        self.assertIn("its MD5 does not match the image's checksum", output)
        self.assertIn('cannot compute block digests of default file://%s'
                      % gone, output)
        self.assertEqual({}, self.blocks_of(image_id))
        self.assertEqual({}, self.blocks_of(gone_id))
        self.assertEqual(1, len(self.blocks_of(good_id)))

    def test_limit_stops_early_and_the_next_run_resumes(self):
        ids = [self.old_image(b'%d' % index)[0] for index in range(3)]
        self.assertEqual(0, self.manage('backfill-blocks', '--apply',
                                        '--limit', '2'))
        done = [image_id for image_id in ids if self.blocks_of(image_id)]
        self.assertEqual(2, len(done))
        self.assertEqual(0, self.manage('backfill-blocks', '--apply'))
        self.assertTrue(all(self.blocks_of(image_id) for image_id in ids))

    def test_an_image_changed_meanwhile_is_skipped(self):
        image_id, path = self.old_image(b'data')
        self.image_registry.delete(image_id)
        blocks = hashing.BlockDigests('xxh3_64', 1, b'12345678')
        self.assertFalse(self.image_registry.set_block_digests(
            image_id, 'file://' + path, hashlib.md5(b'data').hexdigest(),
            blocks))

    def test_limit_must_be_positive(self):
        self.assertRaises(SystemExit, self.manage, 'backfill-blocks',
                          '--limit', '0')
