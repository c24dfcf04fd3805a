"""Tests of imgmw.holders.Heartbeat: a hold kept fresh while data streams."""

import threading

import testtools

from imgmw import holders


class Lost(Exception):
    pass


class FakeClock:

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class HeartbeatTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.clock = FakeClock()
        self.beats = 0
        self.held = True

    def beat(self) -> bool:
        self.beats += 1
        return self.held

    def heartbeat(self, interval: float = 30) -> holders.Heartbeat:
        return holders.Heartbeat(self.beat, interval, Lost, self.clock)

    def test_no_beat_before_the_interval(self):
        heartbeat = self.heartbeat()
        self.clock.now += 29.9
        heartbeat.check()
        self.assertEqual(0, self.beats)

    def test_one_beat_per_interval(self):
        heartbeat = self.heartbeat()
        self.clock.now += 30
        heartbeat.check()
        heartbeat.check()
        self.assertEqual(1, self.beats)
        self.clock.now += 29
        heartbeat.check()
        self.assertEqual(1, self.beats)
        self.clock.now += 1
        heartbeat.check()
        self.assertEqual(2, self.beats)

    def test_lost_hold_raises_the_holders_exception(self):
        heartbeat = self.heartbeat()
        self.held = False
        self.clock.now += 30
        self.assertRaises(Lost, heartbeat.check)

    def test_failing_beat_propagates_and_is_tried_again(self):
        calls = []

        def beat():
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError('database away')
            return True
        heartbeat = holders.Heartbeat(beat, 30, Lost, self.clock)
        self.clock.now += 30
        self.assertRaises(ConnectionError, heartbeat.check)
        heartbeat.check()
        self.assertEqual(2, len(calls))

    def test_concurrent_checks_beat_once(self):
        # A store's waiting thread and its reader may both check.
        release = threading.Event()
        calls = []

        def beat():
            calls.append(1)
            release.wait(5)
            return True
        heartbeat = holders.Heartbeat(beat, 30, Lost, self.clock)
        self.clock.now += 30
        threads = [threading.Thread(target=heartbeat.check)
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        release.set()
        for thread in threads:
            thread.join(5)
        self.assertEqual(1, len(calls))
