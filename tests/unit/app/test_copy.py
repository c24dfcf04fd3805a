"""copy-image: an active image's data copied into more stores
(:mod:`imgmw.app.copier`)."""

import datetime
import hashlib
import io
import json
import os
import socket

import fixtures

from imgmw import app as data_app
from imgmw.app import api
from imgmw.app import copier
from imgmw.app import registry
from imgmw.app import stores
from imgmw.app.stores import filesystem
from imgmw import environ as keys
from imgmw import errors
from imgmw import hashing
from tests.unit.app import test_import


DATA = test_import.DATA
COPY = {'method': {'name': 'copy-image'}}


class CopyTestCase(test_import.ImportTestCase):
    """Three file stores: ``fast`` (default), ``cheap`` and ``slow``."""

    multi_store = True

    def setUp(self):
        super().setUp()
        self.slow_dir = os.path.realpath(
            self.useFixture(fixtures.TempDir()).path)
        self.slow = filesystem.FilesystemStore(
            'slow', {'filesystem_store_datadir': self.slow_dir})
        self.store_set.by_id['slow'] = self.slow
        self.app = api.DataApp(self.registry, self.store_set,
                               test_api_options())
        self.app.spawn = self.run_now

    def active(self) -> dict:
        """A new image, imported into ``fast``."""
        image = self.staged()
        resp = self.call(self.import_request(image['id'], store='fast'))
        self.assertEqual(202, resp.status_int, resp.body)
        return self.registry.get(image['id'])

    def copy_request(self, image_id: str, body=None, is_admin=True,
                     header=None, **kwargs):
        """As the stores filter publishes: the header's store, or fast."""
        return self.import_request(image_id, COPY if body is None else body,
                                   store=header or 'fast', header=header,
                                   is_admin=is_admin, **kwargs)

    def copy(self, image_id: str, *stores_, **kwargs):
        body = dict(COPY, stores=list(stores_), **kwargs)
        return self.call(self.copy_request(image_id, body))

    def file_of(self, record, store_id: str) -> str:
        for location in record['locations']:
            if location['store'] == store_id:
                return location['url'][len('file://'):]
        self.fail('no location in %s' % store_id)

    def assertCopied(self, image_id: str, store_ids) -> dict:
        record = self.registry.get(image_id)
        self.assertEqual('active', record['status'])
        self.assertEqual(list(store_ids),
                         [loc['store'] for loc in record['locations']])
        blocks = hashing.BlockHasher()
        blocks.update(DATA)
        recorded = self.registry.block_digests(image_id)
        for location in record['locations']:
            with open(location['url'][len('file://'):], 'rb') as f:
                self.assertEqual(DATA, f.read())
            self.assertEqual(blocks.result(), recorded[location['url']])
        self.assertEqual(hashlib.md5(DATA).hexdigest(), record['checksum'])
        self.assertNotIn(registry.IMPORT_TASK_PROPERTY,
                         record['properties'])
        self.assertEqual('', record['properties'][
            registry.IMPORTING_PROPERTY])
        return record


def test_api_options():
    from tests.unit.app import test_api
    return test_api.OPTIONS


class OfferedTest(CopyTestCase):

    def test_offered_with_two_stores_or_more(self):
        resp = self.call(self.request('/v2/info/import'))
        self.assertEqual(['glance-direct', 'copy-image'],
                         resp.json['import-methods']['value'])
        created = self.call(self.request(
            '/v2/images', method='POST',
            body={'name': 'x', 'disk_format': 'raw',
                  'container_format': 'bare'}))
        self.assertEqual('glance-direct,copy-image', created.headers[
            'OpenStack-image-import-methods'])

    def test_not_offered_with_one_store(self):
        for by_id, multi in (({'fast': self.store}, True),
                             ({'default': self.store}, False)):
            store_set = api.StoreSet(by_id, list(by_id)[0], multi,
                                     self.staging)
            self.assertFalse(copier.offered(store_set))
            app = api.DataApp(self.registry, store_set, test_api_options())
            self.assertEqual(('glance-direct',), app.import_methods)


