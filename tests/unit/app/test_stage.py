"""Stage through the data app: contract section 4 (``PUT .../stage``).

Also the shared helpers of the import tests: a data app with a staging area
and, with multi-store, two file stores ``fast`` (default) and ``cheap``.
"""

import datetime
import os
import socket
import time

import fixtures
import webob.exc

from imgmw import app as data_app
from imgmw.app import api
from imgmw.app import registry
from imgmw.app import stage
from imgmw.app import stores
from imgmw.app.stores import filesystem
from imgmw import environ as keys
from imgmw import streams
from tests.unit.app import test_api
from tests.unit import fakes


DATA = b'staged image data, not yet imported'


class StagingAppTestCase(test_api.AppTestCase):
    """A data app with a staging area; imports run synchronously."""

    #: The data app's options (4-byte reads, to cross every boundary).
    app_options = test_api.OPTIONS

    def setUp(self):
        super().setUp()
        self.staging_dir = os.path.realpath(
            self.useFixture(fixtures.TempDir()).path)
        self.staging = stage.StagingArea(self.staging_dir)
        by_id = {'default': self.store}
        default = 'default'
        if self.multi_store:
            self.cheap_dir = os.path.realpath(
                self.useFixture(fixtures.TempDir()).path)
            self.cheap = filesystem.FilesystemStore(
                'cheap', {'filesystem_store_datadir': self.cheap_dir})
            self.store = filesystem.FilesystemStore(
                'fast', {'filesystem_store_datadir': self.datadir})
            by_id = {'fast': self.store, 'cheap': self.cheap}
            default = 'fast'
        self.store_set = api.StoreSet(by_id, default, self.multi_store,
                                      self.staging)
        self.app = api.DataApp(self.registry, self.store_set,
                               self.app_options)
        self.spawned = []
        self.app.spawn = self.run_now

    def run_now(self, target, name):
        self.spawned.append(name)
        target()

    def stage_request(self, image_id: str, data: bytes = DATA,
                      proxy=None, **kwargs):
        req = fakes.upload_request('/v2/images/%s/stage' % image_id, data,
                                   headers={'Accept': 'application/json'})
        self.with_context(req, **kwargs)
        if proxy is not None:
            streams.install(req.environ, proxy(req.environ['wsgi.input']))
        return req

    def staged(self, **values) -> dict:
        """A new image, staged with :data:`DATA`."""
        image = self.create(**values)
        resp = self.call(self.stage_request(image['id']))
        self.assertEqual(204, resp.status_int, resp.body)
        return self.registry.get(image['id'])

    def staging_files(self):
        return sorted(os.listdir(self.staging_dir))

    def assertQueuedAndEmpty(self, image_id: str) -> None:
        """Invariant: queued, no size, nothing staged nor stored."""
        record = self.registry.get(image_id)
        self.assertEqual('queued', record['status'])
        for key in ('size', 'checksum', 'os_hash_value', 'holder'):
            self.assertIsNone(record[key], key)
        self.assertEqual([], record['locations'])
        self.assertEqual([], self.staging_files())
        self.assertEqual([], os.listdir(self.datadir))


class BreakingProxy(streams.InputProxy):
    """A filter's check failing mid-stream (as size would)."""

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        if self.bytes_received > 8:
            raise streams.StreamError(webob.exc.HTTPBadRequest(
                'Size exceeds: expected 8 bytes, got 9 bytes'))
        return chunk


