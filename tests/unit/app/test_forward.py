"""Forwarding an import to the node that staged it (imgmw.app.forward).

The exchange with the staging node goes through a recording stand-in of
``http.client.HTTPConnection``; tests/functional/test_nodes.py runs it
between two real nodes.
"""

import http.client
import json
import socket

import fixtures
import testtools
import webob

from imgmw import app as data_app
from imgmw.app import forward
from imgmw.app import registry
from imgmw.app import stage
from imgmw import config
from tests.unit.app import test_import


NODE_A = 'http://10.0.0.11:9292'
IMAGE_ID = '8a1ee1d2-5a9f-4d1c-9f1c-2b1c7e6f1a00'
BODY = {'method': {'name': 'glance-direct'}}


class FakeAnswer:

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def getheaders(self):
        return list(self.headers.items())

    def read(self, size=None):
        return self.body[:size]


class FakeConnection:
    """Records what an HTTPConnection would have sent."""

    def __init__(self, answer=None, connect_error=None, answer_error=None):
        self.answer = answer or FakeAnswer(202, 'Accepted', {}, b'')
        self.connect_error = connect_error
        self.answer_error = answer_error
        self.made = []
        self.requests = []
        self.timeouts = []
        self.closed = False
        self.sock = self

    def __call__(self, scheme, host, port, timeout):
        self.made.append((scheme, host, port, timeout))
        return self

    def connect(self):
        if self.connect_error is not None:
            raise self.connect_error

    def settimeout(self, timeout):
        self.timeouts.append(timeout)

    def request(self, method, path, body, headers):
        self.requests.append((method, path, body, dict(headers)))

    def getresponse(self):
        if self.answer_error is not None:
            raise self.answer_error
        return self.answer

    def close(self):
        self.closed = True


def import_request(**headers) -> webob.Request:
    req = webob.Request.blank('/v2/images/%s/import' % IMAGE_ID,
                              method='POST', headers=headers)
    req.environ['openstack.request_id'] = 'req-local'
    return req


class NodeUrlTest(testtools.TestCase):

    def test_http_and_https_urls_are_accepted(self):
        self.assertEqual(NODE_A, forward.node_url(NODE_A + '/'))
        self.assertEqual('https://node-b.example/image',
                         forward.node_url('https://node-b.example/image'))

    def test_anything_else_stops_start_up(self):
        for value in ('node-a:9292', 'ftp://node-a', 'http://',
                      'http://node-a/?x=1', 'http://node-a/#top'):
            self.assertRaises(config.ConfigError, data_app.app_factory, {},
                              worker_self_reference_url=value)

    def test_the_staging_area_is_named_by_the_node_url(self):
        directory = self.useFixture(fixtures.TempDir()).path
        self.assertEqual(NODE_A, stage.staging_area({
            'state_dir': directory,
            'worker_self_reference_url': NODE_A}).host)
        self.assertEqual('%s:%s' % (socket.gethostname(), directory),
                         stage.staging_area({'state_dir': directory,
                                             'staging_dir': directory}).host)

    def test_only_urls_of_requests_not_yet_forwarded_are_forwardable(self):
        self.assertTrue(forward.forwardable(NODE_A, {}))
        self.assertFalse(forward.forwardable(None, {}))
        self.assertFalse(forward.forwardable('node2:/var/lib/staging', {}))
        self.assertFalse(forward.forwardable(
            NODE_A, {forward.FORWARDED_KEY: 'http://10.0.0.12:9292'}))


