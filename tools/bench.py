"""imgmw's benchmark: what the pipeline costs beyond hashing and the wire.

Run it by hand on an otherwise idle machine (it is no CI job)::

    tox -e bench
    tox -e bench -- --size 256MiB --repeats 3 --json /tmp/bench.json
    python tools/bench.py --sections upload,small --server-args=--threads=4

In one run on one machine it starts ``imgmw-api`` (one server a pipeline
variant, all on loopback, sharing one state directory) and nginx, and
measures, each figure the median of ``--repeats`` runs:

==============  ==============================================================
section         what is measured, against what
==============  ==============================================================
``upload``      1 GiB PUT through the full pipeline, with ``Content-Length``
                and chunked, against MD5 then SHA-512 over the same bytes in
                one thread in-process; and the same upload through the
                pipeline without ``size``, ``quota`` or ``inspect`` (those
                the pipeline has), against the full pipeline
``download``    1 GiB GET, full and ranged (``bytes=1-``), with verification
                on and off, against nginx sending the same file with
                ``sendfile``
``small``       image show and a 1 KiB download per second at concurrency 8
                (wrk), full pipeline against the bare app
``rss``         peak RSS of the server while it receives a 5 GiB upload
``concurrent``  eight concurrent 256 MiB uploads: aggregate rate; each stored
                image's MD5 and size are checked
``s3``          rate and peak RSS of a 2 GiB upload to the s3 store (a local
                moto server, or OpenStack Swift with s3api with
                ``--s3-server swift``), parts sent two at a time and one at
                a time; run only when asked (``--sections``)
==============  ==============================================================

With ``--glance-venv`` (``tox -e bench`` passes it), plain Glance 33 under
uWSGI (2 processes of 4 threads, as devstack runs it; configured by
``tests/glanceconfig.py``, as the functional tests run it) is measured in
the same sections, its runs interleaved with imgmw's, and a second table
gives each figure beside Glance's with the ratios to Glance and to the
machine's baseline (``doc/source/benchmark.rst``, "Beside Glance").

Pipelines (built from the ``noauth`` pipeline of ``etc/api-paste.ini``):
``full`` is that pipeline as shipped; ``bare`` is the least the data app
answers reads with, ``context-noauth imgmw`` (uploads also need ``stores``
and ``checksum``); ``no-<filter>`` is ``full`` less one filter (``no-size``
also less ``quota``, which needs the size filter's ``imgmw.size``);
``no-verify`` is ``full`` with ``verify_downloads = false`` in the checksum
filter and in the data app (which verifies downloads block by block).

The store and the registry live on tmpfs (``/dev/shm``) unless
``--state-parent`` says otherwise: the figures are those of the pipeline
and the wire, not of the disk (the file store's ``fsync`` of 1 GiB on a
disk takes as long as the disk takes).

The client never bottlenecks: uploads go out of a page-cached file with
``sendfile``, downloads are read into one reused buffer and counted, not
hashed (integrity is checked by the server's recorded checksums, and the
functional tests check downloaded bytes). The client's own ceiling is
measured (an upload into a socket that discards) and printed.

Needs ``nginx`` and ``wrk`` (Debian packages ``nginx-light`` and ``wrk``):
installed with apt-get when run as root, otherwise it stops and says so.
Prints a table of ratios and targets and writes every figure as JSON.
Nothing is timed against a threshold: the targets are printed, not
asserted. Test data goes to a temporary directory, removed at the end.
"""

import argparse
import configparser
import contextlib
import functools
import hashlib
import http.client
import json
import mmap
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing

import psutil


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests.glanceconfig: the standard-library-only configuration of Glance the
# functional tests deploy, shared so that both start the same Glance.
sys.path.insert(0, REPO)
from tests import glanceconfig  # noqa: E402
PASTE_FILE = os.path.join(REPO, 'etc', 'api-paste.ini')
BIN_DIR = os.path.dirname(sys.executable)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

GLANCE_VENV_VARIABLE = 'IMGMW_BENCH_GLANCE_VENV'
#: Images in the list of the small section.
LIST_IMAGES = 20
SECTIONS = ('upload', 'download', 'small', 'rss', 'concurrent')
OPTIONAL_SECTIONS = ('s3',)
CLIENT_BUFFER = 4 * MiB
CHUNKED_FRAME = MiB
START_TIMEOUT = 60
REQUEST_TIMEOUT = 600
RSS_INTERVAL = 0.05

#: The machine's write of the test data into the state directory's
#: filesystem, where the file store keeps the uploads.
WRITE_BASELINE = 'write into the store\'s filesystem'

#: (figure, baseline, target ratio or None, what the target is).
TARGETS = (
    ('upload Content-Length', 'md5 then sha512, one thread', 1.0),
    ('upload chunked', 'md5 then sha512, one thread', 1.0),
    ('download full, verify off', 'nginx full', 0.8),
    ('download full, verify on', 'nginx full', None),
    ('download ranged, verify off', 'nginx ranged', None),
    ('download ranged, verify on', 'nginx ranged', None),
    # What verifying every block costs.
    ('download full, verify on', 'download full, verify off', 0.9),
    ('download ranged, verify on', 'download ranged, verify off', 0.8),
    ('small: image show, full', 'small: image show, bare', 0.7),
    ('small: 1 KiB download, full', 'small: 1 KiB download, bare', 0.7),
    ('upload Content-Length, no-size', 'upload Content-Length', None),
    ('upload Content-Length, no-quota', 'upload Content-Length', None),
    ('upload Content-Length, no-inspect', 'upload Content-Length', None),
    ('8 concurrent uploads, aggregate', 'md5 then sha512, one thread',
     None),
    # CPU seconds, robust when other work shares the machine: the cost
    # of a figure over its baseline's (for uploads, hashing in one thread
    # is most of it), and for small requests the bare app's cost over
    # the full pipeline's, comparable with the rate ratio.
    ('CPU, upload Content-Length', 'CPU, md5 then sha512, one thread',
     None),
    ('CPU, download full, verify off', 'CPU, nginx full', None),
    ('CPU, small: image show, bare', 'CPU, small: image show, full', None),
    ('CPU, small: 1 KiB download, bare', 'CPU, small: 1 KiB download, full',
     None),
)
#: (figure, limit in MiB).
RSS_TARGETS = (
    ('peak RSS, 5 GiB upload, worker', 100),
    ('peak RSS, 2 GiB upload to s3, worker', 150),
)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# Sizes and command line.

def byte_size(text: str) -> int:
    match = re.fullmatch(r'\s*([0-9]+)\s*([KMG]i?B?)?\s*', text, re.I)
    if match is None:
        raise argparse.ArgumentTypeError('not a size: %r' % text)
    unit = (match.group(2) or '').upper()[:1]
    return int(match.group(1)) * {'': 1, 'K': KiB, 'M': MiB, 'G': GiB}[unit]


