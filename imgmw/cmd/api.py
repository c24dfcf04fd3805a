"""imgmw-api: serve a pipeline of ``api-paste.ini`` under gunicorn.

With no argument it serves the ``noauth`` pipeline on 127.0.0.1:9292, with
the SQLite registry and the file store in ``./state``::

    imgmw-api
    imgmw-api --pipeline keystone --bind 0.0.0.0:9292 --workers 4 \\
        --config-file /etc/imgmw/api-paste.ini \\
        -o database_connection=postgresql+psycopg2://imgmw@db/imgmw

``-o key=value`` (repeatable) overrides a ``[DEFAULT]`` value of the paste
file. A ``noauth`` pipeline trusts every caller, so imgmw-api refuses to
serve it on an address other than loopback (or a Unix socket) unless
``--allow-insecure-noauth`` is given.

Before it binds, imgmw-api checks the whole configuration once: a
``[DEFAULT]`` or ``-o`` key that nothing declares (see ``foreign_options``
in :mod:`imgmw.config`), a malformed value, a missing filter or section
stops it with one line on stderr and exit status 1, and nothing listens.
The check loads the pipeline in a short-lived child process, which logs
only warnings and errors (everything with ``--log-level debug``); each worker
then loads it itself after the fork (gunicorn's ``preload_app`` is off), so
database engines and store clients are never shared between processes. The
``serving ...`` line is logged once the sockets listen. Logs go to stderr;
request bodies and tokens are never logged.

Keep-alive clients and workers
------------------------------
gunicorn's workers all accept from one listening socket, each whenever it
polls, and a client that keeps its connection alive stays with the worker
that accepted it: a burst of new connections was often accepted by a
single worker (8 of 8, or 6 of 8, with two workers), whose threads then
shared one interpreter lock while the other worker idled, at a third of
the rate of small requests and twice their CPU. imgmw-api's worker
(:mod:`imgmw.cmd.worker`) spreads them: the workers share a table of the
connections each holds (:mod:`imgmw.cmd.balance`), and a worker holding
more than another leaves a new connection to it for 50 ms. Measured with
``wrk -c8`` and two workers, five runs of eight connections gave 4/4
every time (1,740 to 1,910 requests a second of ``GET /v2/images/{id}``,
against 500 to 660 with an 8/0 split before). With another worker class,
or to bound each worker, two settings help:

* ``--worker-connections N`` caps the connections of each gthread worker
  (gunicorn's default is 1000); a worker at its cap stops accepting, so
  the others take the next ones. Set it to about the expected number of
  concurrent clients divided by the workers, and above ``--threads``:
  gunicorn keeps at most ``worker_connections - threads`` connections
  alive between requests. A client beyond every worker's cap waits in the
  listen queue until a connection closes (idle keep-alive connections are
  closed after ``--keepalive`` seconds, 5 by default).
* ``--reuse-port`` sets ``SO_REUSEPORT`` on the listening socket, so that
  several ``imgmw-api`` processes (for instance one per core, each with
  ``--workers 1``) can listen on the same address: the kernel then
  spreads new connections evenly between their sockets.
"""

import argparse
import ipaddress
import logging
import os
import socket
import sys
import typing

from gunicorn.app import base as gunicorn_base
from gunicorn import arbiter

from imgmw import config
from imgmw import errors
from imgmw import wsgi


LOG = logging.getLogger(__name__)

DEFAULT_PIPELINE = 'noauth'
DEFAULT_BIND = '127.0.0.1:9292'
#: gunicorn's gthread with the framing fixes of :mod:`imgmw.cmd.worker`.
DEFAULT_WORKER_CLASS = 'imgmw.cmd.worker.ThreadWorker'
LOG_FORMAT = '%(asctime)s %(process)d %(levelname)s %(name)s %(message)s'


