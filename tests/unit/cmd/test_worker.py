"""imgmw-api's worker: free memory given back after requests, not between."""

import fixtures
import testtools

from imgmw.cmd import worker


class TestReleaseMemory(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.releases = []
        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.malloc.release', lambda: self.releases.append(1)))
        # The state the worker's __init__ gives, without a gunicorn arbiter.
        self.worker = object.__new__(worker.ThreadWorker)
        self.worker.served = 0
        self.worker.served_at_release = 0
        self.worker.released_at = 0.0

    def test_nothing_served_nothing_released(self):
        self.worker.release_memory(100.0)
        self.assertEqual([], self.releases)

    def test_released_once_after_requests(self):
        self.worker.served = 3
        self.worker.release_memory(100.0)
        self.worker.release_memory(102.0)
        self.assertEqual(1, len(self.releases))

    def test_at_most_once_a_release_interval(self):
        self.worker.served = 1
        self.worker.release_memory(100.0)
        self.worker.served = 2
        self.worker.release_memory(100.5)
        self.assertEqual(1, len(self.releases))
        self.worker.release_memory(101.0)
        self.assertEqual(2, len(self.releases))
