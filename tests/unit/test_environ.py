"""Tests of imgmw.environ: keys, publishers, and loud failures."""

import testtools

from imgmw import environ
from imgmw import errors


class RequireTest(testtools.TestCase):

    def test_present_key(self):
        self.assertEqual(42, environ.require({environ.SIZE: 42},
                                             environ.SIZE, 'quota'))

    def test_missing_key_names_the_filter_that_sets_it(self):
        err = self.assertRaises(errors.MissingFilter, environ.require, {},
                                environ.DIGESTS, 'data app')
        self.assertEqual(environ.DIGESTS, err.key)
        self.assertIn('the checksum filter sets', str(err))
        self.assertIn('data app needs', str(err))

    def test_every_key_has_a_publisher_and_is_documented(self):
        keys = [value for name, value in vars(environ).items()
                if name.isupper() and isinstance(value, str)]
        self.assertEqual(sorted(keys), sorted(environ.PUBLISHER))
        for key in keys:
            self.assertTrue(key.startswith('imgmw.'), key)
            self.assertIn('``%s``' % key, environ.__doc__)