class ForwarderTest(testtools.TestCase):

    def forward(self, connection, req=None, stage_host=NODE_A):
        forwarder = forward.Forwarder('http://10.0.0.12:9292',
                                      connect=connection)
        return forwarder(req or import_request(), IMAGE_ID, stage_host, BODY)

    def test_sends_the_import_with_the_callers_credentials(self):
        connection = FakeConnection()
        req = import_request(**{
            'X-Auth-Token': 'secret-token', 'X-Service-Token': 'svc',
            'X-Image-Meta-Store': 'cheap', 'Accept': 'application/json',
            'X-Project-Id': 'p1', 'X-Roles': 'member,reader',
            'Cookie': 'session=1', 'X-Identity-Status': 'Confirmed'})
        self.forward(connection, req)
        self.assertEqual([('http', '10.0.0.11', 9292,
                           forward.CONNECT_TIMEOUT)], connection.made)
        self.assertEqual([forward.ANSWER_TIMEOUT], connection.timeouts)
        [(method, path, body, headers)] = connection.requests
        self.assertEqual('POST', method)
        self.assertEqual('/v2/images/%s/import' % IMAGE_ID, path)
        self.assertEqual(BODY, json.loads(body))
        self.assertEqual({
            'X-Auth-Token': 'secret-token', 'X-Service-Token': 'svc',
            'X-Image-Meta-Store': 'cheap', 'Accept': 'application/json',
            'X-Project-Id': 'p1', 'X-Roles': 'member,reader',
            'Content-Type': 'application/json',
            'X-OpenStack-Request-ID': 'req-local',
            forward.FORWARDED_HEADER: 'http://10.0.0.12:9292'}, headers)
        self.assertTrue(connection.closed)

    def test_the_global_request_id_is_passed_on_when_there_is_one(self):
        connection = FakeConnection()
        req = import_request()
        req.environ['openstack.global_request_id'] = 'req-global'
        self.forward(connection, req)
        self.assertEqual('req-global', connection.requests[0][3][
            'X-OpenStack-Request-ID'])

    def test_a_path_in_the_node_url_prefixes_the_request_path(self):
        connection = FakeConnection()
        self.forward(connection, stage_host='https://node-a.example/image')
        self.assertEqual(('https', 'node-a.example', None,
                          forward.CONNECT_TIMEOUT), connection.made[0])
        self.assertEqual('/image/v2/images/%s/import' % IMAGE_ID,
                         connection.requests[0][1])

    def test_accepted_is_relayed_without_a_body(self):
        resp = self.forward(FakeConnection())
        self.assertEqual(202, resp.status_int)
        self.assertEqual(b'', resp.body)
        self.assertNotIn('Content-Type', resp.headers)

    def test_a_refusal_is_relayed_with_its_message(self):
        message = json.dumps({'message': 'The staged data of image x is '
                              'gone; stage it again.', 'code': '409 '
                              'Conflict', 'title': 'Conflict'}).encode()
        resp = self.forward(FakeConnection(answer=FakeAnswer(
            409, 'Conflict', {'Content-Type': 'application/json',
                              'x-openstack-request-id': 'req-remote'},
            message)))
        self.assertEqual('409 Conflict', resp.status)
        self.assertEqual('application/json', resp.headers['Content-Type'])
        self.assertEqual(message, resp.body)

    def test_unreachable_node_is_504(self):
        for error in (ConnectionRefusedError(111, 'refused'),
                      socket.timeout('timed out'),
                      socket.gaierror(-2, 'Name or service not known')):
            connection = FakeConnection(connect_error=error)
            err = self.assertRaises(webob.exc.HTTPException, self.forward,
                                    connection)
            self.assertEqual(504, err.code, error)
            self.assertIn('Stage host is unavailable', str(err))
            self.assertEqual([], connection.requests)

    def test_no_answer_is_502(self):
        for error in (socket.timeout('timed out'),
                      http.client.RemoteDisconnected('closed'),
                      http.client.BadStatusLine('junk')):
            connection = FakeConnection(answer_error=error)
            err = self.assertRaises(webob.exc.HTTPException, self.forward,
                                    connection)
            self.assertEqual(502, err.code, error)
            self.assertIn('Stage host is unavailable', str(err))
            self.assertTrue(connection.closed)


class ImportForwardTest(test_import.ImportTestCase):
    """Row 10 of the import: staged on another node that has a URL."""

    def setUp(self):
        super().setUp()
        self.forwarded = []

        def fake_forward(req, image_id, stage_host, body):
            self.forwarded.append((image_id, stage_host, body))
            resp = webob.Response(status=202)
            del resp.content_type
            return resp

        self.app.forward = fake_forward

    def staged_on(self, stage_host: str, **values) -> dict:
        image = self.create(**values)
        self.registry.transition(image['id'], 'queued', 'uploading',
                                 holder='a:1:1')
        self.registry.finish_stage(image['id'], 'a:1:1', 4, stage_host)
        return image

    def test_import_of_data_staged_on_another_node_is_forwarded_4(self):
        image = self.staged_on(NODE_A)
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(202, resp.status_int, resp.body)
        self.assertEqual([(image['id'], NODE_A,
                           test_import.GLANCE_DIRECT)], self.forwarded)
        # This node changed nothing; the staging node imports.
        self.assertEqual('uploading', self.status_of(image['id']))
        self.assertEqual([], self.spawned)

    def test_the_checks_of_this_node_come_first(self):
        image = self.staged_on(NODE_A)
        resp = self.call(self.import_request(image['id'],
                                             roles=('reader',)))
        self.assertEqual(403, resp.status_int)
        image = self.staged_on(NODE_A, disk_format=None)
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(409, resp.status_int)
        self.assertEqual([], self.forwarded)

    def test_a_forwarded_import_is_never_forwarded_again(self):
        image = self.staged_on(NODE_A)
        req = self.import_request(image['id'])
        req.headers[forward.FORWARDED_HEADER] = 'http://10.0.0.12:9292'
        resp = self.call(req)
        self.assertEqual(409, resp.status_int)
        self.assertIn('was staged on another node (%s)' % NODE_A,
                      resp.json['message'])
        self.assertEqual([], self.forwarded)

    def test_a_stage_records_the_node_url(self):
        self.staging.host = NODE_A
        image = self.staged()
        self.assertEqual(NODE_A, image['properties'][
            registry.STAGE_HOST_PROPERTY])
        resp = self.call(self.import_request(image['id']))
        self.assertEqual(202, resp.status_int)
        self.assertEqual([], self.forwarded)
        self.assertActive(image['id'], ['default'])
