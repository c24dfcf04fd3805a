"""``/v2/info/stores`` and ``/detail``, answered by the data app (section 6).

Behind the context and stores filters, as in ``etc/api-paste.ini``; the
stores come from the same configuration as the stores filter's.
"""

import json
import logging

import fixtures
import testtools
import webob

from imgmw.app import api
from imgmw import backends
from imgmw.filters import context
from imgmw.filters import stores
from tests.unit.app import test_api
from tests.unit.filters import test_stores


class DiscoveryTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger(
            name='imgmw', level=logging.INFO))

    def pipeline(self, global_conf=test_stores.GLOBAL,
                 sections=test_stores.SECTIONS, roles='admin',
                 with_context=True):
        conf = backends.load(global_conf, sections)
        store_set = api.StoreSet({store_id: object()
                                  for store_id in conf.stores},
                                 conf.default, conf.multi, conf=conf)
        app = api.DataApp(None, store_set, test_api.OPTIONS)
        middleware = stores.StoresMiddleware(app, global_conf,
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
        self.assertIn('context filter', self.logs.output)
        self.assertIn('imgmw.authorize', self.logs.output)

    def test_reserved_ids_never_listed(self):
        conf = backends.load(test_stores.GLOBAL, test_stores.SECTIONS)
        store_set = api.StoreSet(
            {'fast': object(), 'os_glance_staging_store': object()},
            'fast', True, conf=conf)
        self.assertEqual(['fast'], [entry['id'] for entry
                                    in store_set.listing(detail=True)])
