"""Tempest's image tests against the keystone pipeline (``tox -e tempest``).

OpenStack's integration suite judges what imgmw serves: Tempest's
``tempest.api.image.v2`` runs against a real Keystone and ``imgmw-api``
serving the shipped keystone pipeline of ``etc/api-paste.ini``, as against
Glance. Everything runs on free loopback ports in a temporary directory:

1. Keystone (:class:`tests.keystonefixture.Keystone`, from the virtualenv
   named by ``IMGMW_TEST_KEYSTONE_VENV``), bootstrapped with its ``admin``;
2. the service user of ``[filter:authtoken]`` and the ``image`` service
   with its public, internal and admin endpoints in the catalogue;
3. ``imgmw-api --pipeline keystone`` on SQLite with two file stores,
   ``cheap`` and ``fast`` (the default);
4. ``tempest.conf``: dynamic credentials from Keystone's bootstrap admin,
   Glance the only service, the stores, import on, format enforcement off
   (``ListUserImagesTest`` uploads random bytes as ``ami``, ``ari`` and
   ``aki``);
5. ``tempest run --regex tempest.api.image.v2`` from the virtualenv named
   by ``IMGMW_TEMPEST_VENV``, with ``exclude.txt`` (next to this file):
   every test left out names the API it needs that imgmw does not serve.

The exit status is Tempest's; its totals are printed at the end, its log
and the servers' logs are printed when it fails. By hand::

    python3 -m venv /tmp/keystone && /tmp/keystone/bin/pip install \\
        keystone gunicorn
    python3 -m venv /tmp/tempest && /tmp/tempest/bin/pip install tempest
    IMGMW_TEST_KEYSTONE_VENV=/tmp/keystone IMGMW_TEMPEST_VENV=/tmp/tempest \\
        python -m tests.tempest.run [--keep] [tempest run arguments]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import typing

from tests import dbfixture
from tests.functional_keystone import test_keystone
from tests import keystonefixture

TEMPEST_VENV = 'IMGMW_TEMPEST_VENV'
HERE = os.path.dirname(os.path.abspath(__file__))
EXCLUDE_LIST = os.path.join(HERE, 'exclude.txt')
REGEX = r'^tempest\.api\.image\.v2\.'
STORES = ('cheap', 'fast')
DEFAULT_STORE = 'fast'

SERVER_OPTIONS = {
    'enabled_backends': ', '.join('%s:file' % store for store in STORES),
    'default_backend': DEFAULT_STORE,
}

SERVER_CONFIG = ''.join("""
[store:%(store)s]
filesystem_store_datadir = %%(here)s/state/%(store)s
""" % {'store': store} for store in STORES)

TEMPEST_CONF = """\
[DEFAULT]
log_file = %(workdir)s/tempest.log

[auth]
use_dynamic_credentials = true
admin_username = admin
admin_password = %(admin_password)s
admin_project_name = admin
admin_domain_name = Default

[identity]
uri_v3 = %(identity)s
auth_version = v3
region = RegionOne
disable_ssl_certificate_validation = true

[identity-feature-enabled]
api_v2 = false

[service_available]
glance = true
nova = false
cinder = false
neutron = false
swift = false
horizon = false
heat = false
aodh = false
barbican = false

[enforce_scope]
glance = true
keystone = true

[image]
endpoint_type = public
region = RegionOne
container_formats = bare,ami,ari,aki,ovf,ova
disk_formats = raw,ami,ari,aki
build_interval = 1
build_timeout = 120

[image-feature-enabled]
api_v2 = true
import_image = true
image_format_enforcement = false
os_glance_reserved = true
manage_locations = false
"""


def tempest_venv() -> str:
    venv = os.environ.get(TEMPEST_VENV)
    if not venv or not os.access(os.path.join(venv, 'bin', 'tempest'),
                                 os.X_OK):
        sys.exit('%s must name a virtualenv with tempest installed (tox -e '
                 'tempest makes one)' % TEMPEST_VENV)
    return venv


class Stack:
    """Keystone and imgmw-api, started and stopped in order."""

    def __init__(self):
        self.fixtures = []

    def use(self, fixture):
        fixture.setUp()
        self.fixtures.append(fixture)
        return fixture

    def close(self) -> None:
        while self.fixtures:
            self.fixtures.pop().cleanUp()

    def start(self) -> None:
        self.keystone = self.use(keystonefixture.Keystone())
        service = self.keystone.create_project('service')
        user = self.keystone.create_user('imgmw', service, ['service'])
        database = self.use(dbfixture.Database('sqlite'))
        self.server = self.use(test_keystone.KeystoneApiServer(
            database.url, {
                'www_authenticate_uri': self.keystone.url,
                'auth_url': self.keystone.url,
                'auth_type': 'password',
                'username': user.name,
                'password': user.password,
                'project_name': 'service',
                'user_domain_id': keystonefixture.DOMAIN,
                'project_domain_id': keystonefixture.DOMAIN,
            }, options=SERVER_OPTIONS, extra_config=SERVER_CONFIG,
            args=['--log-level', 'info']))
        self.register_endpoint()

    def register_endpoint(self) -> None:
        call = self.keystone._call
        service = call('POST', '/services', json={'service': {
            'type': 'image', 'name': 'glance',
            'description': 'imgmw'}})['service']
        for interface in ('public', 'internal', 'admin'):
            call('POST', '/endpoints', json={'endpoint': {
                'service_id': service['id'], 'interface': interface,
                'region_id': 'RegionOne', 'url': self.server.url}})

    def tempest_conf(self, workdir: str) -> str:
        path = os.path.join(workdir, 'tempest.conf')
        with open(path, 'w') as conf:
            conf.write(TEMPEST_CONF % {
                'workdir': workdir, 'identity': self.keystone.v3_url,
                'admin_password': self.keystone.admin_password})
        return path

    def logs(self) -> str:
        return '%s\n--- imgmw-api.log\n%s' % (self.keystone.log(),
                                              self.server.log()[-60000:])


def run_tempest(venv: str, workdir: str, conf: str,
                extra: typing.Sequence[str]) -> int:
    command = [os.path.join(venv, 'bin', 'tempest'), 'run',
               '--config-file', conf, '--regex', REGEX,
               '--exclude-list', EXCLUDE_LIST, '--serial'] + list(extra)
    print('$ %s' % ' '.join(command), flush=True)
    return subprocess.call(command, cwd=workdir, stdin=subprocess.DEVNULL)


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--keep', action='store_true',
                        help='keep the working directory (tempest.conf, '
                             'logs) and say where it is')
    args, extra = parser.parse_known_args(argv)
    venv = tempest_venv()
    workdir = tempfile.mkdtemp(prefix='imgmw-tempest-')
    stack = Stack()
    try:
        stack.start()
        conf = stack.tempest_conf(workdir)
        status = run_tempest(venv, workdir, conf, extra)
        if status:
            print(stack.logs())
        return status
    finally:
        stack.close()
        if args.keep:
            print('Working directory kept: %s' % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
