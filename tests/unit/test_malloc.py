"""Tests of imgmw.malloc: glibc's mmap threshold, set once."""

import ctypes

import fixtures
import testtools

from imgmw import malloc


class FakeLibc:

    def __init__(self, answer=1):
        self.calls = []
        self.answer = answer

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.answer


class TestTune(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch('imgmw.malloc._done', False))
        self.useFixture(fixtures.EnvironmentVariable(
            'MALLOC_MMAP_THRESHOLD_'))
        self.libc = FakeLibc()
        self.useFixture(fixtures.MonkeyPatch(
            'ctypes.CDLL', lambda name: self.libc))

    def test_sets_the_threshold_once(self):
        self.assertTrue(malloc.tune())
        self.assertFalse(malloc.tune())
        self.assertEqual([(-3, 128 * 1024)], self.libc.calls)

    def test_the_operators_environment_wins(self):
        self.useFixture(fixtures.EnvironmentVariable(
            'MALLOC_MMAP_THRESHOLD_', '65536'))
        self.assertFalse(malloc.tune())
        self.assertEqual([], self.libc.calls)

    def test_a_libc_without_mallopt_is_left_alone(self):
        self.libc = object()
        self.assertFalse(malloc.tune())

    def test_a_refusal_is_logged(self):
        logger = self.useFixture(fixtures.FakeLogger(name='imgmw.malloc'))
        self.libc = FakeLibc(answer=0)
        self.assertFalse(malloc.tune())
        self.assertIn('mallopt(M_MMAP_THRESHOLD) refused', logger.output)

    def test_real_glibc_accepts_it(self):
        self.useFixture(fixtures.MonkeyPatch('ctypes.CDLL',
                                             ctypes.CDLL))
        self.assertTrue(malloc.tune())
