"""Tests of imgmw.app.images: bodies the schema accepts and no column holds;
listing queries and JSON-patch forms.

Each case of the first kind is a body the image schema accepts (asserted)
that a database cannot store as it is: the check refuses it with 400 and its
message before the registry is called. The functional tests and the fault
suite's fuzz run send the same bodies to real servers on every database.
"""

import datetime
import json

import jsonschema
from oslo_context import context as oslo_context
import testtools
import webob
import webob.exc

from imgmw.app import images

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
UUID = '6e0f2a4c-5b7d-4e8f-9a1b-2c3d4e5f6a7b'

#: (body, message) of bodies the schema accepts and the registry cannot
#: store.
REFUSED = [
    ({'min_ram': 2 ** 31},
     "'min_ram' value out of range, must not exceed 2147483647."),
    ({'min_disk': 2 ** 63},
     "'min_disk' value out of range, must not exceed 2147483647."),
    ({'min_disk': -1},
     "Invalid value '-1' for parameter 'min_disk': Cannot be a negative "
     "value"),
    ({'min_ram': -2 ** 31 - 1},
     "Invalid value '-2147483649' for parameter 'min_ram'"),
    ({'name': 'a\x00b'}, 'Invalid value for name: it contains a NUL '
     'character.'),
    ({'tags': ['ok', '\x00']}, 'Invalid value for tags: it contains a NUL'),
    ({'prop': 'v\x00'}, 'Invalid value for prop: it contains a NUL'),
    ({'p\x00': 'v'}, 'Invalid value for a property name: it contains a NUL'),
    ({'id': UUID + '\n'}, "Provided object does not match schema 'image': "
     "'%s\\n' does not match" % UUID),
    ({'k' * 256: 'v'}, 'Property name %s... is too long: at most 255 '
     'characters.' % ('k' * 32)),
    ({'p': 'v' * 65536}, 'Property p is too long: at most 65535 bytes of '
     'UTF-8.'),
    ({'p': '\U0001f600' * 16384}, 'Property p is too long'),
    ({'tags': ['a', 'a ']}, "Tags 'a' and 'a ' differ only in trailing "
     "spaces"),
    ({'a': '1', 'a  ': '2'}, "Property names 'a' and 'a  ' differ only"),
]

#: Bodies at the limits, stored on every database.
ACCEPTED = [
    {'min_ram': 2 ** 31 - 1, 'min_disk': 0},
    {'k' * 255: 'v' * 65535},
    {'p': '\U0001f600' * 16383},
    {'q': '\u00e9' * 32767},
    {'id': UUID.upper(), 'name': '\U0001f600' * 255},
    {'tags': ['a', 'A', ' a', 'a\t'], 'a': '1', 'A': '2', 'a\t': '3'},
]


def context():
    return oslo_context.RequestContext(project_id='p1', roles=['member'])


class CheckStorableTest(testtools.TestCase):

    def assert_schema_valid(self, body):
        jsonschema.Draft4Validator(images.schema('image')).validate(body)

    def test_refused_bodies_are_400_with_their_message(self):
        for body, message in REFUSED:
            self.assert_schema_valid(body)
            err = self.assertRaises(webob.exc.HTTPBadRequest,
                                    images.creation_values, body, context())
            self.assertIn(message, err.explanation, body.keys())

    def test_bodies_at_the_limits_pass(self):
        for body in ACCEPTED:
            values = images.creation_values(body, context())
            self.assertEqual('p1', values['owner'])

    def test_patch_results_are_checked_too(self):
        record = {key: None for key in images.BASE_FIELDS}
        record.update(id=UUID, status='queued', visibility='shared',
                      protected=False, os_hidden=False, min_ram=0,
                      min_disk=0, tags=[], properties={'os_glance_x': 'h'},
                      created_at=NOW, updated_at=NOW, locations=[])
        for body, message in REFUSED:
            if 'id' in body:
                continue  # the id is never patched (403)
            changes = [{'op': 'add', 'path': '/' + key, 'value': value}
                       for key, value in body.items()]
            err = self.assertRaises(webob.exc.HTTPBadRequest,
                                    images.update_values, record, changes)
            self.assertIn(message, err.explanation, body.keys())
        values = images.update_values(record, [
            {'op': 'add', 'path': '/min_ram', 'value': 2 ** 31 - 1}])
        self.assertEqual(2 ** 31 - 1, values['min_ram'])
        self.assertEqual({'os_glance_x': 'h'}, values['properties'])

    def test_lone_surrogates_are_refused_in_any_json_body(self):
        for raw in (b'{"name": "\\ud800"}', b'{"\\udfff": "v"}',
                    b'[{"op": "add", "path": "/x", "value": ["\\udbff"]}]',
                    b'{"method": {"name": "a\\ud800b"}}'):
            err = self.assertRaises(webob.exc.HTTPBadRequest,
                                    images.parse_json, raw)
            self.assertIn('a string holds a lone surrogate',
                          err.explanation)
            # The answer itself is UTF-8 text.
            err.explanation.encode('utf-8')

    def test_surrogate_pairs_are_text(self):
        self.assertEqual({'name': '\U0010fc00'},
                         images.parse_json(b'{"name": "\\udbff\\udc00"}'))
        self.assertEqual(['\U0001f600'], images.parse_json(
            json.dumps(['\U0001f600']).encode()))


