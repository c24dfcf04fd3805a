"""imgmw-api's start-up as an operator meets it, on a real socket.

The whole configuration is checked once before anything binds: a typo or a
malformed value ends the command with one line on stderr and status 1; a
used port ends it without a ``serving`` line.
"""

import os
import socket
import subprocess

import fixtures
import testtools

from tests.functional import base


class TestStartUp(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tempdir = self.useFixture(fixtures.TempDir()).path

    def start(self, *argv: str, port: int = 0) -> subprocess.CompletedProcess:
        command = [base.API_SCRIPT, '--config-file', base.PASTE_FILE,
                   '--state-dir', os.path.join(self.tempdir, 'state'),
                   '--bind', '127.0.0.1:%d' % (port or base.free_port()),
                   '--workers', '1'] + list(argv)
        return subprocess.run(command, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=base.START_TIMEOUT, cwd=self.tempdir)

    def assertRefusedInOneLine(self, done, *expected):
        self.assertEqual(1, done.returncode, done.stderr)
        lines = done.stderr.strip().splitlines()
        self.assertEqual(1, len(lines), done.stderr)
        self.assertTrue(lines[0].startswith(
            'imgmw-api: error: cannot load pipeline noauth of %s: '
            % base.PASTE_FILE), lines[0])
        for text in expected:
            self.assertIn(text, lines[0])

    def test_a_misspelt_option_stops_start_up(self):
        done = self.start('-o', 'image_size_caps=10GB')
        self.assertRefusedInOneLine(
            done, 'unknown option(s) image_size_caps (did you mean '
                  'image_size_cap?)')

    def test_a_malformed_value_stops_start_up_once(self):
        done = self.start('-o', 'image_size_cap=abc')
        self.assertRefusedInOneLine(
            done, "size filter: invalid value 'abc' for option "
                  "image_size_cap")

    def test_a_used_port_is_never_said_to_serve(self):
        with socket.socket() as taken:
            taken.bind(('127.0.0.1', 0))
            taken.listen()
            done = self.start(port=taken.getsockname()[1])
        self.assertNotEqual(0, done.returncode, done.stderr)
        self.assertIn('Connection in use', done.stderr)
        self.assertNotIn('serving', done.stderr)
        self.assertNotIn('Traceback', done.stderr)