def section_list(text: str) -> typing.Tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(',') if name.strip())
    unknown = set(names) - set(SECTIONS) - set(OPTIONAL_SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(
            'unknown section(s) %s; known: %s' % (
                ', '.join(sorted(unknown)),
                ', '.join(SECTIONS + OPTIONAL_SECTIONS)))
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='bench.py', description=__doc__.split('\n')[0])
    parser.add_argument('--sections', type=section_list, default=SECTIONS,
                        help='comma-separated (default: %s)'
                             % ','.join(SECTIONS))
    parser.add_argument('--size', type=byte_size, default=GiB,
                        help='upload and download size (default: 1GiB)')
    parser.add_argument('--rss-size', type=byte_size, default=5 * GiB,
                        help='upload size of the rss section (5GiB)')
    parser.add_argument('--s3-size', type=byte_size, default=2 * GiB,
                        help='upload size of the s3 section (2GiB)')
    parser.add_argument('--s3-server', choices=('moto', 'swift'),
                        default='moto',
                        help='the S3 service of the s3 section: moto, or '
                             'OpenStack Swift with s3api started as '
                             'tests/s3fixture.py does (Debian swift '
                             'packages; tox -e s3-swift installs them)')
    parser.add_argument('--concurrent', type=int, default=8,
                        help='uploads of the concurrent section (8)')
    parser.add_argument('--concurrent-size', type=byte_size,
                        default=256 * MiB,
                        help='size of each concurrent upload (256MiB)')
    parser.add_argument('--repeats', type=int, default=5,
                        help='runs of each timed figure (5)')
    parser.add_argument('--small-duration', type=int, default=5,
                        help='seconds of each wrk run (5)')
    parser.add_argument('--small-connections', type=int, default=8,
                        help='wrk connections (8)')
    parser.add_argument('--state-parent', default=None,
                        help='where the state directory (store, registry) '
                             'goes (default: /dev/shm when present)')
    parser.add_argument('--data-parent', default=None,
                        help='where the test data file goes (default: the '
                             'system temporary directory)')
    parser.add_argument('--server-args', default='',
                        help='more imgmw-api arguments, e.g. '
                             '"--workers 2 --threads 8"')
    parser.add_argument('--json', default='bench.json',
                        help='where to write the results (bench.json)')
    parser.add_argument('--glance-venv',
                        default=os.environ.get(GLANCE_VENV_VARIABLE) or None,
                        help='a virtualenv with glance and uwsgi (as tox -e '
                             'bench makes it; default $%s): Glance 33 is '
                             'measured beside imgmw; without it, imgmw only'
                             % GLANCE_VENV_VARIABLE)
    parser.add_argument('--list-connections', default='8,32',
                        help='wrk connections of the image list and the '
                             'image show with Glance (8,32)')
    parser.add_argument('--client-cpu', type=int, default=None,
                        help='pin the client (this process, after the '
                             'servers start: they keep every CPU) to one '
                             'CPU, to see what CPU placement does to a '
                             'figure (default: unpinned)')
    parser.add_argument('--no-install', action='store_true',
                        help='never run apt-get for nginx and wrk')
    return parser


# Tools.

def ensure_tools(install: bool) -> typing.Dict[str, str]:
    """Paths of nginx and wrk, installed from Debian when root allows."""
    wanted = {'nginx': 'nginx-light', 'wrk': 'wrk'}
    found = {name: _which(name) for name in wanted}
    missing = [wanted[name] for name, path in found.items() if not path]
    if missing and install and os.geteuid() == 0 and _which('apt-get'):
        print('installing %s with apt-get' % ' '.join(missing), flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        subprocess.run(['apt-get', 'install', '-y', '-q'] + missing,
                       check=False, env=env, stdout=subprocess.DEVNULL)
        found = {name: _which(name) for name in wanted}
    missing = [wanted[name] for name, path in found.items() if not path]
    if missing:
        raise BenchError('the benchmark needs %s; install them (e.g. '
                         'apt-get install %s) and run it again'
                         % (', '.join(missing), ' '.join(missing)))
    return found


def _which(name: str) -> typing.Optional[str]:
    return shutil.which(name) or shutil.which(name, path='/usr/sbin:/sbin')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError('%s exited with status %s' % (
                what, process.returncode))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError('%s did not listen on port %d' % (what, port))


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process this benchmark started, and its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Test data.

class TestData:
    """A file of random bytes and the digests of its parts."""

    def __init__(self, directory: str, size: int, slice_size: int):
        self.path = os.path.join(directory, 'image.bin')
        self.size = size
        self.slice_size = min(slice_size, size)
        self._write()
        self.md5, self.sha512, self.slice_md5 = self._digests()

    def _write(self) -> None:
        with open(self.path, 'wb') as out:
            left = self.size
            while left:
                block = os.urandom(min(16 * MiB, left))
                out.write(block)
                left -= len(block)

    def _digests(self):
        md5 = hashlib.md5(usedforsecurity=False)
        sha512 = hashlib.sha512()
        slices = []
        with self.view() as view:
            for start in range(0, self.size - self.slice_size + 1,
                               self.slice_size):
                part = hashlib.md5(usedforsecurity=False)
                part.update(view[start:start + self.slice_size])
                slices.append(part.hexdigest())
            md5.update(view)
            sha512.update(view)
        return md5.hexdigest(), sha512.hexdigest(), slices

    @contextlib.contextmanager
    def view(self):
        with open(self.path, 'rb') as source:
            mapped = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ)
            view = memoryview(mapped)
            try:
                yield view
            finally:
                view.release()
                mapped.close()

    def slice_offset(self, index: int) -> int:
        count = self.size // self.slice_size
        return (index % count) * self.slice_size

    def segments(self, offset: int, length: int
                 ) -> typing.Iterator[typing.Tuple[int, int]]:
        """(offset, count) pieces of ``length`` bytes, wrapping around."""
        while length > 0:
            count = min(length, self.size - offset)
            yield offset, count
            length -= count
            offset = 0


