"""Helpers of tools/bench.py: the table beside Glance and its targets."""

import importlib.util
import os

import fixtures
import testtools

from tests import glanceconfig

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'tools', 'bench.py')
_SPEC = importlib.util.spec_from_file_location('imgmw_bench', _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def figure(median, runs=None, unit='MiB/s'):
    return {'median': median, 'runs': runs or [median], 'unit': unit}


class PeerRowsTest(testtools.TestCase):

    def test_ratios_to_glance_and_to_the_baseline(self):
        rows = bench.peer_rows({
            'upload Content-Length': figure(500.0, [450.0, 500.0, 550.0]),
            'Glance: upload Content-Length': figure(200.0),
            'md5 then sha512, one thread': figure(400.0),
        })
        self.assertEqual(1, len(rows))
        row = rows[0]
        self.assertEqual(200.0, row['glance'])
        self.assertEqual(2.5, row['x_glance'])
        self.assertEqual(1.25, row['x_baseline'])
        self.assertEqual([('Glance', 2.0, True),
                          ('baseline, every run', 1.0, True)],
                         row['targets'])
        self.assertIs(True, row['met'])

    def test_one_slow_repeat_misses_the_baseline_target(self):
        rows = bench.peer_rows({
            'upload chunked': figure(500.0, [300.0, 500.0, 550.0]),
            'Glance: upload chunked': figure(200.0),
            'md5 then sha512, one thread': figure(400.0),
        })
        self.assertEqual(('baseline, every run', 1.0, False),
                         rows[0]['targets'][1])
        self.assertIs(False, rows[0]['met'])

    def test_without_glance_no_glance_column_nor_target(self):
        rows = bench.peer_rows({
            'small: image show, full at 8': figure(900.0, unit='req/s')})
        self.assertIsNone(rows[0]['glance'])
        self.assertIsNone(rows[0]['x_glance'])
        self.assertIsNone(rows[0]['met'])
        self.assertIn(' - ', bench.peer_table(rows))

    def test_small_requests_three_times_glance(self):
        rows = bench.peer_rows({
            'small: image list, full at 32': figure(500.0, unit='req/s'),
            'small: image list, glance at 32': figure(200.0, unit='req/s'),
        })
        self.assertEqual([('Glance', 3.0, False)], rows[0]['targets'])
        self.assertIn('NO', bench.peer_table(rows))


class GlanceConfigTest(testtools.TestCase):

    def test_uwsgi_as_devstack_two_processes_four_threads(self):
        text = glanceconfig.UWSGI_INI % {'port': 1, 'venv': '/v',
                                         'tempdir': '/t'}
        self.assertIn('processes = 2\n', text)
        self.assertIn('threads = 4\n', text)
        self.assertIn('module = glance.wsgi.api:application\n', text)

    def test_bench_glance_runs_legacy_policy_defaults(self):
        self.assertIn('enforce_new_defaults = false', bench.GLANCE_POLICY)


class WriteBaselineTest(testtools.TestCase):

    def test_writes_the_data_syncs_and_removes_the_file(self):
        work = self.useFixture(fixtures.TempDir()).path
        store = self.useFixture(fixtures.TempDir()).path
        data = bench.TestData(work, 3 * bench.MiB + 5, bench.MiB)
        synced = []
        real_fsync = os.fsync
        self.useFixture(fixtures.MonkeyPatch(
            'os.fsync', lambda fd: synced.append(os.fstat(fd).st_size)
            or real_fsync(fd)))
        wall, cpu = bench.write_baseline(data, store)
        self.assertEqual([data.size], synced)
        self.assertEqual([], os.listdir(store))
        self.assertGreater(wall, 0)
        self.assertGreaterEqual(cpu, 0)
