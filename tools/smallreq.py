"""The server's cost of small requests: CPU, instructions and profiles.

Measures what ``imgmw-api`` spends on each of three small requests through
the whole ``noauth`` pipeline of ``etc/api-paste.ini``: ``GET
/v2/images/{id}``, ``GET /v2/images`` (20 images in the registry) and a
1 KiB download (``GET /v2/images/{id}/file``). SQLite and the file store
live in a fresh state directory under ``/dev/shm``.

Two ways, both meant to hold when other work shares the machine:

``server``
    starts ``imgmw-api --workers 1`` (with and without the access log),
    sends N requests of each kind on one keep-alive connection, and
    reports the worker's CPU microseconds per request (``/proc``) and,
    with ``--perf``, its instructions per request (``perf stat -e
    instructions -p <worker pid>`` around the N requests; virtual machines
    often have no such counter, then use callgrind below). With the
    access log on, it goes to stderr, into a file of the state
    directory::

        python tools/smallreq.py server -n 2000 --perf

``inproc``
    loads the pipeline in this process and calls it with
    ``webob.Request.blank``: CPU microseconds per request, or a profile
    with ``--profile cprofile`` (the 25 costliest functions, cumulative
    and own time) or ``--profile pyinstrument`` (not a dependency of
    imgmw: ``pip install pyinstrument``); ``--case show|list|download``
    runs one case alone. Each timed loop is preceded by ``os.getppid()``
    and followed by ``os.getsid(0)``, so that callgrind counts the
    instructions of each case's requests alone, in one file per case
    (``callgrind.out.1`` show, ``.2`` list, ``.3`` download; divide the
    ``summary:`` line by N)::

        python tools/smallreq.py inproc -n 2000
        python tools/smallreq.py inproc --case show --profile cprofile
        PYTHONHASHSEED=0 valgrind --tool=callgrind --zero-before=getppid \\
            --dump-before=getsid --callgrind-out-file=callgrind.out \\
            python tools/smallreq.py inproc -n 100

Run it with the virtualenv that has imgmw installed (``pip install -e
'.[service]'``); ``--paste`` names another checkout's ``api-paste.ini``,
to measure that checkout with its own virtualenv.
"""

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASTE = os.path.join(ROOT, 'etc', 'api-paste.ini')
IMAGES = 20
PAYLOAD = b'x' * 1024
CASES = ('show', 'list', 'download')


def _paths(image_id):
    return {'show': '/v2/images/%s' % image_id,
            'list': '/v2/images',
            'download': '/v2/images/%s/file' % image_id}


@contextlib.contextmanager
def state_dir():
    path = tempfile.mkdtemp(prefix='imgmw-smallreq-',
                            dir='/dev/shm' if os.path.isdir('/dev/shm')
                            else None)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# In process.

def load_app(state, paste=PASTE):
    from imgmw import wsgi
    return wsgi.load(paste, 'noauth', wsgi.global_conf(paste, {}, state))


def populate_app(app):
    """20 images, the first with 1 KiB of data; its id."""
    import webob
    ids = []
    for index in range(IMAGES):
        req = webob.Request.blank(
            '/v2/images', method='POST', content_type='application/json',
            body=json.dumps({'name': 'small-%d' % index,
                             'disk_format': 'raw',
                             'container_format': 'bare'}).encode())
        resp = req.get_response(app)
        assert resp.status_int == 201, resp.status
        ids.append(resp.json['id'])
    req = webob.Request.blank(
        '/v2/images/%s/file' % ids[0], method='PUT',
        content_type='application/octet-stream', body=PAYLOAD)
    resp = req.get_response(app)
    assert resp.status_int == 204, resp.status
    return ids[0]


def call(app, path):
    import webob
    resp = webob.Request.blank(path).get_response(app)
    assert resp.status_int == 200, (path, resp.status)
    return resp.body


