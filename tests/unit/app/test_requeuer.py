"""Unit tests of imgmw.app.upload.Requeuer (contract 3.22, section 3)."""

import time

import testtools

from imgmw.app import registry as registry_mod
from imgmw.app import upload

HOLDER = 'node-1:123:456.00'


class FakeRegistry:
    """``get`` and ``requeue_stale`` of a registry that may be away."""

    def __init__(self, record):
        self.record = record
        self.away = False
        self.requeued = []

    def get(self, image_id):
        if self.away:
            raise registry_mod.RegistryUnavailable('connection refused')
        return self.record

    def requeue_stale(self, record):
        self.requeued.append(record)
        return dict(record, status='queued', holder=None)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class RequeuerTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.record = {'id': 'img', 'status': 'saving', 'holder': HOLDER,
                       'heartbeat_at': None}
        self.registry = FakeRegistry(self.record)
        self.clock = Clock()
        self.requeuer = upload.Requeuer(self.registry, clock=self.clock)
        # Driven by hand: no thread.
        self.requeuer._pending['img'] = (HOLDER, 'saving', self.clock(),
                                         None)

    def test_waits_for_the_registry_then_requeues(self):
        self.registry.away = True
        self.assertFalse(self.requeuer.run_once())
        self.assertEqual(['img'], self.requeuer.pending())
        self.registry.away = False
        self.assertTrue(self.requeuer.run_once())
        self.assertEqual([self.record], self.registry.requeued)
        self.assertEqual([], self.requeuer.pending())

    def test_leaves_an_image_held_by_another_upload(self):
        self.record['holder'] = 'node-2:9:1.00'
        self.assertTrue(self.requeuer.run_once())
        self.assertEqual([], self.registry.requeued)
        self.assertEqual([], self.requeuer.pending())

    def test_leaves_an_image_that_moved_on(self):
        self.record['status'] = 'active'
        self.assertTrue(self.requeuer.run_once())
        self.assertEqual([], self.registry.requeued)

    def test_leaves_a_deleted_image(self):
        self.registry.record = None
        self.assertTrue(self.requeuer.run_once())
        self.assertEqual([], self.requeuer.pending())

    def test_gives_up_after_a_long_outage(self):
        self.registry.away = True
        self.clock.now += 3601
        self.assertFalse(self.requeuer.run_once())
        self.assertEqual([], self.requeuer.pending())

    def test_add_starts_a_thread_that_requeues(self):
        requeuer = upload.Requeuer(self.registry, delay=0.01)
        requeuer.add('img', HOLDER, 'saving')
        deadline = time.monotonic() + 5
        while requeuer.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual([self.record], self.registry.requeued)
        self.assertEqual([], requeuer.pending())
