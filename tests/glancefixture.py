"""A real Glance API on a loopback port, with imgmw's filters in its pipeline.

:class:`Glance` runs the ``glance`` package of PyPI from a virtualenv of its
own, which also holds imgmw (its filters run inside Glance's process),
gunicorn and uWSGI, named by the environment variable
``IMGMW_TEST_GLANCE_VENV``. ``tox -e functional-glance`` makes that
virtualenv before the tests; by hand::

    python3 -m venv /tmp/glance-venv
    /tmp/glance-venv/bin/pip install glance keystone uwsgi '.[service]'
    IMGMW_TEST_GLANCE_VENV=/tmp/glance-venv \\
        stestr --test-path tests/functional_glance run

Set-up, in a temporary directory, as Glance's own functional tests do it:

1. ``glance-api.conf``: SQLite database, one file store (``enabled_backends
   = fast:file``) and the reserved staging and tasks stores;
   ``[paste_deploy]`` names ``glance-api-paste.ini`` and a flavor of it;
   with a :class:`tests.keystonefixture.Keystone`, the
   ``[keystone_authtoken]`` section for it;
2. ``glance-api-paste.ini``: ``etc/glance-api-paste.ini`` as an operator
   deploys it: only values of its ``[DEFAULT]`` section are set (the
   databases, the limits), each of which must be found there;
3. ``glance-manage db_sync``;
4. the server serves ``glance.wsgi.api:application`` (Glance's WSGI entry
   point) on a free port of 127.0.0.1 with ``OS_GLANCE_CONFIG_DIR``
   pointing at the directory: gunicorn (``gunicorn.conf.py``), or uWSGI
   configured as devstack configures it (``uwsgi.ini``: ``http-socket``,
   ``http-raw-body``, ``http-chunked-input``, ``http-auto-chunked``, and a
   ``chunked-input-limit`` that fits python-glanceclient's 1 MiB chunks),
   or Apache with mod_wsgi in daemon mode (``apache.conf`` and
   ``glance-api.wsgi``, :mod:`tests.modwsgi`), from a virtualenv of its
   own, ``IMGMW_TEST_GLANCE_APACHE_VENV``.

A Glance that does not start fails the test with its logs; nothing is
skipped.
"""

import grp
import os
import pwd
import subprocess
import time
import typing

import fixtures
import requests
import testtools

from tests.functional import base
from tests import glanceconfig
from tests import modwsgi
from tests import processes

VENV_VARIABLE = 'IMGMW_TEST_GLANCE_VENV'
#: The virtualenv of Glance under Apache (:mod:`tests.modwsgi`).
APACHE_VENV_VARIABLE = 'IMGMW_TEST_GLANCE_APACHE_VENV'

#: A test class that runs only where ``tox -e functional-glance`` built
#: the Glance virtualenv (with uWSGI); skipped elsewhere.
needs_glance = testtools.skipUnless(
    os.environ.get(VENV_VARIABLE),
    'needs a Glance virtualenv (with uWSGI) in $%s: tox -e '
    'functional-glance' % VENV_VARIABLE)
#: A test class that runs where ``tox -e functional-glance`` built the
#: virtualenv for Glance under Apache, which needs Apache's mod_wsgi.
needs_mod_wsgi = testtools.skipUnless(
    os.path.isdir(os.environ.get(APACHE_VENV_VARIABLE) or '/nonexistent'),
    '$%s holds no virtualenv: %s' % (APACHE_VENV_VARIABLE, modwsgi.HELP))
