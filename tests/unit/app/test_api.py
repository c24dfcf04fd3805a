"""Tests of the data app's routing and image records (imgmw.app.api).

Also the shared helpers of the app's tests: a real SQLite registry, a real
file store in a temporary directory, and the environ the filters in front
of the app would publish.
"""

import hashlib
import io
import json
import os
import typing

import fixtures
from oslo_context import context as oslo_context
import testtools
import webob

from imgmw.app import api
from imgmw.app import images
from imgmw.app import registry
from imgmw.app.stores import filesystem
from imgmw import environ as keys
from imgmw import errors
from imgmw import streams
from tests import dbfixture


PROJECT = 'p1'
OTHER = 'p2'

OPTIONS = {'read_chunk_size': 4, 'heartbeat_interval': 30,
           'public_endpoint': None, 'limit_param_default': 25,
           'api_limit_max': 1000}

MEMBER_ACTIONS = frozenset(('upload_image', 'modify_image', 'delete_image',
                            'add_image', 'deactivate', 'reactivate'))


class Authorize:
    """A small stand-in of the context filter's policy callback."""

    def __init__(self, context):
        self.context = context
        self.calls = []

    def __call__(self, action: str, target: typing.Mapping,
                 do_raise: bool = True) -> bool:
        self.calls.append(action)
        allowed = self.context.is_admin or self.rule(action, target)
        if not allowed and do_raise:
            from imgmw import errors
            raise errors.not_authorized(action)
        return allowed

    def rule(self, action: str, target: typing.Mapping) -> bool:
        roles = self.context.roles
        own = target.get('project_id') == self.context.project_id
        visible = own or target.get('visibility') in ('public', 'community')
        if action in ('get_image', 'get_images'):
            return 'reader' in roles and (visible or action == 'get_images')
        if action == 'download_image':
            return 'member' in roles and visible
        if action in MEMBER_ACTIONS:
            return 'member' in roles and own
        if action == 'copy_image':
            return False  # admin only
        raise AssertionError('unexpected action %s' % action)


class Digests:
    """Test double of the checksum filter's digests."""

    def __init__(self):
        self.os_hash_algo = 'sha512'
        self.md5 = None
        self.os_hash_value = None


class HashingInput(streams.InputProxy):
    """Test double of the checksum filter: hashes, final at EOF."""

    def __init__(self, wsgi_input, length, digests: Digests):
        super().__init__(wsgi_input, length)
        self.digests = digests
        self.md5 = hashlib.md5()
        self.sha512 = hashlib.sha512()

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        self.md5.update(chunk)
        self.sha512.update(chunk)
        if eof:
            self.digests.md5 = self.md5.hexdigest()
            self.digests.os_hash_value = self.sha512.hexdigest()
        return chunk


class ExplodingInput:
    """A ``wsgi.input`` that must never be read."""

    def read(self, size=-1):
        raise AssertionError('the body was read')

    readline = read


class AppTestCase(testtools.TestCase):
    """A data app on a real registry and a real file store."""

    multi_store = False

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        database = self.useFixture(dbfixture.Database())
        self.registry = registry.Registry(database.url, sync=True)
        self.addCleanup(self.registry.dispose)
        self.datadir = os.path.realpath(
            self.useFixture(fixtures.TempDir()).path)
        self.store = filesystem.FilesystemStore(
            'default', {'filesystem_store_datadir': self.datadir})
        self.app = api.DataApp(
            self.registry,
            api.StoreSet({'default': self.store}, 'default',
                         self.multi_store), OPTIONS)

    def request(self, path: str, method: str = 'GET',
                project: str = PROJECT, roles=('member', 'reader'),
                is_admin: bool = False, body: typing.Any = None,
                headers: typing.Optional[dict] = None) -> webob.Request:
        req = webob.Request.blank(path, method=method)
        if body is not None:
            req.body = (body if isinstance(body, bytes)
                        else json.dumps(body).encode())
            req.content_type = 'application/json'
        req.headers.update(headers or {})
        self.with_context(req, project, roles, is_admin)
        return req

    @staticmethod
    def with_context(req: webob.Request, project: str = PROJECT,
                     roles=('member', 'reader'),
                     is_admin: bool = False) -> webob.Request:
        context = oslo_context.RequestContext(
            project_id=project, roles=list(roles), is_admin=is_admin)
        req.environ[keys.CONTEXT] = context
        req.environ[keys.AUTHORIZE] = Authorize(context)
        req.environ[keys.STORE] = None
        return req

    def call(self, req: webob.Request) -> webob.Response:
        return req.get_response(self.app)

    def create(self, **values) -> dict:
        record = {'name': 'img', 'disk_format': 'raw',
                  'container_format': 'bare', 'owner': PROJECT}
        record.update(values)
        return self.registry.create(record)

    def status_of(self, image_id: str) -> str:
        return self.registry.get(image_id)['status']