class StageTest(StagingAppTestCase):

    def test_success_leaves_uploading_with_size_4(self):
        """contract 4: 204 without Content-Type, uploading, size set."""
        image = self.create()
        req = self.stage_request(image['id'])
        resp = self.call(req)
        self.assertEqual(204, resp.status_int)
        self.assertEqual(b'', resp.body)
        self.assertNotIn('Content-Type', resp.headers)
        record = self.registry.get(image['id'])
        self.assertEqual('uploading', record['status'])
        self.assertEqual(len(DATA), record['size'])
        for key in ('checksum', 'os_hash_algo', 'os_hash_value', 'holder',
                    'heartbeat_at'):
            self.assertIsNone(record[key], key)
        self.assertEqual([], record['locations'])
        self.assertEqual(self.staging.host, record['properties'][
            registry.STAGE_HOST_PROPERTY])
        self.assertEqual([image['id']], self.staging_files())
        with open(os.path.join(self.staging_dir, image['id']), 'rb') as f:
            self.assertEqual(DATA, f.read())
        self.assertEqual([], os.listdir(self.datadir))
        self.assertEqual('uploading', req.environ[keys.IMAGE]['status'])

    def test_stage_host_is_hidden_from_the_image_json_4(self):
        image = self.staged()
        shown = self.call(self.request('/v2/images/%s' % image['id'])).json
        self.assertEqual('uploading', shown['status'])
        self.assertEqual(len(DATA), shown['size'])
        self.assertIsNone(shown['checksum'])
        self.assertNotIn(registry.STAGE_HOST_PROPERTY, shown)

    def test_formats_are_not_needed_4(self):
        image = self.create(disk_format=None, container_format=None)
        resp = self.call(self.stage_request(image['id']))
        self.assertEqual(204, resp.status_int, resp.body)
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_no_store_is_needed_4(self):
        """X-Image-Meta-Store is ignored on stage: no imgmw.store needed."""
        image = self.create()
        req = self.stage_request(image['id'])
        del req.environ[keys.STORE]
        req.headers['X-Image-Meta-Store'] = 'nowhere'
        self.assertEqual(204, self.call(req).status_int)

    def test_second_stage_is_409_4(self):
        """contract 4: from uploading to uploading is not allowed."""
        image = self.staged()
        resp = self.call(self.stage_request(image['id'], b'other'))
        self.assertEqual(409, resp.status_int)
        self.assertIn('Image status transition from uploading to uploading '
                      'is not allowed', resp.json['message'])
        with open(os.path.join(self.staging_dir, image['id']), 'rb') as f:
            self.assertEqual(DATA, f.read())

    def test_active_image_is_409_4(self):
        image = self.create()
        self.registry.transition(image['id'], 'queued', 'active')
        resp = self.call(self.stage_request(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertIn('Image status transition from active to uploading is '
                      'not allowed', resp.json['message'])
        self.assertEqual([], self.staging_files())

    def test_unknown_image_is_404_3_8(self):
        resp = self.call(self.stage_request('nope'))
        self.assertEqual(404, resp.status_int)
        self.assertIn('No image found with ID nope', resp.json['message'])

    def test_reader_is_403_modify_image_4(self):
        """contract 4: the policy of a stage is modify_image."""
        image = self.create()
        resp = self.call(self.stage_request(image['id'], roles=('reader',)))
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete modify_image '
                      'action.', resp.json['message'])
        self.assertQueuedAndEmpty(image['id'])

    def test_filter_error_mid_stream_restores_queued_3_14(self):
        image = self.create()
        req = self.stage_request(image['id'])
        proxy = streams.install(req.environ,
                                BreakingProxy(req.environ['wsgi.input']))
        resp = req.get_response(lambda environ, start_response:
                                streams.call_app(self.app, environ,
                                                 start_response, proxy))
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size exceeds', resp.text)
        self.assertQueuedAndEmpty(image['id'])
        self.assertEqual(204, self.call(
            self.stage_request(image['id'])).status_int)

    def test_staging_full_is_413_and_restores_3_20(self):
        image = self.create()
        self.useFixture(fixtures.MockPatchObject(
            self.staging.store, '_copy',
            side_effect=stores.StorageFull('store os_glance_staging_store: '
                                           'No space left on device')))
        resp = self.call(self.stage_request(image['id']))
        self.assertEqual(413, resp.status_int)
        self.assertIn('Image storage media is full: store '
                      'os_glance_staging_store: No space left on device',
                      resp.json['message'])
        self.assertQueuedAndEmpty(image['id'])

    def test_registry_unavailable_at_commit_is_503_3_22(self):
        image = self.create()
        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'finish_stage',
            side_effect=registry.RegistryUnavailable('gone')))
        resp = self.call(self.stage_request(image['id']))
        self.assertEqual(503, resp.status_int)
        self.assertIn('Image registry is unavailable.', resp.json['message'])
        # The outcome of a failed statement is unknown to the app: image
        # and staged data are settled once the registry answers.
        deadline = time.monotonic() + 10
        while self.app.requeuer.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertQueuedAndEmpty(image['id'])

    def test_image_deleted_during_stage_is_404_4(self):
        """As Glance: a stage of an image deleted meanwhile is 404."""
        image = self.create()
        registry_ = self.registry

        class Deleting(streams.InputProxy):
            def chunk_update(self, chunk, eof):
                if eof:
                    registry_.delete(image['id'])
                return chunk

        resp = self.call(self.stage_request(image['id'], proxy=Deleting))
        self.assertEqual(404, resp.status_int)
        self.assertIn('No image found with ID %s' % image['id'],
                      resp.json['message'])
        self.assertEqual([], self.staging_files())

    def test_without_a_staging_area_stage_is_501(self):
        app = api.DataApp(self.registry, api.StoreSet(
            {'default': self.store}, 'default', False), test_api.OPTIONS)
        image = self.create()
        resp = self.stage_request(image['id']).get_response(app)
        self.assertEqual(501, resp.status_int)


