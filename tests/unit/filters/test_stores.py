"""Tests of imgmw.filters.stores: store choice and discovery.

Contract 3.7 (unknown or reserved store on upload), section 4 (import) and
section 6 (``/v2/info/stores`` and ``/detail``).
"""

import json
import logging
import os

import fixtures
import paste.deploy
import testtools
import webob

from imgmw import config
from imgmw import environ as env_keys
from imgmw.filters import context
from imgmw.filters import stores
from tests.unit import fakes


GLOBAL = {'enabled_backends': 'fast:file, cheap:file',
          'default_backend': 'fast'}
SECTIONS = {
    'store:fast': {'filesystem_store_datadir': '/srv/fast',
                   'store_description': 'Local disks', 'weight': '100'},
    'store:cheap': {'filesystem_store_datadir': '/srv/cheap'},
}


def recording_app_factory(global_conf, **local_conf):
    """paste.app_factory for the paste.deploy test."""
    return fakes.RecordingApp()


class StoreChoiceTest(testtools.TestCase):

    def make(self, global_conf=GLOBAL, sections=SECTIONS):
        self.app = fakes.RecordingApp()
        return stores.StoresMiddleware(self.app, global_conf,
                                       sections=sections)

    def upload(self, middleware, store=None, path='/v2/images/img1/file',
               method='PUT'):
        headers = {} if store is None else {'X-Image-Meta-Store': store}
        req = fakes.upload_request(path=path, body=b'data', method=method,
                                   headers=headers)
        return req.get_response(middleware)

    def test_named_store_is_published(self):
        resp = self.upload(self.make(), 'cheap')
        self.assertEqual(204, resp.status_int)
        self.assertEqual('cheap', self.app.environ[env_keys.STORE])
        self.assertEqual(b'data', self.app.received)

    def test_default_store_when_header_absent(self):
        self.upload(self.make())
        self.assertEqual('fast', self.app.environ[env_keys.STORE])

    def test_versioned_path(self):
        self.upload(self.make(), 'cheap', path='/v2.11/images/img1/file')
        self.assertEqual('cheap', self.app.environ[env_keys.STORE])

    def test_unknown_store_is_400(self):
        """Contract 3.7."""
        resp = self.upload(self.make(), 'slow')
        self.assertEqual(400, resp.status_int)
        self.assertIn('Store for identifier slow not found', resp.text)
        self.assertFalse(self.app.called)

    def test_reserved_store_is_400(self):
        """Contract 3.7 and section 9: os_glance_* is never accepted."""
        resp = self.upload(self.make(), 'os_glance_staging_store')
        self.assertEqual(400, resp.status_int)
        self.assertIn(
            'Store for identifier os_glance_staging_store not found',
            resp.text)
        self.assertFalse(self.app.called)

    def test_json_error_body(self):
        req = fakes.upload_request(headers={'X-Image-Meta-Store': 'slow',
                                            'Accept': 'application/json'})
        resp = req.get_response(self.make())
        self.assertEqual('application/json', resp.content_type)
        self.assertIn('Store for identifier slow not found',
                      resp.json['message'])

    def test_import_unknown_store_is_409(self):
        """Section 4: an unknown store on import is a conflict."""
        resp = self.upload(self.make(), 'slow',
                           path='/v2/images/img1/import', method='POST')
        self.assertEqual(409, resp.status_int)
        self.assertIn('Store for identifier slow not found', resp.text)

    def test_import_store_is_published(self):
        self.upload(self.make(), 'cheap', path='/v2/images/img1/import',
                    method='POST')
        self.assertEqual('cheap', self.app.environ[env_keys.STORE])
        self.assertEqual('cheap',
                         self.app.environ['HTTP_X_IMAGE_META_STORE'])

    def test_stage_ignores_the_header(self):
        """Section 4: the store is chosen at import, not at stage."""
        resp = self.upload(self.make(), 'slow',
                           path='/v2/images/img1/stage')
        self.assertEqual(204, resp.status_int)
        self.assertNotIn(env_keys.STORE, self.app.environ)

    def test_download_passes_untouched(self):
        resp = webob.Request.blank('/v2/images/img1/file', headers={
            'X-Image-Meta-Store': 'slow'}).get_response(self.make())
        self.assertEqual(204, resp.status_int)
        self.assertNotIn(env_keys.STORE, self.app.environ)

    def test_multi_store_off_ignores_the_header(self):
        """Section 6: without enabled_backends the header is ignored."""
        resp = self.upload(self.make({}, {}), 'slow')
        self.assertEqual(204, resp.status_int)
        self.assertIsNone(self.app.environ[env_keys.STORE])


