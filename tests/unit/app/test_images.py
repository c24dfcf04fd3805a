"""Unit tests of imgmw.app.images: listing queries and JSON-patch forms."""

import datetime

import testtools
import webob
import webob.exc

from imgmw.app import images


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