class VersionsTest(AppTestCase):

    def test_root_is_300_versions_is_200(self):
        """contract 1: GET / 300, /versions 200, no context needed."""
        root = webob.Request.blank('/').get_response(self.app)
        versions = webob.Request.blank('/versions').get_response(self.app)
        self.assertEqual(300, root.status_int)
        self.assertEqual(200, versions.status_int)
        self.assertEqual(root.json, versions.json)
        self.assertEqual('application/json', versions.content_type)

    def test_single_store_lists_v2_9_current_and_no_2_8(self):
        """contract 6: v2.8 and v2.10 to 2.13 only with multi-store."""
        doc = webob.Request.blank('/versions').get_response(self.app).json
        ids = [v['id'] for v in doc['versions']]
        self.assertEqual(['v2.9', 'v2.7', 'v2.6', 'v2.5', 'v2.4', 'v2.3',
                          'v2.2', 'v2.1', 'v2.0'], ids)
        self.assertEqual('CURRENT', doc['versions'][0]['status'])
        self.assertEqual(
            [{'rel': 'self', 'href': 'http://localhost/v2/'}],
            doc['versions'][0]['links'])

    def test_unlisted_minor_version_answers_300(self):
        resp = self.call(self.request('/v2.8/images'))
        self.assertEqual(300, resp.status_int)
        self.assertEqual(200, self.call(self.request('/v2.9/images'))
                         .status_int)


class MultiStoreVersionsTest(AppTestCase):

    multi_store = True

    def test_multi_store_lists_2_8_and_2_13_current(self):
        doc = webob.Request.blank('/versions').get_response(self.app).json
        ids = [v['id'] for v in doc['versions']]
        self.assertEqual('v2.13', ids[0])
        self.assertEqual('CURRENT', doc['versions'][0]['status'])
        self.assertIn('v2.8', ids)
        self.assertIn('v2.9', ids)


class RoutingTest(AppTestCase):

    def test_unknown_path_is_404(self):
        self.assertEqual(404, self.call(self.request('/v3/x')).status_int)

    def test_other_method_is_405_with_allow(self):
        """contract 1: 405 with Allow on known paths."""
        resp = self.call(self.request('/v2/images/x/file', method='POST'))
        self.assertEqual(405, resp.status_int)
        self.assertEqual('GET, HEAD, PUT', resp.headers['Allow'])

    def test_schemas_are_valid_json_schemas(self):
        import jsonschema
        for name in ('image', 'images'):
            resp = self.call(self.request('/v2/schemas/' + name))
            self.assertEqual(200, resp.status_int)
            jsonschema.Draft4Validator.check_schema(resp.json)
            self.assertEqual(name, resp.json['name'])

    def test_import_info(self):
        resp = self.call(self.request('/v2/info/import'))
        self.assertEqual({'import-methods': {
            'description': 'Import methods available.', 'type': 'array',
            'value': ['glance-direct']}}, resp.json)

    def test_usage_info_without_a_quota_filter_has_no_limits(self):
        resp = self.call(self.request('/v2/info/usage'))
        self.assertEqual(200, resp.status_int)
        self.assertEqual({'usage': {}}, resp.json)

    def test_usage_info_answers_the_quota_filter_figures(self):
        """contract section 8: the caller's project, the filter's units."""
        asked = []

        def usage(project_id):
            asked.append(project_id)
            return {'image_size_total': {'usage': 1, 'limit': 2}}
        req = self.request('/v2/info/usage')
        req.environ[keys.QUOTA_USAGE] = usage
        resp = self.call(req)
        self.assertEqual(200, resp.status_int)
        self.assertEqual('application/json', resp.content_type)
        self.assertEqual({'usage': {'image_size_total': {
            'usage': 1, 'limit': 2}}}, resp.json)
        self.assertEqual([PROJECT], asked)

    def test_usage_info_unavailable_figures_are_503(self):
        def usage(project_id):
            raise errors.registry_unavailable()
        req = self.request('/v2/info/usage',
                           headers={'Accept': 'application/json'})
        req.environ[keys.QUOTA_USAGE] = usage
        resp = self.call(req)
        self.assertEqual(503, resp.status_int)
        self.assertIn('Image registry is unavailable.', resp.json['message'])

    def test_usage_info_other_methods_get_405(self):
        resp = self.call(self.request('/v2/info/usage', method='POST'))
        self.assertEqual(405, resp.status_int)
        self.assertEqual('GET', resp.headers['Allow'])

    def test_stores_info_without_multi_store(self):
        resp = self.call(self.request(
            '/v2/info/stores', headers={'Accept': 'application/json'}))
        self.assertEqual(404, resp.status_int)
        self.assertIn('Multi backend is not supported at this site.',
                      resp.json['message'])

    def test_missing_context_filter_is_500_naming_it(self):
        req = webob.Request.blank('/v2/images')
        self.assertEqual(500, req.get_response(self.app).status_int)
        self.assertIn('context filter', self.log.output)

    def test_registry_unavailable_is_503(self):
        """contract 3.22."""
        self.useFixture(fixtures.MockPatchObject(
            self.registry, 'get',
            side_effect=registry.RegistryUnavailable('down')))
        resp = self.call(self.request(
            '/v2/images/x', headers={'Accept': 'application/json'}))
        self.assertEqual(503, resp.status_int)
        self.assertIn('Image registry is unavailable.', resp.json['message'])


