"""Tests of tools/smallreq.py, the server's cost of small requests."""

import contextlib
import importlib.util
import io
import os

import testtools

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'tools', 'smallreq.py')
_SPEC = importlib.util.spec_from_file_location('imgmw_smallreq', _PATH)
smallreq = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(smallreq)


class SmallRequestsTest(testtools.TestCase):

    def test_in_process_every_case_answers_and_is_timed(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            smallreq.main(['inproc', '-n', '3'])
        lines = out.getvalue().splitlines()
        self.assertEqual(['show', 'list', 'download'],
                         [line.split()[0] for line in lines])
        for line in lines:
            self.assertIn('CPU us/request (in process)', line)
            self.assertGreater(float(line.split()[1]), 0)

    def test_one_case_profiled(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            smallreq.main(['inproc', '-n', '2', '--case', 'download',
                           '--profile', 'cprofile', '--top', '3'])
        self.assertIn('== download, 2 requests', out.getvalue())
        self.assertIn('function calls', out.getvalue())
        self.assertNotIn('== show', out.getvalue())
