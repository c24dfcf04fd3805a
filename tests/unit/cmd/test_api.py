"""Tests of imgmw-api: arguments, overrides, loopback refusal, loading."""

import io
import json
import os
from unittest import mock

import fixtures
from gunicorn import arbiter
import testtools
import webob

from imgmw.cmd import api
from imgmw import wsgi


PASTE = """\
[DEFAULT]
marker = from-file

[composite:noauth]
use = egg:Paste#urlmap
/ = main

[app:main]
paste.app_factory = tests.unit.cmd.test_api:app_factory
"""


def app_factory(global_conf, **local_conf):
    """A paste app that answers the global_conf it was built with."""
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [json.dumps(global_conf).encode()]
    return app


def loaded_global_conf(app) -> dict:
    return webob.Request.blank('/').get_response(app).json


class PasteFile(fixtures.Fixture):
    """``PASTE`` written to ``path`` in a temporary directory ``dir``."""

    def _setUp(self):
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, 'api-paste.ini')
        with open(self.path, 'w') as handle:
            handle.write(PASTE)


class TestArguments(testtools.TestCase):

    def setUp(self):
        super().setUp()
        paste = self.useFixture(PasteFile())
        self.tmp, self.config_file = paste.dir, paste.path

    def parse(self, *argv):
        return api.parse_args(['--config-file', self.config_file] +
                              list(argv))

    def refused(self, *argv):
        stderr = self.useFixture(fixtures.MonkeyPatch(
            'sys.stderr', io.StringIO())).new_value
        err = self.assertRaises(SystemExit, self.parse, *argv)
        self.assertEqual(2, err.code)
        return stderr.getvalue()

    def test_defaults_are_the_embedded_service(self):
        args = self.parse()
        self.assertEqual('noauth', args.pipeline)
        self.assertEqual(['127.0.0.1:9292'], args.bind)
        self.assertEqual('gthread', args.worker_class)
        self.assertEqual({}, args.options)
        self.assertFalse(args.allow_insecure_noauth)

    def test_default_config_file_is_the_clone_copy(self):
        self.useFixture(fixtures.MonkeyPatch(
            'imgmw.wsgi.CONFIG_FILE_CANDIDATES',
            ('missing.ini', self.config_file)))
        args = api.parse_args([])
        self.assertEqual(self.config_file, args.config_file)

    def test_options_become_a_mapping(self):
        args = self.parse('-o', 'database_connection=sqlite:///x.db',
                          '--option', 'image_size_cap = 10GB',
                          '-o', 'empty=')
        self.assertEqual({'database_connection': 'sqlite:///x.db',
                          'image_size_cap': '10GB', 'empty': ''},
                         args.options)

    def test_option_without_equals_is_refused(self):
        message = self.refused('-o', 'image_size_cap')
        self.assertIn("expected key=value, got 'image_size_cap'", message)

    def test_workers_must_be_positive(self):
        message = self.refused('--workers', '0')
        self.assertIn('expected a positive integer', message)

    def test_noauth_on_any_address_is_refused(self):
        message = self.refused('--bind', '0.0.0.0:9292')
        self.assertIn('noauth pipeline trusts every caller', message)
        self.assertIn('0.0.0.0:9292', message)
        self.assertIn('--allow-insecure-noauth', message)

    def test_noauth_on_a_public_address_is_refused(self):
        for bind in ('192.0.2.10:9292', '[::]:9292', '[2001:db8::1]:80',
                     'host.invalid:9292', 'fd://3'):
            self.assertIn('is not a loopback address',
                          self.refused('--bind', bind), bind)

    def test_one_public_bind_among_loopback_is_refused(self):
        message = self.refused('--bind', '127.0.0.1:9292',
                               '--bind', '10.0.0.1:9292')
        self.assertIn('10.0.0.1:9292', message)
        self.assertNotIn('127.0.0.1:9292', message)

    def test_noauth_on_loopback_is_served(self):
        for bind in ('127.0.0.1:9292', '127.0.0.2:1', '[::1]:9292', '::1',
                     'localhost:9292', 'unix:/run/imgmw.sock'):
            args = self.parse('--bind', bind)
            self.assertEqual([bind], args.bind)

    def test_noauth_on_any_address_when_allowed(self):
        args = self.parse('--bind', '0.0.0.0:9292',
                          '--allow-insecure-noauth')
        self.assertEqual(['0.0.0.0:9292'], args.bind)

    def test_keystone_pipeline_on_any_address(self):
        args = self.parse('--pipeline', 'keystone', '--bind', '0.0.0.0:80')
        self.assertEqual('keystone', args.pipeline)


