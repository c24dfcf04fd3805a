"""copy-image over HTTP: offered with two file stores, refused with one."""

import os
import time

from tests.functional import base
from tests.functional import test_image_extras

COPY = {'name': 'copy-image'}


class TestCopyImage(test_image_extras.MultiStoreTest):

    def wait_copied(self, image_id: str) -> dict:
        for _ in range(400):
            image = self.get_image(image_id)
            if (image.get('os_glance_importing_to_stores') == ''
                    and 'os_glance_import_task' not in image):
                return image
            time.sleep(0.05)
        self.fail('copy of %s did not end' % image_id)

    def test_offered_and_copies(self):
        resp = self.request('GET', '/v2/info/import')
        self.assertEqual(['glance-direct', 'copy-image'],
                         resp.json()['import-methods']['value'])
        image = self.imported(stores=['fast'])
        resp = self.import_(image['id'], method=COPY, stores=['cheap'])
        self.assertEqual(202, resp.status_code, resp.text)
        copied = self.wait_copied(image['id'])
        self.assertEqual('fast,cheap', copied['stores'])
        self.assertEqual('', copied['os_glance_failed_import'])
        self.assertEqual(1, len(self.store_files('cheap', image['id'])))
        # Served from the copy too, once the first store's is removed.
        self.assertEqual(204, self.request(
            'DELETE', '/v2/stores/fast/%s' % image['id']).status_code)
        resp = self.request('GET', '/v2/images/%s/file' % image['id'])
        self.assertEqual(test_image_extras.DATA, resp.content)

    def test_refusals(self):
        image = self.imported(stores=['fast'])
        self.assert_error(self.import_(image['id'], method=COPY,
                                       stores=['fast']), 400,
                          'Image is already present at store')
        self.assert_error(self.import_(image['id'], method=COPY,
                                       stores=['nowhere']), 409,
                          'Store for identifier nowhere not found')
        queued = self.create_image()
        self.assert_error(self.import_(queued['id'], method=COPY,
                                       stores=['cheap']), 409,
                          'Only images with status active can be targeted')
        self.assertEqual([], self.store_files('cheap', image['id']))

    def test_corrupt_source_leaves_nothing(self):
        image = self.imported(stores=['fast'])
        name, = self.store_files('fast', image['id'])
        path = os.path.join(self.server.state_dir, 'fast', name)
        with open(path, 'r+b') as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 1]))
        resp = self.import_(image['id'], method=COPY, stores=['cheap'])
        self.assertEqual(202, resp.status_code, resp.text)
        copied = self.wait_copied(image['id'])
        self.assertEqual('fast', copied['stores'])
        self.assertEqual('cheap', copied['os_glance_failed_import'])
        self.assertEqual([], self.store_files('cheap', image['id']))


class TestOneStore(base.FunctionalTest):

    def test_copy_image_is_an_unknown_method(self):
        resp = self.request('GET', '/v2/info/import')
        self.assertEqual(['glance-direct'],
                         resp.json()['import-methods']['value'])
        image = self.create_image()
        resp = self.request('POST', '/v2/images/%s/import' % image['id'],
                            json={'method': COPY, 'stores': ['default']})
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertIn('Unknown import method name', resp.text)
