"""Tests of imgmw-manage against a fresh registry database."""

import datetime
import io
import os

import fixtures
import testtools

from imgmw.app import models
from imgmw.app import registry
from imgmw.cmd import manage
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
        dead = '%s:%d:1.00' % (registry.socket.gethostname(), 2 ** 22 + 1)
        stale = self.upload(image_registry, dead, datetime.timedelta(0))
        removed = []
        recovered = manage.recover(image_registry, datetime.timedelta(
            hours=1), removed.append, say=lambda line: None)
        self.assertEqual([stale], [record['id'] for record in recovered])
        self.assertEqual([stale], removed)
        self.assertEqual('queued', image_registry.get(stale)['status'])

    def test_recover_on_an_empty_database_asks_for_sync(self):
        self.assertEqual(manage.EXIT_CONFIG, self.manage('recover'))
        self.assertIn('db sync', self.stderr.getvalue())

    def test_older_than_must_be_seconds(self):
        self.assertRaises(SystemExit, self.manage, 'recover',
                          '--older-than', 'soon')