def _override(text: str) -> typing.Tuple[str, str]:
    key, sep, value = text.partition('=')
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            'expected key=value, got %r' % text)
    return key, value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='imgmw-api',
        description='Serve an imgmw pipeline of api-paste.ini under '
                    'gunicorn.')
    parser.add_argument(
        '--config-file', default=None,
        help='the paste configuration (default: the first of %s that '
             'exists)' % ', '.join(wsgi.CONFIG_FILE_CANDIDATES))
    parser.add_argument(
        '--pipeline', default=DEFAULT_PIPELINE,
        help='the composite of the paste file to serve (default: '
             '%(default)s)')
    parser.add_argument(
        '--bind', action='append', default=None, metavar='ADDRESS',
        help='HOST:PORT, [IPV6]:PORT or unix:PATH; repeatable (default: '
             '%s)' % DEFAULT_BIND)
    parser.add_argument(
        '--workers', type=_positive, default=2,
        help='worker processes (default: %(default)s)')
    parser.add_argument(
        '--threads', type=_positive, default=8,
        help='threads of each gthread worker (default: %(default)s)')
    parser.add_argument(
        '--worker-connections', type=_positive, default=1000,
        help='most connections of one gthread worker, keep-alive ones '
             'included (default: %(default)s)')
    parser.add_argument(
        '--reuse-port', action='store_true',
        help='listen with SO_REUSEPORT, so that several imgmw-api '
             'processes share the address and the kernel spreads '
             'connections between them')
    parser.add_argument(
        '--worker-class', default=DEFAULT_WORKER_CLASS,
        help='gunicorn worker class (default: %(default)s, gthread with '
             'Expect: 100-continue sent at the first read of the body)')
    parser.add_argument(
        '--timeout', type=_positive, default=300,
        help='seconds before a silent worker is restarted; with gthread '
             'a long upload keeps its worker alive (default: %(default)s)')
    parser.add_argument(
        '--keepalive', type=_positive, default=5,
        help='seconds an idle kept-alive connection waits for its next '
             'request before the server closes it (default: %(default)s, '
             "Apache httpd's KeepAliveTimeout; gunicorn's own 2 s is the "
             "interval at which openstacksdk polls an image's status, so "
             'its next request could meet the close and fail)')
    parser.add_argument(
        '--header-timeout', type=_positive, default=10,
        help='seconds a client has to send a whole request head before '
             'it is cut with 408 (default: %(default)s)')
    parser.add_argument(
        '--body-timeout', type=_positive, default=30,
        help='seconds a client has to send the first --body-window bytes '
             'of a body before it is cut with 408, and longest pause '
             'between two reads of a body (default: %(default)s)')
    parser.add_argument(
        '--body-window', type=_positive, default=65536,
        help='body bytes read without a thread before a request is '
             'served (default: %(default)s)')
    parser.add_argument(
        '--body-min-rate', type=_positive, default=1024,
        help='lowest average bytes a second of a body read by a thread, '
             'enforced after 10 s (default: %(default)s)')
    parser.add_argument(
        '--state-dir', default=None,
        help='local state directory, when [DEFAULT] sets no state_dir '
             '(default: ./%s)' % wsgi.DEFAULT_STATE_DIR)
    parser.add_argument(
        '-o', '--option', dest='options', action='append', default=[],
        type=_override, metavar='KEY=VALUE',
        help='override a [DEFAULT] value of the paste file; repeatable')
    parser.add_argument(
        '--allow-insecure-noauth', action='store_true',
        help='serve a noauth pipeline on a non-loopback address')
    parser.add_argument(
        '--log-level', default='info',
        choices=('debug', 'info', 'warning', 'error', 'critical'),
        help='(default: %(default)s)')
    parser.add_argument(
        '--access-log', default='-', metavar='PATH',
        help="access log file, '-' for stderr, '' for none (default: "
             "stderr)")
    return parser


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            'expected a positive integer, got %r' % text)
    return number


