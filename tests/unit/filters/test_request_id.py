"""Tests of imgmw.filters.request_id: oslo's request_id, long ids dropped.

Contract section 2: every response carries ``x-openstack-request-id``; an
over-long client id is ignored and replaced (section 9).
"""

import fixtures
import testtools
import webob
import webob.exc

from imgmw import config
from imgmw.filters import request_id


class EchoingContext:
    """Answers as Glance's context filter: 401, or echoes the client id."""

    def __init__(self):
        self.calls = []

    def __call__(self, environ, start_response):
        self.calls.append(dict(environ))
        if environ.get('HTTP_X_IDENTITY_STATUS') != 'Confirmed':
            return webob.exc.HTTPUnauthorized()(environ, start_response)
        client_id = environ.get('HTTP_X_OPENSTACK_REQUEST_ID')
        if client_id is not None and len(client_id) > 64:
            raise AssertionError('Glance would answer 500')
        headers = []
        if client_id is not None:
            headers.append(('x-openstack-request-id', 'req-' + client_id))
        start_response('200 OK', headers)
        return [b'ok']


class RequestIdTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.app = EchoingContext()

    def get(self, middleware=None, **headers):
        middleware = middleware or request_id.filter_factory({})(self.app)
        return webob.Request.blank('/v2/images', headers=headers
                                   ).get_response(middleware)

    def test_a_401_carries_a_request_id(self):
        resp = self.get()
        self.assertEqual(401, resp.status_int)
        self.assertTrue(resp.headers['x-openstack-request-id']
                        .startswith('req-'))

    def test_short_client_id_passes_untouched(self):
        resp = self.get(X_Identity_Status='Confirmed',
                        X_Openstack_Request_ID='abc')
        self.assertEqual('req-abc', resp.headers['x-openstack-request-id'])

    def test_overlong_client_id_is_dropped_and_replaced(self):
        long_id = 'a' * 65
        resp = self.get(X_Identity_Status='Confirmed',
                        X_Openstack_Request_ID=long_id)
        self.assertEqual(200, resp.status_int)
        self.assertNotIn('HTTP_X_OPENSTACK_REQUEST_ID', self.app.calls[0])
        self.assertNotIn(long_id, resp.headers['x-openstack-request-id'])
        self.assertTrue(resp.headers['x-openstack-request-id']
                        .startswith('req-'))
        self.assertIn('Dropped a client request id of 65 characters',
                      self.log.output)
        self.assertNotIn(long_id, self.log.output)

    def test_limit_is_configurable(self):
        middleware = request_id.filter_factory(
            {}, max_request_id_length='3')(self.app)
        self.get(middleware, X_Identity_Status='Confirmed',
                 X_Openstack_Request_ID='abcd')
        self.assertNotIn('HTTP_X_OPENSTACK_REQUEST_ID', self.app.calls[0])

    def test_bad_options_stop_start_up(self):
        self.assertRaises(config.ConfigError, request_id.filter_factory, {},
                          max_request_id_length='0')
        self.assertRaises(config.ConfigError, request_id.filter_factory, {},
                          other='1')
