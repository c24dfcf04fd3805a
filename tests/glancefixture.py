"""A real Glance API on a loopback port, with imgmw's filters in its pipeline.

:class:`Glance` runs the ``glance`` package of PyPI from a virtualenv of its
own, which also holds imgmw (its filters run inside Glance's process), named
by the environment variable ``IMGMW_TEST_GLANCE_VENV``. ``tox -e
functional-glance`` makes that virtualenv before the tests; by hand::

    python3 -m venv /tmp/glance-venv
    /tmp/glance-venv/bin/pip install glance gunicorn .
    IMGMW_TEST_GLANCE_VENV=/tmp/glance-venv \\
        stestr --test-path tests/functional_glance run

Set-up, in a temporary directory, as Glance's own functional tests do it:

1. ``glance-api.conf``: SQLite database, one file store (``enabled_backends
   = fast:file``) and the reserved staging and tasks stores, no Keystone;
   ``[paste_deploy]`` names ``glance-api-paste.ini`` (a copy of
   ``tests/functional_glance/glance-api-paste.ini``, the file the operator's
   guide shows) and its flavor ``trusted-headers+imgmw``;
2. ``glance-manage db_sync``;
3. gunicorn serves ``glance.wsgi.api:application`` (Glance's WSGI entry
   point, which runs ``glance.common.wsgi_app.init_app``) on a free port of
   127.0.0.1, all its settings in ``gunicorn.conf.py``, and
   ``OS_GLANCE_CONFIG_DIR`` pointing at the directory.

A Glance that does not start fails the test with its logs; nothing is
skipped.
"""

import configparser
import os
import shutil
import subprocess
import time
import typing

import fixtures
import requests

from tests.functional import base
from tests import processes

VENV_VARIABLE = 'IMGMW_TEST_GLANCE_VENV'
START_TIMEOUT = 120
COMMAND_TIMEOUT = 180
FLAVOR = 'trusted-headers+imgmw'
PASTE_FILE = os.path.join(os.path.dirname(__file__), 'functional_glance',
                          'glance-api-paste.ini')

GLANCE_API_CONF = """\
[DEFAULT]
enabled_backends = fast:file
log_file = %(tempdir)s/glance-api.log
image_size_cap = 1099511627776

[database]
connection = %(database_url)s

[glance_store]
default_backend = fast

[fast]
filesystem_store_datadir = %(tempdir)s/images

[os_glance_staging_store]
filesystem_store_datadir = %(tempdir)s/staging

[os_glance_tasks_store]
filesystem_store_datadir = %(tempdir)s/tasks

[paste_deploy]
flavor = %(flavor)s
config_file = %(tempdir)s/glance-api-paste.ini
"""

GUNICORN_CONF = """\
wsgi_app = 'glance.wsgi.api:application'
bind = ['127.0.0.1:%(port)d']
workers = 1
worker_class = 'gthread'
threads = 8
raw_env = ['OS_GLANCE_CONFIG_DIR=%(tempdir)s']
control_socket_disable = True
"""


class GlanceFailed(AssertionError):
    """Glance could not be set up or started; the message says why."""


def glance_venv() -> str:
    """The virtualenv holding ``glance``, ``gunicorn`` and imgmw.

    :raises GlanceFailed: when ``IMGMW_TEST_GLANCE_VENV`` is unset or the
        virtualenv lacks them.
    """
    venv = os.environ.get(VENV_VARIABLE)
    if not venv:
        raise GlanceFailed(
            '%s is not set: run tox -e functional-glance, or see '
            'tests/glancefixture.py to make the virtualenv by hand'
            % VENV_VARIABLE)
    for script in ('glance-manage', 'gunicorn', 'imgmw-manage'):
        if not os.access(os.path.join(venv, 'bin', script), os.X_OK):
            raise GlanceFailed('%s=%s has no bin/%s: pip install glance '
                               'gunicorn and imgmw there'
                               % (VENV_VARIABLE, venv, script))
    return venv


