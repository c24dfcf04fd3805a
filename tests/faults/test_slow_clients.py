"""Slow clients against a real imgmw-api (the worker of imgmw.cmd.worker).

A bounded number of connections trickle a request head, or an upload body,
at one byte a second. The properties: a normal request of another client
is still answered while they are open; each slow connection is cut at
``--header-timeout`` (``--body-timeout``) with 408; an upload cut so
leaves its image queued with nothing stored, and can be retried; the
server stays up.
"""

import socket
import statistics
import threading
import time

import requests
import sqlalchemy as sa

from tests import dbfixture
from tests.functional import base

SLOW = 200
HEADER_TIMEOUT = 3


def trickle(port: int, first: bytes, then: bytes, answers: list,
            stop: threading.Event) -> None:
    """Send ``first`` at once, then ``then`` one byte a second.

    Appends to ``answers`` the status line of the server's answer, or
    ``'not cut'``.
    """
    try:
        sock = socket.create_connection(('127.0.0.1', port), timeout=60)
    except OSError as err:
        answers.append('connect: %s' % err)
        return
    with sock:
        try:
            sock.sendall(first)
        except OSError:
            pass
        for byte in then:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                pass
            stop.wait(1.0)
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:
                data = b''
            sock.setblocking(True)
            if data is not None:
                answers.append(data.split(b'\r\n', 1)[0])
                return
        answers.append('not cut')


class SlowClientsTest(base.FunctionalTest):

    ARGS = ['--header-timeout', str(HEADER_TIMEOUT)]

    @classmethod
    def setUpClass(cls) -> None:
        # FunctionalTest's, with a short --header-timeout.
        cls.database = dbfixture.Database()
        cls.database.setUp()
        try:
            base.sync_database(cls.database.url)
            cls.server = base.ApiServer(
                cls.database.url,
                args=cls.ARGS)
            cls.server.setUp()
        except BaseException:
            cls.database.cleanUp()
            raise
        cls.registry = sa.create_engine(cls.database.url,
                                        poolclass=sa.pool.NullPool)


class TestSlowHeads(SlowClientsTest):

    def test_trickled_heads_hold_no_thread_and_are_cut_with_408(self):
        answers, stop = [], threading.Event()
        head = b'GET /v2/images HTTP/1.1\r\nHost: x\r\nX-Pad: ' + b'a' * 600
        threads = [threading.Thread(
            target=trickle, args=(self.server.port, b'', head, answers, stop),
            daemon=True) for _ in range(SLOW)]
        for thread in threads:
            thread.start()
        self.addCleanup(stop.set)
        time.sleep(1)
        latencies = []
        for _ in range(5):
            began = time.monotonic()
            resp = requests.get(self.url('/v2/images'), timeout=10)
            latencies.append(time.monotonic() - began)
            self.assertEqual(200, resp.status_code)
        self.assertLess(statistics.median(latencies), 1.0, latencies)
        for thread in threads:
            thread.join(HEADER_TIMEOUT + 30)
        self.assertEqual(SLOW, len(answers))
        self.assertEqual({b'HTTP/1.1 408 Request Timeout'}, set(answers),
                         answers[:5])
        self.assertEqual(200, self.request('GET', '/healthcheck')
                         .status_code)


BODY_TIMEOUT = 3


class TestSlowBodies(SlowClientsTest):

    ARGS = ['--body-timeout', str(BODY_TIMEOUT)]

    def put_head(self, image_id: str, length: int) -> bytes:
        return (b'PUT /v2/images/%s/file HTTP/1.1\r\nHost: x\r\n'
                b'Content-Type: application/octet-stream\r\n'
                b'Content-Length: %d\r\n\r\n' % (image_id.encode(), length))

    def test_trickled_bodies_hold_no_thread_and_are_cut_with_408(self):
        ids = [self.create_image()['id'] for _ in range(SLOW)]
        answers, stop = [], threading.Event()
        threads = [threading.Thread(
            target=trickle, args=(self.server.port,
                                  self.put_head(image_id, 100000),
                                  b'x' * 60, answers, stop),
            daemon=True) for image_id in ids]
        for thread in threads:
            thread.start()
        self.addCleanup(stop.set)
        time.sleep(1)
        # 200 trickling bodies, 2 workers of 8 threads: other clients are
        # still served.
        self.assertEqual(200, requests.get(self.url('/v2/images'),
                                           timeout=10).status_code)
        self.assertEqual(200, requests.get(self.url('/healthcheck'),
                                           timeout=10).status_code)
        small = self.create_image()['id']
        self.assertEqual(204, requests.put(
            self.url('/v2/images/%s/file' % small), data=b'small',
            headers={'Content-Type': 'application/octet-stream'},
            timeout=10).status_code)
        self.wait_for_status(small, 'active')
        for thread in threads:
            thread.join(BODY_TIMEOUT + 30)
        self.assertEqual(SLOW, len(answers))
        self.assertEqual({b'HTTP/1.1 408 Request Timeout'}, set(answers),
                         answers[:5])
        for image_id in ids[:10]:
            self.assert_failed_upload_left_nothing(image_id)
        # A retry of a cut upload is served.
        self.assertEqual(204, self.upload(ids[0], b'data').status_code)
        self.wait_for_status(ids[0], 'active')

    def test_a_body_that_slows_down_in_a_thread_is_cut(self):
        # The first 64 KiB come at once, then one byte a second: the
        # thread that took the request cuts it after the grace period,
        # below --body-min-rate.
        image_id = self.create_image()['id']
        answers, stop = [], threading.Event()
        self.addCleanup(stop.set)
        trickle(self.server.port,
                self.put_head(image_id, 1 << 20) + b'x' * 70000, b'x' * 60,
                answers, stop)
        self.assertEqual(1, len(answers))
        # The server stopped waiting, the client did not stop sending:
        # 408 (RFC 9110 section 15.5.9), not a short body's 400.
        self.assertEqual([b'HTTP/1.1 408 Request Timeout'], answers)
        self.assert_failed_upload_left_nothing(image_id)
        self.assertEqual(204, self.upload(image_id, b'data').status_code)
        self.wait_for_status(image_id, 'active')
