"""Bytes a client sends for a refused 1 GiB upload with Expect: 100-continue.

Starts ``imgmw-api`` (noauth, SQLite, a temporary state directory) once
with each worker class given, and uploads 1 GiB as a careful client
does (``Expect: 100-continue``, as curl sends for
bodies over 1 MiB, then the body until a final answer is readable) to
requests the pipeline refuses before reading: 415 (wrong media type) and
404 (unknown image). Prints the body bytes the client sent::

    python tools/expect_continue.py                 # imgmw's worker
    python tools/expect_continue.py gthread imgmw.cmd.worker.ThreadWorker
"""

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

API = os.path.join(os.path.dirname(sys.executable), 'imgmw-api')
GiB = 1 << 30
UNKNOWN = '00000000-0000-4000-8000-000000000000'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def serve(worker_class: str, state: str) -> (subprocess.Popen, str):
    port = free_port()
    process = subprocess.Popen(
        [API, '--bind', '127.0.0.1:%d' % port, '--state-dir', state,
         '--worker-class', worker_class, '--access-log', ''],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = 'http://127.0.0.1:%d' % port
    for _ in range(300):
        try:
            urllib.request.urlopen(url + '/healthcheck', timeout=2)
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit('imgmw-api did not start')


def sent(url: str, path: str, content_type: str) -> (str, int):
    """Upload 1 GiB as a careful client does; the body bytes it sent.

    The client waits up to a second for ``100 Continue`` (as curl does),
    and stops sending as soon as a final response is readable. A final
    response first means no body byte is sent.
    """
    host, port = url.rsplit('/', 1)[1].split(':')
    head = ('PUT %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: %s\r\n'
            'Content-Length: %d\r\nExpect: 100-continue\r\n\r\n'
            % (path, host, port, content_type, GiB)).encode()
    chunk = bytes(1 << 20)
    total = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        ready, _, _ = select.select([sock], [], [], 1.0)
        answer = sock.recv(65536) if ready else b''
        if answer and not answer.startswith(b'HTTP/1.1 100'):
            return answer.split(b' ', 2)[1].decode(), 0
        answer = answer.split(b'\r\n\r\n', 1)[-1] if answer else b''
        while total < GiB and not answer:
            try:
                total += sock.send(chunk[:GiB - total])
            except OSError:
                break
            ready, _, _ = select.select([sock], [], [], 0)
            if ready:
                answer = sock.recv(65536)
        while not answer:
            answer = sock.recv(65536)
        return answer.split(b' ', 2)[1].decode(), total


def main(worker_classes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for worker_class in worker_classes:
            process, url = serve(worker_class, os.path.join(
                tmp, worker_class))
            try:
                image = urllib.request.urlopen(urllib.request.Request(
                    url + '/v2/images', method='POST',
                    data=b'{"disk_format": "raw", "container_format": '
                         b'"bare"}',
                    headers={'Content-Type': 'application/json'}))
                image_id = json.load(image)['id']
                for name, path, media in (
                        ('415', '/v2/images/%s/file' % image_id,
                         'text/plain'),
                        ('404', '/v2/images/%s/file' % UNKNOWN,
                         'application/octet-stream')):
                    status, size = sent(url, path, media)
                    print('%-32s refused %s: status %s, body bytes sent '
                          '%d of %d' % (worker_class, name, status, size,
                                        GiB))
            finally:
                process.terminate()
                process.wait(timeout=30)


if __name__ == '__main__':
    main(sys.argv[1:] or ['imgmw.cmd.worker.ThreadWorker'])
