"""Import through the data app: contract section 4 (``POST .../import``)
and section 9 (a failed import leaves the image queued, staging empty)."""

import hashlib
import io
import os
import socket
import threading
import time

import fixtures

from imgmw import app as data_app
from imgmw.app import importer
from imgmw.app import registry
from imgmw.app import stores
from imgmw import environ as keys
from imgmw import errors
from imgmw import hashing
from tests.unit.app import test_stage


DATA = test_stage.DATA
GLANCE_DIRECT = {'method': {'name': 'glance-direct'}}


class ImportTestCase(test_stage.StagingAppTestCase):

    def import_request(self, image_id: str, body=None, store=None,
                       header=None, **kwargs):
        req = self.request('/v2/images/%s/import' % image_id, method='POST',
                           body=GLANCE_DIRECT if body is None else body,
                           headers={'Accept': 'application/json'}, **kwargs)
        req.environ[keys.STORE] = store
        if header is not None:
            req.headers['X-Image-Meta-Store'] = header
        return req

    def assertActive(self, image_id: str, store_ids) -> dict:
        record = self.registry.get(image_id)
        self.assertEqual('active', record['status'])
        self.assertEqual(len(DATA), record['size'])
        self.assertEqual(len(DATA), record['virtual_size'])
        self.assertEqual(hashlib.md5(DATA).hexdigest(), record['checksum'])
        self.assertEqual('sha512', record['os_hash_algo'])
        self.assertEqual(hashlib.sha512(DATA).hexdigest(),
                         record['os_hash_value'])
        self.assertIsNone(record['holder'])
        self.assertEqual(list(store_ids),
                         [loc['store'] for loc in record['locations']])
        blocks = hashing.BlockHasher()
        blocks.update(DATA)
        recorded = self.registry.block_digests(image_id)
        for location in record['locations']:
            with open(location['url'][len('file://'):], 'rb') as f:
                self.assertEqual(DATA, f.read())
            # Every location gets the block digests of the data.
            self.assertEqual(blocks.result(), recorded[location['url']])
        self.assertNotIn(registry.STAGE_HOST_PROPERTY, record['properties'])
        self.assertEqual([], self.staging_files())
        return record


class ImportTest(ImportTestCase):

    def test_glance_direct_is_202_then_active_4(self):
        image = self.staged()
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(202, resp.status_int, resp.body)
        self.assertEqual(b'', resp.body)
        self.assertNotIn('Content-Type', resp.headers)
        self.assertEqual(['imgmw-import-%s' % image['id']], self.spawned)
        self.assertActive(image['id'], ['default'])
        download = self.call(self.request('/v2/images/%s/file'
                                          % image['id']))
        self.assertEqual(DATA, download.body)

    def test_import_runs_in_a_thread_of_the_worker(self):
        self.app.spawn = importer.spawn_thread
        image = self.staged()
        started = threading.Event()
        real_add = self.store.add

        def add(*args):
            started.wait(10)
            return real_add(*args)

        self.useFixture(fixtures.MockPatchObject(self.store, 'add', add))
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(202, resp.status_int)
        self.assertEqual('importing', self.status_of(image['id']))
        started.set()
        for _ in range(200):
            if self.status_of(image['id']) == 'active':
                break
            threading.Event().wait(0.05)
        self.assertActive(image['id'], ['default'])

    def test_storage_quota_checked_at_import(self):
        """Issue 17 item 1: an import over the storage quota is 413."""
        image = self.staged()
        asked = []

        def reserve(project_id, image_id, size):
            asked.append((project_id, image_id, size))
            raise errors.storage_quota_exceeded(size, 3)
        req = self.import_request(image['id'])
        req.environ[keys.QUOTA_IMPORT] = reserve
        resp = self.call(req)
        self.assertEqual(413, resp.status_int, resp.body)
        self.assertIn('Image exceeds the storage quota: The size of the '
                      'data %d will exceed the limit. 3 bytes remaining.'
                      % len(DATA), resp.json['message'])
        self.assertEqual([(image['owner'], image['id'], len(DATA))], asked)
        self.assertEqual('uploading', self.status_of(image['id']))
        self.assertEqual([], self.spawned)

    def test_import_quota_held_until_the_image_is_importing(self):
        image = self.staged()
        events = []

        def reserve(project_id, image_id, size):
            events.append('reserved')
            return lambda: events.append(
                'released while %s' % self.status_of(image_id))
        req = self.import_request(image['id'])
        req.environ[keys.QUOTA_IMPORT] = reserve
        self.assertEqual(202, self.call(req).status_int)
        self.assertEqual(['reserved', 'released while importing'],
                         events[:2])
        self.assertActive(image['id'], ['default'])

    def test_unknown_method_is_400_4(self):
        image = self.staged()
        resp = self.call(self.import_request(
            image['id'], {'method': {'name': 'web-download'}}))
        self.assertEqual(400, resp.status_int)
        self.assertIn("Unknown import method name 'web-download'.",
                      resp.json['message'])
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_unknown_method_is_400_before_the_image_lookup(self):
        resp = self.call(self.import_request(
            'nope', {'method': {'name': 'copy-image'}}))
        self.assertEqual(400, resp.status_int)

    def test_malformed_bodies_are_400(self):
        image = self.staged()
        for body in (b'{', [], {}, {'method': 'glance-direct'},
                     {'method': {}}):
            resp = self.call(self.import_request(image['id'], body))
            self.assertEqual(400, resp.status_int, body)
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_unknown_image_is_404(self):
        resp = self.call(self.import_request('nope'))
        self.assertEqual(404, resp.status_int)
        self.assertIn('No image found with ID nope', resp.json['message'])

    def test_reader_is_403(self):
        image = self.staged()
        resp = self.call(self.import_request(image['id'],
                                             roles=('reader',)))
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete modify_image '
                      'action.', resp.json['message'])

    def test_image_not_staged_is_409_4(self):
        image = self.create()
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertIn("Image needs to be staged before 'glance-direct' "
                      "method can be used", resp.json['message'])
        self.assertEqual('queued', self.status_of(image['id']))

    def test_stage_still_streaming_is_409(self):
        image = self.create()
        self.registry.transition(image['id'], 'queued', 'uploading',
                                 holder='a:1:1')
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_second_import_is_409(self):
        image = self.staged()
        self.assertEqual(202, self.call(
            self.import_request(image['id'])).status_int)
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(409, resp.status_int)

    def test_formats_unset_is_409(self):
        image = self.staged(container_format=None)
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertIn("'container_format' needs to be set before import",
                      resp.json['message'])

    def test_staged_on_another_node_is_409(self):
        image = self.create()
        self.registry.transition(image['id'], 'queued', 'uploading',
                                 holder='a:1:1')
        self.registry.finish_stage(image['id'], 'a:1:1', len(DATA),
                                   'node2:/var/lib/imgmw/staging')
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertIn('was staged on another node '
                      '(node2:/var/lib/imgmw/staging)', resp.json['message'])
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_staged_data_gone_is_409_and_queued(self):
        image = self.staged()
        os.unlink(os.path.join(self.staging_dir, image['id']))
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertIn('stage it again', resp.json['message'])
        self.assertQueuedAndEmpty(image['id'])