class CopyTest(CopyTestCase):

    def test_copy_into_one_store(self):
        image = self.active()
        resp = self.copy(image['id'], 'cheap')
        self.assertEqual(202, resp.status_int, resp.body)
        self.assertEqual(b'', resp.body)
        self.assertEqual(['imgmw-copy-%s' % image['id']], self.spawned[1:])
        record = self.assertCopied(image['id'], ['fast', 'cheap'])
        self.assertEqual('', record['properties'][registry.FAILED_PROPERTY])
        self.assertEqual(image['updated_at'] <= record['updated_at'], True)
        # The image shows the copy's progress as Glance does.
        shown = self.call(self.request('/v2/images/%s' % image['id'])).json
        self.assertEqual('', shown['os_glance_importing_to_stores'])
        self.assertEqual('', shown['os_glance_failed_import'])
        self.assertEqual('fast,cheap', shown['stores'])
        self.assertNotIn('os_glance_import_task', shown)

    def test_the_copy_is_a_task_of_the_image(self):
        image = self.active()
        self.copy(image['id'], 'cheap', 'slow')
        listed = self.call(self.request(
            '/v2/images/%s/tasks' % image['id'])).json['tasks']
        self.assertEqual(2, len(listed))
        task = listed[1]
        self.assertEqual('success', task['status'])
        self.assertEqual({'image_id': image['id']}, task['result'])
        self.assertEqual(['cheap', 'slow'], task['input']['backend'])
        self.assertEqual('copy-image',
                         task['input']['import_req']['method']['name'])

    def test_copy_into_several_stores(self):
        image = self.active()
        self.copy(image['id'], 'slow', 'cheap')
        self.assertCopied(image['id'], ['fast', 'slow', 'cheap'])

    def test_all_stores_leaves_out_those_holding_it(self):
        image = self.active()
        resp = self.call(self.copy_request(image['id'],
                                           dict(COPY, all_stores=True)))
        self.assertEqual(202, resp.status_int, resp.body)
        self.assertCopied(image['id'], ['fast', 'cheap', 'slow'])
        spawned = list(self.spawned)
        # Already everywhere: 202 and nothing done, no task.
        resp = self.call(self.copy_request(image['id'],
                                           dict(COPY, all_stores=True)))
        self.assertEqual(202, resp.status_int, resp.body)
        self.assertEqual(spawned, self.spawned)
        self.assertEqual(2, len(self.registry.tasks(image['id'])))

    def test_the_store_of_the_header(self):
        image = self.active()
        resp = self.call(self.copy_request(image['id'], COPY,
                                           header='slow'))
        self.assertEqual(202, resp.status_int, resp.body)
        self.assertCopied(image['id'], ['fast', 'slow'])

    def test_a_deactivated_copy_source_still_answers_409(self):
        image = self.active()
        self.registry.transition(image['id'], 'active', 'deactivated')
        resp = self.copy(image['id'], 'cheap')
        self.assertEqual(409, resp.status_int)
        self.assertIn('Only images with status active can be targeted for '
                      'copying', resp.json['message'])