START_TIMEOUT = 120
COMMAND_TIMEOUT = 180
GUNICORN = 'gunicorn'
UWSGI = 'uwsgi'
MOD_WSGI = 'mod_wsgi'
SERVERS = (GUNICORN, UWSGI, MOD_WSGI)
TRUSTED_HEADERS = 'trusted-headers+imgmw'
KEYSTONE = 'keystone+imgmw'
# The configuration itself is in tests.glanceconfig (shared with
# tools/bench.py); its names are kept here for the tests.
PASTE_FILE = glanceconfig.PASTE_FILE
STORAGE_QUOTA = glanceconfig.STORAGE_QUOTA
GLANCE_API_CONF = glanceconfig.GLANCE_API_CONF
KEYSTONE_AUTHTOKEN = glanceconfig.KEYSTONE_AUTHTOKEN
PASTE_DEFAULTS = glanceconfig.PASTE_DEFAULTS
GUNICORN_CONF = glanceconfig.GUNICORN_CONF
UWSGI_SERVER = glanceconfig.UWSGI_SERVER
UWSGI_INI = glanceconfig.UWSGI_INI
APACHE_CONF = glanceconfig.APACHE_CONF
GLANCE_WSGI_SCRIPT = glanceconfig.GLANCE_WSGI_SCRIPT
set_defaults = glanceconfig.set_defaults


def grp_name(user: str) -> str:
    """The name of ``user``'s primary group."""
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


class GlanceFailed(AssertionError):
    """Glance could not be set up or started; the message says why."""


def glance_venv() -> str:
    """The virtualenv holding ``glance``, gunicorn, uWSGI and imgmw.

    :raises GlanceFailed: when ``IMGMW_TEST_GLANCE_VENV`` is unset or the
        virtualenv lacks them.
    """
    venv = os.environ.get(VENV_VARIABLE)
    if not venv:
        raise GlanceFailed(
            '%s is not set: run tox -e functional-glance, or see '
            'tests/glancefixture.py to make the virtualenv by hand'
            % VENV_VARIABLE)
    for script in ('glance-manage', 'gunicorn', 'uwsgi', 'imgmw-manage'):
        if not os.access(os.path.join(venv, 'bin', script), os.X_OK):
            raise GlanceFailed('%s=%s has no bin/%s: pip install glance '
                               'gunicorn uwsgi and imgmw there'
                               % (VENV_VARIABLE, venv, script))
    return venv