class FailedImportTest(ImportTestCase):
    """Contract 9: a failed import leaves the image queued, staging empty."""

    def test_store_full_requeues_and_empties_staging(self):
        image = self.staged()
        self.useFixture(fixtures.MockPatchObject(
            self.store, '_copy',
            side_effect=stores.StorageFull('store default: full')))
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(202, resp.status_int)
        self.assertQueuedAndEmpty(image['id'])
        self.assertIn('import failed, back to queued', self.log.output)
        self.assertEqual(204, self.call(
            self.stage_request(image['id'])).status_int)

    def test_staged_data_of_the_wrong_size_requeues(self):
        image = self.staged()
        with open(os.path.join(self.staging_dir, image['id']), 'ab') as f:
            f.write(b'more')
        self.assertEqual(202, self.call(
            self.import_request(image['id'])).status_int)
        self.assertQueuedAndEmpty(image['id'])

    def test_registry_failing_at_commit_requeues(self):
        image = self.staged()
        real = self.registry.transition

        def transition(image_id, from_status, to_status, **kwargs):
            if to_status == 'active':
                raise registry.RegistryUnavailable('gone')
            return real(image_id, from_status, to_status, **kwargs)

        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'transition', transition))
        self.call(self.import_request(image['id']))
        # The commit's outcome is unknown to the app; the requeuer settles
        # image and data once the registry answers.
        self.wait_for_requeuer()
        self.assertQueuedAndEmpty(image['id'])

    def test_commit_made_but_its_answer_lost_keeps_the_data(self):
        """The import's commit went through, its answer did not."""
        image = self.staged()
        real = self.registry.transition

        def transition(image_id, from_status, to_status, **kwargs):
            result = real(image_id, from_status, to_status, **kwargs)
            if to_status == 'active':
                raise registry.RegistryUnavailable('connection lost')
            return result

        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'transition', transition))
        self.call(self.import_request(image['id']))
        self.wait_for_requeuer()
        record = self.registry.get(image['id'])
        self.assertEqual('active', record['status'])
        self.assertEqual(1, len(record['locations']))
        self.assertEqual(record['size'],
                         self.store.size(record['locations'][0]['url']))

    def wait_for_requeuer(self) -> None:
        deadline = time.monotonic() + 10
        while self.app.requeuer.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual([], self.app.requeuer.pending())

    def test_image_deleted_during_import_leaves_nothing(self):
        image = self.staged()
        real_add = self.store.add

        def add(image_id, reader, chunk_size):
            stored = real_add(image_id, reader, chunk_size)
            self.registry.delete(image_id)
            return stored

        self.useFixture(fixtures.MockPatchObject(self.store, 'add', add))
        self.assertEqual(202, self.call(
            self.import_request(image['id'])).status_int)
        self.assertIsNone(self.registry.get(image['id']))
        self.assertEqual([], os.listdir(self.datadir))
        self.assertEqual([], self.staging_files())

    def test_crashed_import_is_recovered_at_start_up(self):
        """A worker dying mid-import: queued, staged and partial removed."""
        image = self.staged()
        dead = '%s:1:1' % socket.gethostname()
        self.registry.transition(image['id'], 'uploading', 'importing',
                                 holder=dead)
        open(os.path.join(self.datadir, '.%s.x.partial' % image['id']),
             'wb').close()
        data_app.recover(self.registry, self.store_set)
        self.assertQueuedAndEmpty(image['id'])

    def beating_reader(self):
        """An ImportReader over 6 bytes beating every 10 s, held twice."""
        now = [0.0]
        beats = []
        source = importer.ImportReader(
            io.BytesIO(b'abcdef'), None,
            lambda: beats.append(now[0]) or len(beats) < 2, 10,
            clock=lambda: now[0])
        return source, now, beats

    def test_import_reader_beats_and_stops_when_the_hold_is_lost(self):
        source, now, beats = self.beating_reader()
        self.assertEqual(b'ab', source.read(2))
        now[0] = 10
        self.assertEqual(b'cd', source.read(2))
        now[0] = 20
        self.assertRaises(importer.ImportLost, source.read, 2)
        self.assertEqual([10, 20], beats)

    def test_import_reader_keeps_the_hold_while_the_store_waits(self):
        source, now, beats = self.beating_reader()
        now[0] = 10
        source.keep_alive()
        self.assertEqual([10], beats)
        now[0] = 20
        self.assertRaises(importer.ImportLost, source.keep_alive)


