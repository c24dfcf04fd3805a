"""Tests of imgmw.config: options parsed once, bad ones stop start-up."""

import importlib

import testtools

from imgmw import config


OPTS = (
    config.Opt('cap', config.byte_size, 1 << 40, 'a size'),
    config.Opt('on', config.boolean, True, 'a switch'),
    config.Opt('count', config.integer(minimum=1, maximum=10), 5, 'n'),
)


class ParseTest(testtools.TestCase):

    def test_defaults(self):
        self.assertEqual({'cap': 1 << 40, 'on': True, 'count': 5},
                         config.parse(OPTS, {}, {}, 'test filter'))

    def test_section_wins_over_default_section(self):
        values = config.parse(OPTS, {'cap': '1GB', 'count': '2'},
                              {'cap': '512MB'}, 'test filter')
        self.assertEqual(512 << 20, values['cap'])
        self.assertEqual(2, values['count'])

    def test_unknown_key_in_the_section_stops_start_up(self):
        err = self.assertRaises(config.ConfigError, config.parse, OPTS, {},
                                {'caps': '1'}, 'test filter')
        self.assertEqual('test filter: unknown option(s) caps', str(err))

    def test_unknown_keys_of_default_section_and_paste_are_ignored(self):
        values = config.parse(OPTS, {'database_connection': 'x'},
                              {'here': '/etc', '__file__': '/etc/a.ini'},
                              'test filter')
        self.assertEqual(5, values['count'])

    def test_bad_value_names_option_and_value(self):
        err = self.assertRaises(config.ConfigError, config.parse, OPTS, {},
                                {'count': '11'}, 'test filter')
        self.assertEqual("test filter: invalid value '11' for option count: "
                         "expected at most 10", str(err))

    def test_values_that_are_not_strings_are_taken_as_they_are(self):
        self.assertEqual(7, config.parse(OPTS, {}, {'count': 7}, 'x')['count'])


class ParserTest(testtools.TestCase):

    def test_boolean(self):
        for word in ('true', 'Yes', '1', 'on'):
            self.assertTrue(config.boolean('o', word))
        for word in ('false', 'NO', '0', 'off'):
            self.assertFalse(config.boolean('o', word))
        self.assertRaises(config.ConfigError, config.boolean, 'o', 'maybe')

    def test_integer(self):
        parse = config.integer(minimum=0)
        self.assertEqual(12, parse('o', '12'))
        for bad in ('1.5', '0x10', '', '-1', '١٢'):
            self.assertRaises(config.ConfigError, parse, 'o', bad)

    def test_byte_size_in_glance_units(self):
        self.assertEqual(1099511627776, config.byte_size('o', '1099511627776'))
        self.assertEqual(10 << 30, config.byte_size('o', '10GB'))
        self.assertEqual(1024, config.byte_size('o', '1kb'))
        self.assertEqual(3, config.byte_size('o', '3B'))
        for bad in ('10 GiB', '-1', '1.5GB', 'GB'):
            self.assertRaises(config.ConfigError, config.byte_size, 'o', bad)

    def test_string_list_and_choice(self):
        self.assertEqual(['a', 'b', 'c'],
                         config.string_list('o', 'a, b  c,'))
        self.assertEqual('x', config.choice('x', 'y')('o', 'x'))
        self.assertRaises(config.ConfigError, config.choice('x'), 'o', 'z')

    def test_backends_in_order(self):
        self.assertEqual(
            [('fast', 'file'), ('cheap', 's3')],
            list(config.backends('o', 'fast:file, cheap:s3').items()))
        for bad in ('fast', 'fast:', ':file', 'a:file, a:s3', 'b@d:file'):
            self.assertRaises(config.ConfigError, config.backends, 'o', bad)

    def test_validated_turns_value_errors_into_config_errors(self):
        def even(value):
            if int(value) % 2:
                raise ValueError('an even number')
            return int(value)
        parse = config.validated(even)
        self.assertEqual(4, parse('o', '4'))
        err = self.assertRaises(config.ConfigError, parse, 'o', '3')
        self.assertEqual("invalid value '3' for option o: expected an even "
                         "number", str(err))


