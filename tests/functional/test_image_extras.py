"""Tags, an image's import tasks and the removal of one store's copy.

``PUT``/``DELETE /v2/images/{id}/tags/{tag}``, ``GET
/v2/images/{id}/tasks`` (API 2.12) and ``DELETE /v2/stores/{store}/{id}``
(API 2.10), as Glance answers them, over HTTP through the whole pipeline
with two file stores.
"""

import os

from tests.functional import base

DATA = b'one image, two stores\n' * 100


class MultiStoreTest(base.FunctionalTest):

    server_options = {'enabled_backends': 'cheap:file, fast:file',
                      'default_backend': 'fast'}
    server_config = """
[store:fast]
filesystem_store_datadir = %(here)s/state/fast

[store:cheap]
filesystem_store_datadir = %(here)s/state/cheap
"""

    def store_files(self, store: str, image_id: str) -> list:
        directory = os.path.join(self.server.state_dir, store)
        return [name for name in os.listdir(directory)
                if image_id in name] if os.path.isdir(directory) else []

    def import_(self, image_id: str, **body):
        body.setdefault('method', {'name': 'glance-direct'})
        return self.request('POST', '/v2/images/%s/import' % image_id,
                            json=body)

    def imported(self, **body) -> dict:
        """An image staged and imported (``body``: stores, all_stores)."""
        image = self.create_image()
        resp = self.upload(image['id'], DATA, route='stage')
        self.assertEqual(204, resp.status_code, resp.text)
        resp = self.import_(image['id'], **body)
        self.assertEqual(202, resp.status_code, resp.text)
        image = self.wait_for_status(image['id'], 'active')
        image['import_request_id'] = resp.headers['x-openstack-request-id']
        return image


class TestTags(MultiStoreTest):

    def tag(self, method: str, image_id: str, tag: str):
        return self.request(method, '/v2/images/%s/tags/%s'
                            % (image_id, tag))

    def test_add_and_remove(self):
        image = self.create_image(tags=['kept'])
        for tag in ('x86', 'x86', 'linux'):
            resp = self.tag('PUT', image['id'], tag)
            self.assertEqual(204, resp.status_code, resp.text)
            self.assertEqual('', resp.text)
        self.assertEqual(['kept', 'linux', 'x86'],
                         sorted(self.get_image(image['id'])['tags']))
        resp = self.tag('DELETE', image['id'], 'x86')
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual(['kept', 'linux'],
                         sorted(self.get_image(image['id'])['tags']))
        listed = self.request('GET', '/v2/images?tag=linux').json()['images']
        self.assertEqual([image['id']], [item['id'] for item in listed])

    def test_errors(self):
        image = self.create_image()
        self.assert_error(self.tag('DELETE', image['id'], 'absent'), 404,
                          'Tag absent not found.')
        self.assert_error(self.tag('PUT', 'missing', 'x'), 404,
                          'No image found with ID missing')
        self.assert_error(self.tag('PUT', image['id'], 'x' * 256), 400,
                          'at most 255 characters')
        resp = self.tag('GET', image['id'], 'x')
        self.assertEqual(405, resp.status_code)
        self.assertEqual(['DELETE', 'PUT'], sorted(
            method.strip() for method in resp.headers['Allow'].split(',')))

    def test_tag_limit_is_413(self):
        image = self.create_image(tags=['t%d' % n for n in range(128)])
        self.assert_error(self.tag('PUT', image['id'], 'one-more'), 413,
                          'Image tag limit exceeded')
        self.assertEqual(204, self.tag('PUT', image['id'], 't1').status_code)


class TestImportTasks(MultiStoreTest):

    def test_import_task_as_glance_shows_it(self):
        image = self.imported(stores=['cheap'])
        resp = self.request('GET', '/v2/images/%s/tasks' % image['id'])
        self.assertEqual(200, resp.status_code, resp.text)
        tasks = resp.json()['tasks']
        self.assertEqual(1, len(tasks), tasks)
        task = tasks[0]
        self.assertEqual(('api_image_import', 'success', image['id']),
                         (task['type'], task['status'], task['image_id']))
        self.assertEqual(image['import_request_id'], task['request_id'])
        self.assertEqual('glance-direct',
                         task['input']['import_req']['method']['name'])
        self.assertEqual(['cheap'], task['input']['backend'])
        self.assertEqual({'image_id': image['id']}, task['result'])
        self.assertIsNotNone(task['expires_at'])
        self.assertEqual(image['owner'], task['owner'])

    def test_uploaded_image_has_no_tasks_and_unknown_is_404(self):
        image = self.create_image()
        self.assertEqual(204, self.upload(image['id'], DATA).status_code)
        resp = self.request('GET', '/v2/images/%s/tasks' % image['id'])
        self.assertEqual({'tasks': []}, resp.json())
        resp = self.request('GET', '/v2/images/missing/tasks')
        self.assertEqual(404, resp.status_code)


class TestDeleteFromStore(MultiStoreTest):

    def delete_from(self, store: str, image_id: str):
        return self.request('DELETE', '/v2/stores/%s/%s' % (store, image_id))

    def test_removes_one_copy(self):
        image = self.imported(all_stores=True)
        self.assertEqual('cheap,fast', image['stores'])
        self.assertEqual(1, len(self.store_files('cheap', image['id'])))
        resp = self.delete_from('cheap', image['id'])
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual('fast', self.get_image(image['id'])['stores'])
        self.assertEqual([], self.store_files('cheap', image['id']))
        resp = self.download(image['id'])
        self.assertEqual(DATA, resp.content)

    def test_refusals(self):
        image = self.imported(stores=['fast'])
        self.assert_error(self.delete_from('fast', image['id']), 403,
                          'Cannot delete image data from the only store')
        self.assert_error(self.delete_from('cheap', image['id']), 404,
                          'is not stored in store cheap')
        self.assert_error(self.delete_from('nowhere', image['id']), 409,
                          'The selected store nowhere is not available')
        self.assert_error(self.delete_from('fast', 'missing'), 404,
                          'No image found with ID missing')
        queued = self.create_image()
        self.assert_error(self.delete_from('fast', queued['id']), 409,
                          'remove image data from store if image status')
        self.assertEqual(1, len(self.store_files('fast', image['id'])))


class TestSingleStore(base.FunctionalTest):

    def test_store_delete_is_404_without_multi_store(self):
        image = self.create_image()
        resp = self.request('DELETE', '/v2/stores/default/%s' % image['id'])
        self.assertEqual(404, resp.status_code, resp.text)
