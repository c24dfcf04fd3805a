"""Tests of imgmw.app.stores.kept_alive.

A hold is kept fresh while a store waits on its backend without reading.
"""

import threading
import time

import testtools

from imgmw.app import stores


class Lost(Exception):
    pass


class KeptReader:
    """A reader with ``keep_alive``, recording its calls and threads."""

    def __init__(self, fail_at: int = 0):
        self.calls = 0
        self.fail_at = fail_at
        self.threads = set()
        self.called = threading.Event()

    def read(self, size: int = -1) -> bytes:
        return b''

    def keep_alive(self) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread())
        self.called.set()
        if self.calls == self.fail_at:
            raise Lost()


class KeptAliveTest(testtools.TestCase):

    def wait_for_calls(self, reader: KeptReader, count: int) -> None:
        deadline = time.monotonic() + 10
        while reader.calls < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def test_keep_alive_is_called_while_the_store_waits(self):
        reader = KeptReader()
        with stores.kept_alive(reader, period=0.01):
            self.wait_for_calls(reader, 3)
        self.assertGreaterEqual(reader.calls, 3)
        self.assertNotIn(threading.current_thread(), reader.threads)

    def test_calls_stop_when_the_wait_ends(self):
        reader = KeptReader()
        with stores.kept_alive(reader, period=0.01):
            self.wait_for_calls(reader, 1)
        calls = reader.calls
        time.sleep(0.1)
        self.assertEqual(calls, reader.calls)
        self.assertFalse(any(thread.is_alive()
                             for thread in reader.threads))

    def test_lost_hold_is_raised_when_the_wait_ends(self):
        reader = KeptReader(fail_at=2)
        finished = []

        def wait():
            with stores.kept_alive(reader, period=0.01):
                self.wait_for_calls(reader, 2)
                time.sleep(0.05)
                finished.append(True)
        self.assertRaises(Lost, wait)
        # The wait itself was not interrupted, and the calls stopped.
        self.assertEqual([True], finished)
        self.assertEqual(2, reader.calls)

    def test_the_waits_own_error_wins(self):
        reader = KeptReader(fail_at=1)

        def wait():
            with stores.kept_alive(reader, period=0.01):
                self.wait_for_calls(reader, 1)
                raise ValueError('the store failed')
        self.assertRaises(ValueError, wait)

    def test_reader_without_keep_alive_waits_without_a_thread(self):
        before = threading.active_count()
        with stores.kept_alive(object(), period=0.01):
            self.assertEqual(before, threading.active_count())
