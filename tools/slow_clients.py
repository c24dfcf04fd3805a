"""How long a normal request waits while slow clients hold connections.

Starts ``imgmw-api`` (noauth, SQLite, a temporary state directory; extra
arguments are passed on, e.g. ``--threads 64``), opens ``--slow``
connections that trickle the request head (``--mode headers``) or, after
a whole head, an upload body (``--mode body``) at one byte a second, and
meanwhile times ``GET /healthcheck``, ``GET /v2/images`` and a small
upload (``POST`` of an image and ``PUT`` of 5 bytes) from another client,
once a second for ``--duration`` seconds::

    python tools/slow_clients.py --slow 200 --mode headers
    python tools/slow_clients.py --slow 200 --mode body

Prints the answered requests, the median and worst latency of each kind
and of all, and how many timed out (``--timeout``, default 5 s).
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


def trickle(port: int, first: bytes, head: bytes, stop: threading.Event,
            stats: dict) -> None:
    """Send ``first`` at once, then ``head`` a byte a second, till cut."""
    try:
        sock = socket.create_connection(('127.0.0.1', port), timeout=5)
    except OSError:
        stats['refused'] += 1
        return
    with sock:
        sent = 0
        try:
            sock.sendall(first)
        except OSError:
            stats['cut'] += 1
            return
        while not stop.is_set():
            byte = head[sent % len(head):sent % len(head) + 1]
            try:
                sock.sendall(byte)
            except OSError:
                stats['cut'] += 1
                return
            sent += 1
            stop.wait(1.0)


def create_image(url: str, timeout: float = 60) -> str:
    return json.load(urllib.request.urlopen(urllib.request.Request(
        url + '/v2/images', method='POST',
        data=b'{"disk_format": "raw", "container_format": "bare"}',
        headers={'Content-Type': 'application/json'}), timeout=timeout))['id']


def small_upload(url: str, timeout: float) -> None:
    """Create an image and upload 5 bytes (one timing for both)."""
    urllib.request.urlopen(urllib.request.Request(
        url + '/v2/images/%s/file' % create_image(url, timeout),
        method='PUT', data=b'small',
        headers={'Content-Type': 'application/octet-stream'}),
        timeout=timeout).read()


def get(path: str):
    return lambda url, timeout: urllib.request.urlopen(
        url + path, timeout=timeout).read()


#: The normal requests timed.
NORMAL = {'GET /healthcheck': get('/healthcheck'),
          'GET /v2/images': get('/v2/images'),
          'small upload': small_upload}


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
                ids = [create_image(url) for _ in range(args.slow)]
                head = None
            stop = threading.Event()
            stats = {'cut': 0, 'refused': 0}
            threads = []
            for index in range(args.slow):
                first, data = b'', head
                if data is None:
                    # The head at once, then the body.
                    first = (b'PUT /v2/images/%s/file HTTP/1.1\r\nHost: x\r\n'
                             b'Content-Type: application/octet-stream\r\n'
                             b'Content-Length: 100000\r\n\r\n'
                             % ids[index].encode())
                    data = b'x' * 100000
                thread = threading.Thread(
                    target=trickle, args=(port, first, data, stop, stats),
                    daemon=True)
                thread.start()
                threads.append(thread)
            time.sleep(3)
            latencies, timeouts = {name: [] for name in NORMAL}, 0
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                for name, request in NORMAL.items():
                    began = time.monotonic()
                    try:
                        request(url, args.timeout)
                        latencies[name].append(time.monotonic() - began)
                    except OSError:
                        timeouts += 1
                time.sleep(1)
            stop.set()
            print('%d slow connections (%s, 1 byte/s), server args %s:'
                  % (args.slow, args.mode, ' '.join(args.extra) or '-'))
            every = [value for values in latencies.values()
                     for value in values]
            print('  answered %d, timed out %d (after %.0f s); slow '
                  'connections cut by the server: %d'
                  % (len(every), timeouts, args.timeout, stats['cut']))
            for name, values in list(latencies.items()) + [('all', every)]:
                print('  %-16s median %.3f s, worst %.3f s (%d answered)'
                      % (name, statistics.median(values) if values else 0,
                         max(values) if values else 0, len(values)))
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == '__main__':
    main()