def query(string: str) -> dict:
    return images.list_query(webob.Request.blank('/?' + string).GET,
                             25, 1000)


class ListQueryTest(testtools.TestCase):

    def test_defaults(self):
        found = query('')
        self.assertEqual((['created_at'], ['desc'], 25, None),
                         (found['sort_key'], found['sort_dir'],
                          found['limit'], found['marker']))
        self.assertEqual({'conditions': [], 'properties': [], 'tags': []},
                         found['filters'])

    def test_filters(self):
        filters = query(
            'disk_format=in:raw,"a,b"&size_min=5&size_max=9&tag=x&tag=y'
            '&created_at=gt:2024-01-02T03:04:05Z&protected=true&colour=red'
            '&name=n&os_hidden=true&visibility=all')['filters']
        self.assertEqual([
            ('disk_format', 'in', ['raw', 'a,b']), ('size', 'gte', 5),
            ('size', 'lte', 9),
            ('created_at', 'gt', datetime.datetime(
                2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)),
            ('protected', 'eq', True), ('name', 'eq', 'n')],
            filters['conditions'])
        self.assertEqual(['x', 'y'], filters['tags'])
        self.assertEqual([('colour', 'red')], filters['properties'])
        self.assertEqual((True, 'all'), (filters['os_hidden'],
                                         filters['visibility']))

    def test_an_iso_time_alone_is_equality(self):
        conditions = query('updated_at=2024-01-02T03:04:05')['filters'][
            'conditions']
        self.assertEqual([('updated_at', 'eq', datetime.datetime(
            2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))],
            conditions)

    def test_a_colon_in_a_name_needs_eq(self):
        self.assertEqual([('name', 'eq', 'ubuntu:22.04')], query(
            'name=eq:ubuntu:22.04')['filters']['conditions'])
        self.assertRaises(webob.exc.HTTPBadRequest, query,
                          'name=ubuntu:22.04')

    def test_sorting_syntaxes(self):
        found = query('sort=size:asc,name')
        self.assertEqual((['size', 'name'], ['asc', 'desc']),
                         (found['sort_key'], found['sort_dir']))
        found = query('sort_key=size&sort_key=name&sort_dir=asc')
        self.assertEqual((['size', 'name'], ['asc']),
                         (found['sort_key'], found['sort_dir']))

    def test_refusals_name_the_parameter(self):
        for string, message in (
                ('stores=a', 'Unknown filter: stores'),
                ('locations=a', 'Unknown filter: locations'),
                ('os_glance_importing_to_stores=a', 'Unknown filter'),
                ('min_ram_max=x', 'non-numeric'),
                ('id=in:"open', 'quote is not closed'),
                ('status=gt:active', "unknown operator 'gt'"),
                ('sort=holder', 'Invalid sort key: holder')):
            err = self.assertRaises(webob.exc.HTTPBadRequest, query, string)
            self.assertIn(message, str(err), string)


class PatchFormsTest(testtools.TestCase):

    V20, V21 = images.PATCH_MEDIA_TYPES[1], images.PATCH_MEDIA_TYPES[0]

    def test_old_form_becomes_op_form_for_v2_0(self):
        self.assertEqual(
            [{'op': 'replace', 'path': '/name', 'value': 'x'},
             {'op': 'remove', 'path': '/a'},
             {'op': 'add', 'path': '/b', 'value': 1}],
            images.patch_operations([
                {'replace': '/name', 'value': 'x'}, {'remove': '/a'},
                {'op': 'add', 'path': '/b', 'value': 1}], self.V20))

    def test_v2_1_and_odd_bodies_are_left_as_they_are(self):
        changes = [{'replace': '/name', 'value': 'x'}]
        self.assertEqual(changes, images.patch_operations(changes, self.V21))
        for body in ({'a': 1}, 'x', [1, None]):
            self.assertEqual(body, images.patch_operations(body, self.V20))

    def test_two_operation_members_are_400(self):
        self.assertRaises(webob.exc.HTTPBadRequest, images.patch_operations,
                          [{'add': '/a', 'remove': '/a'}], self.V20)
