"""A real Keystone on a loopback port, for the keystone pipeline's tests.

:class:`Keystone` runs the ``keystone`` package of PyPI from a virtualenv of
its own (its dependencies need not agree with imgmw's), named by the
environment variable ``IMGMW_TEST_KEYSTONE_VENV``. ``tox -e
functional-keystone`` makes that virtualenv before the tests; by hand::

    python3 -m venv /tmp/keystone-venv
    /tmp/keystone-venv/bin/pip install keystone gunicorn
    IMGMW_TEST_KEYSTONE_VENV=/tmp/keystone-venv \\
        stestr --test-path tests/functional_keystone run

Set-up, in a temporary directory, as a deployment guide would do it:

1. ``keystone.conf``: SQLite database, fernet tokens, no cache, its log in
   ``keystone.log``;
2. ``keystone-manage fernet_setup`` and ``credential_setup`` (key
   repositories owned by the current user), ``db_sync``, then ``bootstrap``
   (user ``admin`` in project ``admin``, the roles ``admin``, ``manager``,
   ``member``, ``reader`` and ``service``, and the identity endpoints);
3. gunicorn serves ``keystone.wsgi.api:application`` on a free port of
   127.0.0.1, all its settings in ``gunicorn.conf.py``: Keystone parses the
   command line of its process with oslo.config, so gunicorn gets no
   argument.

:meth:`Keystone.create_project`, :meth:`Keystone.create_user` and
:meth:`Keystone.token` then call the real Identity API (keystoneauth1, as
the admin). Passwords are random for each fixture. A Keystone that does not
start fails the test with its log; nothing is skipped.
"""

import os
import secrets
import subprocess
import time
import typing

import fixtures
from keystoneauth1.identity import v3
from keystoneauth1 import session as ks_session
import requests

from tests.functional import base
from tests import processes

VENV_VARIABLE = 'IMGMW_TEST_KEYSTONE_VENV'
START_TIMEOUT = 90
COMMAND_TIMEOUT = 120
DOMAIN = 'default'

KEYSTONE_CONF = """\
[DEFAULT]
log_file = %(tempdir)s/keystone.log

[database]
connection = sqlite:///%(tempdir)s/keystone.sqlite

[token]
provider = fernet

[fernet_tokens]
key_repository = %(tempdir)s/fernet-keys

[credential]
key_repository = %(tempdir)s/credential-keys

[cache]
enabled = false

[identity]
# bcrypt's minimum cost: a test Keystone hashes a password per token.
password_hash_rounds = 4
"""

GUNICORN_CONF = """\
wsgi_app = 'keystone.wsgi.api:application'
bind = ['127.0.0.1:%(port)d']
workers = 1
worker_class = 'gthread'
threads = 8
raw_env = ['OS_KEYSTONE_CONFIG_DIR=%(tempdir)s']
control_socket_disable = True
"""


class KeystoneFailed(AssertionError):
    """Keystone could not be set up or started; the message says why."""


class User(typing.NamedTuple):
    name: str
    id: str
    password: str
    project_id: str


def keystone_venv() -> str:
    """The virtualenv holding ``keystone`` and ``gunicorn``.

    :raises KeystoneFailed: when ``IMGMW_TEST_KEYSTONE_VENV`` is unset or
        the virtualenv lacks them.
    """
    venv = os.environ.get(VENV_VARIABLE)
    if not venv:
        raise KeystoneFailed(
            '%s is not set: run tox -e functional-keystone, or see '
            'tests/keystonefixture.py to make the virtualenv by hand'
            % VENV_VARIABLE)
    for script in ('keystone-manage', 'gunicorn'):
        if not os.access(os.path.join(venv, 'bin', script), os.X_OK):
            raise KeystoneFailed('%s=%s has no bin/%s: pip install keystone '
                                 'gunicorn there' % (VENV_VARIABLE, venv,
                                                     script))
    return venv


