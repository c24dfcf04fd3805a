"""The real OpenStack clients against a real imgmw-api (issue 8).

python-glanceclient (its Python API and the ``glance`` CLI), openstacksdk
and the ``openstack`` CLI are pointed at the server and nothing else, as
an operator would (see the shared reference ``client-requests.md`` for the
requests each one makes): no flag, header or patch. The server runs the
``noauth`` pipeline with two file stores, ``fast`` (default) and
``cheap``. Each test checks what the client reports and what the server
recorded and stored: size, MD5, SHA-512 and store, and for imports that
the staging area is empty afterwards (contract section 4).

The image is 3 MiB + 7 bytes: more than one of glanceclient's 1 MiB
chunks, and not a multiple of any chunk size.
"""

import hashlib
import os
import re
import subprocess
import sys
import time
import typing

import fixtures
from glanceclient import client as glance_client
from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ksa_exc
import openstack
import requests

from tests.functional import base


SIZE = 3 * base.MiB + 7
BIN = os.path.dirname(sys.executable)
CLI_TIMEOUT = 180
IMPORT_TIMEOUT = 60


class ClientTest(base.FunctionalTest):

    server_options = {'enabled_backends': 'fast:file, cheap:file',
                      'default_backend': 'fast'}
    server_config = """
[store:fast]
filesystem_store_datadir = %(here)s/state/fast

[store:cheap]
filesystem_store_datadir = %(here)s/state/cheap
"""

    def setUp(self) -> None:
        super().setUp()
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.seed = self.id()
        self.path = os.path.join(self.workdir, 'image.raw')
        with open(self.path, 'wb') as out:
            for chunk in base.iter_pattern(SIZE, self.seed):
                out.write(chunk)
        self.md5, self.sha512 = base.pattern_digests(SIZE, self.seed)

    # Clients.

    def glance(self):
        return glance_client.Client('2', endpoint=self.server.url,
                                    token='fake-token')

    def sdk(self) -> openstack.connection.Connection:
        conn = openstack.connection.Connection(
            auth_type='none', auth={'endpoint': self.server.url},
            image_endpoint_override=self.server.url)
        self.addCleanup(conn.close)
        return conn

    def run_cli(self, *args: str, check: bool = True
                ) -> subprocess.CompletedProcess:
        """Run a CLI of the virtualenv, stdin closed, in the work dir.

        Closed, not empty: the glance CLI uploads a stdin that is not a
        terminal, and refuses ``--file`` next to it.
        """
        env = {key: value for key, value in os.environ.items()
               if not key.startswith('OS_')}
        env['HOME'] = self.workdir
        result = subprocess.run(
            ['/bin/sh', '-c', 'exec "$0" "$@" <&-',
             os.path.join(BIN, args[0])] + list(args[1:]),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            cwd=self.workdir, env=env, timeout=CLI_TIMEOUT)
        if check:
            self.assertEqual(0, result.returncode, '%s\n%s' % (
                result.stdout, result.stderr))
        return result

    def glance_cli(self, *args: str, check: bool = True
                   ) -> subprocess.CompletedProcess:
        return self.run_cli('glance', '--os-image-url', self.server.url,
                            '--os-auth-token', 'fake-token',
                            '--os-image-api-version', '2', *args,
                            check=check)

    def openstack_cli(self, *args: str) -> subprocess.CompletedProcess:
        return self.run_cli('openstack', '--os-auth-type', 'none',
                            '--os-endpoint', self.server.url,
                            '--os-image-api-version', '2', *args)

    @staticmethod
    def table_value(output: str, field: str) -> str:
        """A field of the table the glance CLI prints."""
        match = re.search(r'^\|\s*%s\s*\|\s*(\S+)' % re.escape(field),
                          output, re.MULTILINE)
        if match is None:
            raise AssertionError('no %s in:\n%s' % (field, output))
        return match.group(1)

    # What the server recorded.

    def store_file(self, store_id: str, image_id: str) -> str:
        return os.path.join(self.server.state_dir, store_id, image_id)

    def staging_files(self, image_id: str) -> typing.List[str]:
        staging = os.path.join(self.server.state_dir, 'staging')
        return [name for name in os.listdir(staging) if image_id in name] \
            if os.path.isdir(staging) else []

    def assert_image_stored(self, image_id: str, store_id: str) -> None:
        """Active with the data's size and hashes, in ``store_id`` only."""
        image = self.assert_active_with(image_id, SIZE, self.md5,
                                        self.sha512)
        self.assertEqual(store_id, image['stores'])
        self.assertEqual([self.store_file(store_id, image_id)],
                         self.image_files(image_id))
        self.assertEqual([], self.staging_files(image_id))

    def assert_same_data(self, path: str) -> None:
        self.assertEqual(SIZE, os.path.getsize(path))
        with open(path, 'rb') as got:
            for chunk in base.iter_pattern(SIZE, self.seed):
                self.assertEqual(chunk, got.read(len(chunk)))

    def assert_deleted(self, image_id: str) -> None:
        resp = self.request('GET', '/v2/images/%s' % image_id)
        self.assertEqual(404, resp.status_code)
        self.assertEqual([], self.image_files(image_id))

    def wait_until_active(self, image_id: str) -> None:
        deadline = time.monotonic() + IMPORT_TIMEOUT
        while (self.get_image(image_id)['status'] != 'active'
               and time.monotonic() < deadline):
            time.sleep(0.1)

    def corrupt(self, image_id: str, store_id: str = 'fast') -> None:
        """Flip one bit of the stored data, keeping its size."""
        with open(self.store_file(store_id, image_id), 'r+b') as data:
            data.seek(SIZE // 2)
            byte = data.read(1)
            data.seek(SIZE // 2)
            data.write(bytes([byte[0] ^ 1]))


class TestGlanceClient(ClientTest):
    """python-glanceclient's Python API."""

    def test_create_upload_to_a_store_download_delete(self):
        client = self.glance()
        image = client.images.create(name='gc-api', disk_format='raw',
                                     container_format='bare')
        self.assertEqual('queued', image['status'])
        with open(self.path, 'rb') as data:
            client.images.upload(image['id'], data, backend='cheap')
        self.assert_image_stored(image['id'], 'cheap')
        shown = client.images.get(image['id'])
        self.assertEqual(self.sha512, shown['os_hash_value'])
        # data() verifies os_hash_value while the body streams.
        downloaded = os.path.join(self.workdir, 'download')
        with open(downloaded, 'wb') as out:
            for chunk in client.images.data(image['id']):
                out.write(chunk)
        self.assert_same_data(downloaded)
        client.images.delete(image['id'])
        self.assert_deleted(image['id'])

    def test_import_glance_direct_into_a_store_4(self):
        client = self.glance()
        image = client.images.create(name='gc-import', disk_format='raw',
                                     container_format='bare')
        with open(self.path, 'rb') as data:
            client.images.stage(image['id'], data, SIZE)
        staged = client.images.get(image['id'])
        self.assertEqual(('uploading', SIZE, None),
                         (staged['status'], staged['size'],
                          staged['checksum']))
        self.assertNotIn('os_glance_stage_host', staged)
        self.assertEqual([image['id']], self.staging_files(image['id']))
        client.images.image_import(image['id'], method='glance-direct',
                                   backend='cheap')
        self.wait_until_active(image['id'])
        self.assert_image_stored(image['id'], 'cheap')
        client.images.delete(image['id'])
        self.assert_deleted(image['id'])

    def test_unknown_import_method_is_refused_4(self):
        client = self.glance()
        image = client.images.create(name='gc-web', disk_format='raw',
                                     container_format='bare')
        error = self.assertRaises(glance_exc.HTTPBadRequest,
                                  client.images.image_import, image['id'],
                                  method='web-download',
                                  uri='http://example.com/x')
        self.assertIn('Unknown import method name', str(error))
        self.assertIn('web-download', str(error))


class TestGlanceCli(ClientTest):
    """The ``glance`` command line."""

    def test_create_with_file_download_delete(self):
        created = self.glance_cli('image-create', '--file', self.path,
                                  '--disk-format', 'raw',
                                  '--container-format', 'bare',
                                  '--name', 'cli-img')
        image_id = self.table_value(created.stdout, 'id')
        self.assertEqual('active',
                         self.table_value(created.stdout, 'status'))
        self.assert_image_stored(image_id, 'fast')
        downloaded = os.path.join(self.workdir, 'download')
        self.glance_cli('image-download', '--file', downloaded, image_id)
        self.assert_same_data(downloaded)
        self.glance_cli('image-delete', image_id)
        self.assert_deleted(image_id)

    def test_upload_with_store(self):
        created = self.glance_cli('image-create', '--disk-format', 'raw',
                                  '--container-format', 'bare',
                                  '--name', 'cli-img2')
        image_id = self.table_value(created.stdout, 'id')
        self.assertEqual('queued',
                         self.table_value(created.stdout, 'status'))
        self.glance_cli('image-upload', '--store', 'cheap', '--file',
                        self.path, image_id)
        self.assert_image_stored(image_id, 'cheap')

    def test_create_via_import_glance_direct_with_store_4(self):
        created = self.glance_cli('image-create-via-import',
                                  '--import-method', 'glance-direct',
                                  '--store', 'cheap', '--file', self.path,
                                  '--disk-format', 'raw',
                                  '--container-format', 'bare',
                                  '--name', 'cli-imp')
        image_id = self.table_value(created.stdout, 'id')
        self.wait_until_active(image_id)
        self.assert_image_stored(image_id, 'cheap')


class TestOpenstackSdk(ClientTest):
    """openstacksdk's cloud layer, as an application uses it."""

    def test_create_download_delete(self):
        conn = self.sdk()
        image = conn.create_image('sdk-img', filename=self.path,
                                  disk_format='raw', container_format='bare',
                                  wait=True)
        self.assertEqual('active', image.status)
        self.assertEqual(self.md5, image.checksum)
        self.assert_image_stored(image.id, 'fast')
        shown = self.get_image(image.id)
        # openstacksdk's own extra properties are kept.
        self.assertEqual('images/sdk-img',
                         shown['owner_specified.openstack.object'])
        downloaded = os.path.join(self.workdir, 'download')
        # download_image verifies os_hash_value against the data.
        conn.download_image(image.id, output_path=downloaded)
        self.assert_same_data(downloaded)
        self.assertTrue(conn.delete_image(image.id, wait=True))
        self.assert_deleted(image.id)

    def test_create_with_import_4(self):
        conn = self.sdk()
        image = conn.create_image('sdk-imp', filename=self.path,
                                  disk_format='raw', container_format='bare',
                                  use_import=True, wait=True)
        # openstacksdk returns before the import finishes.
        image = conn.image.wait_for_status(image, 'active',
                                           wait=IMPORT_TIMEOUT)
        self.assertEqual(self.md5, image.checksum)
        self.assertEqual(self.sha512, image.hash_value)
        self.assert_image_stored(image.id, 'fast')
        self.assertTrue(conn.delete_image(image.id, wait=True))
        self.assert_deleted(image.id)


class TestOpenstackCli(ClientTest):
    """The ``openstack image`` commands."""

    def test_create_save_delete(self):
        created = self.openstack_cli('image', 'create', '--file', self.path,
                                     '--disk-format', 'raw',
                                     '--container-format', 'bare',
                                     'osc-img', '-f', 'value', '-c', 'id')
        image_id = created.stdout.strip()
        self.assert_image_stored(image_id, 'fast')
        saved = os.path.join(self.workdir, 'saved')
        self.openstack_cli('image', 'save', '--file', saved, 'osc-img')
        self.assert_same_data(saved)
        self.openstack_cli('image', 'delete', 'osc-img')
        self.assert_deleted(image_id)


class TestCorruptedData(ClientTest):
    """Contract 5: no client ever saves a complete, corrupt image."""

    def test_every_client_download_fails(self):
        conn = self.sdk()
        image = conn.create_image('bad', filename=self.path,
                                  disk_format='raw', container_format='bare',
                                  wait=True)
        self.corrupt(image.id)

        sdk_file = os.path.join(self.workdir, 'sdk')
        # The connection is cut before the last byte (a keystoneauth
        # error); a complete corrupt body would fail the SDK's hash check.
        self.assertRaises((ksa_exc.ClientException,
                           openstack.exceptions.SDKException),
                          conn.download_image, image.id,
                          output_path=sdk_file)
        self.assert_not_a_complete_image(sdk_file)

        client = self.glance()
        self.assertRaises(requests.exceptions.ChunkedEncodingError,
                          lambda: b''.join(client.images.data(image.id)))

        cli_file = os.path.join(self.workdir, 'cli')
        result = self.glance_cli('image-download', '--file', cli_file,
                                 image.id, check=False)
        self.assertNotEqual(0, result.returncode)
        self.assert_not_a_complete_image(cli_file)
        self.assertIn('Image %s, store fast: block 1 (bytes 1048576-2097151) '
                      'does not match its digest' % image.id,
                      self.server.log())

    def assert_not_a_complete_image(self, path: str) -> None:
        if os.path.exists(path):
            self.assertLess(os.path.getsize(path), SIZE)


class TestStageAndImportHttp(ClientTest):
    """Contract section 4 over HTTP, through the whole pipeline."""

    DATA = b'staged over plain HTTP\n' * 10

    def stage(self, image_id: str, data: bytes = DATA, **kwargs):
        return self.upload(image_id, data, route='stage', **kwargs)

    def import_(self, image_id: str, headers=None, **body):
        body.setdefault('method', {'name': 'glance-direct'})
        sent = {'Accept': 'application/json'}
        sent.update(headers or {})
        return self.request('POST', '/v2/images/%s/import' % image_id,
                            json=body, headers=sent)

    def test_stage_then_import_into_the_header_store_4(self):
        image = self.create_image()
        resp = self.stage(image['id'], chunked=True, headers={
            'x-openstack-image-size': str(len(self.DATA))})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertNotIn('Content-Type', resp.headers)
        staged = self.get_image(image['id'])
        self.assertEqual(('uploading', len(self.DATA), None),
                         (staged['status'], staged['size'],
                          staged['checksum']))
        resp = self.import_(image['id'],
                            headers={'X-Image-Meta-Store': 'cheap'})
        self.assertEqual(202, resp.status_code, resp.text)
        self.wait_until_active(image['id'])
        image = self.get_image(image['id'])
        self.assertEqual('cheap', image['stores'])
        self.assertEqual(hashlib.md5(self.DATA, usedforsecurity=False)
                         .hexdigest(), image['checksum'])
        self.assertEqual(hashlib.sha512(self.DATA).hexdigest(),
                         image['os_hash_value'])
        self.assertEqual([], self.staging_files(image['id']))

    def test_stage_too_long_is_400_and_leaves_nothing_3_14(self):
        image = self.create_image()
        resp = self.stage(image['id'], chunked=True, headers={
            'x-openstack-image-size': '10'})
        self.assert_error(resp, 400,
                          'Size exceeds: expected 10 bytes, got')
        self.assert_failed_upload_left_nothing(image['id'])
        self.assertEqual(204, self.stage(image['id']).status_code)

    def test_second_stage_is_409_4(self):
        image = self.create_image()
        self.assertEqual(204, self.stage(image['id']).status_code)
        self.assert_error(self.stage(image['id']), 409,
                          'Image status transition from uploading to '
                          'uploading is not allowed')

    def test_import_errors_4(self):
        image = self.create_image()
        self.assert_error(self.import_(image['id']), 409,
                          "Image needs to be staged before 'glance-direct' "
                          "method can be used")
        self.assertEqual(204, self.stage(image['id']).status_code)
        self.assert_error(
            self.import_(image['id'], method={'name': 'web-download'}),
            400, "Unknown import method name 'web-download'.")
        self.assert_error(
            self.import_(image['id'],
                         headers={'X-Image-Meta-Store': 'nowhere'}),
            409, 'Store for identifier nowhere not found')
        self.assert_error(self.import_(image['id'], stores=['nowhere']),
                          409, 'Store for identifier nowhere not found')
        self.assertEqual('uploading', self.get_image(image['id'])['status'])
