"""The service around the data path: versions, schemas, images, health.

Contract sections 1, 2, 6 and 7 as a client sees them over HTTP.
"""

import json
import typing

from tests.functional import base
from tests.unit.app import test_images

PATCH = 'application/openstack-images-v2.1-json-patch'


class TestService(base.FunctionalTest):

    def test_healthcheck_bypasses_the_pipeline_1(self):
        resp = self.request('GET', '/healthcheck')
        self.assertEqual(200, resp.status_code)
        self.assertEqual('OK', resp.text.strip())
        self.assertTrue(resp.headers.get(
            'x-openstack-request-id', '').startswith('req-'), resp.headers)

    def test_versions_on_root_and_versions_6(self):
        root = self.request('GET', '/')
        self.assertEqual(300, root.status_code)
        versions = self.request('GET', '/versions')
        self.assertEqual(200, versions.status_code)
        ids = [version['id'] for version in versions.json()['versions']]
        for expected in ('v2.0', 'v2.7', 'v2.9'):
            self.assertIn(expected, ids)
        current = [version for version in versions.json()['versions']
                   if version['status'] == 'CURRENT']
        self.assertEqual(1, len(current))
        self.assertEqual(root.json(), versions.json())
        self.assertTrue(current[0]['links'][0]['href'].endswith('/v2/'))

    def test_schemas_1(self):
        for path in ('/v2/schemas/image', '/v2/schemas/images'):
            resp = self.request('GET', path)
            self.assertEqual(200, resp.status_code, path)
            self.assertIn('properties', resp.json(), path)

    def test_create_get_list_delete_1(self):
        image = self.create_image(name='listed')
        self.assertEqual('queued', image['status'])
        self.assertEqual('/v2/images/%s/file' % image['id'], image['file'])
        for field in ('size', 'checksum', 'os_hash_value'):
            self.assertIsNone(image[field])
        self.assertEqual(image['id'], self.get_image(image['id'])['id'])
        listing = self.request('GET', '/v2/images').json()
        self.assertIn(image['id'],
                      [item['id'] for item in listing['images']])
        self.assertIn('first', listing)
        self.assertIn('schema', listing)
        resp = self.request('DELETE', '/v2/images/%s' % image['id'])
        self.assertEqual(204, resp.status_code, resp.text)
        resp = self.request('GET', '/v2/images/%s' % image['id'])
        self.assert_error(resp, 404, 'No image found with ID %s'
                          % image['id'])

    def test_delete_removes_the_data_1(self):
        image = self.create_image()
        self.assertEqual(204, self.upload(image['id'], b'data').status_code)
        self.assertEqual(1, len(self.image_files(image['id'])))
        resp = self.request('DELETE', '/v2/images/%s' % image['id'])
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual([], self.image_files(image['id']))

    def test_minor_versions_are_v2_1(self):
        image = self.create_image()
        resp = self.request('GET', '/v2.9/images/%s' % image['id'])
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual(image['id'], resp.json()['id'])

    def test_other_method_on_file_405_1(self):
        image = self.create_image()
        resp = self.request('POST', '/v2/images/%s/file' % image['id'],
                            data=b'{}')
        self.assertEqual(405, resp.status_code)
        self.assertEqual(['GET', 'HEAD', 'PUT'], sorted(
            method.strip() for method in resp.headers['Allow'].split(',')))
        self.assertIn('x-openstack-request-id', resp.headers)

    def test_json_errors_2(self):
        resp = self.request('GET', '/v2/images/missing',
                            headers={'Accept': 'application/json'})
        self.assertEqual(404, resp.status_code)
        body = resp.json()
        self.assertEqual('Not Found', body['title'])
        self.assertEqual('404 Not Found', body['code'])
        self.assertIn('No image found with ID missing', body['message'])

    def test_request_id_on_every_pipeline_response_2(self):
        image = self.create_image()
        answers = [
            self.request('GET', '/v2/images'),
            self.request('GET', '/v2/images/missing'),
            self.upload(image['id'], b'x', headers={'Content-Type': 'a/b'}),
            self.upload(image['id'], b'x', headers={
                'x-openstack-image-size': 'nope'}),
            self.download(image['id']),
        ]
        for resp in answers:
            self.assertTrue(resp.headers.get(
                'x-openstack-request-id', '').startswith('req-'),
                (resp.status_code, resp.headers))

    def test_client_request_id_too_long_is_replaced_9(self):
        resp = self.request('GET', '/v2/images', headers={
            'X-Openstack-Request-ID': 'req-' + 'a' * 300})
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertLess(len(resp.headers['x-openstack-request-id']), 100)