class RefusedCopyTest(CopyTestCase):

    def assertUntouched(self, image_id: str) -> None:
        record = self.registry.get(image_id)
        self.assertEqual(['fast'], [location['store']
                                    for location in record['locations']])
        self.assertNotIn(registry.IMPORT_TASK_PROPERTY,
                         record['properties'])
        self.assertEqual([], os.listdir(self.cheap_dir))
        self.assertEqual([], os.listdir(self.slow_dir))

    def test_non_boolean_flags_are_400_before_the_lookup(self):
        for name in ('all_stores_must_succeed', 'all_stores'):
            resp = self.call(self.copy_request(
                'nope', dict(COPY, stores=['cheap'], **{name: 'yes'})))
            self.assertEqual(400, resp.status_int)
            self.assertIn("'%s' must be boolean value only" % name,
                          resp.json['message'])

    def test_unknown_image_is_404(self):
        resp = self.copy('nope', 'cheap')
        self.assertEqual(404, resp.status_int)

    def test_image_not_active_is_409(self):
        image = self.staged()
        resp = self.copy(image['id'], 'cheap')
        self.assertEqual(409, resp.status_int)
        self.assertIn('Only images with status active can be targeted for '
                      'copying', resp.json['message'])
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_policy_copy_image_is_403_for_a_member(self):
        image = self.active()
        resp = self.call(self.copy_request(
            image['id'], dict(COPY, stores=['cheap']), is_admin=False))
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete copy_image '
                      'action.', resp.json['message'])
        self.assertUntouched(image['id'])

    def test_unknown_store_is_409(self):
        image = self.active()
        resp = self.copy(image['id'], 'cheap', 'nowhere')
        self.assertEqual(409, resp.status_int)
        self.assertIn('Store for identifier nowhere not found',
                      resp.json['message'])
        self.assertUntouched(image['id'])

    def test_store_holding_it_already_is_400(self):
        image = self.active()
        resp = self.copy(image['id'], 'cheap', 'fast')
        self.assertEqual(400, resp.status_int)
        self.assertIn("Image is already present at store 'fast'",
                      resp.json['message'])
        self.assertUntouched(image['id'])

    def test_all_stores_with_stores_is_400(self):
        image = self.active()
        resp = self.copy(image['id'], 'cheap', all_stores=True)
        self.assertEqual(400, resp.status_int)
        self.assertIn("All_stores parameter can't be used",
                      resp.json['message'])

    def test_a_copy_under_way_is_409(self):
        image = self.active()
        self.registry.lock_for_copy(image['id'], 'other-task', ['slow'])
        self.registry.create_task({
            'id': 'other-task', 'image_id': image['id'],
            'type': 'api_image_import', 'status': 'processing',
            'input': '{"backend": ["slow"]}'})
        resp = self.copy(image['id'], 'cheap')
        self.assertEqual(409, resp.status_int)
        self.assertIn('Image has active task', resp.json['message'])
        record = self.registry.get(image['id'])
        self.assertEqual('other-task', record['properties'][
            registry.IMPORT_TASK_PROPERTY])
        self.assertEqual([], os.listdir(self.cheap_dir))

    def test_losing_the_race_for_the_lock_is_409(self):
        image = self.active()
        real = self.registry.lock_for_copy

        def lock_for_copy(image_id, task_id, *args):
            real(image_id, 'other-task', ['slow'])
            return real(image_id, task_id, *args)
        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'lock_for_copy', lock_for_copy))
        resp = self.copy(image['id'], 'cheap')
        self.assertEqual(409, resp.status_int)
        self.assertIn("New operation on image '%s' is not permitted as "
                      "prior operation is still in progress" % image['id'],
                      resp.json['message'])
        self.assertEqual([], os.listdir(self.cheap_dir))

    def test_a_stale_lock_is_taken_over(self):
        image = self.active()
        self.registry.lock_for_copy(image['id'], 'crashed', ['slow'])
        self.registry.create_task({
            'id': 'crashed', 'image_id': image['id'],
            'type': 'api_image_import', 'status': 'processing',
            'input': '{"backend": ["slow"]}'})
        self.app.copy_stale_after = datetime.timedelta(0)
        resp = self.copy(image['id'], 'cheap')
        self.assertEqual(202, resp.status_int, resp.body)
        record = self.assertCopied(image['id'], ['fast', 'cheap'])
        self.assertEqual('', record['properties'][
            registry.IMPORTING_PROPERTY])
        crashed = [task for task in self.registry.tasks(image['id'])
                   if task['id'] == 'crashed'][0]
        self.assertEqual('failure', crashed['status'])

    def test_over_the_storage_quota_is_413(self):
        image = self.active()
        asked = []

        def reserve(project_id, image_id, size):
            asked.append((project_id, image_id, size))
            raise errors.storage_quota_exceeded(size, 3)
        req = self.copy_request(image['id'],
                                dict(COPY, stores=['cheap', 'slow']))
        req.environ[keys.QUOTA_IMPORT] = reserve
        resp = self.call(req)
        self.assertEqual(413, resp.status_int, resp.body)
        self.assertIn('Image exceeds the storage quota', resp.json['message'])
        # The image's bytes once per copy it would have: fast, cheap, slow.
        self.assertEqual([(image['owner'], image['id'], 3 * len(DATA))],
                         asked)
        self.assertUntouched(image['id'])

    def test_quota_held_until_the_copy_is_listed(self):
        image = self.active()
        events = []

        def reserve(project_id, image_id, size):
            events.append('reserve')
            return lambda: events.append(
                ('release', self.registry.get(image_id)['properties'].get(
                    registry.IMPORTING_PROPERTY)))
        req = self.copy_request(image['id'], dict(COPY, stores=['cheap']))
        req.environ[keys.QUOTA_IMPORT] = reserve
        self.app.spawn = lambda target, name: None
        resp = self.call(req)
        self.assertEqual(202, resp.status_int)
        self.assertEqual(['reserve', ('release', 'cheap')], events)


