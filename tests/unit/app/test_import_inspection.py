"""Format inspection of staged data at ``glance-direct`` import.

The inspect filter's scan (``environ['imgmw.inspector']``, its options)
judges the staged data as it is copied: a refused image fails the import
(the image back to ``queued``, nothing stored nor staged, the task failed
with the upload's 415 message); a good one gets its ``virtual_size``.
"""

import os

import fixtures

from imgmw.app import stores
from imgmw import environ as keys
from imgmw.filters import inspect
from tests.unit.app import test_api
from tests.unit.app import test_import
from tests.unit.filters import test_inspect as images


MiB = 1 << 20

#: Images of several MiB: read in 64 KiB pieces, not the 4 bytes of the
#: app's other tests (the inspect filter's tests cross every boundary).
OPTIONS = dict(test_api.OPTIONS, read_chunk_size=64 * 1024)


class ImportInspectionTest(test_import.ImportTestCase):

    options = {}
    app_options = OPTIONS

    def setUp(self):
        super().setUp()
        self.filter = inspect.InspectMiddleware(None, self.options)

    def imported(self, data: bytes, inspected: bool = True, **values):
        image = self.create(**values)
        resp = self.call(self.stage_request(image['id'], data))
        self.assertEqual(204, resp.status_int, resp.body)
        req = self.import_request(image['id'])
        if inspected:
            req.environ[keys.IMPORT_INSPECT] = self.filter.scan
        self.assertEqual(202, self.call(req).status_int)
        return image['id']

    def assertRefused(self, image_id: str, message: str) -> None:
        self.assertQueuedAndEmpty(image_id)
        self.assertIsNone(self.registry.get(image_id)['virtual_size'])
        self.assertEqual([], os.listdir(self.datadir))
        task, = self.registry.tasks(image_id)
        self.assertEqual('failure', task['status'])
        self.assertEqual('InvalidImageData: ' + message, task['message'])

    def assertActive(self, image_id: str, virtual_size) -> None:
        record = self.registry.get(image_id)
        self.assertEqual('active', record['status'])
        self.assertEqual(virtual_size, record['virtual_size'])
        self.assertEqual([], self.staging_files())

    def test_qcow2_gets_its_virtual_size(self):
        image_id = self.imported(images.qcow2(5 * MiB), disk_format='qcow2')
        self.assertActive(image_id, 5 * MiB)

    def test_vmdk_gets_its_virtual_size(self):
        image_id = self.imported(images.vmdk(4096), disk_format='vmdk')
        self.assertActive(image_id, 4096 * 512)

    def test_raw_virtual_size_is_its_size(self):
        data = images.RANDOM
        image_id = self.imported(data, disk_format='raw')
        self.assertActive(image_id, len(data))

    def test_qcow2_staged_as_raw_image_is_raw_sized(self):
        data = images.qcow2(5 * MiB)
        image_id = self.imported(data, disk_format='raw')
        self.assertActive(image_id, len(data))

    def test_qcow2_staged_as_vmdk_is_refused(self):
        image_id = self.imported(images.qcow2(), disk_format='vmdk')
        self.assertRefused(image_id, 'Image disk_format vmdk does not match '
                           'stream data qcow2')

    def test_raw_staged_as_qcow2_is_refused(self):
        image_id = self.imported(images.RANDOM, disk_format='qcow2')
        self.assertRefused(image_id, 'Image disk_format qcow2 does not match '
                           'stream data raw')

    def test_qcow2_with_backing_file_is_refused(self):
        image_id = self.imported(images.qcow2(backing_file=b'/etc/passwd'),
                                 disk_format='qcow2')
        self.assertRefused(image_id, 'Image failed safety checks')

    def test_qcow2_with_data_file_is_refused(self):
        data = images.qcow2(incompatible=images.QCOW2_DATA_FILE)
        image_id = self.imported(data, disk_format='qcow2')
        self.assertRefused(image_id, 'Image failed safety checks')

    def test_unsafe_qcow2_staged_as_raw_is_refused(self):
        image_id = self.imported(images.qcow2(backing_file=b'/etc/passwd'),
                                 disk_format='raw')
        self.assertRefused(image_id, 'Image failed safety checks')

    def test_other_container_is_not_inspected(self):
        image_id = self.imported(images.RANDOM, disk_format='qcow2',
                                 container_format='ovf')
        self.assertActive(image_id, None)

    def test_refusal_stores_nothing_in_any_store(self):
        image_id = self.imported(images.qcow2(backing_file=b'/etc/passwd'),
                                 disk_format='qcow2')
        self.assertRefused(image_id, 'Image failed safety checks')
        self.assertIn('import failed, back to queued', self.log.output)

    def test_without_the_filter_raw_only_is_sized(self):
        image_id = self.imported(images.qcow2(5 * MiB), inspected=False,
                                 disk_format='qcow2')
        self.assertActive(image_id, None)


class MatchNotRequiredTest(test_import.ImportTestCase):
    """``require_image_format_match = false`` of the filter applies."""

    app_options = OPTIONS

    def setUp(self):
        super().setUp()
        self.filter = inspect.InspectMiddleware(
            None, {'require_image_format_match': 'false'})

    def test_mismatch_accepted_without_virtual_size(self):
        image = self.create(disk_format='qcow2')
        self.call(self.stage_request(image['id'], images.RANDOM))
        req = self.import_request(image['id'])
        req.environ[keys.IMPORT_INSPECT] = self.filter.scan
        self.assertEqual(202, self.call(req).status_int)
        record = self.registry.get(image['id'])
        self.assertEqual('active', record['status'])
        self.assertIsNone(record['virtual_size'])

    def test_safety_still_checked(self):
        image = self.create(disk_format='raw')
        self.call(self.stage_request(
            image['id'], images.qcow2(backing_file=b'/etc/passwd')))
        req = self.import_request(image['id'])
        req.environ[keys.IMPORT_INSPECT] = self.filter.scan
        self.assertEqual(202, self.call(req).status_int)
        self.assertQueuedAndEmpty(image['id'])


class ImportInspectionStoreFailingTest(test_import.ImportTestCase):

    multi_store = True
    app_options = OPTIONS

    def test_each_scan_is_released_judged_or_not(self):
        # The scan of a store that failed is never judged: it lets go of
        # its inspectors (and what they captured) all the same.
        image = self.staged()
        scans = []

        def scan(record):
            scans.append(inspect.InspectMiddleware(None, {}).scan(record))
            return scans[-1]
        self.useFixture(fixtures.MockPatchObject(
            self.cheap, '_copy',
            side_effect=stores.StorageUnavailable('store cheap: EACCES')))
        body = dict(test_import.GLANCE_DIRECT, stores=['cheap', 'fast'],
                    all_stores_must_succeed=False)
        req = self.import_request(image['id'], body, store='fast')
        req.environ[keys.IMPORT_INSPECT] = scan
        self.assertEqual(202, self.call(req).status_int)
        self.assertEqual('active', self.status_of(image['id']))
        self.assertEqual(2, len(scans))
        self.assertEqual([[], []],
                         [made.detector.inspectors for made in scans])
