"""Tests of imgmw.filters.stores: store choice and discovery.

Contract 3.7 (unknown or reserved store on upload), section 4 (import) and
section 6 (``/v2/info/stores`` and ``/detail``).
"""

import os

import fixtures
import paste.deploy
import testtools
import webob

from imgmw import config
from imgmw import environ as env_keys
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
    """Section 6: /v2/info/stores has one owner, the app behind.

    The listing itself is tested in tests/unit/app/test_stores_info.py.
    """

    def test_discovery_paths_pass_through(self):
        self.app = fakes.RecordingApp()
        middleware = stores.StoresMiddleware(self.app, GLOBAL,
                                             sections=SECTIONS)
        for path in ('/v2/info/stores', '/v2/info/stores/detail',
                     '/v2/info/import'):
            resp = webob.Request.blank(path).get_response(middleware)
            self.assertEqual(204, resp.status_int)
            self.assertEqual(path, self.app.environ['PATH_INFO'])


class CreationTest(testtools.TestCase):
    """Section 6: reserved ids never appear in image creation's answer."""

    def test_reserved_ids_leave_openstack_image_store_ids(self):
        for known in ('configured', 'glance'):
            app = fakes.RecordingApp(status=201, headers={
                'OpenStack-image-store-ids':
                    'fast,cheap,os_glance_staging_store,'
                    'os_glance_tasks_store'})
            if known == 'glance':
                middleware = stores.filter_factory(
                    {}, known_stores=known)(app)
            else:
                middleware = stores.StoresMiddleware(app, GLOBAL,
                                                     sections=SECTIONS)
            req = webob.Request.blank('/v2/images', method='POST',
                                      body=b'{}')
            resp = req.get_response(middleware)
            self.assertEqual('fast,cheap',
                             resp.headers['OpenStack-image-store-ids'])
            resp = webob.Request.blank('/v2/images').get_response(middleware)
            self.assertIn('os_glance_tasks_store',
                          resp.headers['OpenStack-image-store-ids'])


class GlanceModeTest(testtools.TestCase):
    """known_stores = glance: only reserved ids are the filter's."""

    def make(self):
        self.app = fakes.RecordingApp()
        return stores.filter_factory({}, known_stores='glance')(self.app)

    def test_reserved_ids_refused_before_glance(self):
        """Contract 3.7 and section 9; 409 on import (section 4)."""
        middleware = self.make()
        for store_id in ('os_glance_staging_store', 'os_glance_tasks_store'):
            resp = fakes.upload_request(
                headers={'X-Image-Meta-Store': store_id}
            ).get_response(middleware)
            self.assertEqual(400, resp.status_int)
            self.assertIn('Store for identifier %s not found' % store_id,
                          resp.text)
            resp = fakes.upload_request(
                path='/v2/images/img1/import', method='POST',
                headers={'X-Image-Meta-Store': store_id}
            ).get_response(middleware)
            self.assertEqual(409, resp.status_int)
        self.assertFalse(self.app.called)

    def test_other_ids_and_stage_are_glance_s(self):
        middleware = self.make()
        for headers, path in (({'X-Image-Meta-Store': 'slow'}, 'file'),
                              ({}, 'file'),
                              ({'X-Image-Meta-Store':
                                'os_glance_staging_store'}, 'stage')):
            resp = fakes.upload_request(
                path='/v2/images/img1/%s' % path, headers=headers
            ).get_response(middleware)
            self.assertEqual(204, resp.status_int)
            self.assertNotIn(env_keys.STORE, self.app.environ)

    def test_needs_no_store_configuration(self):
        middleware = self.make()
        self.assertIsNone(middleware.backends)


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
