"""The imgmw WSGI application, for uWSGI, mod_wsgi or any WSGI server.

``imgmw-api`` serves a pipeline under gunicorn; any other server imports
:data:`application` from this module (or calls :func:`init_application`,
which pbr's ``imgmw-wsgi`` script does). The pipeline is loaded on the first
request, in the process that serves it, so that no database connection is
ever shared across a server's fork.

==========================  ================================================
environment variable        meaning
==========================  ================================================
``IMGMW_CONFIG_FILE``       the paste configuration; default: the first of
                            ``./etc/api-paste.ini``,
                            ``<sys.prefix>/etc/imgmw/api-paste.ini`` and
                            ``/etc/imgmw/api-paste.ini`` that exists
``IMGMW_PIPELINE``          the composite to serve: ``keystone`` or
                            ``noauth`` (default ``keystone``: another server
                            is rarely bound to loopback only)
``IMGMW_STATE_DIR``         the local state directory (SQLite database and
                            file store by default), when ``[DEFAULT]`` sets
                            no ``state_dir``; default ``./state``
==========================  ================================================

uWSGI example (chunked uploads need the ``http-*`` lines and a
``chunked-input-limit`` above the clients' chunks; :mod:`imgmw.chunked`
then hands the body to the pipeline through ``wsgi.input``)::

    [uwsgi]
    http-socket = 127.0.0.1:9292
    module = imgmw.wsgi:application
    env = IMGMW_CONFIG_FILE=/etc/imgmw/api-paste.ini
    env = IMGMW_PIPELINE=keystone
    processes = 4
    threads = 8
    lazy-apps = true
    http-raw-body = true
    http-chunked-input = true
    http-auto-chunked = true
    chunked-input-limit = 16777216
"""

import configparser
import os
import sys
import threading
import typing

from paste import deploy
import webob.exc

from imgmw import chunked
from imgmw import config


#: Where the paste configuration is looked for, in this order.
CONFIG_FILE_CANDIDATES = (
    os.path.join('etc', 'api-paste.ini'),
    os.path.join(sys.prefix, 'etc', 'imgmw', 'api-paste.ini'),
    os.path.join(os.sep, 'etc', 'imgmw', 'api-paste.ini'),
)

#: The ``[DEFAULT]`` key naming the local state directory.
STATE_DIR = 'state_dir'
DEFAULT_STATE_DIR = 'state'


def default_config_file() -> str:
    """The first existing candidate, or the first one (for the message)."""
    for candidate in CONFIG_FILE_CANDIDATES:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return os.path.abspath(CONFIG_FILE_CANDIDATES[0])


def file_defaults(config_file: str) -> typing.Dict[str, str]:
    """The ``[DEFAULT]`` values of a paste file, interpolated as paste does.

    :raises ValueError: when the file is missing or unreadable.
    """
    here = os.path.dirname(os.path.abspath(config_file))
    parser = configparser.ConfigParser(
        defaults={'here': here, '__file__': os.path.abspath(config_file)})
    if not parser.read(config_file):
        raise ValueError('cannot read the paste configuration %s'
                         % config_file)
    return dict(parser.items(configparser.DEFAULTSECT))


def global_conf(config_file: str,
                overrides: typing.Optional[typing.Mapping[str, str]] = None,
                state_dir: typing.Optional[str] = None
                ) -> typing.Dict[str, str]:
    """The ``global_conf`` to load a pipeline with.

    ``overrides`` replace ``[DEFAULT]`` values. ``state_dir`` is always set,
    as an absolute path to an existing directory: from ``overrides``, else
    from the file, else from the ``state_dir`` argument, else ``./state``.
    """
    conf = dict(overrides or {})
    chosen = (conf.get(STATE_DIR)
              or file_defaults(config_file).get(STATE_DIR)
              or state_dir or DEFAULT_STATE_DIR)
    chosen = os.path.abspath(chosen)
    os.makedirs(chosen, mode=0o750, exist_ok=True)
    conf[STATE_DIR] = chosen
    return conf


