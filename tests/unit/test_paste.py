"""The shipped etc/api-paste.ini, loaded with paste.deploy as a server does.

Every composite loads through the registered entry points, answers through
its whole pipeline, and puts ``x-openstack-request-id`` on every answer of
the pipeline, errors and 401 included (contract section 2).
"""

import configparser
import os

import fixtures
from paste import deploy
import testtools
import webob

from imgmw import config
from imgmw import wsgi


PASTE_FILE = os.path.join(os.path.dirname(__file__), '..', '..', 'etc',
                          'api-paste.ini')


def pipeline_of(composite: str) -> list:
    parser = configparser.RawConfigParser()
    parser.read(PASTE_FILE)
    api = parser.get('composite:%s' % composite, '/')
    return parser.get('pipeline:%s' % api, 'pipeline').split()


class TestShippedPipelines(testtools.TestCase):

    def load(self, pipeline: str, **overrides):
        state = self.useFixture(fixtures.TempDir()).path
        conf = wsgi.global_conf(PASTE_FILE, overrides, state)
        return deploy.loadapp('config:%s' % os.path.abspath(PASTE_FILE),
                              name=pipeline, global_conf=conf)

    def test_request_id_is_outermost_and_the_app_innermost(self):
        for composite in ('noauth', 'keystone'):
            pipeline = pipeline_of(composite)
            self.assertEqual('request_id', pipeline[0], composite)
            self.assertEqual('imgmw', pipeline[-1], composite)

    def test_size_checks_before_stores_3_6_3_7(self):
        for composite in ('noauth', 'keystone'):
            pipeline = pipeline_of(composite)
            self.assertLess(pipeline.index('size'), pipeline.index('stores'))

    def test_noauth_serves_the_api(self):
        app = self.load('noauth')
        resp = webob.Request.blank('/v2/images').get_response(app)
        self.assertEqual(200, resp.status_int, resp.text)
        self.assertEqual([], resp.json['images'])
        self.assertTrue(resp.headers['x-openstack-request-id'].startswith(
            'req-'))

    def test_noauth_errors_carry_request_id_2(self):
        app = self.load('noauth')
        resp = webob.Request.blank('/v2/images/missing').get_response(app)
        self.assertEqual(404, resp.status_int)
        self.assertIn('No image found with ID missing', resp.text)
        self.assertIn('x-openstack-request-id', resp.headers)

    def test_healthcheck_beside_the_pipeline(self):
        for composite in ('noauth', 'keystone'):
            app = self.load(composite)
            resp = webob.Request.blank('/healthcheck').get_response(app)
            self.assertEqual(200, resp.status_int, composite)
            self.assertEqual(b'OK', resp.body.strip())
            self.assertTrue(resp.headers['x-openstack-request-id']
                            .startswith('req-'), composite)

    def test_keystone_without_token_is_401_with_request_id_3_1(self):
        app = self.load('keystone',
                        www_authenticate_uri='https://keystone.example/v3')
        req = webob.Request.blank('/v2/images/abc/file', method='PUT')
        resp = req.get_response(app)
        self.assertEqual(401, resp.status_int)
        self.assertEqual('Keystone uri="https://keystone.example/v3"',
                         resp.headers['WWW-Authenticate'])
        self.assertTrue(resp.headers['x-openstack-request-id'].startswith(
            'req-'))

    def test_overrides_reach_the_filters(self):
        app = self.load('noauth', image_size_cap='10')
        req = webob.Request.blank('/v2/images/abc/file', method='PUT',
                                  body=b'x' * 11)
        req.content_type = 'application/octet-stream'
        resp = req.get_response(app)
        self.assertEqual(413, resp.status_int, resp.text)
        self.assertIn('x-openstack-request-id', resp.headers)

    def test_bad_option_stops_loading(self):
        self.assertRaises(ValueError, self.load, 'noauth',
                          image_size_cap='ten')


class TestPipelineCheck(testtools.TestCase):
    """A keystone context filter without auth_token never starts."""

    def write(self, pipeline: str) -> str:
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'api-paste.ini')
        parser = configparser.RawConfigParser()
        parser.read(PASTE_FILE)
        parser.set('pipeline:keystone-api', 'pipeline', pipeline)
        with open(path, 'w') as out:
            parser.write(out)
        return path

    def load(self, path: str, name: str = 'keystone'):
        state = self.useFixture(fixtures.TempDir()).path
        return wsgi.load(path, name, wsgi.global_conf(path, {}, state))

    def test_shipped_pipelines_pass(self):
        for name in ('noauth', 'keystone'):
            self.assertIsNotNone(self.load(PASTE_FILE, name))

    def test_keystone_context_without_auth_token_stops_start_up(self):
        path = self.write('request_id context size stores quota checksum '
                          'inspect imgmw')
        err = self.assertRaises(config.ConfigError, self.load, path)
        self.assertIn('pipeline keystone: the context filter', str(err))
        self.assertIn('auth_token before it', str(err))

    def test_auth_token_after_the_context_filter_is_refused_too(self):
        path = self.write('request_id context authtoken size stores quota '
                          'checksum inspect imgmw')
        self.assertRaises(config.ConfigError, self.load, path)

    def test_noauth_context_needs_no_auth_token(self):
        path = self.write('request_id context-noauth size stores quota '
                          'checksum inspect imgmw')
        self.assertIsNotNone(self.load(path))