class DiscoveryTest(testtools.TestCase):
    """Section 6: /v2/info/stores and /v2/info/stores/detail."""

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger(
            name='imgmw', level=logging.INFO))

    def pipeline(self, global_conf=GLOBAL, sections=SECTIONS, roles='admin',
                 with_context=True):
        self.app = fakes.RecordingApp()
        middleware = stores.StoresMiddleware(self.app, global_conf,
                                             sections=sections)
        if not with_context:
            return middleware
        return context.filter_factory(
            {}, auth_strategy='noauth', trust_identity_headers='true',
            default_roles=roles)(middleware)

    def get(self, pipeline, path='/v2/info/stores', method='GET', **headers):
        req = webob.Request.blank(path, method=method, headers=headers)
        return req.get_response(pipeline)

    def test_listing(self):
        resp = self.get(self.pipeline(roles='reader'))
        self.assertEqual(200, resp.status_int)
        self.assertEqual('application/json', resp.content_type)
        self.assertEqual(
            {'stores': [{'id': 'fast', 'description': 'Local disks',
                         'default': 'true'},
                        {'id': 'cheap'}]},
            json.loads(resp.body))
        self.assertFalse(self.app.called)

    def test_detail_for_admin(self):
        resp = self.get(self.pipeline(), '/v2/info/stores/detail')
        self.assertEqual(200, resp.status_int)
        self.assertEqual(
            {'stores': [{'id': 'fast', 'description': 'Local disks',
                         'default': 'true', 'type': 'file',
                         'properties': {'data_dir': '/srv/fast'},
                         'weight': 100},
                        {'id': 'cheap', 'type': 'file',
                         'properties': {'data_dir': '/srv/cheap'},
                         'weight': 0}]},
            resp.json)

    def test_detail_for_service_role(self):
        resp = self.get(self.pipeline(), '/v2.13/info/stores/detail/',
                        X_Roles='service')
        self.assertEqual(200, resp.status_int)

    def test_detail_denied_to_member(self):
        resp = self.get(self.pipeline(), '/v2/info/stores/detail',
                        X_Roles='member,reader')
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete '
                      'stores_info_detail action.', resp.text)

    def test_s3_detail_hides_credentials(self):
        sections = {'store:cold': {
            's3_store_host': 'https://rgw.example', 's3_store_bucket': 'img',
            's3_store_access_key': 'AKIA', 's3_store_secret_key': 'hush'}}
        resp = self.get(self.pipeline(
            {'enabled_backends': 'cold:s3', 'default_backend': 'cold'},
            sections), '/v2/info/stores/detail')
        store = resp.json['stores'][0]
        self.assertEqual('s3', store['type'])
        self.assertEqual('img', store['properties']['bucket'])
        self.assertNotIn('hush', resp.text)
        self.assertNotIn('AKIA', resp.text)

    def test_multi_store_off_is_404(self):
        for path in ('/v2/info/stores', '/v2/info/stores/detail'):
            resp = self.get(self.pipeline({}, {}), path)
            self.assertEqual(404, resp.status_int, path)
            self.assertIn('Multi backend is not supported at this site.',
                          resp.text)

    def test_other_methods_are_405(self):
        for path in ('/v2/info/stores', '/v2/info/stores/detail'):
            resp = self.get(self.pipeline(), path, method='POST')
            self.assertEqual(405, resp.status_int, path)
            self.assertEqual('GET', resp.headers['Allow'])

    def test_detail_without_context_filter_is_500(self):
        resp = self.get(self.pipeline(with_context=False),
                        '/v2/info/stores/detail')
        self.assertEqual(500, resp.status_int)
        self.assertIn('context filter', resp.text)
        self.assertIn('imgmw.authorize', self.logs.output)

    def test_other_paths_pass_through(self):
        resp = self.get(self.pipeline(), '/v2/info/import')
        self.assertEqual(204, resp.status_int)
        self.assertTrue(self.app.called)


class FactoryTest(testtools.TestCase):

    def write_ini(self, default_backend='fast'):
        directory = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(directory, 'api-paste.ini')
        with open(path, 'w') as f:
            f.write('[DEFAULT]\n'
                    'enabled_backends = fast:file, cheap:file\n'
                    'default_backend = %s\n\n' % default_backend +
                    '[store:fast]\n'
                    'filesystem_store_datadir = %(here)s/fast\n\n'
                    '[store:cheap]\n'
                    'filesystem_store_datadir = %(here)s/cheap\n\n'
                    '[pipeline:main]\npipeline = stores app\n\n'
                    '[filter:stores]\nuse = egg:imgmw#stores\n\n'
                    '[app:app]\npaste.app_factory = '
                    'tests.unit.filters.test_stores:recording_app_factory\n')
        return directory, path

    def test_loaded_by_paste_deploy_from_the_file(self):
        directory, path = self.write_ini()
        pipeline = paste.deploy.loadapp('config:' + path)
        self.assertIsInstance(pipeline, stores.StoresMiddleware)
        fast = pipeline.backends.stores['fast']
        self.assertEqual({'data_dir': os.path.join(directory, 'fast')},
                         fast.properties())
        resp = fakes.upload_request(headers={'X-Image-Meta-Store': 'cheap'}
                                    ).get_response(pipeline)
        self.assertEqual(204, resp.status_int)

    def test_bad_configuration_stops_start_up(self):
        _, path = self.write_ini(default_backend='slow')
        self.assertRaises(config.ConfigError, paste.deploy.loadapp,
                          'config:' + path)

    def test_unknown_filter_option_stops_start_up(self):
        err = self.assertRaises(config.ConfigError, stores.filter_factory,
                                dict(GLOBAL), store='fast')
        self.assertIn('store', str(err))
