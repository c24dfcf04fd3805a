"""Slow clients against a real imgmw-api (the worker of imgmw.cmd.worker).

A bounded number of connections trickle a request head at one byte a
second, before any authentication. The properties: a normal request of
another client is still answered within a second; each slow connection is
cut at ``--header-timeout`` with 408; the server stays up.
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


class TestSlowHeads(base.FunctionalTest):

    @classmethod
    def setUpClass(cls) -> None:
        # FunctionalTest's, with a short --header-timeout.
        cls.database = dbfixture.Database()
        cls.database.setUp()
        try:
            base.sync_database(cls.database.url)
            cls.server = base.ApiServer(
                cls.database.url,
                args=['--header-timeout', str(HEADER_TIMEOUT)])
            cls.server.setUp()
        except BaseException:
            cls.database.cleanUp()
            raise
        cls.registry = sa.create_engine(cls.database.url,
                                        poolclass=sa.pool.NullPool)

    def trickle(self, answers: list, stop: threading.Event) -> None:
        head = b'GET /v2/images HTTP/1.1\r\nHost: x\r\nX-Pad: ' + b'a' * 600
        try:
            sock = socket.create_connection(('127.0.0.1', self.server.port),
                                            timeout=30)
        except OSError as err:
            answers.append('connect: %s' % err)
            return
        with sock:
            for byte in head:
                if stop.is_set():
                    return
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
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

    def test_trickled_heads_hold_no_thread_and_are_cut_with_408(self):
        answers, stop = [], threading.Event()
        threads = [threading.Thread(target=self.trickle,
                                    args=(answers, stop), daemon=True)
                   for _ in range(SLOW)]
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
