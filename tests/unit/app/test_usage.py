"""The quota's usage read from imgmw's registry (:mod:`imgmw.app.usage`)."""

import os

import fixtures
import testtools

from imgmw.app import registry
from imgmw.app import usage


OWNER = 'p1'


class RegistryUsageTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        directory = self.useFixture(fixtures.TempDir()).path
        url = 'sqlite:///' + os.path.join(directory, 'registry.db')
        self.registry = registry.Registry(url, sync=True)
        self.addCleanup(self.registry.dispose)
        self.usage = usage.RegistryUsage(url)

    def active(self, size: int, stores=('fast',)) -> str:
        image = self.registry.create({'owner': OWNER, 'disk_format': 'raw',
                                      'container_format': 'bare'})
        self.registry.transition(image['id'], 'queued', 'saving')
        self.registry.transition(
            image['id'], 'saving', 'active', values={
                'size': size, 'checksum': 'c', 'locations': [
                    {'store': store, 'url': 'file:///%s/%s'
                     % (store, image['id'])} for store in stores]})
        return image['id']

    def test_stored_bytes_count_each_location(self):
        self.active(10)
        self.active(100, ('fast', 'cheap'))
        self.assertEqual(210, self.usage.recorded(OWNER).stored_bytes)

    def test_a_copy_in_progress_counts_its_stores_and_is_busy(self):
        image_id = self.active(10)
        self.assertEqual(0, self.usage.recorded(OWNER).busy_images)
        self.registry.lock_for_copy(image_id, 't1', ['cheap', 'slow'])
        recorded = self.usage.recorded(OWNER)
        self.assertEqual(30, recorded.stored_bytes)
        self.assertEqual(1, recorded.busy_images)
        # One store copied: the same bytes, now as a location.
        self.registry.copy_done(image_id, 't1', 'cheap',
                                {'store': 'cheap', 'url': 'file:///c/x'},
                                checksum='c')
        self.assertEqual(30, self.usage.recorded(OWNER).stored_bytes)
        # The other failed: its bytes are no longer counted.
        self.registry.copy_done(image_id, 't1', 'slow')
        self.registry.unlock_copy(image_id, 't1', ['cheap', 'slow'])
        recorded = self.usage.recorded(OWNER)
        self.assertEqual(20, recorded.stored_bytes)
        self.assertEqual(0, recorded.busy_images)
        # Left out while the image has a reservation of its own.
        self.assertEqual(0, self.usage.recorded(
            OWNER, frozenset([image_id])).stored_bytes)

    def test_an_import_counts_once_before_its_locations(self):
        image = self.registry.create({'owner': OWNER})
        self.registry.transition(image['id'], 'queued', 'uploading')
        self.registry.finish_stage(
            image['id'], self.registry.get(image['id'])['holder'], 7, 'h')
        self.registry.transition(image['id'], 'uploading', 'importing')
        recorded = self.usage.recorded(OWNER)
        self.assertEqual(7, recorded.stored_bytes)
        self.assertEqual(7, recorded.staged_bytes)
        self.assertEqual(1, recorded.busy_images)

    def test_an_import_counts_each_of_its_stores_once_as_it_runs(self):
        """Listed as being written, then as a location: never both."""
        image = self.registry.create({'owner': OWNER})
        image_id = image['id']
        self.registry.transition(image_id, 'queued', 'uploading')
        self.registry.finish_stage(
            image_id, self.registry.get(image_id)['holder'], 7, 'h')
        self.registry.transition(image_id, 'uploading', 'importing',
                                 holder='me', stores=['fast', 'cheap'])

        def assertUsage(stored):
            recorded = self.usage.recorded(OWNER)
            self.assertEqual(stored, recorded.stored_bytes)
            self.assertEqual(7, recorded.staged_bytes)
            self.assertEqual(1, recorded.busy_images)

        assertUsage(14)
        locations = [{'store': store, 'url': 'file:///%s/%s'
                      % (store, image_id)} for store in ('fast', 'cheap')]
        self.assertTrue(self.registry.import_store_done(
            image_id, 'me', 'fast', locations[0]))
        assertUsage(14)
        self.assertTrue(self.registry.import_store_done(
            image_id, 'me', 'cheap', locations[1]))
        assertUsage(14)
        self.registry.transition(image_id, 'importing', 'active', values={
            'size': 7, 'checksum': 'c', 'locations': locations})
        recorded = self.usage.recorded(OWNER)
        self.assertEqual(14, recorded.stored_bytes)
        self.assertEqual(0, recorded.staged_bytes)
        self.assertEqual(0, recorded.busy_images)

    def test_a_failed_import_counts_nothing_more(self):
        image = self.registry.create({'owner': OWNER})
        image_id = image['id']
        self.registry.transition(image_id, 'queued', 'uploading')
        self.registry.finish_stage(
            image_id, self.registry.get(image_id)['holder'], 7, 'h')
        self.registry.transition(image_id, 'uploading', 'importing',
                                 holder='me', stores=['fast', 'cheap'])
        self.registry.import_store_done(image_id, 'me', 'fast')
        self.registry.transition(image_id, 'importing', 'queued')
        recorded = self.usage.recorded(OWNER)
        self.assertEqual((0, 0, 0), (recorded.stored_bytes,
                                     recorded.staged_bytes,
                                     recorded.busy_images))
