"""The table of connections imgmw-api's workers share (imgmw.cmd.balance)."""

import os
import subprocess
import sys

import testtools

from imgmw.cmd import balance
from imgmw.cmd import worker


class Clock:

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, '-c', ''])
    child.wait()
    return child.pid


class TestLoadTable(testtools.TestCase):

    def test_fewest_of_the_other_live_workers(self):
        table = balance.LoadTable(slots=8)
        table.write(1, os.getpid(), 7)
        table.write(2, os.getppid(), 3)
        table.write(3, os.getppid(), 5)
        table.write(4, dead_pid(), 0)
        self.assertEqual(3, table.fewest_elsewhere(1))

    def test_alone_there_is_no_other(self):
        table = balance.LoadTable(slots=8)
        table.write(1, os.getpid(), 7)
        self.assertIsNone(table.fewest_elsewhere(1))

    def test_slots_wrap_around(self):
        self.assertEqual(3, balance.LoadTable(slots=8).slot_of(11))

    def test_shared_with_forked_children(self):
        table = balance.LoadTable(slots=8)
        pid = os.fork()
        if pid == 0:  # The child writes its slot, as a worker does.
            table.write(5, os.getpid(), 9)
            os._exit(0)
        os.waitpid(pid, 0)
        self.assertEqual((pid, 9), table.read(5))


class TestBalancer(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.table = balance.LoadTable(slots=8)
        self.clock = Clock()
        self.balancer = balance.Balancer(self.table, 1, self.clock)
        self.table.write(2, os.getppid(), 2)

    def test_takes_a_connection_when_no_worker_holds_fewer(self):
        self.assertTrue(self.balancer.should_accept(2))
        self.assertFalse(self.balancer.deferring())

    def test_leaves_it_to_a_less_loaded_worker_for_a_while(self):
        self.assertFalse(self.balancer.should_accept(3))
        self.assertTrue(self.balancer.deferring())
        self.assertAlmostEqual(balance.DEFER, self.balancer.wait_left())
        self.clock.now += balance.DEFER
        self.assertFalse(self.balancer.deferring())
        # Still waiting after the deferral: taken, whatever the loads.
        self.assertTrue(self.balancer.should_accept(3))
        self.assertFalse(self.balancer.should_accept(3))

    def test_a_worker_that_leaves_counts_for_nothing(self):
        other = balance.Balancer(self.table, 3, self.clock)
        other.pid = os.getppid()  # Another process's worker.
        other.publish(0)
        self.assertEqual(0, self.table.fewest_elsewhere(1))
        other.leave()
        self.assertEqual((0, 0), self.table.read(3))
        self.assertEqual(2, self.table.fewest_elsewhere(1))

    def test_publishes_its_connections(self):
        self.balancer.publish(6)
        self.assertEqual((os.getpid(), 6), self.table.read(1))


class TestWorkerAcceptSwitch(testtools.TestCase):

    def test_accepting_stays_off_while_deferring(self):
        table = balance.LoadTable(slots=8)
        clock = Clock()
        balancer = balance.Balancer(table, 1, clock)
        table.write(2, os.getppid(), 0)
        calls = []
        fake = object.__new__(worker.ThreadWorker)
        fake.balancer = balancer
        fake._accepting = False
        fake.sockets = []
        original = worker.gthread.ThreadWorker.set_accept_enabled

        def record(self, enabled):
            calls.append(enabled)
            original(self, enabled)

        self.patch(worker.gthread.ThreadWorker, 'set_accept_enabled',
                   record)
        self.assertFalse(balancer.should_accept(1))
        fake.set_accept_enabled(True)
        clock.now += balance.DEFER
        fake.set_accept_enabled(True)
        self.assertEqual([False, True], calls)
