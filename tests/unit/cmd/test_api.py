"""Tests of imgmw-api: arguments, overrides, loopback refusal, loading."""

import io
import json
import os
from unittest import mock

import fixtures
from gunicorn import arbiter
from gunicorn.workers import gthread
import testtools
import webob

from imgmw.cmd import api
from imgmw.cmd import worker
from imgmw import wsgi


PASTE = """\
[DEFAULT]
foreign_options = marker, extra
marker = from-file

[composite:noauth]
use = egg:Paste#urlmap
/ = main

[app:main]
paste.app_factory = tests.unit.cmd.test_api:app_factory
"""


#: ``PASTE`` with imgmw's size filter in front of the app.
PASTE_WITH_SIZE = PASTE.replace('/ = main', '/ = sized') + """
[pipeline:sized]
pipeline = size main

[filter:size]
use = egg:imgmw#size
"""


def failing_app_factory(global_conf, **local_conf):
    raise RuntimeError('no store at all\n(second line)')


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

    def __init__(self, text=PASTE):
        super().__init__()
        self.text = text

    def _setUp(self):
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, 'api-paste.ini')
        with open(self.path, 'w') as handle:
            handle.write(self.text)


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
        self.assertEqual('imgmw.cmd.worker.ThreadWorker', args.worker_class)
        self.assertEqual(5, args.keepalive)
        self.assertEqual(10, args.header_timeout)
        self.assertEqual(30, args.body_timeout)
        self.assertEqual(65536, args.body_window)
        self.assertEqual(1024, args.body_min_rate)
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
        self.assertEqual(5, server.cfg.keepalive)
        self.assertIsNone(server.cfg.accesslog)
        # gthread, with imgmw's framing fixes.
        self.assertTrue(issubclass(server.cfg.worker_class,
                                   gthread.ThreadWorker))
        self.assertIs(worker.ThreadWorker, server.cfg.worker_class)
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


class TestStartUp(testtools.TestCase):
    """The whole configuration is checked once, before anything binds."""

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        self.run_ = self.useFixture(fixtures.MockPatchObject(
            api.Server, 'run')).mock

    def refused(self, *argv, paste=PASTE):
        config_file = self.useFixture(PasteFile(paste)).path
        with mock.patch('logging.basicConfig'):
            err = self.assertRaises(
                SystemExit, api.main, ['--config-file', config_file] +
                list(argv))
        self.run_.assert_not_called()
        self.assertNotIn('serving', self.logs.output)
        message = str(err.code)
        self.assertEqual(1, len(message.splitlines()), message)
        self.assertTrue(message.startswith(
            'imgmw-api: error: cannot load pipeline noauth of %s: '
            % config_file), message)
        return message

    def test_a_misspelt_override_is_refused(self):
        message = self.refused('-o', 'image_size_caps=10GB')
        self.assertIn('[DEFAULT]: unknown option(s) image_size_caps (did '
                      'you mean image_size_cap?)', message)

    def test_a_malformed_value_is_refused(self):
        message = self.refused('-o', 'image_size_cap=abc',
                               paste=PASTE_WITH_SIZE)
        self.assertIn("size filter: invalid value 'abc' for option "
                      "image_size_cap", message)

    def test_a_good_value_of_the_same_pipeline_serves(self):
        config_file = self.useFixture(PasteFile(PASTE_WITH_SIZE)).path
        with mock.patch('logging.basicConfig'):
            api.main(['--config-file', config_file,
                      '-o', 'image_size_cap=10GB'])
        self.run_.assert_called_once_with()

    def test_an_unexpected_failure_is_one_line(self):
        message = self.refused(paste=PASTE.replace(
            'tests.unit.cmd.test_api:app_factory',
            'tests.unit.cmd.test_api:failing_app_factory'))
        self.assertTrue(message.endswith(
            'RuntimeError: no store at all (second line)'), message)

    def test_a_missing_section_is_refused(self):
        message = self.refused(paste=PASTE.replace('/ = main', '/ = gone'))
        self.assertIn('gone', message)

    def test_serving_is_logged_when_gunicorn_listens(self):
        config_file = self.useFixture(PasteFile()).path
        args = api.parse_args(['--config-file', config_file])
        server = api.Server(args, {'state_dir': '/srv/state'})
        self.assertEqual(server.serving, server.cfg.when_ready)
        self.assertNotIn('serving', self.logs.output)
        server.cfg.when_ready(mock.sentinel.arbiter)
        self.assertIn('serving pipeline noauth of %s on 127.0.0.1:9292 '
                      '(state in /srv/state)' % config_file,
                      self.logs.output)