def parse_args(argv: typing.Optional[typing.Sequence[str]] = None
               ) -> argparse.Namespace:
    """Parse and check the command line; exits with a message on error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.bind = args.bind or [DEFAULT_BIND]
    args.options = dict(args.options)
    args.config_file = args.config_file or wsgi.default_config_file()
    refusal = insecure_binding(args.pipeline, args.bind,
                               args.allow_insecure_noauth)
    if refusal:
        parser.exit(2, 'imgmw-api: error: %s\n' % refusal)
    return args


def is_noauth(pipeline: str) -> bool:
    """Whether a pipeline trusts every caller (its name says ``noauth``)."""
    return pipeline.lower().startswith('noauth')


def insecure_binding(pipeline: str, binds: typing.Sequence[str],
                     allowed: bool) -> typing.Optional[str]:
    """The reason to refuse serving, or ``None``."""
    if allowed or not is_noauth(pipeline):
        return None
    exposed = [bind for bind in binds if not is_loopback(bind)]
    if not exposed:
        return None
    return ('the %s pipeline trusts every caller and %s is not a loopback '
            'address; serve the keystone pipeline, bind to 127.0.0.1, or '
            'pass --allow-insecure-noauth' % (pipeline, ', '.join(exposed)))


def bind_host(bind: str) -> typing.Optional[str]:
    """The host part of a gunicorn bind address; ``None`` for a socket."""
    if bind.startswith('unix:'):
        return None
    if bind.startswith('['):
        return bind[1:].partition(']')[0]
    if bind.count(':') > 1:
        return bind  # a bare IPv6 address, no port
    return bind.partition(':')[0]


def is_loopback(bind: str) -> bool:
    """Whether every address ``bind`` names is loopback (or a Unix socket).

    Host names are resolved; one that does not resolve is not loopback.
    """
    if bind.startswith('fd://'):
        return False
    host = bind_host(bind)
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].partition('%')[0]).is_loopback
        for info in infos)


class Server(gunicorn_base.BaseApplication):
    """gunicorn, configured from the command line, loading in each worker."""

    def __init__(self, args: argparse.Namespace,
                 conf: typing.Dict[str, str]):
        self.args = args
        self.conf = conf
        super().__init__()

    def load_config(self) -> None:
        args = self.args
        settings = {
            'bind': args.bind,
            'workers': args.workers,
            'threads': args.threads,
            'worker_connections': args.worker_connections,
            'reuse_port': args.reuse_port,
            'worker_class': args.worker_class,
            'timeout': args.timeout,
            'keepalive': args.keepalive,
            'preload_app': False,
            'proc_name': 'imgmw-api',
            'errorlog': '-',
            'loglevel': args.log_level,
            'accesslog': args.access_log or None,
        }
        if 'control_socket_disable' in self.cfg.settings:
            # gunicorn >= 24 listens on one socket path per user by
            # default, which several servers on a host would share.
            settings['control_socket_disable'] = True
        for key, value in settings.items():
            self.cfg.set(key, value)
        self.cfg.set('when_ready', self.serving)

    def serving(self, arbiter) -> None:
        """gunicorn's ``when_ready``: the sockets listen."""
        LOG.info('serving pipeline %s of %s on %s (state in %s)',
                 self.args.pipeline, self.args.config_file,
                 ', '.join(self.args.bind), self.conf[wsgi.STATE_DIR])

    def load(self):
        try:
            return wsgi.load(self.args.config_file, self.args.pipeline,
                             self.conf)
        except (config.ConfigError, errors.MissingFilter, LookupError,
                ValueError) as err:
            LOG.error('cannot load pipeline %s of %s: %s',
                      self.args.pipeline, self.args.config_file, err)
            sys.exit(arbiter.Arbiter.APP_LOAD_ERROR)


def load_failure(args: argparse.Namespace,
                 conf: typing.Mapping[str, str]) -> typing.Optional[str]:
    """Why the pipeline cannot load, in one line, or ``None``."""
    try:
        wsgi.load(args.config_file, args.pipeline, conf)
    except Exception as err:
        LOG.debug('loading pipeline %s failed', args.pipeline, exc_info=True)
        if isinstance(err, (config.ConfigError, errors.MissingFilter,
                            LookupError, ValueError)):
            reason = str(err)
        else:
            reason = '%s: %s' % (type(err).__name__, err)
        return 'cannot load pipeline %s of %s: %s' % (
            args.pipeline, args.config_file, ' '.join(reason.split()))
    return None


def check_pipeline(args: argparse.Namespace,
                   conf: typing.Mapping[str, str]) -> typing.Optional[str]:
    """Load the pipeline once, in a child process, before anything binds.

    The child exits after the load, so none of its connections reach the
    workers. Returns :func:`load_failure`'s reason, or ``None``.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and exit, whatever happens
        status = 1
        try:
            os.close(read_end)
            # Quiet unless debugging: the workers log the same load.
            root = logging.getLogger()
            if root.getEffectiveLevel() > logging.DEBUG:
                root.setLevel(logging.WARNING)
            reason = load_failure(args, conf)
            if reason is None:
                status = 0
            else:
                os.write(write_end, reason.encode('utf-8', 'replace'))
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as pipe:
        reason = pipe.read().decode('utf-8', 'replace')
    _pid, status = os.waitpid(pid, 0)
    if reason:
        return reason
    if status:
        return ('cannot load pipeline %s of %s: the check ended with '
                'status %d' % (args.pipeline, args.config_file,
                               os.waitstatus_to_exitcode(status)))
    return None


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=LOG_FORMAT)
    try:
        conf = wsgi.global_conf(args.config_file, args.options,
                                args.state_dir)
    except (OSError, ValueError) as err:
        sys.exit('imgmw-api: error: %s' % err)
    failure = check_pipeline(args, conf)
    if failure:
        sys.exit('imgmw-api: error: %s' % failure)
    Server(args, conf).run()


if __name__ == '__main__':
    main()