class FailedCopyTest(CopyTestCase):

    def corrupt(self, record, store_id='fast') -> None:
        path = self.file_of(record, store_id)
        with open(path, 'r+b') as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 1]))

    def assertFailed(self, image_id: str, failed: str) -> dict:
        record = self.registry.get(image_id)
        self.assertEqual('active', record['status'])
        self.assertEqual(['fast'], [location['store']
                                    for location in record['locations']])
        self.assertNotIn(registry.IMPORT_TASK_PROPERTY,
                         record['properties'])
        self.assertEqual('', record['properties'][
            registry.IMPORTING_PROPERTY])
        self.assertEqual(failed, record['properties'][
            registry.FAILED_PROPERTY])
        self.assertEqual([], os.listdir(self.cheap_dir))
        self.assertEqual([], os.listdir(self.slow_dir))
        tasks = self.registry.tasks(image_id)
        self.assertEqual('failure', tasks[-1]['status'])
        return record

    def test_corrupt_source_fails_and_leaves_nothing(self):
        image = self.active()
        self.corrupt(image)
        resp = self.copy(image['id'], 'cheap')
        self.assertEqual(202, resp.status_int)
        self.assertFailed(image['id'], 'cheap')
        self.assertIn('corrupt', self.registry.tasks(image['id'])[-1][
            'message'])

    def test_corrupt_source_without_block_digests_fails_on_checksum(self):
        image = self.active()
        self.corrupt(image)
        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'block_digests', return_value={}))
        self.copy(image['id'], 'cheap')
        self.assertFailed(image['id'], 'cheap')
        self.assertIn('checksum', self.registry.tasks(image['id'])[-1][
            'message'])

    def test_store_failing_keeps_no_partial_data(self):
        image = self.active()
        self.useFixture(fixtures.MockPatchObject(
            self.cheap, '_copy',
            side_effect=stores.StorageFull('store cheap: ENOSPC')))
        self.copy(image['id'], 'cheap')
        self.assertFailed(image['id'], 'cheap')

    def test_all_must_succeed_removes_the_copies_made(self):
        image = self.active()
        self.useFixture(fixtures.MockPatchObject(
            self.cheap, '_copy',
            side_effect=stores.StorageFull('store cheap: ENOSPC')))
        self.copy(image['id'], 'slow', 'cheap')
        self.assertFailed(image['id'], 'cheap')

    def test_without_all_must_succeed_the_others_are_kept(self):
        image = self.active()
        real_copy = self.cheap._copy
        full = [True]

        def copy(*args):
            if full[0]:
                raise stores.StorageFull('store cheap: ENOSPC')
            return real_copy(*args)
        self.useFixture(fixtures.MockPatchObject(self.cheap, '_copy', copy))
        self.copy(image['id'], 'cheap', 'slow',
                  all_stores_must_succeed=False)
        record = self.registry.get(image['id'])
        self.assertEqual(['fast', 'slow'], [
            location['store'] for location in record['locations']])
        self.assertEqual('cheap', record['properties'][
            registry.FAILED_PROPERTY])
        self.assertEqual('', record['properties'][
            registry.IMPORTING_PROPERTY])
        self.assertEqual([], os.listdir(self.cheap_dir))
        self.assertEqual('success',
                         self.registry.tasks(image['id'])[-1]['status'])
        # A later copy into the failed store clears it from the list.
        full[0] = False
        self.copy(image['id'], 'cheap')
        record = self.assertCopied(image['id'], ['fast', 'slow', 'cheap'])
        self.assertEqual('', record['properties'][registry.FAILED_PROPERTY])

    def test_image_deleted_during_the_copy_leaves_nothing(self):
        image = self.active()
        real_add = self.cheap.add

        def add(image_id, reader, chunk_size):
            stored = real_add(image_id, reader, chunk_size)
            self.call(self.request('/v2/images/%s' % image_id,
                                   method='DELETE'))
            return stored
        self.useFixture(fixtures.MockPatchObject(self.cheap, 'add', add))
        self.copy(image['id'], 'cheap')
        self.assertIsNone(self.registry.get(image['id']))
        self.assertEqual([], os.listdir(self.cheap_dir))

    def test_the_reader_beats_and_stops_when_the_lock_is_lost(self):
        beats = []

        def beat(copied):
            beats.append(copied)
            return len(beats) < 2
        ticks = iter(range(0, 1000, 40))
        reader = copier.CopyReader(
            open(__file__, 'rb'), hashing.MultiHasher(['md5']), beat, 30,
            clock=lambda: next(ticks))
        self.addCleanup(reader.source.close)
        self.assertEqual(b'"""', reader.read(3))
        self.assertEqual([0], beats)
        self.assertRaises(copier.CopyLost, reader.read, 3)
        self.assertEqual([0, 3], beats)

    def test_the_reader_keeps_the_lock_while_the_store_waits(self):
        beats = []
        now = [0.0]
        reader = copier.CopyReader(
            io.BytesIO(b'abc'), hashing.MultiHasher(['md5']),
            lambda copied: beats.append(copied) or len(beats) < 2, 30,
            clock=lambda: now[0])
        self.assertEqual(b'abc', reader.read(3))
        now[0] = 30
        reader.keep_alive()
        self.assertEqual([3], beats)
        now[0] = 60
        self.assertRaises(copier.CopyLost, reader.keep_alive)