class TestMultiStore(base.FunctionalTest):
    """Contract 6 with two file stores."""

    server_options = {'enabled_backends': 'fast:file, cheap:file',
                      'default_backend': 'fast'}
    server_config = """
[store:fast]
filesystem_store_datadir = %(here)s/state/fast

[store:cheap]
filesystem_store_datadir = %(here)s/state/cheap
"""

    def test_stores_info_6(self):
        resp = self.request('GET', '/v2/info/stores')
        self.assertEqual(200, resp.status_code, resp.text)
        stores = resp.json()['stores']
        self.assertEqual(['cheap', 'fast'], sorted(s['id'] for s in stores))
        default = [s for s in stores if s.get('default') == 'true']
        self.assertEqual(['fast'], [s['id'] for s in default])

    def test_upload_to_named_store_6(self):
        image = self.create_image()
        resp = self.upload(image['id'], b'data',
                           headers={'X-Image-Meta-Store': 'cheap'})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual('cheap', self.get_image(image['id'])['stores'])

    def test_unknown_store_3_7(self):
        image = self.create_image()
        for store in ('nowhere', 'os_glance_staging_store'):
            resp = self.upload(image['id'], b'data',
                               headers={'X-Image-Meta-Store': store})
            self.assert_error(resp, 400, 'Store for identifier %s not found'
                              % store)
        self.assert_failed_upload_left_nothing(image['id'])


class TestSingleStore(base.FunctionalTest):

    def test_stores_info_off_6(self):
        resp = self.request('GET', '/v2/info/stores')
        self.assert_error(resp, 404, 'Multi backend is not supported at '
                          'this site.')


class TestBodiesTheRegistryCannotStore(base.FunctionalTest):
    """Schema-valid bodies that no column holds.

    400, nothing created or changed, on the database of
    ``IMGMW_TEST_DATABASE``.
    """

    def image_count(self) -> int:
        with self.registry.connect() as connection:
            return connection.execute(base.sa.text(
                'SELECT count(*) FROM images')).scalar()

    def send(self, method: str, path: str, body: typing.Any,
             media_type: str = 'application/json'):
        if not isinstance(body, bytes):
            body = json.dumps(body, ensure_ascii=False).encode('utf-8')
        return self.request(method, path, data=body, headers={
            'Content-Type': media_type, 'Accept': 'application/json'})

    def assert_refused(self, resp, message: str) -> None:
        self.assertEqual(400, resp.status_code, resp.text[:300])
        self.assertIn(message, resp.json()['message'])
        self.assertIn('x-openstack-request-id', resp.headers)

    def test_create_refuses_with_a_message_and_creates_nothing(self):
        before = self.image_count()
        for body, message in test_images.REFUSED:
            resp = self.send('POST', '/v2/images', body)
            self.assert_refused(resp, message)
        for raw in (b'{"name": "\\ud800"}', b'{"\\udc00": "v"}'):
            resp = self.send('POST', '/v2/images', raw)
            self.assert_refused(resp, 'a string holds a lone surrogate')
        self.assertEqual(before, self.image_count())

    def test_an_id_with_a_final_newline_is_400_everywhere(self):
        image_id = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9'
        resp = self.send('POST', '/v2/images',
                         {'id': image_id + '\n'})
        self.assert_refused(resp, "does not match")
        self.assertIsNone(self.registry_row(image_id))
        self.assertIsNone(self.registry_row(image_id + '\n'))
        self.assertEqual([], self.server.files())

    def test_bodies_at_the_limits_are_stored_as_sent(self):
        for body in test_images.ACCEPTED:
            resp = self.send('POST', '/v2/images', body)
            self.assertEqual(201, resp.status_code, resp.text)
            image = self.get_image(resp.json()['id'])
            for key, value in body.items():
                if key == 'tags':
                    self.assertEqual(sorted(value), sorted(image[key]))
                else:
                    self.assertEqual(value, image[key], key[:40])

    def test_patch_refuses_and_changes_nothing(self):
        image = self.create_image(name='kept', tags=['t'], p='v')
        for body, message in test_images.REFUSED:
            if 'id' in body:
                continue
            changes = [{'op': 'add', 'path': '/' + key, 'value': value}
                       for key, value in body.items()]
            resp = self.send('PATCH', '/v2/images/%s' % image['id'],
                             changes, PATCH)
            self.assert_refused(resp, message)
        resp = self.send('PATCH', '/v2/images/%s' % image['id'],
                         b'[{"op": "add", "path": "/\\ud800", "value": "v"}]',
                         PATCH)
        self.assert_refused(resp, 'a string holds a lone surrogate')
        self.assertEqual(image, self.get_image(image['id']))
