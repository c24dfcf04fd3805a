"""Tests of imgmw.backends: the store configuration (contract section 6)."""

import logging
import os

import fixtures
import testtools

from imgmw import backends
from imgmw import config


TWO_FILE_STORES = {
    'store:fast': {'filesystem_store_datadir': '/srv/fast',
                   'store_description': 'Local disks', 'weight': '100'},
    'store:cheap': {'filesystem_store_datadir': '/srv/cheap'},
}

S3_SECTION = {
    's3_store_host': 'https://rgw.example:8080',
    's3_store_access_key': 'AKIA',
    's3_store_secret_key': 'very-secret',
    's3_store_bucket': 'images',
}


def multi(enabled='fast:file, cheap:file', default='fast'):
    conf = {'enabled_backends': enabled}
    if default is not None:
        conf['default_backend'] = default
    return conf


class MultiStoreTest(testtools.TestCase):

    def test_two_file_stores(self):
        loaded = backends.load(multi(), TWO_FILE_STORES)
        self.assertTrue(loaded.multi)
        self.assertEqual('fast', loaded.default)
        self.assertEqual(['fast', 'cheap'], list(loaded.stores))
        fast = loaded.stores['fast']
        self.assertEqual(('fast', 'file', 'Local disks', 100),
                         (fast.id, fast.type, fast.description, fast.weight))
        self.assertEqual({'data_dir': '/srv/fast'}, fast.properties())
        cheap = loaded.stores['cheap']
        self.assertIsNone(cheap.description)
        self.assertEqual(0, cheap.weight)

    def test_s3_store_options_are_typed_and_secrets_hidden(self):
        section = dict(S3_SECTION, s3_store_create_bucket_on_put='true',
                       s3_store_large_object_chunk_size='16')
        loaded = backends.load(multi('cold:s3', 'cold'),
                               {'store:cold': section})
        store = loaded.stores['cold']
        self.assertIs(True, store.options['s3_store_create_bucket_on_put'])
        self.assertEqual(16, store.options['s3_store_large_object_chunk_size'])
        self.assertEqual(100, store.options['s3_store_large_object_size'])
        self.assertEqual({'bucket': 'images',
                          's3_store_large_object_size': 100,
                          's3_store_large_object_chunk_size': 16},
                         store.properties())
        self.assertNotIn('very-secret', repr(store))
        self.assertNotIn('very-secret', repr(loaded))

    def test_get_refuses_unknown_and_reserved(self):
        loaded = backends.load(multi(), TWO_FILE_STORES)
        self.assertIs(loaded.stores['cheap'], loaded.get('cheap'))
        self.assertIsNone(loaded.get('nope'))
        self.assertIsNone(loaded.get('os_glance_staging_store'))
        self.assertTrue(loaded.is_reserved('os_glance_tasks_store'))
        self.assertFalse(loaded.is_reserved('fast'))

    def assertConfigError(self, fragment, conf, sections):
        err = self.assertRaises(config.ConfigError, backends.load, conf,
                                sections)
        self.assertIn(fragment, str(err))
        return err

    def test_reserved_id_refused(self):
        self.assertConfigError(
            'os_glance_x', multi('fast:file, os_glance_x:file'),
            TWO_FILE_STORES)

    def test_unknown_type_refused(self):
        err = self.assertConfigError(
            'unknown store type rbd', multi('fast:file, ceph:rbd'),
            TWO_FILE_STORES)
        self.assertIn('enabled_backends', str(err))

    def test_malformed_enabled_backends_refused(self):
        self.assertConfigError('enabled_backends', multi('fast'), {})

    def test_default_backend_must_be_enabled(self):
        self.assertConfigError('default_backend',
                               multi(default='slow'), TWO_FILE_STORES)
        self.assertConfigError('default_backend',
                               multi(default=None), TWO_FILE_STORES)

    def test_unknown_option_refused(self):
        sections = dict(TWO_FILE_STORES)
        sections['store:cheap'] = {'filesystem_store_datadir': '/srv/c',
                                   's3_store_bucket': 'b'}
        err = self.assertConfigError('s3_store_bucket', multi(), sections)
        self.assertIn('[store:cheap]', str(err))

    def test_bad_value_refused(self):
        sections = dict(TWO_FILE_STORES)
        sections['store:cheap'] = {'filesystem_store_datadir': '/srv/c',
                                   'weight': 'heavy'}
        self.assertConfigError('weight', multi(), sections)

    def test_required_options(self):
        self.assertConfigError('filesystem_store_datadir', multi(),
                               {'store:fast': {}})
        section = dict(S3_SECTION)
        del section['s3_store_bucket']
        self.assertConfigError('s3_store_bucket', multi('cold:s3', 'cold'),
                               {'store:cold': section})

    def test_file_stores_may_not_share_a_directory(self):
        sections = {'store:fast': {'filesystem_store_datadir': '/srv/a'},
                    'store:cheap': {'filesystem_store_datadir': '/srv/a/'}}
        self.assertConfigError('/srv/a', multi(), sections)

    def test_section_of_a_store_not_enabled_is_logged(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        sections = dict(TWO_FILE_STORES)
        sections['store:old'] = {'filesystem_store_datadir': '/srv/old'}
        backends.load(multi(), sections)
        self.assertIn('[store:old] ignored', logs.output)


class SingleStoreTest(testtools.TestCase):

    def test_implicit_file_store(self):
        loaded = backends.load({})
        self.assertFalse(loaded.multi)
        self.assertEqual('default', loaded.default)
        store = loaded.stores['default']
        self.assertEqual('file', store.type)
        self.assertIsNone(store.options['filesystem_store_datadir'])

    def test_options_from_default_section_or_own_section(self):
        loaded = backends.load({'filesystem_store_datadir': '/srv/g'}, {})
        self.assertEqual('/srv/g', loaded.stores['default'].options[
            'filesystem_store_datadir'])
        loaded = backends.load(
            {'filesystem_store_datadir': '/srv/g'},
            {'store:default': {'filesystem_store_datadir': '/srv/own'}})
        self.assertEqual('/srv/own', loaded.stores['default'].options[
            'filesystem_store_datadir'])

    def test_single_s3_store(self):
        loaded = backends.load({'default_store': 's3'},
                               {'store:default': S3_SECTION})
        self.assertEqual('s3', loaded.stores['default'].type)

    def test_default_backend_without_enabled_backends_refused(self):
        err = self.assertRaises(config.ConfigError, backends.load,
                                {'default_backend': 'fast'}, {})
        self.assertIn('enabled_backends', str(err))


class ReadSectionsTest(testtools.TestCase):

    def test_store_sections_read_from_the_paste_file(self):
        directory = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(directory, 'api-paste.ini')
        with open(path, 'w') as f:
            f.write('[DEFAULT]\n'
                    'enabled_backends = fast:file, cheap:file\n'
                    'default_backend = fast\n'
                    'weight = 7\n\n'
                    '[store:fast]\n'
                    'filesystem_store_datadir = %(here)s/fast\n\n'
                    '[store:cheap]\n'
                    'filesystem_store_datadir = /srv/cheap\n\n'
                    '[filter:stores]\nuse = egg:imgmw#stores\n')
        global_conf = {'__file__': path, 'here': directory,
                       'enabled_backends': 'fast:file, cheap:file',
                       'default_backend': 'fast'}
        loaded = backends.load(global_conf)
        self.assertEqual(os.path.join(directory, 'fast'),
                         loaded.stores['fast'].options[
                             'filesystem_store_datadir'])
        # [DEFAULT] values are not merged into the store sections.
        self.assertEqual(0, loaded.stores['fast'].weight)
        self.assertEqual({'store:fast', 'store:cheap'},
                         set(backends.read_sections(path)))

    def test_no_file(self):
        self.assertEqual({}, backends.read_sections(None))