#: A holder of this host whose process does not run (pids stop below 2**22).
DEAD = '%s:%d:1.00' % (socket.gethostname(), 2 ** 22 + 1)


class RecoverCopyTest(CopyTestCase):
    """A copy whose worker died: its lock, its stores, its data."""

    def crashed_copy(self, image_id: str, store_ids=('cheap',),
                     holder: str = DEAD, task: bool = True,
                     task_id: str = 'crashed') -> None:
        """The registry and the stores as a copy killed mid-way leaves them.

        Each store has half a temporary file.
        """
        self.assertEqual('locked', self.registry.lock_for_copy(
            image_id, task_id, list(store_ids)))
        if task:
            self.registry.create_task({
                'id': task_id, 'image_id': image_id,
                'type': 'api_image_import', 'status': 'processing',
                'holder': holder,
                'input': json.dumps({'backend': list(store_ids)})})
        for store_id in store_ids:
            directory = self.store_set.by_id[store_id].datadir
            with open(os.path.join(directory, '.%s.x1.partial' % image_id),
                      'wb') as partial:
                partial.write(DATA[:len(DATA) // 2])

    def task(self, image_id: str, task_id: str = 'crashed') -> dict:
        return [task for task in self.registry.tasks(image_id)
                if task['id'] == task_id][0]

    def test_the_task_records_its_holder(self):
        image = self.active()
        self.copy(image['id'], 'cheap')
        self.assertEqual(registry.holder_id(),
                         self.registry.tasks(image['id'])[-1]['holder'])
        listed = self.call(self.request(
            '/v2/images/%s/tasks' % image['id'])).json['tasks']
        self.assertNotIn('holder', listed[-1])

    def test_a_dead_holder_is_released_at_once(self):
        image = self.active()
        self.crashed_copy(image['id'], ['cheap', 'slow'])
        # A newer copy is refused: the lock is fresh.
        self.assertEqual(409, self.copy(image['id'], 'cheap').status_int)
        recovered = copier.recover_copies(self.registry, self.store_set)
        self.assertEqual([('crashed', DEAD, ['cheap', 'slow'])],
                         [(copy.task_id, copy.holder, copy.failed)
                          for copy in recovered])
        record = self.registry.get(image['id'])
        self.assertEqual('active', record['status'])
        self.assertEqual(['fast'], [location['store']
                                    for location in record['locations']])
        self.assertNotIn(registry.IMPORT_TASK_PROPERTY, record['properties'])
        self.assertEqual('', record['properties'][
            registry.IMPORTING_PROPERTY])
        self.assertEqual('cheap,slow', record['properties'][
            registry.FAILED_PROPERTY])
        self.assertEqual([], os.listdir(self.cheap_dir))
        self.assertEqual([], os.listdir(self.slow_dir))
        with open(self.file_of(record, 'fast'), 'rb') as data:
            self.assertEqual(DATA, data.read())
        crashed = self.task(image['id'])
        self.assertEqual('failure', crashed['status'])
        self.assertIn('died', crashed['message'])
        # The next copy is accepted at once, and clears the failed list.
        resp = self.copy(image['id'], 'cheap', 'slow')
        self.assertEqual(202, resp.status_int, resp.body)
        record = self.assertCopied(image['id'], ['fast', 'cheap', 'slow'])
        self.assertEqual('', record['properties'][registry.FAILED_PROPERTY])

    def test_stores_copied_before_the_crash_are_kept(self):
        image = self.active()
        real_add = self.slow.add

        def add(image_id, reader, chunk_size):
            # The worker dies while writing into slow, cheap copied.
            real_add(image_id, reader, chunk_size)
            raise SystemExit('killed')
        self.useFixture(fixtures.MockPatchObject(self.slow, 'add', add))
        self.useFixture(fixtures.MockPatchObject(copier.CopyJob, 'end'))
        self.useFixture(fixtures.MockPatchObject(
            copier.holders, 'holder_id', return_value=DEAD))
        self.copy(image['id'], 'cheap', 'slow')
        record = self.registry.get(image['id'])
        self.assertEqual('slow', record['properties'][
            registry.IMPORTING_PROPERTY])
        self.assertEqual([image['id']], os.listdir(self.slow_dir))
        recovered = copier.recover_copies(self.registry, self.store_set)
        self.assertEqual([['slow']], [copy.failed for copy in recovered])
        record = self.registry.get(image['id'])
        self.assertEqual(['fast', 'cheap'], [
            location['store'] for location in record['locations']])
        self.assertEqual('slow', record['properties'][
            registry.FAILED_PROPERTY])
        self.assertEqual([], os.listdir(self.slow_dir))
        with open(self.file_of(record, 'cheap'), 'rb') as data:
            self.assertEqual(DATA, data.read())

    def test_a_live_holder_is_never_touched(self):
        image = self.active()
        self.crashed_copy(image['id'], holder=registry.holder_id())
        self.assertEqual([], copier.recover_copies(
            self.registry, self.store_set))
        record = self.registry.get(image['id'])
        self.assertEqual('crashed', record['properties'][
            registry.IMPORT_TASK_PROPERTY])
        self.assertEqual('cheap', record['properties'][
            registry.IMPORTING_PROPERTY])
        self.assertEqual(['.%s.x1.partial' % image['id']],
                         os.listdir(self.cheap_dir))
        self.assertEqual('processing', self.task(image['id'])['status'])

    def test_a_holder_elsewhere_is_judged_by_its_heartbeat(self):
        image = self.active()
        self.crashed_copy(image['id'], holder='elsewhere:1:1')
        self.assertEqual([], copier.recover_copies(
            self.registry, self.store_set))
        recovered = copier.recover_copies(
            self.registry, self.store_set, older_than=datetime.timedelta(0))
        self.assertEqual([['cheap']], [copy.failed for copy in recovered])
        self.assertEqual([], os.listdir(self.cheap_dir))

    def test_a_lock_without_a_task_is_judged_by_the_image_age(self):
        image = self.active()
        self.crashed_copy(image['id'], ['cheap', 'slow'], task=False)
        self.assertEqual([], copier.recover_copies(
            self.registry, self.store_set))
        self.assertEqual(1, len(os.listdir(self.cheap_dir)))
        recovered = copier.recover_copies(
            self.registry, self.store_set, older_than=datetime.timedelta(0))
        self.assertEqual([(None, None, ['cheap', 'slow'])], [
            (copy.holder, copy.heartbeat_at, copy.failed)
            for copy in recovered])
        self.assertEqual([], os.listdir(self.cheap_dir))

    def test_a_copy_that_heartbeats_meanwhile_is_left_alone(self):
        image = self.active()
        self.crashed_copy(image['id'])
        seen = self.task(image['id'])['updated_at']
        self.registry.update_task('crashed', {'message': 'Copied 1 MiB'})
        self.assertIsNone(self.registry.release_dead_copy(
            image['id'], 'crashed', seen, ['cheap']))
        self.assertIsNone(self.registry.release_dead_copy(
            image['id'], 'other', self.task(image['id'])['updated_at']))
        record = self.registry.get(image['id'])
        self.assertEqual('crashed', record['properties'][
            registry.IMPORT_TASK_PROPERTY])
        self.assertEqual('cheap', record['properties'][
            registry.IMPORTING_PROPERTY])
        self.assertEqual(['cheap'], self.registry.release_dead_copy(
            image['id'], 'crashed', self.task(image['id'])['updated_at'],
            ['cheap']))

    def test_start_up_recovery_releases_dead_copies(self):
        image = self.active()
        self.crashed_copy(image['id'])
        data_app.recover(self.registry, self.store_set)
        record = self.registry.get(image['id'])
        self.assertNotIn(registry.IMPORT_TASK_PROPERTY, record['properties'])
        self.assertEqual('cheap', record['properties'][
            registry.FAILED_PROPERTY])
        self.assertEqual([], os.listdir(self.cheap_dir))
