"""Listing filters and sorting, JSON-patch forms and the empty image id.

``GET /v2/images`` honours every filter and sort key Glance documents,
answers 400 naming a parameter that is not a filter, and never ignores one
(contract section 1: "When this page is silent, do what Glance does").
"""

import uuid

from tests.functional import base

PATCH_V20 = 'application/openstack-images-v2.0-json-patch'
PATCH_V21 = 'application/openstack-images-v2.1-json-patch'


class TestListFilters(base.FunctionalTest):

    def setUp(self) -> None:
        super().setUp()
        # One catalogue per test, told apart by an extra property.
        self.run_id = uuid.uuid4().hex
        self.images = {}
        for name, disk, container, data, tags in (
                ('small', 'raw', 'bare', b'x' * 10, ['a']),
                ('middle', 'ami', 'bare', b'x' * 100, ['a', 'b']),
                ('large', 'raw', 'ovf', b'x' * 1000, ['b']),
                ('empty', 'iso', 'bare', None, [])):
            image = self.create_image(name=name, disk_format=disk,
                                      container_format=container, tags=tags,
                                      run=self.run_id)
            if data is not None:
                resp = self.upload(image['id'], data)
                self.assertEqual(204, resp.status_code, resp.text)
            self.images[name] = image['id']

    def names(self, query: str = '', status: int = 200) -> list:
        resp = self.request('GET', '/v2/images?run=%s%s'
                            % (self.run_id, query))
        self.assertEqual(status, resp.status_code, resp.text)
        return [image['name'] for image in resp.json()['images']]

    def test_formats(self):
        self.assertEqual(['middle'], self.names('&disk_format=ami'))
        self.assertEqual(['large'], self.names('&container_format=ovf'))
        self.assertEqual(['large', 'small'], sorted(self.names(
            '&disk_format=raw')))
        self.assertEqual(['empty', 'middle'], sorted(self.names(
            '&disk_format=in:ami,iso')))

    def test_sizes(self):
        self.assertEqual(['middle'], self.names('&size=100'))
        self.assertEqual(['large', 'middle'], sorted(self.names(
            '&size_min=100')))
        self.assertEqual(['middle', 'small'], sorted(self.names(
            '&size_max=100')))
        self.assertEqual(['middle'], self.names('&size_min=11&size_max=999'))

    def test_tags_must_all_match(self):
        self.assertEqual(['middle', 'small'], sorted(self.names('&tag=a')))
        self.assertEqual(['middle'], self.names('&tag=a&tag=b'))
        self.assertEqual([], self.names('&tag=c'))

    def test_ids_names_status_and_times(self):
        self.assertEqual(['large', 'small'], sorted(self.names(
            '&id=in:%s,%s' % (self.images['small'], self.images['large']))))
        self.assertEqual(['empty'], self.names('&status=queued'))
        self.assertEqual(['large', 'middle'], sorted(self.names(
            '&name=in:middle,large')))
        created = self.get_image(self.images['small'])['created_at']
        self.assertEqual(4, len(self.names('&created_at=gte:%s' % created)))
        self.assertEqual([], self.names('&created_at=lt:%s' % created))

    def test_protected_and_extra_properties(self):
        self.assertEqual(4, len(self.names('&protected=false')))
        self.assertEqual([], self.names('&protected=true'))
        self.assertEqual([], self.names('&run=other'))

    def test_sort_by_size(self):
        self.assertEqual(['large', 'middle', 'small', 'empty'],
                         self.names('&sort_key=size&sort_dir=desc'))
        self.assertEqual(['large', 'middle', 'small', 'empty'],
                         self.names('&sort=size:desc'))
        self.assertEqual(['empty', 'small', 'middle', 'large'],
                         self.names('&sort=size:asc'))
        self.assertEqual(['large', 'small', 'empty', 'middle'],
                         self.names('&sort=disk_format:desc,name:asc'))

    def test_sort_pages_follow_the_order(self):
        seen, path = [], '/v2/images?run=%s&sort=size:asc&limit=1' % (
            self.run_id)
        while path:
            body = self.request('GET', path).json()
            seen += [image['name'] for image in body['images']]
            path = body.get('next')
        self.assertEqual(['empty', 'small', 'middle', 'large'], seen)

    def test_unknown_filters_and_bad_values_are_400(self):
        for query, message in (
                ('&stores=fast', 'Unknown filter: stores'),
                ('&os_glance_stage_host=x',
                 'Unknown filter: os_glance_stage_host'),
                ('&name_min=3', 'Unknown filter: name_min'),
                ('&size_min=big', 'non-numeric'),
                ('&size=big', 'Invalid value for size'),
                ('&changes-since=2020-01-01', 'changes-since'),
                ('&disk_format=like:raw', 'unknown operator'),
                ('&created_at=gte:yesterday', 'ISO 8601'),
                ('&protected=maybe', 'Valid values are'),
                ('&visibility=everyone', 'Invalid visibility value'),
                ('&sort_key=checksum', 'Invalid sort key: checksum'),
                ('&sort=size:up', 'Invalid sort direction: up'),
                ('&sort=size&sort_key=name', 'cannot be combined'),
                ('&sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc'
                 '&sort_dir=asc', 'Number of sort dirs'),
                ('&member_status=maybe', 'Invalid status: maybe')):
            resp = self.request('GET', '/v2/images?run=%s%s'
                                % (self.run_id, query))
            self.assert_error(resp, 400, message)


