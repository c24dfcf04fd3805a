"""A ``glance-direct`` import into two stores, its progress over HTTP.

``os_glance_importing_to_stores`` and ``os_glance_failed_import`` on the
image, as Glance 33 shows them (:mod:`imgmw.app.importer`): emptied when
the import ends, the stores that failed listed, ``all_stores_must_succeed``
honoured.
"""

import os
import shutil

from tests.functional import test_image_extras

IMPORTING = 'os_glance_importing_to_stores'
FAILED = 'os_glance_failed_import'


class TestImportStores(test_image_extras.MultiStoreTest):

    def staged(self) -> dict:
        image = self.create_image()
        resp = self.upload(image['id'], test_image_extras.DATA,
                           route='stage')
        self.assertEqual(204, resp.status_code, resp.text)
        staged = self.get_image(image['id'])
        self.assertNotIn(IMPORTING, staged)
        self.assertNotIn(FAILED, staged)
        return staged

    def break_store(self, store: str) -> None:
        """Writes into ``store`` fail: its directory is a file.

        The server is the class's: the directory is back after the test.
        """
        directory = os.path.join(self.server.state_dir, store)
        shutil.rmtree(directory, ignore_errors=True)
        with open(directory, 'wb'):
            pass

        def mend():
            os.remove(directory)
            os.mkdir(directory)
        self.addCleanup(mend)

    def test_both_stores_take_the_data(self):
        image = self.staged()
        resp = self.import_(image['id'], stores=['fast', 'cheap'])
        self.assertEqual(202, resp.status_code, resp.text)
        image = self.wait_for_status(image['id'], 'active')
        self.assertEqual(('', '', 'fast,cheap'),
                         (image[IMPORTING], image[FAILED], image['stores']))
        resp = self.request('GET', '/v2/images/%s/file' % image['id'])
        self.assertEqual(test_image_extras.DATA, resp.content)

    def test_a_failed_store_fails_the_import_when_all_must_succeed(self):
        image = self.staged()
        self.break_store('cheap')
        resp = self.import_(image['id'], stores=['fast', 'cheap'])
        self.assertEqual(202, resp.status_code, resp.text)
        self.assert_failed_upload_left_nothing(image['id'])
        image = self.get_image(image['id'])
        self.assertEqual(('', 'cheap'), (image[IMPORTING], image[FAILED]))
        self.assertNotIn('stores', image)
        self.assertEqual([], self.store_files('fast', image['id']))

    def test_a_failed_store_is_skipped_unless_all_must_succeed(self):
        image = self.staged()
        self.break_store('cheap')
        resp = self.import_(image['id'], stores=['cheap', 'fast'],
                            all_stores_must_succeed=False)
        self.assertEqual(202, resp.status_code, resp.text)
        image = self.wait_for_status(image['id'], 'active')
        self.assertEqual(('', 'cheap', 'fast'),
                         (image[IMPORTING], image[FAILED], image['stores']))
        resp = self.request('GET', '/v2/images/%s/file' % image['id'])
        self.assertEqual(test_image_extras.DATA, resp.content)
