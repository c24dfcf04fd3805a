"""Upload through the data app: contract 3.8 to 3.12, 3.20 to 3.24 and the
invariants of section 3 after every failure."""

import hashlib
import io
import os
import time

import fixtures
import webob
import webob.exc

from imgmw.app import registry
from imgmw.app import upload
from imgmw import environ as keys
from imgmw import streams
from tests.unit.app import test_api
from tests.unit import fakes


DATA = b'0123456789abcdef'


class FailingProxy(streams.InputProxy):
    """A filter's check failing mid-stream (as size or checksum would)."""

    def __init__(self, wsgi_input, fail_after: int):
        super().__init__(wsgi_input)
        self.fail_after = fail_after

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        if self.bytes_received > self.fail_after:
            raise streams.StreamError(webob.exc.HTTPBadRequest('too long'))
        return chunk


class UploadTest(test_api.AppTestCase):

    def put(self, image_id: str, data: bytes = DATA, proxy=None,
            accept: str = 'application/json', **kwargs):
        req = fakes.upload_request('/v2/images/%s/file' % image_id, data,
                                   headers={'Accept': accept})
        self.with_context(req, **kwargs)
        self.digests = test_api.Digests()
        req.environ[keys.DIGESTS] = self.digests
        streams.install(req.environ, test_api.HashingInput(
            req.environ['wsgi.input'], len(data), self.digests))
        if proxy is not None:
            streams.install(req.environ, proxy(req.environ['wsgi.input']))
        return req

    def assertRestored(self, image_id: str) -> None:
        """Invariant: queued, nothing recorded, no byte in the store."""
        record = self.registry.get(image_id)
        self.assertEqual('queued', record['status'])
        for key in ('size', 'checksum', 'os_hash_algo', 'os_hash_value',
                    'virtual_size', 'holder'):
            self.assertIsNone(record[key], key)
        self.assertEqual([], record['locations'])
        self.assertEqual([], os.listdir(self.datadir))

    def assertRetryWorks(self, image_id: str) -> None:
        self.assertEqual(204, self.call(self.put(image_id)).status_int)
        self.assertEqual('active', self.status_of(image_id))

    def test_success_is_204_and_records_the_data(self):
        """contract 3.24."""
        image = self.create()
        req = self.put(image['id'])
        resp = self.call(req)
        self.assertEqual(204, resp.status_int)
        self.assertEqual(b'', resp.body)
        self.assertNotIn('Content-Type', resp.headers)
        record = self.registry.get(image['id'])
        self.assertEqual('active', record['status'])
        self.assertEqual(len(DATA), record['size'])
        self.assertEqual(len(DATA), record['virtual_size'])
        self.assertEqual(hashlib.md5(DATA).hexdigest(), record['checksum'])
        self.assertEqual('sha512', record['os_hash_algo'])
        self.assertEqual(hashlib.sha512(DATA).hexdigest(),
                         record['os_hash_value'])
        self.assertIsNone(record['holder'])
        [location] = record['locations']
        self.assertEqual('default', location['store'])
        with open(location['url'][len('file://'):], 'rb') as f:
            self.assertEqual(DATA, f.read())
        self.assertEqual({'id': image['id'], 'owner': test_api.PROJECT,
                          'disk_format': 'raw', 'container_format': 'bare',
                          'status': 'saving'}, req.environ[keys.IMAGE])

    def test_inspection_virtual_size_is_recorded(self):
        image = self.create(disk_format='qcow2')
        req = self.put(image['id'])
        req.environ[keys.INSPECTION] = {'format': 'qcow2',
                                        'virtual_size': 1 << 30}
        self.assertEqual(204, self.call(req).status_int)
        self.assertEqual(1 << 30,
                         self.registry.get(image['id'])['virtual_size'])

    def test_unknown_image_is_404(self):
        """contract 3.8."""
        resp = self.call(self.put('nope'))
        self.assertEqual(404, resp.status_int)
        self.assertIn('No image found with ID nope', resp.json['message'])

    def test_invisible_image_is_404(self):
        """contract 3.8: another project's private image."""
        image = self.create(owner=test_api.OTHER)
        self.assertEqual(404, self.call(self.put(image['id'])).status_int)

    def test_reader_is_403(self):
        """contract 3.9."""
        image = self.create()
        resp = self.call(self.put(image['id'], roles=('reader',)))
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete upload_image '
                      'action.', resp.json['message'])
        self.assertRestored(image['id'])

    def test_public_image_of_another_project_is_403(self):
        """contract 3.9: visible, but not the caller's."""
        image = self.create(owner=test_api.OTHER, visibility='public')
        self.assertEqual(403, self.call(self.put(image['id'])).status_int)

    def test_not_queued_is_409(self):
        """contract 3.10."""
        image = self.create()
        self.registry.transition(image['id'], 'queued', 'active')
        resp = self.call(self.put(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertIn('Image status transition from active to saving is '
                      'not allowed', resp.json['message'])

    def test_formats_unset_is_400(self):
        """contract 3.11, both forms of the message."""
        both = self.create(disk_format=None, container_format=None)
        resp = self.call(self.put(both['id']))
        self.assertEqual(400, resp.status_int)
        self.assertIn('Properties disk_format, container_format must be '
                      'set prior to saving data.', resp.json['message'])
        one = self.create(container_format=None)
        resp = self.call(self.put(one['id']))
        self.assertIn('Property container_format must be set prior to '
                      'saving data.', resp.json['message'])
        self.assertRestored(one['id'])

    def test_lost_race_is_409(self):
        """contract 3.12: the CAS queued->saving fails."""
        image = self.create()
        real = self.registry.transition

        def other_won(image_id, from_status, to_status, **kwargs):
            real(image_id, 'queued', 'saving', holder='other:1:1')
            return real(image_id, from_status, to_status, **kwargs)

        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'transition', side_effect=other_won))
        resp = self.call(self.put(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertIn('Image status transition from saving to saving is '
                      'not allowed', resp.json['message'])
        self.assertEqual('other:1:1',
                         self.registry.get(image['id'])['holder'])

    def test_stream_error_is_reraised_and_the_image_restored(self):
        """contract 3 invariants: a filter's check fails mid-stream."""
        image = self.create()
        req = self.put(image['id'],
                       proxy=lambda inner: FailingProxy(inner, 5))
        self.assertRaises(streams.StreamError, self.call, req)
        self.assertRestored(image['id'])
        self.assertRetryWorks(image['id'])

    def test_stream_error_through_call_app_answers_the_filters_status(self):
        image = self.create()
        req = self.put(image['id'])
        proxy = FailingProxy(req.environ['wsgi.input'], 5)
        resp_status = []

        def start_response(status, headers, exc_info=None):
            resp_status.append(status)

        streams.call_app(self.app, req.environ, start_response,
                         streams.install(req.environ, proxy))
        self.assertEqual(['400 Bad Request'], resp_status)
        self.assertRestored(image['id'])

    def test_client_disconnect_restores(self):
        """contract 3 invariants: the server's input breaks mid-body."""
        image = self.create()
        req = self.put(image['id'])
        req.environ['wsgi.input'] = test_api.HashingInput(
            streams.InputProxy(fakes.FailingInput(DATA, 6), len(DATA)),
            len(DATA), self.digests)
        self.assertRaises(streams.ClientDisconnected, self.call, req)
        self.assertRestored(image['id'])
        self.assertRetryWorks(image['id'])

    def test_raw_input_failure_without_filters_is_400(self):
        image = self.create()
        req = self.put(image['id'])
        req.environ['wsgi.input'] = fakes.FailingInput(DATA, 6)
        resp = self.call(req)
        self.assertEqual(400, resp.status_int)
        self.assertRestored(image['id'])

    def test_raw_input_timeout_without_filters_is_408(self):
        image = self.create()
        req = self.put(image['id'])
        req.environ['wsgi.input'] = fakes.FailingInput(
            DATA, 6, TimeoutError('timed out'))
        resp = self.call(req)
        self.assertEqual(408, resp.status_int)
        self.assertIn('came too slowly and was cut after 6 bytes',
                      resp.json['message'])
        self.assertRestored(image['id'])
        self.assertRetryWorks(image['id'])

    def test_storage_full_is_413(self):
        """contract 3.20."""
        image = self.create()
        self.useFixture(fixtures.MockPatch(
            'os.fsync', side_effect=OSError(28, 'No space left')))
        resp = self.call(self.put(image['id']))
        self.assertEqual(413, resp.status_int)
        self.assertIn('Image storage media is full: store default: No '
                      'space left on device', resp.json['message'])
        self.assertRestored(image['id'])

    def test_storage_refusing_writes_is_503(self):
        """contract 3.21."""
        image = self.create()
        self.useFixture(fixtures.MockPatch(
            'tempfile.mkstemp', side_effect=PermissionError(13, 'denied')))
        resp = self.call(self.put(image['id']))
        self.assertEqual(503, resp.status_int)
        self.assertIn('Image storage is unavailable: store default: '
                      'Permission denied', resp.json['message'])
        self.assertRestored(image['id'])

    def registry_fails_at(self, to_status: str, made: bool) -> None:
        """The registry fails on the change to ``to_status``.

        :param made: the change was made and only its answer lost (the
            connection broke after the commit), else never made.
        """
        real = self.registry.transition

        def transition(image_id, from_status, status, **kwargs):
            if status != to_status:
                return real(image_id, from_status, status, **kwargs)
            if made:
                real(image_id, from_status, status, **kwargs)
            raise registry.RegistryUnavailable('connection lost')

        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'transition', side_effect=transition))

    def wait_for_requeuer(self) -> None:
        """The app settles registry failures in the background."""
        deadline = time.monotonic() + 10
        while self.app.requeuer.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual([], self.app.requeuer.pending())

    def test_registry_unavailable_at_commit_is_503(self):
        """contract 3.22: the commit did not happen; the data is removed.

        Its outcome is unknown to the app, so the image and its data are
        settled once the registry answers again.
        """
        image = self.create()
        self.registry_fails_at('active', made=False)
        resp = self.call(self.put(image['id']))
        self.assertEqual(503, resp.status_int)
        self.assertIn('Image registry is unavailable.',
                      resp.json['message'])
        self.wait_for_requeuer()
        self.assertRestored(image['id'])

    def test_commit_made_but_its_answer_lost_keeps_the_data(self):
        """contract 3.22 and the invariant that active images have data.

        The database made the change and the connection broke before it
        said so: the image is active, and its data must stay.
        """
        image = self.create()
        self.registry_fails_at('active', made=True)
        resp = self.call(self.put(image['id']))
        self.assertEqual(503, resp.status_int)
        self.wait_for_requeuer()
        record = self.registry.get(image['id'])
        self.assertEqual('active', record['status'])
        self.assertEqual(len(DATA), record['size'])
        self.assertEqual(1, len(os.listdir(self.datadir)))
        resp = self.call(self.request('/v2/images/%s/file' % image['id']))
        self.assertEqual(DATA, resp.body)

    def test_start_made_but_its_answer_lost_is_handed_back(self):
        """queued to saving went through, its answer did not.

        The image is not left saving.
        """
        image = self.create()
        self.registry_fails_at('saving', made=True)
        resp = self.call(self.put(image['id']))
        self.assertEqual(503, resp.status_int)
        self.wait_for_requeuer()
        self.assertRestored(image['id'])

    def test_deleted_during_upload_is_410(self):
        """contract 3.23: the data is removed."""
        image = self.create()
        registry_ = self.registry

        class DeletingInput(io.BytesIO):
            def read(self, size=-1):
                chunk = super().read(size)
                if not chunk:
                    registry_.delete(image['id'])
                return chunk

        req = self.put(image['id'])
        req.environ['wsgi.input'] = test_api.HashingInput(
            DeletingInput(DATA), None, self.digests)
        resp = self.call(req)
        self.assertEqual(410, resp.status_int)
        self.assertIn('Image %s could not be found after upload. The image '
                      'may have been deleted during the upload, cleaning up '
                      'the chunks uploaded.' % image['id'],
                      resp.json['message'])
        self.assertEqual([], os.listdir(self.datadir))

    def test_lost_hold_stops_the_upload_and_leaves_the_status(self):
        """Recovered as stale while streaming: never becomes active."""
        image = self.create()
        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'heartbeat', return_value=False))
        resp = self.call(self.put(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertEqual('saving', self.status_of(image['id']))
        self.assertEqual([], os.listdir(self.datadir))

    def test_missing_checksum_filter_is_500_and_changes_nothing(self):
        image = self.create()
        req = self.put(image['id'])
        del req.environ[keys.DIGESTS]
        self.assertEqual(500, self.call(req).status_int)
        self.assertIn('checksum filter', self.log.output)
        self.assertRestored(image['id'])

    def test_unknown_store_is_400(self):
        """contract 3.7 when the stores filter names a store we lack."""
        image = self.create()
        req = self.put(image['id'])
        req.environ[keys.STORE] = 'cheap'
        resp = self.call(req)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Store for identifier cheap not found',
                      resp.json['message'])


class HeartbeatReaderTest(test_api.AppTestCase):

    def test_beats_every_interval_and_stops_when_lost(self):
        now = [0.0]
        beats = []

        def beat():
            beats.append(now[0])
            return now[0] < 100

        reader = upload.HeartbeatReader(io.BytesIO(b'x' * 100), beat, 30,
                                        clock=lambda: now[0])
        for moment in (10, 31, 40, 70):
            now[0] = moment
            reader.read(1)
        self.assertEqual([31, 70], beats)
        now[0] = 200
        self.assertRaises(upload.UploadLost, reader.read, 1)

    def test_keep_alive_beats_without_reading(self):
        # What the store calls while it waits on its backend.
        now = [0.0]
        beats = []
        reader = upload.HeartbeatReader(
            io.BytesIO(b'x'), lambda: beats.append(now[0]) or now[0] < 100,
            30, clock=lambda: now[0])
        now[0] = 31
        reader.keep_alive()
        reader.keep_alive()
        self.assertEqual([31], beats)
        now[0] = 200
        self.assertRaises(upload.UploadLost, reader.keep_alive)
        self.assertEqual(0, reader.received)


class PipelineTest(test_api.AppTestCase):
    """The app behind the context, size, stores, download, checksum filters.

    Built by their filter factories, as etc/api-paste.ini orders them.
    """

    def setUp(self):
        super().setUp()
        from imgmw.filters import checksum
        from imgmw.filters import context
        from imgmw.filters import download
        from imgmw.filters import size
        from imgmw.filters import stores as stores_filter
        app = self.app
        for factory, conf in (
                (checksum.filter_factory, {}),
                (download.filter_factory, {}),
                (stores_filter.filter_factory, {}),
                (size.filter_factory, {}),
                (context.filter_factory, {'auth_strategy': 'noauth',
                                          'trust_identity_headers': 'true'})):
            app = factory({}, **conf)(app)
        self.pipeline = app

    def send(self, path, method='GET', body=None, chunked=False,
             roles='member,reader', headers=None):
        all_headers = {'Accept': 'application/json',
                       'X-Project-Id': test_api.PROJECT, 'X-Roles': roles}
        all_headers.update(headers or {})
        if method == 'PUT':
            req = fakes.upload_request(path, body, chunked=chunked,
                                       headers=all_headers)
        else:
            req = webob.Request.blank(path, method=method,
                                      headers=all_headers)
        return req.get_response(self.pipeline)

    def test_upload_and_download_round_trip(self):
        image = self.create()
        path = '/v2/images/%s/file' % image['id']
        self.assertEqual(204, self.send(path, 'PUT', DATA).status_int)
        record = self.registry.get(image['id'])
        self.assertEqual(hashlib.md5(DATA).hexdigest(), record['checksum'])
        self.assertEqual(hashlib.sha512(DATA).hexdigest(),
                         record['os_hash_value'])
        resp = self.send(path)
        self.assertEqual(200, resp.status_int)
        self.assertEqual(DATA, resp.body)
        resp = self.send(path, headers={'Range': 'bytes=-4'})
        self.assertEqual(DATA[-4:], resp.body)

    def test_reader_policy_of_the_real_context_filter(self):
        """contract 3.9 and 8 through the real policy rules."""
        image = self.create()
        resp = self.send('/v2/images/%s/file' % image['id'], 'PUT', DATA,
                         roles='reader')
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete upload_image '
                      'action.', resp.json['message'])

    def test_short_body_restores_the_image(self):
        """contract 3.15 through the size filter; invariants hold."""
        image = self.create()
        path = '/v2/images/%s/file' % image['id']
        resp = self.send(path, 'PUT', DATA, headers={
            'x-openstack-image-size': str(len(DATA) + 5)}, chunked=True)
        self.assertEqual(400, resp.status_int)
        self.assertIn('Size mismatch: expected 21 bytes, got 16 bytes',
                      resp.json['message'])
        record = self.registry.get(image['id'])
        self.assertEqual('queued', record['status'])
        self.assertIsNone(record['checksum'])
        self.assertEqual([], os.listdir(self.datadir))
        self.assertEqual(204, self.send(path, 'PUT', DATA).status_int)

    def test_client_digest_mismatch_restores_the_image(self):
        """contract 3.19 through the checksum filter."""
        image = self.create()
        path = '/v2/images/%s/file' % image['id']
        resp = self.send(path, 'PUT', DATA, headers={
            'Content-MD5': hashlib.md5(b'other').hexdigest()})
        self.assertEqual(400, resp.status_int)
        self.assertIn('Checksum verification failed: md5 mismatch',
                      resp.json['message'])
        self.assertEqual('queued', self.status_of(image['id']))
        self.assertEqual([], os.listdir(self.datadir))