def load(config_file: str, pipeline: str,
         conf: typing.Optional[typing.Mapping[str, str]] = None):
    """Load the composite ``pipeline`` of ``config_file`` with paste.deploy.

    :param conf: the ``global_conf``, see :func:`global_conf`.
    :raises imgmw.config.ConfigError: on a ``[DEFAULT]`` key that nothing
        declares (:func:`check_keys`), or a bad option of the pipeline.
    """
    check_keys(config_file, conf)
    app = deploy.loadapp(
        'config:%s' % os.path.abspath(config_file), name=pipeline,
        global_conf=dict(conf or {}))
    check_pipelines(app, pipeline)
    return PathGuard(app)


def check_keys(config_file: str,
               conf: typing.Optional[typing.Mapping[str, str]] = None
               ) -> None:
    """Refuse an unknown key of ``[DEFAULT]`` or of its overrides ``conf``.

    See :func:`imgmw.config.check_global_keys`.
    """
    keys = file_defaults(config_file)
    keys.update(conf or {})
    config.check_global_keys(keys)


def _next_apps(app) -> typing.List[typing.Any]:
    """The apps ``app`` hands requests to: a filter's one, a map's all."""
    applications = getattr(app, 'applications', None)
    if isinstance(applications, list):  # paste's urlmap
        return [mapped for _where, mapped in applications]
    for name in ('app', 'application', '_app'):
        found = getattr(app, name, None)
        if callable(found):
            return [found]
    return []


def check_pipelines(app, name: str) -> None:
    """Refuse a keystone context filter with no auth_token before it.

    The context filter cannot see what runs before it; the loader can. In
    keystone mode it trusts the identity headers only because
    keystonemiddleware's auth_token strips and sets them: without it, any
    client could claim any identity.

    :raises imgmw.config.ConfigError: naming the pipeline.
    """
    from keystonemiddleware import auth_token

    from imgmw.filters import context

    def walk(current, authenticated: bool, seen: set) -> None:
        if id(current) in seen:
            return
        seen.add(id(current))
        if isinstance(current, auth_token.BaseAuthProtocol):
            authenticated = True
        if (isinstance(current, context.ContextMiddleware)
                and current.auth_strategy == context.KEYSTONE
                and not authenticated):
            raise config.ConfigError(
                'pipeline %s: the context filter (auth_strategy = keystone) '
                'needs keystonemiddleware auth_token before it' % name)
        for following in _next_apps(current):
            walk(following, authenticated, seen)

    walk(app, False, set())


class PathGuard:
    """Answers 400 to a request target that is not a path; dechunks.

    Servers pass the ``*`` of ``OPTIONS * HTTP/1.1`` on as ``PATH_INFO``,
    and paste's urlmap, in front of every composite, fails an assertion on
    any path that does not start with ``/``: a 500.

    Under uWSGI, a chunked request body is moved into ``wsgi.input``
    (:func:`imgmw.chunked.server_input`) before the pipeline, so that the
    data app reads it there also when no filter wraps the body.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        chunked.server_input(environ)
        path = environ.get('PATH_INFO') or ''
        if path and not path.startswith('/'):
            return webob.exc.HTTPBadRequest(
                explanation='The request target must be a path.')(
                    environ, start_response)
        return self.app(environ, start_response)


def init_application():
    """Load the pipeline the environment names (see the module doc)."""
    config_file = os.environ.get('IMGMW_CONFIG_FILE') or default_config_file()
    pipeline = os.environ.get('IMGMW_PIPELINE') or 'keystone'
    state_dir = os.environ.get('IMGMW_STATE_DIR')
    conf = global_conf(config_file, state_dir=state_dir)
    return load(config_file, pipeline, conf)


class LazyApplication:
    """A WSGI app that loads the real one on its first call, once."""

    def __init__(self, loader: typing.Callable[[], typing.Any]):
        self._loader = loader
        self._app = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._app is None:
                self._app = self._loader()
        return self._app

    def __call__(self, environ, start_response):
        app = self._app if self._app is not None else self._load()
        return app(environ, start_response)


#: The WSGI application, loaded on its first request.
application = LazyApplication(init_application)
