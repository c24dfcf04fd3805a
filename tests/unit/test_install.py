"""The filters without the service: what a filter-only install must import.

``pip install imgmw`` (no extra) brings only requirements.txt. Each filter
but quota must import and build from that alone; the service's modules
(setup.cfg's ``service`` and ``s3`` extras) are made unimportable in a
child interpreter to prove it. The quota filter needs the ``quota`` extra
(SQLAlchemy for its reservations), which Glance's virtualenv holds.
"""

import configparser
import os
import subprocess
import sys

import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

#: Top-level modules of the service's extras.
SERVICE_MODULES = ('sqlalchemy', 'alembic', 'gunicorn', 'boto3', 'botocore',
                   'psutil', 'jsonschema', 'keystonemiddleware',
                   'oslo_limit')

CHILD = """
import importlib.abc
import sys

BLOCKED = set(sys.argv[1].split(','))


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('%s is not installed' % name)
        return None


sys.meta_path.insert(0, Block())

from imgmw.filters import checksum, context, inspect, size, stores
from imgmw import chunked, streams  # noqa: F401


def app(environ, start_response):
    start_response('204 No Content', [])
    return []


for module, conf in ((size, {}), (checksum, {}), (context, {}),
                     (inspect, {}), (stores, {})):
    module.filter_factory({'here': '.'}, **conf)(app)
loaded = sorted(name for name in sys.modules
                if name.split('.')[0] in BLOCKED)
print('loaded:', ','.join(loaded))
"""


class TestFilterOnlyInstall(testtools.TestCase):

    def run_child(self, blocked):
        return subprocess.run(
            [sys.executable, '-c', CHILD, ','.join(blocked)],
            capture_output=True, text=True, cwd=ROOT, timeout=120)

    def test_filters_import_and_build_without_the_service(self):
        done = self.run_child(SERVICE_MODULES)
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertIn('loaded: \n', done.stdout)

    def test_the_block_is_real(self):
        done = subprocess.run(
            [sys.executable, '-c', CHILD.replace(
                'from imgmw.filters import checksum',
                'from imgmw.filters import quota, checksum'),
             ','.join(SERVICE_MODULES)],
            capture_output=True, text=True, cwd=ROOT, timeout=120)
        self.assertNotEqual(0, done.returncode)
        self.assertIn('sqlalchemy is not installed', done.stderr)

    def test_requirements_hold_none_of_the_service(self):
        with open(os.path.join(ROOT, 'requirements.txt')) as reqs:
            names = {line.split('>')[0].split('=')[0].strip().lower()
                     for line in reqs
                     if line.strip() and not line.startswith('#')}
        parser = configparser.ConfigParser()
        parser.read(os.path.join(ROOT, 'setup.cfg'))
        extras = {line.split('>')[0].strip().lower()
                  for name in ('service', 's3')
                  for line in parser.get('extras', name).splitlines()
                  if line.strip()}
        self.assertIn('gunicorn', extras)
        self.assertIn('boto3', extras)
        self.assertEqual(set(), names & extras)