class TestServer(testtools.TestCase):

    def setUp(self):
        super().setUp()
        paste = self.useFixture(PasteFile())
        self.tmp, self.config_file = paste.dir, paste.path

    def server(self, *argv):
        args = api.parse_args(['--config-file', self.config_file] +
                              list(argv))
        conf = wsgi.global_conf(args.config_file, args.options,
                                os.path.join(self.tmp, 'state'))
        return api.Server(args, conf)

    def test_gunicorn_settings(self):
        server = self.server('--bind', '127.0.0.1:1234', '--workers', '3',
                             '--threads', '5', '--access-log', '')
        self.assertEqual(['127.0.0.1:1234'], server.cfg.bind)
        self.assertEqual(3, server.cfg.workers)
        self.assertEqual(5, server.cfg.threads)
        self.assertFalse(server.cfg.preload_app)
        self.assertEqual(300, server.cfg.timeout)
        self.assertIsNone(server.cfg.accesslog)
        self.assertTrue(server.cfg.worker_class_str.endswith('gthread'))
        if 'control_socket_disable' in server.cfg.settings:
            self.assertTrue(server.cfg.control_socket_disable)
        self.assertEqual(1000, server.cfg.worker_connections)
        self.assertFalse(server.cfg.reuse_port)

    def test_spreading_keep_alive_connections(self):
        server = self.server('--worker-connections', '16', '--reuse-port')
        self.assertEqual(16, server.cfg.worker_connections)
        self.assertTrue(server.cfg.reuse_port)

    def test_load_passes_overrides_as_global_conf(self):
        server = self.server('-o', 'marker=from-command-line',
                             '-o', 'extra=1')
        conf = loaded_global_conf(server.load())
        self.assertEqual('from-command-line', conf['marker'])
        self.assertEqual('1', conf['extra'])
        self.assertEqual(os.path.join(self.tmp, 'state'), conf['state_dir'])

    def test_load_without_overrides_keeps_the_file(self):
        conf = loaded_global_conf(self.server().load())
        self.assertEqual('from-file', conf['marker'])

    def test_unknown_pipeline_stops_the_server(self):
        server = self.server('--pipeline', 'missing')
        err = self.assertRaises(SystemExit, server.load)
        self.assertEqual(arbiter.Arbiter.APP_LOAD_ERROR, err.code)


class TestMain(testtools.TestCase):

    def test_main_runs_gunicorn_with_state_dir(self):
        paste = self.useFixture(PasteFile())
        config_file = paste.path
        state = os.path.join(paste.dir, 'nested', 'state')
        with mock.patch.object(api.Server, 'run') as run, \
                mock.patch('logging.basicConfig') as basic_config:
            api.main(['--config-file', config_file, '--state-dir', state])
        run.assert_called_once_with()
        basic_config.assert_called_once_with(
            level='INFO', stream=mock.ANY, format=api.LOG_FORMAT)
        self.assertTrue(os.path.isdir(state))

    def test_missing_config_file_is_an_error(self):
        err = self.assertRaises(
            SystemExit, api.main, ['--config-file', '/nonexistent.ini'])
        self.assertIn('cannot read the paste configuration /nonexistent.ini',
                      str(err.code))