class TestPatchForms(base.FunctionalTest):

    def patch(self, image_id: str, changes, media_type: str):
        return self.request('PATCH', '/v2/images/%s' % image_id,
                            json=changes,
                            headers={'Content-Type': media_type})

    def test_v2_0_takes_the_operation_as_member(self):
        image = self.create_image(protected=True)
        resp = self.patch(image['id'], [
            {'replace': '/name', 'value': 'renamed'},
            {'replace': '/protected', 'value': False},
            {'add': '/colour', 'value': 'blue'}], PATCH_V20)
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual('renamed', resp.json()['name'])
        self.assertFalse(resp.json()['protected'])
        self.assertEqual('blue', resp.json()['colour'])
        resp = self.patch(image['id'], [{'remove': '/colour'}], PATCH_V20)
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertNotIn('colour', resp.json())
        # Unprotected by the v2.0 client: it can be deleted.
        resp = self.request('DELETE', '/v2/images/%s' % image['id'])
        self.assertEqual(204, resp.status_code, resp.text)

    def test_v2_0_takes_the_op_form_too(self):
        image = self.create_image()
        resp = self.patch(image['id'], [
            {'op': 'replace', 'path': '/name', 'value': 'x'}], PATCH_V20)
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual('x', resp.json()['name'])

    def test_old_form_with_two_operations_is_400(self):
        image = self.create_image()
        resp = self.patch(image['id'], [
            {'replace': '/name', 'add': '/name', 'value': 'x'}], PATCH_V20)
        self.assert_error(resp, 400, 'only one member')

    def test_only_an_admin_gives_an_image_away(self):
        image = self.create_image()
        change = [{'op': 'replace', 'path': '/owner', 'value': 'other'}]
        resp = self.request(
            'PATCH', '/v2/images/%s' % image['id'], json=change,
            headers={'Content-Type': PATCH_V21, 'X-Roles': 'member,reader',
                     'X-Project-Id': image['owner']})
        self.assert_error(resp, 403, 'not permitted to modify')
        resp = self.patch(image['id'], [{'replace': '/owner',
                                         'value': 'other'}], PATCH_V20)
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual('other', resp.json()['owner'])

    def test_v2_1_refuses_the_old_form(self):
        image = self.create_image()
        resp = self.patch(image['id'], [
            {'replace': '/name', 'value': 'x'}], PATCH_V21)
        self.assertEqual(400, resp.status_code, resp.text)
        self.assertEqual(image['name'], self.get_image(image['id'])['name'])


class TestEmptyImageId(base.FunctionalTest):

    def test_empty_id_is_404(self):
        self.create_image()
        for method in ('GET', 'DELETE', 'PATCH'):
            resp = self.request(method, '/v2/images/')
            self.assertEqual(404, resp.status_code, (method, resp.text))
        self.assertEqual(200, self.request('GET', '/v2/images').status_code)
