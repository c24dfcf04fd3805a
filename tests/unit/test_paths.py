"""Tests of imgmw.paths: the routes every filter and the app agree on."""

import testtools

from imgmw import paths


class RouteTest(testtools.TestCase):

    def test_image_routes(self):
        for path, kind in (
                ('/v2/images/abc/file', paths.IMAGE_DATA),
                ('/v2/images/abc/stage', paths.STAGE),
                ('/v2/images/abc/import', paths.IMPORT),
                ('/v2/images/abc/actions/deactivate', paths.DEACTIVATE),
                ('/v2/images/abc/actions/reactivate', paths.REACTIVATE),
                ('/v2/images/abc', paths.IMAGE)):
            self.assertEqual(paths.Route(kind, 'abc'), paths.route(path))

    def test_other_routes(self):
        for path, kind in (
                ('/v2/images', paths.IMAGES),
                ('/v2/info/stores', paths.STORES_INFO),
                ('/v2/info/stores/detail', paths.STORES_DETAIL),
                ('/v2/info/import', paths.IMPORT_INFO),
                ('/v2/info/usage', paths.USAGE_INFO),
                ('/v2/schemas/image', paths.SCHEMA_IMAGE),
                ('/v2/schemas/images', paths.SCHEMA_IMAGES),
                ('/', paths.VERSIONS), ('/versions', paths.VERSIONS)):
            self.assertEqual(paths.Route(kind), paths.route(path))

    def test_minor_versions_and_trailing_slash(self):
        expected = paths.Route(paths.IMAGE_DATA, 'x')
        for path in ('/v2.0/images/x/file', '/v2.13/images/x/file/',
                     '/v2/images/x/file/'):
            self.assertEqual(expected, paths.route(path))

    def test_tags_tasks_and_stores(self):
        self.assertEqual(paths.Route(paths.TAG, 'i', 'x86'),
                         paths.route('/v2/images/i/tags/x86'))
        self.assertEqual(paths.Route(paths.IMAGE_TASKS, 'i'),
                         paths.route('/v2.12/images/i/tasks/'))
        self.assertEqual(paths.Route(paths.STORE_IMAGE, 'i', 'fast'),
                         paths.route('/v2/stores/fast/i'))

    def test_empty_image_id_names_nothing(self):
        for path in ('/v2/images/', '/v2.13/images/', '/v2/images/i/tags/',
                     '/v2/stores/fast/', '/v2/stores//i'):
            self.assertIsNone(paths.route(path), path)

    def test_unknown_paths(self):
        for path in ('/v1/images', '/v2', '/v2/images/a/file/b',
                     '/v2.x/images', '/v2/imagesx', '/healthcheck'):
            self.assertIsNone(paths.route(path), path)

    def test_every_kind_has_its_methods(self):
        self.assertEqual(set(paths.KINDS), set(paths.ALLOWED))

    def test_is_data_upload_only_for_put_of_data(self):
        def environ(method, path):
            return {'REQUEST_METHOD': method, 'PATH_INFO': path}
        self.assertEqual(paths.Route(paths.STAGE, 'i'), paths.is_data_upload(
            environ('PUT', '/v2/images/i/stage')))
        self.assertIsNone(paths.is_data_upload(
            environ('GET', '/v2/images/i/file')))
        self.assertIsNone(paths.is_data_upload(
            environ('PUT', '/v2/images/i')))
