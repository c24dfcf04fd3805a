"""Tests of imgmw.malloc: glibc thresholds set once, free memory given back."""

import ctypes

import fixtures
import testtools

from imgmw import malloc


class FakeLibc:

    def __init__(self, answer=1, trimmed=1):
        self.calls = []
        self.answer = answer
        self.trimmed = trimmed

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.answer

    def malloc_trim(self, pad):
        self.calls.append(('trim', pad))
        return self.trimmed


class TestTune(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch('imgmw.malloc._done', False))
        self.useFixture(fixtures.MonkeyPatch('imgmw.malloc._libc', None))
        for name in malloc.ENVIRONMENT:
            self.useFixture(fixtures.EnvironmentVariable(name))
        self.libc = FakeLibc()
        self.useFixture(fixtures.MonkeyPatch(
            'ctypes.CDLL', lambda name: self.libc))

    def test_sets_both_thresholds_once(self):
        self.assertTrue(malloc.tune())
        self.assertFalse(malloc.tune())
        # Above the 1 MiB chunks of image data and the servers' buffers
        # around them; a heap keeps some free memory at its top.
        self.assertEqual([(-3, 4 * 1024 * 1024), (-1, 2 * 1024 * 1024),
                          (-8, 2)], self.libc.calls)

    def test_the_operators_environment_wins(self):
        for name in malloc.ENVIRONMENT:
            with fixtures.EnvironmentVariable(name, '65536'):
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

    def test_release_trims_every_heap(self):
        self.assertTrue(malloc.release())
        self.assertEqual([('trim', 0)], self.libc.calls)

    def test_release_says_when_nothing_was_given_back(self):
        self.libc = FakeLibc(trimmed=0)
        self.assertFalse(malloc.release())

    def test_release_without_glibc_does_nothing(self):
        self.libc = object()
        self.assertFalse(malloc.release())

    def test_real_glibc_accepts_it(self):
        self.useFixture(fixtures.MonkeyPatch('ctypes.CDLL',
                                             ctypes.CDLL))
        self.assertTrue(malloc.tune())
        malloc.release()