def inproc(args):
    with state_dir() as state:
        app = load_app(state, args.paste)
        paths = _paths(populate_app(app))
        cases = [args.case] if args.case else CASES
        for case in cases:  # warm up
            for _ in range(20):
                call(app, paths[case])
        for case in cases:
            path = paths[case]
            if args.profile == 'cprofile':
                import cProfile
                import pstats
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(args.n):
                    call(app, path)
                profile.disable()
                print('== %s, %d requests' % (case, args.n))
                stats = pstats.Stats(profile)
                stats.sort_stats('cumulative').print_stats(args.top)
                stats.sort_stats('tottime').print_stats(args.top)
            elif args.profile == 'pyinstrument':
                import pyinstrument
                profiler = pyinstrument.Profiler(interval=0.0001)
                profiler.start()
                for _ in range(args.n):
                    call(app, path)
                profiler.stop()
                print('== %s, %d requests' % (case, args.n))
                print(profiler.output_text(unicode=False, color=False))
            else:
                os.getppid()  # callgrind --zero-before=getppid
                began = time.process_time()
                for _ in range(args.n):
                    call(app, path)
                spent = time.process_time() - began
                os.getsid(0)  # callgrind --dump-before=getsid
                print('%-9s %8.1f CPU us/request (in process)'
                      % (case, spent / args.n * 1e6))


# A real server.

def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as stat:
        fields = stat.read().rpartition(')')[2].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _worker_pid(master):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open('/proc/%d/task/%d/children' % (master, master)) as f:
                children = f.read().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError('no worker')


def _request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def server(args):
    api = os.path.join(os.path.dirname(sys.executable), 'imgmw-api')
    for access_log in ('', '-'):
        with state_dir() as state:
            port = _free_port()
            log = open(os.path.join(state, 'server.log'), 'wb')
            proc = subprocess.Popen(
                [api, '--config-file', args.paste, '--workers', '1',
                 '--bind', '127.0.0.1:%d' % port, '--state-dir', state,
                 '--access-log', access_log],
                stdout=log, stderr=log)
            try:
                _serve_cases(args, proc, port, access_log)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                log.close()


def _serve_cases(args, proc, port, access_log):
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection('127.0.0.1', port)
            _request(conn, 'GET', '/versions')
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    worker = _worker_pid(proc.pid)
    ids = []
    for index in range(IMAGES):
        status, body = _request(
            conn, 'POST', '/v2/images',
            json.dumps({'name': 'small-%d' % index, 'disk_format': 'raw',
                        'container_format': 'bare'}),
            {'Content-Type': 'application/json'})
        assert status == 201, status
        ids.append(json.loads(body)['id'])
    status, _ = _request(conn, 'PUT', '/v2/images/%s/file' % ids[0],
                         PAYLOAD,
                         {'Content-Type': 'application/octet-stream'})
    assert status == 204, status
    paths = _paths(ids[0])
    hz = os.sysconf('SC_CLK_TCK')
    label = 'access log %s' % ('off' if not access_log else 'on')
    for case in CASES:
        path = paths[case]
        for _ in range(50):
            _request(conn, 'GET', path)
        perf = None
        if args.perf:
            perf = subprocess.Popen(
                ['perf', 'stat', '-x', ',', '-e', 'instructions:u',
                 '-e', 'instructions:k', '-p', str(worker)],
                stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
        ticks = _cpu_ticks(worker)
        for _ in range(args.n):
            status, _ = _request(conn, 'GET', path)
            assert status == 200, status
        ticks = _cpu_ticks(worker) - ticks
        line = '%-9s %-14s %8.1f CPU us/request' % (
            case, label, ticks / hz / args.n * 1e6)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            counts = {}
            for row in perf.communicate()[1].splitlines():
                fields = row.split(',')
                if len(fields) > 2 and fields[0].isdigit():
                    counts[fields[2]] = int(fields[0])
            user = counts.get('instructions:u', 0)
            kernel = counts.get('instructions:k', 0)
            line += '  %8.0f k instr/request (user %.0f k, kernel %.0f k)' % (
                (user + kernel) / args.n / 1e3, user / args.n / 1e3,
                kernel / args.n / 1e3)
        print(line, flush=True)
    conn.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='mode', required=True)
    inp = sub.add_parser('inproc')
    inp.add_argument('-n', type=int, default=2000)
    inp.add_argument('--case', choices=CASES)
    inp.add_argument('--profile', choices=('cprofile', 'pyinstrument'))
    inp.add_argument('--top', type=int, default=25)
    srv = sub.add_parser('server')
    srv.add_argument('-n', type=int, default=2000)
    srv.add_argument('--perf', action='store_true')
    for mode in (inp, srv):
        mode.add_argument('--paste', default=PASTE,
                          help='the paste file (default: this checkout\'s)')
    args = parser.parse_args(argv)
    if args.mode == 'inproc':
        inproc(args)
    else:
        server(args)


if __name__ == '__main__':
    main()