class MultiStoreImportTest(ImportTestCase):

    multi_store = True

    def test_default_store_without_header_4(self):
        image = self.staged()
        self.call(self.import_request(image['id'], store='fast'))
        self.assertActive(image['id'], ['fast'])

    def test_store_of_the_header_4(self):
        """The stores filter validated the header and published it."""
        image = self.staged()
        self.call(self.import_request(image['id'], store='cheap',
                                      header='cheap'))
        self.assertActive(image['id'], ['cheap'])
        self.assertEqual([], os.listdir(self.datadir))

    def test_stores_of_the_body_4(self):
        image = self.staged()
        body = dict(GLANCE_DIRECT, stores=['cheap', 'fast'])
        resp = self.call(self.import_request(image['id'], body,
                                             store='fast'))
        self.assertEqual(202, resp.status_int, resp.body)
        self.assertActive(image['id'], ['cheap', 'fast'])

    def test_all_stores_4(self):
        image = self.staged()
        body = dict(GLANCE_DIRECT, all_stores=True)
        self.call(self.import_request(image['id'], body, store='fast'))
        self.assertActive(image['id'], ['fast', 'cheap'])

    def test_unknown_store_of_the_body_is_409_4(self):
        image = self.staged()
        for store_id in ('nowhere', 'os_glance_staging_store'):
            body = dict(GLANCE_DIRECT, stores=['fast', store_id])
            resp = self.call(self.import_request(image['id'], body,
                                                 store='fast'))
            self.assertEqual(409, resp.status_int)
            self.assertIn('Store for identifier %s not found' % store_id,
                          resp.json['message'])
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_header_and_body_stores_are_400(self):
        image = self.staged()
        body = dict(GLANCE_DIRECT, stores=['fast'])
        resp = self.call(self.import_request(image['id'], body,
                                             store='cheap', header='cheap'))
        self.assertEqual(400, resp.status_int)
        self.assertIn("Stores parameter and x-image-meta-store header can't "
                      "be both specified", resp.json['message'])
        body = dict(GLANCE_DIRECT, all_stores=True)
        resp = self.call(self.import_request(image['id'], body,
                                             store='cheap', header='cheap'))
        self.assertEqual(400, resp.status_int)
        self.assertIn("All_stores parameter can't be used",
                      resp.json['message'])

    def test_one_store_failing_fails_the_import_and_cleans_both(self):
        image = self.staged()
        self.useFixture(fixtures.MockPatchObject(
            self.cheap, '_copy',
            side_effect=stores.StorageUnavailable('store cheap: EACCES')))
        body = dict(GLANCE_DIRECT, stores=['fast', 'cheap'])
        self.call(self.import_request(image['id'], body, store='fast'))
        self.assertQueuedAndEmpty(image['id'])
        self.assertEqual([], os.listdir(self.cheap_dir))