def hash_baseline(data: TestData, chunk: int = MiB
                  ) -> typing.Tuple[float, float]:
    """Seconds (wall, CPU) to hash the data MD5 then SHA-512 in one thread.

    Chunk by chunk, as an upload arrives; the data is page-cached and
    mapped, so this is hashing only.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    sha512 = hashlib.sha512()
    with data.view() as view:
        cpu = time.process_time()
        started = time.perf_counter()
        for start in range(0, data.size, chunk):
            with view[start:start + chunk] as piece:
                md5.update(piece)
                sha512.update(piece)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    if md5.hexdigest() != data.md5:
        raise BenchError('baseline MD5 differs from the data file\'s')
    return elapsed, cpu


def write_baseline(data: TestData, directory: str, chunk: int = MiB
                   ) -> typing.Tuple[float, float]:
    """Seconds (wall, CPU) to write the data into a new file of ``directory``.

    What any store on that filesystem pays for the bytes alone: 1 MiB
    writes from the page-cached data, then ``fsync``; the file is removed.
    On a virtual machine whose freed memory goes back to the host (a
    balloon's free page reporting), writing into fresh page cache or tmpfs
    pages is at times several times slower than at others: the upload
    section measures this in every repeat beside the uploads.
    """
    path = os.path.join(directory, 'bench-write-baseline')
    with data.view() as view:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            cpu = time.process_time()
            started = time.perf_counter()
            for start in range(0, data.size, chunk):
                with view[start:start + chunk] as piece:
                    done = 0
                    while done < len(piece):
                        with piece[done:] as rest:
                            done += os.write(fd, rest)
            os.fsync(fd)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
        finally:
            os.close(fd)
            os.unlink(path)
    return elapsed, cpu


# HTTP client.

class Response(typing.NamedTuple):
    status: int
    headers: typing.Dict[str, str]
    body: bytes


def request(port: int, method: str, path: str, body: bytes = b'',
            headers: typing.Optional[dict] = None) -> Response:
    conn = http.client.HTTPConnection('127.0.0.1', port,
                                      timeout=REQUEST_TIMEOUT)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


def create_image(port: int, name: str) -> str:
    body = json.dumps({'name': name, 'disk_format': 'raw',
                       'container_format': 'bare'}).encode()
    resp = request(port, 'POST', '/v2/images', body,
                   {'Content-Type': 'application/json'})
    if resp.status != 201:
        raise BenchError('image create answered %d: %s' % (
            resp.status, resp.body[:200]))
    return json.loads(resp.body)['id']


def show_image(port: int, image_id: str) -> dict:
    resp = request(port, 'GET', '/v2/images/%s' % image_id)
    if resp.status != 200:
        raise BenchError('image show answered %d' % resp.status)
    return json.loads(resp.body)


def delete_image(port: int, image_id: str) -> None:
    request(port, 'DELETE', '/v2/images/%s' % image_id)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(('127.0.0.1', port),
                                    timeout=REQUEST_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _response_of(sock: socket.socket, method: str
                 ) -> http.client.HTTPResponse:
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    return resp


def upload(port: int, image_id: str, data: TestData, offset: int,
           length: int, chunked: bool = False) -> float:
    """Seconds from the first byte sent to the response; 204 expected."""
    framing = ('Transfer-Encoding: chunked' if chunked
               else 'Content-Length: %d' % length)
    head = ('PUT /v2/images/%s/file HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            'Content-Type: application/octet-stream\r\n%s\r\n'
            'Connection: close\r\n\r\n' % (image_id, framing)).encode()
    with _connect(port) as sock, open(data.path, 'rb') as source:
        started = time.perf_counter()
        try:
            _send_body(sock, head, source, data.segments(offset, length),
                       chunked)
        except (BrokenPipeError, ConnectionResetError) as err:
            # The server answered before the end of the body; say what.
            early = _response_of(sock, 'PUT')
            raise BenchError('upload of %s cut short (%s): %d %s' % (
                image_id, err, early.status, early.read()[:300]))
        resp = _response_of(sock, 'PUT')
        body = resp.read()
        elapsed = time.perf_counter() - started
    if resp.status != 204:
        raise BenchError('upload of %s answered %d: %s' % (
            image_id, resp.status, body[:300]))
    return elapsed


def _send_body(sock, head: bytes, source, segments, chunked: bool) -> None:
    sock.sendall(head)
    for start, count in segments:
        if chunked:
            _send_chunked(sock, source, start, count)
        else:
            sock.sendfile(source, start, count)
    if chunked:
        sock.sendall(b'0\r\n\r\n')


def _send_chunked(sock, source, start: int, count: int) -> None:
    end = start + count
    while start < end:
        frame = min(CHUNKED_FRAME, end - start)
        sock.sendall(b'%X\r\n' % frame)
        sock.sendfile(source, start, frame)
        sock.sendall(b'\r\n')
        start += frame


def download(port: int, path: str, expected: int,
             headers: typing.Optional[dict] = None) -> float:
    """Seconds to read a whole response into a reused buffer."""
    lines = ['GET %s HTTP/1.1' % path, 'Host: 127.0.0.1',
             'Connection: close']
    lines += ['%s: %s' % item for item in (headers or {}).items()]
    buf = bytearray(CLIENT_BUFFER)
    with _connect(port) as sock:
        started = time.perf_counter()
        sock.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode())
        resp = _response_of(sock, 'GET')
        received = 0
        while True:
            count = resp.readinto(buf)
            if not count:
                break
            received += count
        elapsed = time.perf_counter() - started
    if resp.status not in (200, 206) or received != expected:
        raise BenchError('GET %s: status %d, %d bytes of %d' % (
            path, resp.status, received, expected))
    return elapsed


def client_ceiling(data: TestData) -> float:
    """Seconds to send the data file into a socket that discards it."""
    listener = socket.create_server(('127.0.0.1', 0))
    port = listener.getsockname()[1]

    def sink():
        conn, _ = listener.accept()
        with conn:
            buf = bytearray(CLIENT_BUFFER)
            while conn.recv_into(buf):
                pass

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    with _connect(port) as sock, open(data.path, 'rb') as source:
        started = time.perf_counter()
        sock.sendfile(source, 0, data.size)
        sock.shutdown(socket.SHUT_WR)
        thread.join(REQUEST_TIMEOUT)
        elapsed = time.perf_counter() - started
    listener.close()
    return elapsed


# Servers.

#: Filters whose cost the upload section measures, by leaving them out.
OPTIONAL_FILTERS = ('size', 'quota', 'inspect')
#: Filters that cannot run without another (quota reads imgmw.size), left
#: out with it.
REQUIRES = {'size': ('quota',)}


class Pipelines:
    """The paste file of the benchmark: one composite per variant."""

    def __init__(self, directory: str):
        parser = configparser.RawConfigParser()
        parser.read(PASTE_FILE)
        self.full = parser.get('pipeline:noauth-api', 'pipeline').split()
        self.path = os.path.join(directory, 'api-paste.ini')
        self.variants = {
            'full': self.full,
            'bare': ['context-noauth', self.full[-1]],
            'no-verify': [{'checksum': 'checksum-noverify',
                           self.full[-1]: 'imgmw-noverify'}.get(name, name)
                          for name in self.full],
        }
        defaults = parser.defaults()
        self.app_options = [
            '%s = %s' % (key, value)
            for key, value in parser.items('app:%s' % self.full[-1])
            if key not in defaults]
        for name in OPTIONAL_FILTERS:
            if name in self.full:
                left_out = (name,) + REQUIRES.get(name, ())
                self.variants['no-' + name] = [
                    other for other in self.full if other not in left_out]
        with open(PASTE_FILE) as shipped, open(self.path, 'w') as out:
            out.write(shipped.read())
            out.write(self._sections())

    def _sections(self) -> str:
        text = ['', '[filter:checksum-noverify]',
                'use = egg:imgmw#checksum', 'verify_downloads = false', '',
                '[app:imgmw-noverify]']
        text += self.app_options + ['verify_downloads = false', '']
        for name, pipeline in self.variants.items():
            text += ['[composite:bench-%s]' % name,
                     'use = egg:Paste#urlmap',
                     '/ = bench-%s-api' % name,
                     '/healthcheck = healthcheck', '',
                     '[pipeline:bench-%s-api]' % name,
                     'pipeline = %s' % ' '.join(pipeline), '']
        return '\n'.join(text)


class ApiServer:
    """``imgmw-api`` serving one variant on a free loopback port."""

    def __init__(self, pipelines: Pipelines, variant: str, state_dir: str,
                 log_dir: str, server_args: typing.Sequence[str],
                 options: typing.Optional[dict] = None,
                 extra_config: str = ''):
        self.variant = variant
        self.port = free_port()
        config_file = pipelines.path
        if extra_config:
            config_file = os.path.join(log_dir, 'api-paste-%s.ini' % variant)
            with open(pipelines.path) as base, open(config_file, 'w') as out:
                out.write(base.read() + '\n' + extra_config)
        command = [os.path.join(BIN_DIR, 'imgmw-api'),
                   '--config-file', config_file,
                   '--pipeline', 'bench-%s' % variant,
                   '--bind', '127.0.0.1:%d' % self.port,
                   '--state-dir', state_dir, '--log-level', 'warning',
                   '--access-log', '']
        for key, value in (options or {}).items():
            command += ['-o', '%s=%s' % (key, value)]
        self.command = command + list(server_args)
        self.log_path = os.path.join(log_dir, 'imgmw-api-%s.log' % variant)
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        try:
            self._wait_ready()
        except BenchError:
            self.stop()
            raise BenchError('imgmw-api (%s) did not start; its log:\n%s'
                             % (variant, self.log()))

    def _wait_ready(self) -> None:
        wait_port(self.port, self.process, 'imgmw-api')
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if request(self.port, 'GET', '/healthcheck').status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError('no healthcheck')

    def log(self) -> str:
        with open(self.log_path, errors='replace') as log:
            return log.read()[-4000:]

    def stop(self) -> None:
        stop_process(self.process)


#: The unauthenticated context has no roles: Glance 33's secure-RBAC
#: defaults refuse it every write (403 on image create). Its legacy
#: defaults let it do everything, as Glance did without Keystone.
GLANCE_POLICY = """
[oslo_policy]
enforce_new_defaults = false
enforce_scope = false
"""


class GlanceServer:
    """Glance 33 under uWSGI, plain: no imgmw filter, no Keystone.

    Configured as :class:`tests.glancefixture.Glance` configures it
    (:mod:`tests.glanceconfig`: SQLite, one file store, uWSGI as devstack
    runs it, 2 processes of 4 threads), in ``state_dir``, with Glance's own
    default flavor of ``etc/glance-api-paste.ini``: its ``default``
    pipeline, whose ``unauthenticated-context`` gives every request an
    admin context (what Glance offers without Keystone), under the legacy
    policy defaults (:data:`GLANCE_POLICY`).
    """

    variant = 'glance'

    def __init__(self, venv: str, state_dir: str):
        self.venv = venv
        self.state_dir = state_dir
        self.port = free_port()
        values = {'tempdir': state_dir, 'port': self.port, 'flavor': '',
                  'venv': venv,
                  'database_url': 'sqlite:///%s/glance.sqlite' % state_dir}
        for name in ('images', 'staging', 'tasks'):
            os.makedirs(os.path.join(state_dir, name), exist_ok=True)
        self.config_file = os.path.join(state_dir, 'glance-api.conf')
        self._write('glance-api.conf',
                    glanceconfig.GLANCE_API_CONF % values + GLANCE_POLICY)
        self._write('uwsgi.ini', glanceconfig.UWSGI_INI % values)
        with open(glanceconfig.PASTE_FILE) as stock:
            self._write('glance-api-paste.ini', glanceconfig.set_defaults(
                stock.read(), {
                    name: value % values for name, value in
                    glanceconfig.PASTE_DEFAULTS.items()}))
        self.log_path = os.path.join(state_dir, 'server.log')
        done = subprocess.run(
            [os.path.join(venv, 'bin', 'glance-manage'), '--config-file',
             self.config_file, 'db_sync'], stdin=subprocess.DEVNULL,
            capture_output=True, text=True, cwd=state_dir,
            timeout=START_TIMEOUT * 3)
        if done.returncode != 0:
            raise BenchError('glance-manage db_sync failed:\n%s'
                             % done.stderr[-4000:])
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                [os.path.join(venv, 'bin', 'uwsgi'), '--ini',
                 os.path.join(state_dir, 'uwsgi.ini')],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=state_dir,
                start_new_session=True)
        try:
            self._wait_ready()
        except BenchError as err:
            self.stop()
            raise BenchError('Glance did not start (%s); its logs:\n%s'
                             % (err, self.log()))

    @property
    def images_dir(self) -> str:
        return os.path.join(self.state_dir, 'images')

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.state_dir, name), 'w') as out:
            out.write(text)

    def _wait_ready(self) -> None:
        wait_port(self.port, self.process, 'uwsgi')
        # The workers load Glance after uWSGI binds (lazy-apps).
        deadline = time.monotonic() + START_TIMEOUT * 3
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError('uwsgi exited with status %s'
                                 % self.process.returncode)
            try:
                if request(self.port, 'GET', '/versions').status in (
                        200, 300):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise BenchError('no answer to GET /versions')

    def log(self) -> str:
        parts = []
        for name in ('server.log', 'glance-api.log'):
            try:
                with open(os.path.join(self.state_dir, name),
                          errors='replace') as log:
                    parts.append('--- %s\n%s' % (name, log.read()[-4000:]))
            except FileNotFoundError:
                pass
        return '\n'.join(parts)

    def stop(self) -> None:
        stop_process(self.process)


class Nginx:
    """Debian's nginx sending a directory with sendfile, on loopback."""

    def __init__(self, binary: str, root: str, work_dir: str):
        self.port = free_port()
        os.makedirs(work_dir, exist_ok=True)
        conf = os.path.join(work_dir, 'nginx.conf')
        temp = {key: os.path.join(work_dir, key) for key in (
            'client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi')}
        with open(conf, 'w') as out:
            out.write(NGINX_CONF % dict(
                port=self.port, root=root, work=work_dir,
                user='user root;' if os.geteuid() == 0 else '',
                **{key + '_temp': path for key, path in temp.items()}))
        error_log = os.path.join(work_dir, 'error.log')
        self.process = subprocess.Popen(
            [binary, '-p', work_dir, '-c', conf, '-e', error_log],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, self.process, 'nginx')

    def stop(self) -> None:
        stop_process(self.process)


NGINX_CONF = """
# As root, nginx's workers would drop to nobody and could not read the
# store's files; %(user)s is "user root;" then.
%(user)s
daemon off;
master_process on;
worker_processes 2;
pid %(work)s/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path %(client_body_temp)s;
    proxy_temp_path %(proxy_temp)s;
    fastcgi_temp_path %(fastcgi_temp)s;
    uwsgi_temp_path %(uwsgi_temp)s;
    scgi_temp_path %(scgi_temp)s;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
    }
}
"""


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its live children."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root] + root.children(recursive=True):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class RssSampler:
    """Peak RSS of a process and its children, sampled in a thread."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak_process = 0
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL):
            try:
                processes = [self.root] + self.root.children(recursive=True)
                sizes = [proc.memory_info().rss for proc in processes]
            except psutil.Error:
                continue
            self.peak_process = max(self.peak_process, max(sizes))
            self.peak_total = max(self.peak_total, sum(sizes))


# Measurements.

def median_rate(seconds: typing.Sequence[float], size: int) -> dict:
    rates = [size / MiB / elapsed for elapsed in seconds]
    return {'median': statistics.median(rates), 'runs': rates,
            'unit': 'MiB/s'}


class Bench:
    """One run of the benchmark; figures go to :attr:`results`."""

    def __init__(self, args: argparse.Namespace, tools: dict, work: str):
        self.args = args
        self.tools = tools
        self.work = work
        self.results: typing.Dict[str, dict] = {}
        self.notes: typing.List[str] = []
        self.servers: typing.Dict[str, ApiServer] = {}
        self.state_dir = tempfile.mkdtemp(
            prefix='imgmw-bench-state-', dir=args.state_parent)
        self.pipelines = Pipelines(work)
        self.data: typing.Optional[TestData] = None

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def record(self, name: str, figure: dict) -> None:
        self.results[name] = figure
        print('  %-44s %10.1f %s' % (name, figure['median'],
                                     figure['unit']), flush=True)

    def record_cpu(self, name: str, seconds: typing.Sequence[float],
                   size: int) -> None:
        """CPU seconds per GiB: robust when other work shares the CPUs."""
        runs = [cpu * GiB / size for cpu in seconds]
        self.record(name, {'median': statistics.median(runs), 'runs': runs,
                           'unit': 'CPU s/GiB'})

    def server(self, variant: str) -> ApiServer:
        return self.servers[variant]

    def start_servers(self, variants: typing.Iterable[str]) -> None:
        server_args = self.args.server_args.split()
        for variant in variants:
            if variant in self.pipelines.variants:
                self.servers[variant] = ApiServer(
                    self.pipelines, variant, self.state_dir, self.work,
                    server_args)

    def start_glance(self) -> None:
        if not self.args.glance_venv:
            self.notes.append('no --glance-venv (nor $%s): imgmw only, no '
                              'Glance column' % GLANCE_VENV_VARIABLE)
            return
        print('starting Glance under uWSGI from %s' % self.args.glance_venv,
              flush=True)
        self.servers['glance'] = GlanceServer(
            self.args.glance_venv,
            tempfile.mkdtemp(prefix='glance-', dir=self.state_dir))

    @property
    def glance(self) -> typing.Optional[GlanceServer]:
        return self.servers.get('glance')

    def run(self) -> None:
        sections = self.args.sections
        slice_size = min(self.args.concurrent_size, self.args.size)
        print('writing %d MiB of random data' % (self.args.size // MiB),
              flush=True)
        self.data = TestData(self.work, self.args.size, slice_size)
        self.start_servers(['full', 'bare', 'no-verify'] + [
            'no-' + name for name in OPTIONAL_FILTERS])
        self.start_glance()
        if self.args.client_cpu is not None:
            os.sched_setaffinity(0, {self.args.client_cpu})
            self.notes.append('client pinned to CPU %d'
                              % self.args.client_cpu)
        for name in SECTIONS + OPTIONAL_SECTIONS:
            if name in sections:
                print('[%s]' % name, flush=True)
                getattr(self, 'section_' + name)()
        self.rss_at_end()

    def rss_at_end(self) -> None:
        """The largest worker's RSS, imgmw's full pipeline and Glance's."""
        for name, variant in (('RSS after the run, worker', 'full'),
                              ('Glance: RSS after the run, worker',
                               'glance')):
            if variant in self.servers:
                value = max(proc.memory_info().rss for proc in psutil.Process(
                    self.servers[variant].process.pid).children(
                        recursive=True)) / MiB
                self.record(name, {'median': value, 'runs': [value],
                                   'unit': 'MiB'})

    # Sections.

    def section_upload(self) -> None:
        data = self.data
        repeats = self.args.repeats
        self.record('client ceiling (sendfile into a sink)', median_rate(
            [client_ceiling(data) for _ in range(repeats)], data.size))
        hashing = [hash_baseline(data) for _ in range(repeats)]
        self.record('md5 then sha512, one thread', median_rate(
            [wall for wall, _ in hashing], data.size))
        self.record_cpu('CPU, md5 then sha512, one thread',
                        [cpu for _, cpu in hashing], data.size)
        variants = [('upload Content-Length', 'full', False),
                    ('upload chunked', 'full', True)]
        for name in ['no-' + name for name in OPTIONAL_FILTERS]:
            if name in self.servers:
                variants.append(('upload Content-Length, ' + name, name,
                                 False))
        if self.glance:
            variants += [('Glance: upload Content-Length', 'glance', False),
                         ('Glance: upload chunked', 'glance', True)]
        timings = {figure: [] for figure, _, _ in variants}
        writes = []
        # Interleaved, so that a drift of the machine hits every variant
        # and the write baseline of the same repeat.
        for _ in range(repeats):
            writes.append(write_baseline(data, self.state_dir))
            for figure, variant, chunked in variants:
                timings[figure].append(self._timed_upload(variant, chunked))
        # Repeat by repeat: a slow upload beside a slow write is the
        # machine's filesystem, not the pipeline.
        for index, (write, _) in enumerate(writes):
            print('  repeat %d: %s %.0f MiB/s; %s' % (
                index + 1, WRITE_BASELINE, data.size / MiB / write,
                ', '.join('%s %.0f' % (figure, data.size / MiB
                                       / timings[figure][index][0])
                          for figure, _, _ in variants)), flush=True)
        self.record(WRITE_BASELINE, median_rate(
            [wall for wall, _ in writes], data.size))
        self.record_cpu('CPU, ' + WRITE_BASELINE,
                        [cpu for _, cpu in writes], data.size)
        for figure, _, _ in variants:
            self.record(figure, median_rate(
                [wall for wall, _ in timings[figure]], data.size))
            self.record_cpu('CPU, ' + figure,
                            [cpu for _, cpu in timings[figure]], data.size)

    def _timed_upload(self, variant: str, chunked: bool
                      ) -> typing.Tuple[float, float]:
        """Seconds of the upload, and CPU seconds the server spent."""
        server = self.server(variant)
        port = server.port
        image_id = create_image(port, 'bench-upload')
        cpu = cpu_seconds(server.process.pid)
        elapsed = upload(port, image_id, self.data, 0, self.data.size,
                         chunked)
        cpu = cpu_seconds(server.process.pid) - cpu
        self._check_intact(port, image_id, self.data.size, self.data.md5,
                           self.data.sha512)
        delete_image(port, image_id)
        return elapsed, cpu

    def _check_intact(self, port: int, image_id: str, size: int,
                      md5: str, sha512: typing.Optional[str] = None) -> None:
        image = show_image(port, image_id)
        if (image['status'] != 'active' or image['size'] != size
                or image['checksum'] != md5
                or (sha512 and image['os_hash_value'] != sha512)):
            raise BenchError('image %s is not intact: %s %s %s' % (
                image_id, image['status'], image['size'],
                image['checksum']))

    def section_download(self) -> None:
        data = self.data
        full = self.server('full')
        image_id = create_image(full.port, 'bench-download')
        upload(full.port, image_id, data, 0, data.size)
        self._check_intact(full.port, image_id, data.size, data.md5)
        nginx = Nginx(self.tools['nginx'],
                      os.path.join(self.state_dir, 'images'),
                      os.path.join(self.work, 'nginx'))
        glance_id = None
        try:
            if self.glance:
                glance_id = create_image(self.glance.port, 'bench-download')
                upload(self.glance.port, glance_id, data, 0, data.size)
                self._check_intact(self.glance.port, glance_id, data.size,
                                   data.md5)
            self._downloads(nginx, image_id, glance_id)
        finally:
            nginx.stop()
            delete_image(full.port, image_id)
            if glance_id:
                delete_image(self.glance.port, glance_id)

    def _downloads(self, nginx: Nginx, image_id: str,
                   glance_id: typing.Optional[str]) -> None:
        size = self.data.size
        ranged = {'Range': 'bytes=1-'}
        api_path = '/v2/images/%s/file' % image_id
        full = self.server('full')
        noverify = self.server('no-verify')
        cases = [
            ('nginx full', nginx, '/' + image_id, None, size),
            ('nginx ranged', nginx, '/' + image_id, ranged, size - 1),
            ('download full, verify on', full, api_path, None, size),
            ('download full, verify off', noverify, api_path, None, size),
            ('download ranged, verify on', full, api_path, ranged,
             size - 1),
            ('download ranged, verify off', noverify, api_path, ranged,
             size - 1),
        ]
        if glance_id:
            glance_path = '/v2/images/%s/file' % glance_id
            cases += [
                ('Glance: download full', self.glance, glance_path, None,
                 size),
                ('Glance: download ranged', self.glance, glance_path,
                 ranged, size - 1)]
        timings = {case[0]: [] for case in cases}
        for _ in range(self.args.repeats):
            for name, server, path, headers, length in cases:
                cpu = cpu_seconds(server.process.pid)
                elapsed = download(server.port, path, length, headers)
                cpu = cpu_seconds(server.process.pid) - cpu
                timings[name].append((elapsed, cpu))
        for name, _, _, _, length in cases:
            self.record(name, median_rate(
                [wall for wall, _ in timings[name]], length))
            self.record_cpu('CPU, ' + name,
                            [cpu for _, cpu in timings[name]], length)

    def section_small(self) -> None:
        """Small requests with wrk, each server in turn, every repeat.

        imgmw's full pipeline and the bare app at ``--small-connections``
        (the keys ``small: <case>, full|bare``); imgmw's full pipeline and
        Glance at each of ``--list-connections`` (``small: <case>,
        full|glance at <n>``): the image show, the list of
        :data:`LIST_IMAGES` images and (imgmw only) a 1 KiB download.
        """
        small = 1 * KiB
        with open(self.data.path, 'rb') as source:
            payload = source.read(small)
        made = {}
        for variant in ('full', 'glance'):
            if variant not in self.servers:
                continue
            port = self.servers[variant].port
            ids = [create_image(port, 'bench-small-%d' % index)
                   for index in range(LIST_IMAGES)]
            request(port, 'PUT', '/v2/images/%s/file' % ids[0], payload,
                    {'Content-Type': 'application/octet-stream'})
            made[variant] = ids
        image_id = made['full'][0]
        cases = [('image show', 'full', '/v2/images/%s' % image_id),
                 ('image show', 'bare', '/v2/images/%s' % image_id),
                 ('1 KiB download', 'full',
                  '/v2/images/%s/file' % image_id),
                 ('1 KiB download', 'bare',
                  '/v2/images/%s/file' % image_id)]
        runs = [(label, variant, path, self.args.small_connections,
                 'small: %s, %s' % (label, variant))
                for label, variant, path in cases]
        for connections in self._list_connections():
            for variant, ids in made.items():
                for label, path in (('image show', '/v2/images/' + ids[0]),
                                    ('image list', '/v2/images')):
                    runs.append((label, variant, path, connections,
                                 'small: %s, %s at %d' % (
                                     label, variant, connections)))
        rates = {}
        costs = {}
        for _ in range(self.args.repeats):
            for label, variant, path, connections, key in runs:
                server = self.server(variant)
                cpu = cpu_seconds(server.process.pid)
                rate, count = self._wrk(server.port, path, connections)
                cpu = cpu_seconds(server.process.pid) - cpu
                rates.setdefault(key, []).append(rate)
                costs.setdefault('CPU, ' + key, []).append(
                    cpu / max(count, 1) * 1e6)
        for key, runs in rates.items():
            self.record(key, {'median': statistics.median(runs),
                              'runs': runs, 'unit': 'req/s'})
        for key, runs in costs.items():
            self.record(key, {'median': statistics.median(runs),
                              'runs': runs, 'unit': 'CPU us/req'})
        for variant, ids in made.items():
            for one in ids:
                delete_image(self.servers[variant].port, one)

    def _list_connections(self) -> typing.List[int]:
        return [int(part) for part in self.args.list_connections.split(',')
                if part.strip()]

    def _wrk(self, port: int, path: str, connections: int
             ) -> typing.Tuple[float, int]:
        """Requests per second, and requests made."""
        # wrk's default timeout of 2 s is an error it reports; Glance's
        # list at 32 connections can take longer on a loaded machine.
        command = [self.tools['wrk'], '-t', '1', '--timeout', '30s',
                   '-c', str(connections),
                   '-d', '%ds' % self.args.small_duration,
                   'http://127.0.0.1:%d%s' % (port, path)]
        out = subprocess.run(command, check=True, capture_output=True,
                             text=True,
                             timeout=self.args.small_duration + 60).stdout
        errors = re.search(r'Non-2xx or 3xx responses: ([0-9]+)', out)
        if errors or 'Socket errors' in out:
            raise BenchError('wrk saw errors on %s:\n%s' % (path, out))
        rate = float(re.search(r'Requests/sec:\s+([0-9.]+)', out).group(1))
        count = int(re.search(r'([0-9]+) requests in', out).group(1))
        return rate, count

    def section_rss(self) -> None:
        size = self.args.rss_size
        server = self.server('full')
        self._peak_rss('peak RSS, %s upload' % _size_name(size), server,
                       size)
        if self.glance:
            self._peak_rss('Glance: peak RSS, %s upload' % _size_name(size),
                           self.glance, size)

    def _peak_rss(self, name: str, server: ApiServer, size: int) -> None:
        image_id = create_image(server.port, 'bench-rss')
        at_rest = max(proc.memory_info().rss for proc in psutil.Process(
            server.process.pid).children(recursive=True))
        with RssSampler(server.process.pid) as sampler:
            elapsed = upload(server.port, image_id, self.data, 0, size)
        image = show_image(server.port, image_id)
        if image['status'] != 'active' or image['size'] != size:
            raise BenchError('the %s upload did not go active' % name)
        delete_image(server.port, image_id)
        self.record(name + ', rate', median_rate([elapsed], size))
        for suffix, value in (('worker at rest', at_rest),
                              ('worker', sampler.peak_process),
                              ('all processes', sampler.peak_total)):
            self.record('%s, %s' % (name, suffix), {
                'median': value / MiB, 'runs': [value / MiB],
                'unit': 'MiB'})

    def section_concurrent(self) -> None:
        data = self.data
        port = self.server('full').port
        count = self.args.concurrent
        size = data.slice_size
        runs = []
        for _ in range(max(1, self.args.repeats // 2)):
            images = [create_image(port, 'bench-concurrent-%d' % index)
                      for index in range(count)]
            failures = []

            def one(index):
                try:
                    upload(port, images[index], data,
                           data.slice_offset(index), size)
                except BaseException as err:
                    failures.append(err)

            threads = [threading.Thread(target=one, args=(index,))
                       for index in range(count)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(REQUEST_TIMEOUT)
            elapsed = time.perf_counter() - started
            if failures:
                raise BenchError('concurrent upload failed: %s'
                                 % failures[0])
            for index, image_id in enumerate(images):
                offset = data.slice_offset(index)
                self._check_intact(port, image_id, size, data.slice_md5[
                    offset // data.slice_size])
                delete_image(port, image_id)
            runs.append(elapsed)
        self.record('%d concurrent uploads, aggregate' % count,
                    median_rate(runs, size * count))
        self.results['%d concurrent uploads, aggregate' % count][
            'intact'] = True

    def section_s3(self) -> None:
        """Multipart uploads to a local S3 service, two ways.

        The parts sent ``S3_PARALLEL_PARTS`` at a time (the default of
        ``s3_store_thread_pools``) and one at a time: the rate of each, the
        worker's peak RSS of each, and the rate ratio. The service is
        moto, or Swift with s3api (``--s3-server swift``).
        """
        service = self._s3_service()
        if service is None:
            return
        store, stop = service
        try:
            self._s3_uploads(store)
        finally:
            stop()

    def _s3_service(self):
        """``(store options, stop)`` of the S3 service, or None."""
        if self.args.s3_server == 'swift':
            from tests import s3fixture
            if not s3fixture.swift_available():
                self.notes.append('s3: Swift is not installed (tox -e '
                                  's3-swift installs it); skipped')
                return None
            swift = s3fixture.SwiftServer()
            swift.setUp()
            bucket = swift.make_bucket('imgmw-bench')
            return (S3_STORE % dict(endpoint=swift.endpoint,
                                    access=swift.access_key,
                                    secret=swift.secret_key,
                                    bucket=bucket),
                    swift.cleanUp)
        moto = shutil.which('moto_server', path=BIN_DIR)
        if moto is None:
            self.notes.append('s3: moto_server is not installed; skipped')
            return None
        port = free_port()
        process = subprocess.Popen(
            [moto, '-H', '127.0.0.1', '-p', str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(port, process, 'moto_server')
        except BaseException:
            stop_process(process)
            raise
        return (S3_STORE % dict(endpoint='http://127.0.0.1:%d' % port,
                                access='bench', secret='bench',
                                bucket='imgmw-bench'),
                functools.partial(stop_process, process))

    def _s3_uploads(self, store: str) -> None:
        size = self.args.s3_size
        names = {}
        for parts in (S3_PARALLEL_PARTS, 1):
            names[parts] = 'peak RSS, %s upload to s3%s' % (
                _size_name(size),
                '' if parts > 1 else ', one part at a time')
            server = ApiServer(
                self.pipelines, 'full',
                tempfile.mkdtemp(prefix='s3-', dir=self.state_dir),
                self.work, self.args.server_args.split(),
                options={'enabled_backends': 's3:s3',
                         'default_backend': 's3'},
                extra_config=store + S3_PARTS % parts)
            try:
                self._peak_rss(names[parts], server, size)
            finally:
                server.stop()
        parallel = self.results[names[S3_PARALLEL_PARTS] + ', rate']
        serial = self.results[names[1] + ', rate']
        ratio = parallel['median'] / serial['median']
        self.record('s3 rate, %d parts at a time over one'
                    % S3_PARALLEL_PARTS,
                    {'median': ratio, 'runs': [ratio], 'unit': 'ratio'})


#: Parts of an s3 upload sent at a time (s3_store_thread_pools' default).
S3_PARALLEL_PARTS = 2

S3_STORE = """
[store:s3]
s3_store_host = %(endpoint)s
s3_store_access_key = %(access)s
s3_store_secret_key = %(secret)s
s3_store_bucket = %(bucket)s
s3_store_create_bucket_on_put = true
"""
S3_PARTS = "s3_store_thread_pools = %d\n"


def _size_name(size: int) -> str:
    if size % GiB == 0:
        return '%d GiB' % (size // GiB)
    return '%d MiB' % (size // MiB)


# Report.

def ratios(results: dict, concurrent: int) -> typing.List[dict]:
    rows = []
    for figure, baseline, target in TARGETS:
        figure = figure.replace('8 concurrent', '%d concurrent' % concurrent)
        if figure in results and baseline in results:
            ratio = results[figure]['median'] / results[baseline]['median']
            rows.append({'figure': figure, 'baseline': baseline,
                         'ratio': ratio, 'target': target,
                         'met': None if target is None else ratio >= target})
    for name, value in results.items():
        if (name.startswith(('peak RSS', 'RSS after'))
                and name.endswith(', worker')):
            limit = 150 if 's3' in name else 100
            rows.append({'figure': name, 'baseline': 'MiB',
                         'ratio': value['median'], 'target': limit,
                         'met': value['median'] < limit, 'limit': True})
    return rows


#: (imgmw's figure, Glance's, the machine's baseline or None, target
#: over Glance or None, target over the baseline or None): the rows of
#: the table beside Glance (issue 18's targets).
PEERS = (
    ('upload Content-Length', 'Glance: upload Content-Length',
     'md5 then sha512, one thread', 2.0, 1.0),
    ('upload chunked', 'Glance: upload chunked',
     'md5 then sha512, one thread', 2.0, 1.0),
    ('download full, verify on', 'Glance: download full', 'nginx full',
     1.0, None),
    ('download full, verify off', 'Glance: download full', 'nginx full',
     None, None),
    ('download ranged, verify on', 'Glance: download ranged',
     'nginx ranged', None, None),
    ('download ranged, verify off', 'Glance: download ranged',
     'nginx ranged', None, None),
    ('CPU, download full, verify on', 'CPU, Glance: download full',
     'CPU, nginx full', None, None),
    ('CPU, upload Content-Length', 'CPU, Glance: upload Content-Length',
     'CPU, md5 then sha512, one thread', None, None),
    ('small: image show, full at 8', 'small: image show, glance at 8',
     None, 3.0, None),
    ('small: image show, full at 32', 'small: image show, glance at 32',
     None, 3.0, None),
    ('small: image list, full at 8', 'small: image list, glance at 8',
     None, 3.0, None),
    ('small: image list, full at 32', 'small: image list, glance at 32',
     None, 3.0, None),
    ('peak RSS, 5 GiB upload, worker', 'Glance: peak RSS, 5 GiB upload, '
     'worker', None, None, None),
    ('RSS after the run, worker', 'Glance: RSS after the run, worker',
     None, None, None),
)


def peer_rows(results: dict) -> typing.List[dict]:
    """imgmw beside Glance: each figure, the ratios, the targets met.

    A ratio of CPU seconds or of RSS is the cost's ratio (lower is
    better); the targets are on rates (higher is better).
    """
    rows = []
    for figure, glance, baseline, over_glance, over_base in PEERS:
        if figure not in results:
            continue
        value = results[figure]['median']
        row = {'figure': figure, 'imgmw': value,
               'unit': results[figure]['unit'], 'glance': None,
               'x_glance': None, 'baseline': baseline, 'x_baseline': None,
               'targets': [], 'met': None}
        if glance in results:
            row['glance'] = results[glance]['median']
            row['x_glance'] = value / row['glance']
            if over_glance is not None:
                row['targets'].append(('Glance', over_glance,
                                       row['x_glance'] >= over_glance))
        if baseline and baseline in results:
            row['x_baseline'] = value / results[baseline]['median']
            if over_base is not None:
                # Every repeat, not only the median, must meet it.
                worst = min(results[figure]['runs']) / results[baseline][
                    'median']
                row['targets'].append(('baseline, every run', over_base,
                                       worst >= over_base))
        if row['targets']:
            row['met'] = all(met for _, _, met in row['targets'])
        rows.append(row)
    return rows


def peer_table(rows: typing.List[dict]) -> str:
    lines = ['%-32s %9s %9s %-10s %7s %7s %-13s %s' % (
        'figure', 'imgmw', 'Glance', 'unit', 'xGlance', 'xbase',
        'targets', 'met')]
    for row in rows:
        # G: over Glance; b: over the baseline in every repeat.
        targets = ' '.join(
            '%s>=%g' % ('G' if what == 'Glance' else 'b', limit)
            for what, limit, _ in row['targets'])
        lines.append('%-32s %9.1f %9s %-10s %7s %7s %-13s %s' % (
            row['figure'], row['imgmw'],
            '-' if row['glance'] is None else '%.1f' % row['glance'],
            row['unit'],
            '-' if row['x_glance'] is None else '%.2f' % row['x_glance'],
            '-' if row['x_baseline'] is None else '%.2f' % row['x_baseline'],
            targets, {True: 'yes', False: 'NO', None: ''}[row['met']]))
    return '\n'.join(lines)


def table(rows: typing.List[dict]) -> str:
    lines = ['%-36s %-30s %7s %8s %s' % ('figure', 'against', 'ratio',
                                         'target', 'met')]
    for row in rows:
        if row.get('limit'):
            target = '< %d' % row['target']
            value = '%7.1f' % row['ratio']
        else:
            target = ('>= %.1f' % row['target']
                      if row['target'] is not None else '')
            value = '%7.2f' % row['ratio']
        met = {True: 'yes', False: 'NO', None: ''}[row['met']]
        lines.append('%-36s %-30s %s %8s %s' % (
            row['figure'], row['baseline'], value, target, met))
    return '\n'.join(lines)


def environment(args: argparse.Namespace) -> dict:
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
            capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = None
    return {'commit': commit, 'python': platform.python_version(),
            'cpus': os.cpu_count(), 'load_average': os.getloadavg(),
            'machine': platform.machine(), 'kernel': platform.release(),
            'command': ' '.join([os.path.basename(sys.argv[0])]
                                + sys.argv[1:]),
            'server_args': args.server_args, 'size': args.size,
            'client_cpu': args.client_cpu,
            'repeats': args.repeats}


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.state_parent is None and os.path.isdir('/dev/shm'):
        args.state_parent = '/dev/shm'
    try:
        tools = ensure_tools(not args.no_install)
        with tempfile.TemporaryDirectory(prefix='imgmw-bench-',
                                         dir=args.data_parent) as work:
            bench = Bench(args, tools, work)
            try:
                bench.run()
            finally:
                bench.close()
    except BenchError as err:
        print('bench: %s' % err, file=sys.stderr)
        return 1
    rows = ratios(bench.results, args.concurrent)
    env = environment(args)
    peers = peer_rows(bench.results)
    print('\n' + table(rows))
    print('\nimgmw beside Glance 33 (uWSGI, 2 processes x 4 threads); '
          'targets: G>=n n times Glance, b>=n n times the baseline in '
          'every repeat:\n' + peer_table(peers))
    for note in bench.notes:
        print('note: %s' % note)
    with open(args.json, 'w') as out:
        env['pipelines'] = {
            name: ' '.join(pipeline)
            for name, pipeline in bench.pipelines.variants.items()}
        json.dump({'environment': env, 'ratios': rows, 'peers': peers,
                   'figures': bench.results, 'notes': bench.notes},
                  out, indent=2)
    print('\nwritten to %s' % args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