class KnownKeysTest(testtools.TestCase):

    def test_known_keys_are_every_declaration(self):
        known = config.known_keys()
        for name in ('image_size_cap', 'database_connection', 'state_dir',
                     'enabled_backends', 'hashing_algorithm',
                     'stream_errors', 's3_store_host', 'foreign_options',
                     'user_storage_quota', 'require_image_format_match'):
            self.assertIn(name, known)

    def test_no_module_declares_an_option_outside_the_list(self):
        import pkgutil

        import imgmw
        known = config.known_keys()
        for info in pkgutil.walk_packages(imgmw.__path__, 'imgmw.'):
            if '.migrations' in info.name:
                continue  # env.py runs Alembic when imported
            module = importlib.import_module(info.name)
            undeclared = config.module_opts(module) - known
            self.assertEqual(set(), undeclared, info.name)

    def test_known_and_paste_keys_pass(self):
        config.check_global_keys({'image_size_cap': '1GB', 'here': '/etc',
                                  '__file__': '/etc/api-paste.ini'})

    def test_a_typo_is_refused_with_the_close_key(self):
        err = self.assertRaises(config.ConfigError, config.check_global_keys,
                                {'image_size_caps': '10GB',
                                 'state_dir': '/srv'})
        self.assertEqual(
            '[DEFAULT]: unknown option(s) image_size_caps (did you mean '
            'image_size_cap?); name keys meant for other programs in '
            'foreign_options', str(err))

    def test_every_unknown_key_is_named(self):
        err = self.assertRaises(config.ConfigError, config.check_global_keys,
                                {'zzz': '1', 'yyy': '2'})
        self.assertIn('unknown option(s) yyy, zzz;', str(err))

    def test_foreign_options_names_and_patterns(self):
        conf = {'foreign_options': 'debug, glance_*', 'debug': 'true',
                'glance_api_servers': 'x', 'image_size_cap': '1GB'}
        config.check_global_keys(conf)
        conf['glancex'] = '1'
        err = self.assertRaises(config.ConfigError, config.check_global_keys,
                                conf)
        self.assertIn('unknown option(s) glancex', str(err))


class WrittenDefaultTest(testtools.TestCase):

    def test_forms(self):
        cases = [
            (config.Opt('a', config.boolean, True), 'true'),
            (config.Opt('a', config.boolean, False), 'false'),
            (config.Opt('a', config.byte_size, 64 << 20), '64MB'),
            (config.Opt('a', config.byte_size, 1 << 40), '1TB'),
            (config.Opt('a', config.byte_size, 1536), '1536'),
            (config.Opt('a', config.byte_size, 0), '0'),
            (config.Opt('a', config.string_list, ['x', 'y']), 'x, y'),
            (config.Opt('a', config.string_list, []), ''),
            (config.Opt('a', config.string, None), ''),
            (config.Opt('a', config.integer(), 30), '30'),
            (config.Opt('a', config.string, 'x', written='y'), 'y'),
        ]
        for opt, written in cases:
            self.assertEqual(written, config.written_default(opt), opt)

    def test_every_declared_default_parses_back_to_itself(self):
        """What the configuration reference prints is what the code takes."""
        checked = 0
        for name in config.DECLARING_MODULES:
            module = importlib.import_module(name)
            for opt in config.declared_opts(list(vars(module).values())):
                written = config.written_default(opt)
                if not written:
                    self.assertIn(opt.default, (None, [], {}, ()), opt.name)
                    continue
                self.assertNotIn('frozenset', written, opt.name)
                self.assertEqual(opt.default,
                                 opt.parser(opt.name, written), opt.name)
                checked += 1
        self.assertGreater(checked, 30)