class ImportProgressTest(ImportTestCase):
    """The stores' progress on the image, as Glance 33 shows it."""

    multi_store = True

    def progress(self, image_id: str):
        """``(importing, failed, stores recorded)`` of the image."""
        record = self.registry.get(image_id)
        properties = record['properties']
        return (properties.get(registry.IMPORTING_PROPERTY),
                properties.get(registry.FAILED_PROPERTY),
                [location['store'] for location in record['locations']])

    def import_into(self, image_id: str, stores_ids, **body):
        body = dict(GLANCE_DIRECT, stores=list(stores_ids), **body)
        resp = self.call(self.import_request(image_id, body, store='fast'))
        self.assertEqual(202, resp.status_int, resp.body)

    def failing(self, store) -> None:
        self.useFixture(fixtures.MockPatchObject(
            store, '_copy',
            side_effect=stores.StorageUnavailable('store: EACCES')))

    def test_stores_listed_when_accepted_and_emptied_at_the_end(self):
        image = self.staged()
        held = []
        self.app.spawn = lambda target, name: held.append(target)
        self.import_into(image['id'], ['fast', 'cheap'])
        self.assertEqual(('cheap,fast', '', []), self.progress(image['id']))
        self.assertEqual('importing', self.status_of(image['id']))
        held[0]()
        self.assertActive(image['id'], ['fast', 'cheap'])
        self.assertEqual(('', '', ['fast', 'cheap']),
                         self.progress(image['id']))

    def test_a_store_leaves_the_list_as_its_location_is_recorded(self):
        image = self.staged()
        seen = []
        real_add = self.cheap.add

        def add(*args):
            seen.append(self.progress(image['id']))
            return real_add(*args)

        self.useFixture(fixtures.MockPatchObject(self.cheap, 'add', add))
        self.import_into(image['id'], ['fast', 'cheap'])
        self.assertEqual([('cheap', '', ['fast'])], seen)
        self.assertActive(image['id'], ['fast', 'cheap'])

    def test_a_failed_store_fails_the_import_when_all_must_succeed(self):
        image = self.staged()
        self.failing(self.cheap)
        self.import_into(image['id'], ['fast', 'cheap'])
        self.assertQueuedAndEmpty(image['id'])
        self.assertEqual([], os.listdir(self.cheap_dir))
        # The store copied to first is forgotten, not listed as failed.
        self.assertEqual(('', 'cheap', []), self.progress(image['id']))

    def test_stores_not_tried_leave_the_list_when_the_import_fails(self):
        image = self.staged()
        self.failing(self.store)
        self.import_into(image['id'], ['fast', 'cheap'])
        self.assertQueuedAndEmpty(image['id'])
        self.assertEqual([], os.listdir(self.cheap_dir))
        self.assertEqual(('', 'fast', []), self.progress(image['id']))

    def test_a_failed_store_is_skipped_unless_all_must_succeed(self):
        image = self.staged()
        self.failing(self.cheap)
        # The failing store first: the next pass hashes the data again.
        self.import_into(image['id'], ['cheap', 'fast'],
                         all_stores_must_succeed=False)
        self.assertActive(image['id'], ['fast'])
        self.assertEqual([], os.listdir(self.cheap_dir))
        self.assertEqual(('', 'cheap', ['fast']), self.progress(image['id']))

    def test_no_store_taking_the_data_fails_the_import(self):
        image = self.staged()
        self.failing(self.cheap)
        self.failing(self.store)
        self.import_into(image['id'], ['cheap', 'fast'],
                         all_stores_must_succeed=False)
        self.assertQueuedAndEmpty(image['id'])
        self.assertEqual(('', 'cheap,fast', []), self.progress(image['id']))

    def test_all_stores_must_succeed_not_a_boolean_is_400(self):
        image = self.staged()
        body = dict(GLANCE_DIRECT, all_stores_must_succeed='false')
        for image_id in (image['id'], 'unknown'):
            resp = self.call(self.import_request(image_id, body,
                                                 store='fast'))
            self.assertEqual(400, resp.status_int)
            self.assertIn("'all_stores_must_succeed' must be boolean value "
                          "only", resp.json['message'])
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_a_recovered_import_empties_the_list(self):
        image = self.staged()
        dead = '%s:1:1' % socket.gethostname()
        self.registry.transition(image['id'], 'uploading', 'importing',
                                 holder=dead, stores=['cheap', 'fast'])
        self.assertEqual(('cheap,fast', '', []), self.progress(image['id']))
        data_app.recover(self.registry, self.store_set)
        self.assertQueuedAndEmpty(image['id'])
        self.assertEqual(('', '', []), self.progress(image['id']))