def set_defaults(path: str, values: typing.Mapping[str, str]) -> None:
    """Set ``values`` in the ``[DEFAULT]`` section of the paste file."""
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str
    parser.read(path)
    for key, value in values.items():
        parser.set(configparser.DEFAULTSECT, key, value)
    with open(path, 'w') as out:
        parser.write(out)


class Glance(fixtures.Fixture):
    """Glance's API, migrated and serving; see the module documentation.

    :param venv: the virtualenv with glance; default
        ``$IMGMW_TEST_GLANCE_VENV``.
    :param database_url: Glance's ``[database] connection``; default
        SQLite in the temporary directory.
    :param flavor: the ``[paste_deploy] flavor``.
    :param paste_defaults: values set in the ``[DEFAULT]`` section of the
        copy of the paste file (which override a filter section's own).
    """

    def __init__(self, venv: typing.Optional[str] = None,
                 database_url: typing.Optional[str] = None,
                 flavor: str = FLAVOR,
                 paste_defaults: typing.Optional[
                     typing.Mapping[str, str]] = None):
        super().__init__()
        self.venv = venv
        self.database_url = database_url
        self.flavor = flavor
        self.paste_defaults = dict(paste_defaults or {})
        self.port = None
        self.process = None

    def _setUp(self) -> None:
        self.venv = self.venv or glance_venv()
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        self.config_file = os.path.join(self.tempdir, 'glance-api.conf')
        self.port = base.free_port()
        self._write_config()
        self._manage('db_sync')
        self._serve()

    @property
    def url(self) -> str:
        return 'http://127.0.0.1:%d' % self.port

    @property
    def images_dir(self) -> str:
        """The file store's directory: one file per image, named by id."""
        return os.path.join(self.tempdir, 'images')

    def _write_config(self) -> None:
        values = {'tempdir': self.tempdir, 'port': self.port,
                  'flavor': self.flavor,
                  'database_url': self.database_url or 'sqlite:///%s' % (
                      os.path.join(self.tempdir, 'glance.sqlite'))}
        for name in ('images', 'staging', 'tasks'):
            os.mkdir(os.path.join(self.tempdir, name))
        with open(self.config_file, 'w') as conf:
            conf.write(GLANCE_API_CONF % values)
        with open(os.path.join(self.tempdir, 'gunicorn.conf.py'), 'w') as conf:
            conf.write(GUNICORN_CONF % values)
        paste_copy = os.path.join(self.tempdir, 'glance-api-paste.ini')
        shutil.copy(PASTE_FILE, paste_copy)
        if self.paste_defaults:
            set_defaults(paste_copy, self.paste_defaults)

    def _manage(self, *args: str) -> None:
        command = [os.path.join(self.venv, 'bin', 'glance-manage'),
                   '--config-file', self.config_file] + list(args)
        done = subprocess.run(command, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, cwd=self.tempdir)
        if done.returncode != 0:
            raise GlanceFailed('glance-manage %s failed (%d):\n%s\n%s'
                               % (args[0], done.returncode,
                                  done.stderr[-4000:], self.log()))

    def _serve(self) -> None:
        with open(os.path.join(self.tempdir, 'gunicorn.log'), 'ab') as log:
            self.process = subprocess.Popen(
                [os.path.join(self.venv, 'bin', 'gunicorn')],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.tempdir,
                start_new_session=True)
        self.addCleanup(self._stop)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                # The worker loads Glance after binding: slow answers.
                if requests.get(self.url + '/versions',
                                timeout=30).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        raise GlanceFailed('Glance did not answer on %s (exit status %s):'
                           '\n%s' % (self.url, self.process.poll(),
                                     self.log()))

    def _stop(self) -> None:
        processes.stop(self.process)

    def log(self) -> str:
        """gunicorn's and Glance's logs, for failure messages."""
        return processes.read_logs(self.tempdir,
                                   ('gunicorn.log', 'glance-api.log'))
