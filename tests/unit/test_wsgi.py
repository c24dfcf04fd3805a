"""Tests of imgmw.wsgi: configuration lookup and the lazy application."""

import os
import threading

import fixtures
import testtools
import webob

from imgmw import config
from imgmw import wsgi
from tests.unit.cmd import test_api


class TestGlobalConf(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def write(self, text):
        path = os.path.join(self.tmp, 'api-paste.ini')
        with open(path, 'w') as handle:
            handle.write(text)
        return path

    def test_state_dir_defaults_to_the_argument_and_is_created(self):
        path = self.write('[DEFAULT]\n')
        state = os.path.join(self.tmp, 'a', 'b')
        conf = wsgi.global_conf(path, {'x': '1'}, state)
        self.assertEqual({'x': '1', 'state_dir': state}, conf)
        self.assertTrue(os.path.isdir(state))

    def test_state_dir_of_the_file_wins_over_the_argument(self):
        path = self.write('[DEFAULT]\nstate_dir = %(here)s/var\n')
        conf = wsgi.global_conf(path, {}, os.path.join(self.tmp, 'arg'))
        self.assertEqual(os.path.join(self.tmp, 'var'), conf['state_dir'])
        self.assertFalse(os.path.exists(os.path.join(self.tmp, 'arg')))

    def test_override_wins_over_the_file(self):
        path = self.write('[DEFAULT]\nstate_dir = %(here)s/var\n')
        state = os.path.join(self.tmp, 'override')
        conf = wsgi.global_conf(path, {'state_dir': state})
        self.assertEqual(state, conf['state_dir'])
        self.assertTrue(os.path.isdir(state))

    def test_relative_state_dir_is_made_absolute(self):
        path = self.write('[DEFAULT]\n')
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.tmp)
        conf = wsgi.global_conf(path)
        self.assertEqual(os.path.join(self.tmp, 'state'), conf['state_dir'])

    def test_missing_file(self):
        err = self.assertRaises(ValueError, wsgi.global_conf,
                                os.path.join(self.tmp, 'missing.ini'))
        self.assertIn('cannot read the paste configuration', str(err))

    def test_default_config_file_takes_the_first_existing(self):
        path = self.write('[DEFAULT]\n')
        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.wsgi.CONFIG_FILE_CANDIDATES',
            (os.path.join(self.tmp, 'no.ini'), path)))
        self.assertEqual(path, wsgi.default_config_file())


class TestCheckKeys(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.paste = self.useFixture(test_api.PasteFile())

    def test_declared_and_foreign_keys_load(self):
        app = wsgi.load(self.paste.path, 'noauth',
                        {'image_size_cap': '10GB', 'extra': '1'})
        self.assertEqual('10GB',
                         test_api.loaded_global_conf(app)['image_size_cap'])

    def test_an_unknown_override_stops_the_load(self):
        err = self.assertRaises(config.ConfigError, wsgi.load,
                                self.paste.path, 'noauth',
                                {'image_size_caps': '10GB'})
        self.assertIn('unknown option(s) image_size_caps (did you mean '
                      'image_size_cap?)', str(err))

    def test_an_unknown_key_of_the_file_stops_the_load(self):
        with open(self.paste.path) as handle:
            text = handle.read().replace('marker = from-file',
                                         'marker = from-file\ntypo = 1')
        with open(self.paste.path, 'w') as handle:
            handle.write(text)
        err = self.assertRaises(config.ConfigError, wsgi.check_keys,
                                self.paste.path, {})
        self.assertIn('unknown option(s) typo;', str(err))


class TestApplication(testtools.TestCase):

    def setUp(self):
        super().setUp()
        paste = self.useFixture(test_api.PasteFile())
        self.state = os.path.join(paste.dir, 'state')
        self.useFixture(fixtures.EnvironmentVariable(
            'IMGMW_CONFIG_FILE', paste.path))
        self.useFixture(fixtures.EnvironmentVariable(
            'IMGMW_PIPELINE', 'noauth'))
        self.useFixture(fixtures.EnvironmentVariable(
            'IMGMW_STATE_DIR', self.state))

    def test_init_application_follows_the_environment(self):
        conf = test_api.loaded_global_conf(wsgi.init_application())
        self.assertEqual(self.state, conf['state_dir'])
        self.assertEqual('from-file', conf['marker'])

    def test_lazy_application_loads_once_on_first_call(self):
        loads = []

        def loader():
            loads.append(1)
            return wsgi.init_application()

        app = wsgi.LazyApplication(loader)
        self.assertEqual([], loads)
        threads = [threading.Thread(
            target=webob.Request.blank('/').get_response, args=(app,))
            for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(200, webob.Request.blank('/').get_response(
            app).status_int)
        self.assertEqual([1], loads)

    def test_a_target_that_is_no_path_is_400(self):
        """``OPTIONS * HTTP/1.1``: paste's urlmap would fail an assert."""
        app = wsgi.init_application()
        req = webob.Request.blank('/', method='OPTIONS')
        req.environ['PATH_INFO'] = '*'
        resp = req.get_response(app)
        self.assertEqual(400, resp.status_int)
        self.assertIn('The request target must be a path.', resp.text)