class Glance(fixtures.Fixture):
    """Glance's API, migrated and serving; see the module documentation.

    :param server: ``gunicorn``, ``uwsgi`` or ``mod_wsgi``.
    :param keystone: a running :class:`tests.keystonefixture.Keystone`;
        Glance then serves the production flavor (``keystone+imgmw``), with
        a service user of its own, else the ``trusted-headers+imgmw``
        flavor.
    :param venv: the virtualenv with glance; default
        ``$IMGMW_TEST_GLANCE_VENV``, or ``$IMGMW_TEST_GLANCE_APACHE_VENV``
        under Apache.
    :param database_url: Glance's ``[database] connection``; default
        SQLite in the temporary directory.
    :param flavor: the ``[paste_deploy] flavor``, instead of the one
        ``keystone`` implies.
    :param paste_defaults: values set in the ``[DEFAULT]`` section of the
        copy of the paste file, beside the fixture's own.
    """

    def __init__(self, server: str = GUNICORN, keystone=None,
                 venv: typing.Optional[str] = None,
                 database_url: typing.Optional[str] = None,
                 flavor: typing.Optional[str] = None,
                 paste_defaults: typing.Optional[
                     typing.Mapping[str, str]] = None):
        super().__init__()
        if server not in SERVERS:
            raise ValueError('server must be one of %s' % ', '.join(SERVERS))
        self.server = server
        self.keystone = keystone
        self.venv = venv
        self.database_url = database_url
        self._flavor = flavor
        self.paste_defaults = dict(paste_defaults or {})
        self.port = None
        self.process = None

    def _setUp(self) -> None:
        if self.server == MOD_WSGI:
            self.venv = self.venv or os.environ.get(APACHE_VENV_VARIABLE)
            if not self.venv:
                raise GlanceFailed('%s is not set: %s'
                                   % (APACHE_VENV_VARIABLE, modwsgi.HELP))
        self.venv = self.venv or glance_venv()
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        self.config_file = os.path.join(self.tempdir, 'glance-api.conf')
        self.port = base.free_port()
        self._write_config()
        self._manage('db_sync')
        if self.server == MOD_WSGI and os.getuid() == 0:
            self._hand_to(modwsgi.APACHE_USER)
        self._serve()

    @property
    def url(self) -> str:
        return 'http://127.0.0.1:%d' % self.port

    @property
    def images_dir(self) -> str:
        """The file store's directory: one file per image, named by id."""
        return os.path.join(self.tempdir, 'images')

    @property
    def flavor(self) -> str:
        if self._flavor is not None:
            return self._flavor
        return KEYSTONE if self.keystone is not None else TRUSTED_HEADERS

    def _write_config(self) -> None:
        values = {'tempdir': self.tempdir, 'port': self.port,
                  'flavor': self.flavor, 'venv': self.venv}
        values['database_url'] = self.database_url or (
            'sqlite:///%(tempdir)s/glance.sqlite' % values)
        for name in ('images', 'staging', 'tasks'):
            os.mkdir(os.path.join(self.tempdir, name))
        glance_conf = GLANCE_API_CONF % values
        if self.keystone is not None:
            glance_conf += KEYSTONE_AUTHTOKEN % self._service_user()
        self._write('glance-api.conf', glance_conf)
        self._write('gunicorn.conf.py', GUNICORN_CONF % values)
        self._write('uwsgi.ini', UWSGI_INI % values)
        if self.server == MOD_WSGI:
            # Apache's user is looked up only where Apache serves.
            values['modules'] = modwsgi.MODULES_DIR
            values['user'] = ('User %s\nGroup %s' % (
                modwsgi.APACHE_USER, grp_name(modwsgi.APACHE_USER))
                if os.getuid() == 0 else '')
            self._write('apache.conf', APACHE_CONF % values)
            self._write('glance-api.wsgi', GLANCE_WSGI_SCRIPT % values)
        with open(PASTE_FILE) as stock:
            paste_text = stock.read()
        defaults = {name: value % values
                    for name, value in PASTE_DEFAULTS.items()}
        defaults.update(self.paste_defaults)
        self._write('glance-api-paste.ini', set_defaults(paste_text,
                                                         defaults))

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.tempdir, name), 'w') as conf:
            conf.write(text)

    def _hand_to(self, user: str) -> None:
        """Make the directory ``user``'s: Apache's children run as it."""
        entry = pwd.getpwnam(user)
        for top, dirs, files in os.walk(self.tempdir):
            for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                os.chown(name, entry.pw_uid, entry.pw_gid)

    def _service_user(self) -> dict:
        """Glance's service user in Keystone, as a deployment makes it."""
        project = self.keystone.create_project('service-glance')
        user = self.keystone.create_user('glance', project, ['service'])
        return {'keystone_url': self.keystone.url,
                'service_user': user.name,
                'service_password': user.password,
                'service_project': 'service-glance'}

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

    def _command(self) -> typing.List[str]:
        if self.server == UWSGI:
            return [os.path.join(self.venv, 'bin', 'uwsgi'), '--ini',
                    os.path.join(self.tempdir, 'uwsgi.ini')]
        if self.server == MOD_WSGI:
            return [modwsgi.APACHE_BIN, '-f',
                    os.path.join(self.tempdir, 'apache.conf'),
                    '-DFOREGROUND']
        return [os.path.join(self.venv, 'bin', 'gunicorn')]

    def _serve(self) -> None:
        with open(os.path.join(self.tempdir, 'server.log'), 'ab') as log:
            self.process = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.tempdir,
                start_new_session=True)
        self.addCleanup(self._stop)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                # The workers load Glance after binding: slow answers.
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
        """The server's and Glance's logs, for failure messages."""
        return processes.read_logs(self.tempdir,
                                   ('server.log', 'glance-api.log'))