class StagedRecordTest(StagingAppTestCase):
    """The registry's view of a staged image."""

    def test_staged_image_is_never_stale(self):
        image = self.staged()
        self.assertEqual([], self.registry.recover_stale(
            older_than=datetime.timedelta(0),
            holder_alive=lambda holder: False))
        self.assertEqual('uploading', self.status_of(image['id']))

    def test_stage_of_a_dead_worker_is_recovered_with_its_staged_data(self):
        """A crash mid-stage: queued again, partial staging removed."""
        image = self.create()
        self.registry.transition(image['id'], 'queued', 'uploading',
                                 holder='%s:1:1' % socket.gethostname())
        partial = os.path.join(self.staging_dir,
                               '.%s.x.partial' % image['id'])
        open(partial, 'wb').close()
        open(os.path.join(self.staging_dir, image['id']), 'wb').close()
        data_app.recover(self.registry, self.store_set)
        self.assertQueuedAndEmpty(image['id'])

    def test_finish_stage_of_a_lost_hold_is_none(self):
        image = self.create()
        self.registry.transition(image['id'], 'queued', 'uploading',
                                 holder='a:1:1')
        self.assertIsNone(self.registry.finish_stage(image['id'], 'b:1:1',
                                                     4, 'host'))
        staged = self.registry.finish_stage(image['id'], 'a:1:1', 4, 'host')
        self.assertEqual(4, staged['size'])
        self.assertEqual('host', staged['properties'][
            registry.STAGE_HOST_PROPERTY])

    def test_requeue_forgets_the_stage_host(self):
        image = self.staged()
        queued = self.registry.transition(image['id'], 'uploading', 'queued')
        self.assertNotIn(registry.STAGE_HOST_PROPERTY, queued['properties'])

    def test_patch_of_a_staged_image_keeps_its_stage_host(self):
        image = self.staged()
        req = self.request('/v2/images/%s' % image['id'], method='PATCH',
                           body=[{'op': 'add', 'path': '/note',
                                  'value': 'x'}])
        req.content_type = 'application/openstack-images-v2.1-json-patch'
        resp = self.call(req)
        self.assertEqual(200, resp.status_int, resp.body)
        properties = self.registry.get(image['id'])['properties']
        self.assertEqual({'note': 'x',
                          registry.STAGE_HOST_PROPERTY: self.staging.host},
                         properties)
