"""Format inspection at ``glance-direct`` import, over HTTP (section 4).

The default ``noauth`` pipeline has the inspect filter: staged data that
does not match its ``disk_format`` or fails the safety checks fails the
import (the image back to ``queued``, nothing stored nor staged); a good
qcow2 becomes ``active`` with the ``virtual_size`` of its header.
"""

from tests.functional import base
from tests.unit.filters import test_inspect as images


MiB = 1 << 20


class TestImportInspect(base.FunctionalTest):

    def stage_and_import(self, data: bytes, disk_format: str) -> str:
        image = self.create_image(disk_format=disk_format)
        resp = self.upload(image['id'], data, route='stage')
        self.assertEqual(204, resp.status_code, resp.text)
        resp = self.request('POST', '/v2/images/%s/import' % image['id'],
                            json={'method': {'name': 'glance-direct'}})
        self.assertEqual(202, resp.status_code, resp.text)
        return image['id']

    def assert_refused(self, image_id: str, message: str) -> None:
        self.assert_failed_upload_left_nothing(image_id)
        self.assertIsNone(self.registry_row(image_id)['virtual_size'])
        resp = self.request('GET', '/v2/images/%s/tasks' % image_id)
        task, = resp.json()['tasks']
        self.assertEqual('failure', task['status'])
        self.assertEqual('InvalidImageData: ' + message, task['message'])

    def test_good_qcow2_is_active_with_its_virtual_size(self):
        image_id = self.stage_and_import(images.qcow2(7 * MiB), 'qcow2')
        image = self.wait_for_status(image_id, 'active')
        self.assertEqual(7 * MiB, image['virtual_size'])

    def test_qcow2_staged_as_vmdk_fails(self):
        image_id = self.stage_and_import(images.qcow2(), 'vmdk')
        self.assert_refused(image_id, 'Image disk_format vmdk does not match '
                            'stream data qcow2')

    def test_qcow2_with_backing_file_fails(self):
        image_id = self.stage_and_import(
            images.qcow2(backing_file=b'/etc/passwd'), 'qcow2')
        self.assert_refused(image_id, 'Image failed safety checks')

    def test_qcow2_with_data_file_staged_as_raw_fails(self):
        image_id = self.stage_and_import(
            images.qcow2(incompatible=images.QCOW2_DATA_FILE), 'raw')
        self.assert_refused(image_id, 'Image failed safety checks')

    def test_raw_is_active_sized_by_its_bytes(self):
        image_id = self.stage_and_import(images.RANDOM, 'raw')
        image = self.wait_for_status(image_id, 'active')
        self.assertEqual(len(images.RANDOM), image['virtual_size'])