class Keystone(fixtures.Fixture):
    """Keystone, bootstrapped and serving; see the module documentation.

    :param venv: the virtualenv with keystone; default
        ``$IMGMW_TEST_KEYSTONE_VENV``.
    """

    def __init__(self, venv: typing.Optional[str] = None):
        super().__init__()
        self.venv = venv
        self.port = None
        self.admin_password = secrets.token_urlsafe(16)
        self.process = None

    def _setUp(self) -> None:
        self.venv = self.venv or keystone_venv()
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        self.config_file = os.path.join(self.tempdir, 'keystone.conf')
        self.port = base.free_port()
        self._write_config()
        self._manage('fernet_setup', '--keystone-user', str(os.getuid()),
                     '--keystone-group', str(os.getgid()))
        self._manage('credential_setup', '--keystone-user', str(os.getuid()),
                     '--keystone-group', str(os.getgid()))
        self._manage('db_sync')
        self._manage('bootstrap',
                     # One argument: a password may start with '-'.
                     '--bootstrap-password=' + self.admin_password,
                     '--bootstrap-admin-url', self.v3_url,
                     '--bootstrap-internal-url', self.v3_url,
                     '--bootstrap-public-url', self.v3_url,
                     '--bootstrap-region-id', 'RegionOne')
        self._serve()
        self.admin = ks_session.Session(auth=self.password_auth(
            'admin', self.admin_password, project_name='admin'))

    @property
    def url(self) -> str:
        """The identity endpoint's root (``auth_url``)."""
        return 'http://127.0.0.1:%d' % self.port

    @property
    def v3_url(self) -> str:
        return self.url + '/v3'

    def _write_config(self) -> None:
        values = {'tempdir': self.tempdir, 'port': self.port}
        with open(self.config_file, 'w') as conf:
            conf.write(KEYSTONE_CONF % values)
        with open(os.path.join(self.tempdir, 'gunicorn.conf.py'), 'w') as conf:
            conf.write(GUNICORN_CONF % values)

    def _bin(self, script: str) -> str:
        return os.path.join(self.venv, 'bin', script)

    def _manage(self, *args: str) -> None:
        command = [self._bin('keystone-manage'), '--config-file',
                   self.config_file] + list(args)
        done = subprocess.run(command, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, cwd=self.tempdir)
        if done.returncode != 0:
            raise KeystoneFailed('keystone-manage %s failed (%d):\n%s\n%s'
                                 % (args[0], done.returncode,
                                    done.stderr[-4000:], self.log()))

    def _serve(self) -> None:
        with open(os.path.join(self.tempdir, 'gunicorn.log'), 'ab') as log:
            self.process = subprocess.Popen(
                [self._bin('gunicorn')], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, cwd=self.tempdir,
                start_new_session=True)
        self.addCleanup(self._stop)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                # The worker loads Keystone after binding: slow answers.
                if requests.get(self.v3_url, timeout=30).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        raise KeystoneFailed('Keystone did not answer on %s (exit status '
                             '%s):\n%s' % (self.v3_url, self.process.poll(),
                                           self.log()))

    def _stop(self) -> None:
        processes.stop(self.process)

    def log(self) -> str:
        """gunicorn's and Keystone's logs, for failure messages."""
        return processes.read_logs(self.tempdir,
                                   ('gunicorn.log', 'keystone.log'))

    # The Identity API.

    def password_auth(self, username: str, password: str,
                      **scope: str) -> v3.Password:
        """A keystoneauth1 password plugin for a user of this Keystone."""
        scope.setdefault('project_domain_id', DOMAIN)
        return v3.Password(auth_url=self.v3_url, username=username,
                           password=password, user_domain_id=DOMAIN,
                           **scope)

    def _call(self, method: str, path: str, **kwargs) -> dict:
        resp = self.admin.request(self.v3_url + path, method, **kwargs)
        return resp.json() if resp.content else {}

    def role_id(self, name: str) -> str:
        roles = self._call('GET', '/roles', params={'name': name})['roles']
        if not roles:
            raise KeystoneFailed('Keystone has no role %s' % name)
        return roles[0]['id']

    def create_project(self, name: str) -> str:
        """A project of the default domain; returns its id."""
        body = {'project': {'name': name, 'domain_id': DOMAIN}}
        return self._call('POST', '/projects', json=body)['project']['id']

    def create_user(self, name: str, project_id: str,
                    roles: typing.Sequence[str]) -> User:
        """A user with ``roles`` on ``project_id`` and a random password."""
        password = secrets.token_urlsafe(16)
        body = {'user': {'name': name, 'domain_id': DOMAIN,
                         'password': password,
                         'default_project_id': project_id}}
        user_id = self._call('POST', '/users', json=body)['user']['id']
        for role in roles:
            self._call('PUT', '/projects/%s/users/%s/roles/%s'
                       % (project_id, user_id, self.role_id(role)))
        return User(name, user_id, password, project_id)

    def token(self, user: User) -> str:
        """A new token of ``user``, scoped to its project."""
        auth = self.password_auth(user.name, user.password,
                                  project_id=user.project_id)
        return ks_session.Session(auth=auth).get_token()
