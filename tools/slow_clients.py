"""How long a normal request waits while slow clients hold connections.

Starts ``imgmw-api`` (noauth, SQLite, a temporary state directory; extra
arguments are passed on, e.g. ``--threads 64``), opens ``--slow``
connections that trickle the request head (``--mode headers``) or an
upload body (``--mode body``) at one byte a second, and meanwhile times
``GET /healthcheck`` and ``GET /v2/images`` from another client, once a
second for ``--duration`` seconds::

    python tools/slow_clients.py --slow 200 --mode headers
    python tools/slow_clients.py --slow 200 --mode body -- --threads 64

Prints the answered requests, the median and worst latency, and how many
timed out (``--timeout``, default 5 s).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

API = os.path.join(os.path.dirname(sys.executable), 'imgmw-api')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def start(state: str, extra) -> (subprocess.Popen, int):
    port = free_port()
    process = subprocess.Popen(
        [API, '--bind', '127.0.0.1:%d' % port, '--state-dir', state,
         '--access-log', ''] + list(extra),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    for _ in range(300):
        try:
            urllib.request.urlopen('http://127.0.0.1:%d/healthcheck' % port,
                                   timeout=2)
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit('imgmw-api did not start')


def trickle(port: int, head: bytes, stop: threading.Event,
            stats: dict) -> None:
    """Send ``head`` one byte a second until stopped or cut."""
    try:
        sock = socket.create_connection(('127.0.0.1', port), timeout=5)
    except OSError:
        stats['refused'] += 1
        return
    with sock:
        sent = 0
        while not stop.is_set():
            byte = head[sent % len(head):sent % len(head) + 1]
            try:
                sock.sendall(byte)
            except OSError:
                stats['cut'] += 1
                return
            sent += 1
            stop.wait(1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--slow', type=int, default=200)
    parser.add_argument('--mode', choices=('headers', 'body'),
                        default='headers')
    parser.add_argument('--duration', type=int, default=20)
    parser.add_argument('--timeout', type=float, default=5.0)
    parser.add_argument('extra', nargs='*')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        process, port = start(state, args.extra)
        url = 'http://127.0.0.1:%d' % port
        try:
            if args.mode == 'headers':
                head = (b'GET /v2/images HTTP/1.1\r\nHost: x\r\nX-Pad: '
                        + b'a' * 4000)
            else:
                ids = []
                for _ in range(args.slow):
                    ids.append(json.load(urllib.request.urlopen(
                        urllib.request.Request(
                            url + '/v2/images', method='POST', data=(
                                b'{"disk_format": "raw", '
                                b'"container_format": "bare"}'),
                            headers={'Content-Type': 'application/json'})
                    ))['id'])
                head = None
            stop = threading.Event()
            stats = {'cut': 0, 'refused': 0}
            threads = []
            for index in range(args.slow):
                data = head
                if data is None:
                    data = (b'PUT /v2/images/%s/file HTTP/1.1\r\nHost: x\r\n'
                            b'Content-Type: application/octet-stream\r\n'
                            b'Content-Length: 100000\r\n\r\n'
                            % ids[index].encode()) + b'x' * 100000
                thread = threading.Thread(
                    target=trickle, args=(port, data, stop, stats),
                    daemon=True)
                thread.start()
                threads.append(thread)
            time.sleep(3)
            latencies, timeouts = [], 0
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                for path in ('/healthcheck', '/v2/images'):
                    began = time.monotonic()
                    try:
                        urllib.request.urlopen(url + path,
                                               timeout=args.timeout).read()
                        latencies.append(time.monotonic() - began)
                    except OSError:
                        timeouts += 1
                time.sleep(1)
            stop.set()
            print('%d slow connections (%s, 1 byte/s), server args %s:'
                  % (args.slow, args.mode, ' '.join(args.extra) or '-'))
            print('  answered %d, timed out %d (after %.0f s); median %.3f '
                  's, worst %.3f s; slow connections cut by the server: %d'
                  % (len(latencies), timeouts, args.timeout,
                     statistics.median(latencies) if latencies else 0,
                     max(latencies) if latencies else 0, stats['cut']))
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == '__main__':
    main()