class ImagesTest(AppTestCase):

    def post(self, body, **kwargs) -> webob.Response:
        kwargs.setdefault('headers', {'Accept': 'application/json'})
        return self.call(self.request('/v2/images', method='POST',
                                      body=body, **kwargs))

    def test_create_as_openstacksdk_does(self):
        resp = self.post({
            'disk_format': 'raw', 'container_format': 'bare',
            'name': 'osc-img', 'owner_specified.openstack.md5': '',
            'owner_specified.openstack.object': 'images/osc-img'})
        self.assertEqual(201, resp.status_int)
        image = resp.json
        self.assertEqual('http://localhost/v2/images/%s' % image['id'],
                         resp.location)
        self.assertEqual('glance-direct',
                         resp.headers['OpenStack-image-import-methods'])
        self.assertNotIn('OpenStack-image-store-ids', resp.headers)
        self.assertEqual('queued', image['status'])
        self.assertEqual('shared', image['visibility'])
        self.assertEqual(PROJECT, image['owner'])
        self.assertEqual('images/osc-img',
                         image['owner_specified.openstack.object'])
        self.assertEqual('/v2/images/%s/file' % image['id'], image['file'])
        self.assertEqual('/v2/schemas/image', image['schema'])
        self.assertNotIn('stores', image)
        self.assertRegex(image['created_at'],
                         r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')

    def test_oversized_json_body_refused_before_reading(self):
        """A metadata body above the limit is a 413, never buffered."""
        req = self.request('/v2/images', method='POST',
                           headers={'Accept': 'application/json'})
        req.content_type = 'application/json'
        req.environ['CONTENT_LENGTH'] = str(images.MAX_JSON_BODY + 1)
        req.environ['wsgi.input'] = ExplodingInput()
        resp = self.call(req)
        self.assertEqual(413, resp.status_int)
        self.assertIn('at most %d bytes' % images.MAX_JSON_BODY,
                      resp.json['message'])
        self.assertEqual([], self.registry.list(
            project_id=PROJECT, is_admin=True, filters={}, limit=10,
            marker=None))

    def test_oversized_chunked_json_body_read_only_to_the_limit(self):
        body = io.BytesIO(b'{"name": "' + b'x' * (2 * images.MAX_JSON_BODY))
        req = self.request('/v2/images', method='POST',
                           headers={'Accept': 'application/json'})
        req.content_type = 'application/json'
        req.environ.pop('CONTENT_LENGTH', None)
        req.environ['HTTP_TRANSFER_ENCODING'] = 'chunked'
        req.environ['wsgi.input_terminated'] = True
        req.environ['wsgi.input'] = body
        resp = self.call(req)
        self.assertEqual(413, resp.status_int)
        self.assertEqual(images.MAX_JSON_BODY + 1, body.tell())

    def test_json_body_at_the_limit_is_read(self):
        body = json.dumps({'name': 'edge', 'disk_format': 'raw',
                           'container_format': 'bare'}).encode()
        body += b' ' * (images.MAX_JSON_BODY - len(body))
        resp = self.post(body)
        self.assertEqual(201, resp.status_int)
        self.assertEqual('edge', resp.json['name'])

    def test_image_json_validates_against_the_schema(self):
        """contract 7: python-glanceclient validates images so."""
        import jsonschema
        schema = self.call(self.request('/v2/schemas/image')).json
        image = self.post({'name': 'x', 'disk_format': 'raw',
                           'container_format': 'bare', 'extra': 'v'}).json
        jsonschema.validate(image, schema)

    def test_read_only_attribute_is_403(self):
        for key in ('status', 'size', 'checksum', 'self'):
            resp = self.post({'name': 'x', key: 'active'})
            self.assertEqual(403, resp.status_int)
            self.assertIn("Attribute '%s' is read-only." % key,
                          resp.json['message'])

    def test_schema_mismatch_and_malformed_json_are_400(self):
        resp = self.post({'disk_format': 'floppy'})
        self.assertEqual(400, resp.status_int)
        self.assertIn("Provided object does not match schema 'image'",
                      resp.json['message'])
        self.assertEqual(400, self.post({'prop': 5}).status_int)
        resp = self.post(b'{not json')
        self.assertIn('Malformed JSON in request body.',
                      resp.json['message'])

    def test_other_projects_owner_is_403(self):
        resp = self.post({'name': 'x', 'owner': OTHER})
        self.assertEqual(403, resp.status_int)

    def test_reader_cannot_create(self):
        resp = self.post({'name': 'x'}, roles=('reader',))
        self.assertEqual(403, resp.status_int)
        self.assertIn('You are not authorized to complete add_image '
                      'action.', resp.json['message'])

    def test_duplicate_id_is_409(self):
        image_id = '8a7e3c5e-1c41-4a55-9c39-7d3f4a1b2c3d'
        self.assertEqual(201, self.post({'id': image_id}).status_int)
        self.assertEqual(409, self.post({'id': image_id}).status_int)

    def test_show_and_invisible_is_404(self):
        mine = self.create()
        resp = self.call(self.request('/v2/images/' + mine['id']))
        self.assertEqual(mine['id'], resp.json['id'])
        other = self.create(owner=OTHER)
        resp = self.call(self.request(
            '/v2/images/' + other['id'],
            headers={'Accept': 'application/json'}))
        self.assertEqual(404, resp.status_int)
        self.assertIn('No image found with ID %s' % other['id'],
                      resp.json['message'])

    def test_list_filters_and_pages(self):
        first = self.create(name='a')
        self.create(name='b')
        self.create(name='c', owner=OTHER)
        self.create(name='d', os_hidden=True)
        resp = self.call(self.request('/v2/images?limit=1'))
        body = resp.json
        self.assertEqual(1, len(body['images']))
        self.assertEqual('/v2/images?limit=1', body['first'])
        self.assertEqual('/v2/schemas/images', body['schema'])
        self.assertIn('marker=', body['next'])
        names = {image['name'] for image in self.call(
            self.request('/v2/images')).json['images']}
        self.assertEqual({'a', 'b'}, names)
        named = self.call(self.request('/v2/images?name=a')).json
        self.assertEqual([first['id']],
                         [image['id'] for image in named['images']])
        self.assertNotIn('next', named)
        hidden = self.call(self.request('/v2/images?os_hidden=true')).json
        self.assertEqual(['d'], [i['name'] for i in hidden['images']])

    def test_list_bad_marker_and_limit_are_400(self):
        self.assertEqual(400, self.call(self.request(
            '/v2/images?marker=nope')).status_int)
        self.assertEqual(400, self.call(self.request(
            '/v2/images?limit=x')).status_int)

    def test_list_query_with_a_nul_is_400_on_every_database(self):
        for query in ('name=a%00b', 'marker=%00', 'status=active%00'):
            resp = self.call(self.request(
                '/v2/images?' + query,
                headers={'Accept': 'application/json'}))
            self.assertEqual(400, resp.status_int, query)
            self.assertIn('contains a NUL character', resp.json['message'])

    def test_delete_removes_the_data(self):
        record = self.create()
        stored = self.store.add(record['id'], webob.Request.blank(
            '/', body=b'data').body_file, 4)
        self.registry.transition(record['id'], 'queued', 'active', {
            'size': 4, 'locations': [{'store': 'default',
                                      'url': stored.url}]})
        resp = self.call(self.request('/v2/images/' + record['id'],
                                      method='DELETE'))
        self.assertEqual(204, resp.status_int)
        self.assertNotIn('Content-Type', resp.headers)
        self.assertIsNone(self.registry.get(record['id']))
        self.assertEqual([], os.listdir(self.datadir))

    def test_delete_protected_is_403(self):
        record = self.create(protected=True)
        resp = self.call(self.request(
            '/v2/images/' + record['id'], method='DELETE',
            headers={'Accept': 'application/json'}))
        self.assertEqual(403, resp.status_int)
        self.assertIn('Image %s is protected and cannot be deleted.'
                      % record['id'], resp.json['message'])

    def test_deactivate_and_reactivate(self):
        record = self.create()
        self.registry.transition(record['id'], 'queued', 'active')
        path = '/v2/images/%s/actions/' % record['id']
        resp = self.call(self.request(path + 'deactivate', method='POST'))
        self.assertEqual(204, resp.status_int)
        self.assertEqual('deactivated', self.status_of(record['id']))
        # Again: nothing to do, still 204 (as Glance).
        self.assertEqual(204, self.call(self.request(
            path + 'deactivate', method='POST')).status_int)
        self.assertEqual(204, self.call(self.request(
            path + 'reactivate', method='POST')).status_int)
        self.assertEqual('active', self.status_of(record['id']))

    def test_deactivate_queued_is_403(self):
        record = self.create()
        resp = self.call(self.request(
            '/v2/images/%s/actions/deactivate' % record['id'],
            method='POST'))
        self.assertEqual(403, resp.status_int)


class AppFactoryTest(testtools.TestCase):

    def test_builds_a_working_app_with_defaults(self):
        from imgmw import app as app_mod
        state = self.useFixture(fixtures.TempDir()).path
        app = app_mod.app_factory({}, state_dir=state)
        self.addCleanup(app.registry.dispose)
        self.assertTrue(os.path.exists(os.path.join(state, 'imgmw.sqlite')))
        self.assertEqual(os.path.join(os.path.realpath(state), 'images'),
                         app.stores.by_id['default'].datadir)
        req = AppTestCase.with_context(webob.Request.blank(
            '/v2/images', method='POST', body=b'{"name": "x"}'))
        self.assertEqual(201, req.get_response(app).status_int)

    def test_unknown_option_stops_start_up(self):
        from imgmw import app as app_mod
        from imgmw import config
        err = self.assertRaises(config.ConfigError, app_mod.app_factory, {},
                                read_chunk=5)
        self.assertIn('read_chunk', str(err))


class PatchTest(AppTestCase):

    MEDIA = 'application/openstack-images-v2.1-json-patch'

    def patch(self, image_id, changes, content_type=MEDIA, **kwargs):
        req = self.request('/v2/images/' + image_id, method='PATCH',
                           headers={'Accept': 'application/json'}, **kwargs)
        req.body = json.dumps(changes).encode()
        req.content_type = content_type
        return self.call(req)

    def test_add_replace_remove(self):
        record = self.create(properties={'old': 'x'})
        resp = self.patch(record['id'], [
            {'op': 'replace', 'path': '/name', 'value': 'new'},
            {'op': 'add', 'path': '/tags', 'value': ['a', 'b']},
            {'op': 'add', 'path': '/os_hidden', 'value': True},
            {'op': 'add', 'path': '/extra', 'value': 'v'},
            {'op': 'remove', 'path': '/old'}])
        self.assertEqual(200, resp.status_int)
        image = resp.json
        self.assertEqual('new', image['name'])
        self.assertEqual(['a', 'b'], image['tags'])
        self.assertTrue(image['os_hidden'])
        self.assertEqual('v', image['extra'])
        self.assertNotIn('old', image)
        stored = self.registry.get(record['id'])
        self.assertEqual({'extra': 'v'}, stored['properties'])

    def test_wrong_media_type_is_415(self):
        record = self.create()
        resp = self.patch(record['id'], [], content_type='application/json')
        self.assertEqual(415, resp.status_int)

    def test_read_only_is_403_and_absent_is_409(self):
        record = self.create()
        resp = self.patch(record['id'], [
            {'op': 'replace', 'path': '/status', 'value': 'active'}])
        self.assertEqual(403, resp.status_int)
        self.assertIn("Attribute 'status' is read-only.",
                      resp.json['message'])
        resp = self.patch(record['id'], [{'op': 'remove', 'path': '/nope'}])
        self.assertEqual(409, resp.status_int)

    def test_formats_locked_once_active(self):
        record = self.create()
        self.registry.transition(record['id'], 'queued', 'active')
        resp = self.patch(record['id'], [
            {'op': 'replace', 'path': '/disk_format', 'value': 'qcow2'}])
        self.assertEqual(403, resp.status_int)

    def test_schema_mismatch_is_400(self):
        record = self.create()
        resp = self.patch(record['id'], [
            {'op': 'replace', 'path': '/visibility', 'value': 'everyone'}])
        self.assertEqual(400, resp.status_int)

    def test_other_projects_public_image_is_403(self):
        record = self.create(owner=OTHER, visibility='public')
        resp = self.patch(record['id'], [
            {'op': 'replace', 'path': '/name', 'value': 'mine'}])
        self.assertEqual(403, resp.status_int)
        self.assertIn('modify_image', resp.json['message'])
