"""Tests of imgmw.environ: keys, publishers, and loud failures."""

import ast
import collections
import functools
import importlib.util
import pkgutil
import re
import typing

import testtools

import imgmw
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


def _party(module: str) -> str:
    """Who a module of imgmw speaks for in the environ table."""
    if module == 'imgmw.app' or module.startswith('imgmw.app.'):
        return 'the data app'
    if module.startswith('imgmw.filters.'):
        # A filter's package (its engine beside it) speaks for the filter.
        return module.split('.')[2]
    return module.rpartition('.')[2]


@functools.lru_cache(maxsize=None)
def _modules() -> typing.Dict[str, ast.AST]:
    """``{module name: parsed source}`` of every module of imgmw (once)."""
    trees = {}
    for info in pkgutil.walk_packages(imgmw.__path__, 'imgmw.'):
        spec = importlib.util.find_spec(info.name)
        if info.name == 'imgmw.environ' or not spec.origin.endswith('.py'):
            continue
        with open(spec.origin) as source:
            trees[info.name] = ast.parse(source.read())
    return trees


def _key_uses(tree: ast.AST) -> typing.Iterator[tuple]:
    """``(function, constant, 'set' or 'read')`` for each use of a key.

    A use is ``<alias of imgmw.environ>.<CONSTANT>``; it sets the key when
    it is the subscript of an assignment target (``environ[KEY] = ...``).
    """
    aliases = {alias.asname or alias.name
               for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == 'imgmw'
               for alias in node.names if alias.name == 'environ'}
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.Module)):
            continue
        stored = {id(node.slice) for node in ast.walk(function)
                  if isinstance(node, ast.Subscript)
                  and isinstance(node.ctx, ast.Store)}
        name = getattr(function, 'name', '')
        for node in ast.walk(function):
            if (isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in aliases
                    and node.attr.isupper()):
                yield name, node.attr, 'set' if id(node) in stored else 'read'


def _calls(tree: ast.AST, module: str) -> typing.Set[str]:
    """The functions of ``imgmw.<module>`` that a module calls."""
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == module}


class TableTest(testtools.TestCase):
    """The table of the module doc, checked against the code."""

    def uses_in_code(self) -> dict:
        """``{(constant, 'set' or 'read'): {party}}`` found in imgmw.

        A key used by a helper of :mod:`imgmw.streams` counts for the
        modules that call that helper; a proxy that implements
        ``image_announced`` (the defined step of :mod:`imgmw.streams`)
        reads ``imgmw.image``.
        """
        trees = _modules()
        announced = {module for module, tree in trees.items()
                     if any(isinstance(node, ast.FunctionDef)
                            and node.name == 'image_announced'
                            for node in ast.walk(tree))}
        helpers = collections.defaultdict(set)
        for function, constant, how in _key_uses(trees['imgmw.streams']):
            helpers[function].add((constant, how))
        found = collections.defaultdict(set)
        for module, tree in trees.items():
            if module != 'imgmw.streams':
                for _function, constant, how in _key_uses(tree):
                    found[(constant, how)].add(_party(module))
            if module in announced and module != 'imgmw.streams':
                found[('IMAGE', 'read')].add(_party(module))
            for helper in _calls(tree, 'streams'):
                for use in helpers.get(helper, ()):
                    found[use].add(_party(module))
        return found

    def test_publishers_and_readers_are_those_of_the_code(self):
        found = self.uses_in_code()
        constants = {getattr(environ, name): name for name in dir(environ)
                     if name.isupper() and isinstance(getattr(environ, name),
                                                      str)}
        for key in environ.PUBLISHER:
            constant = constants[key]
            self.assertEqual({environ.PUBLISHER[key]},
                             found.pop((constant, 'set'), set()), key)
            self.assertEqual(set(environ.READERS[key]),
                             found.pop((constant, 'read'), set()), key)
        self.assertEqual({}, dict(found))

    def test_the_image_record_reaches_its_readers_only_announced(self):
        # The record is handed over (streams.announce_image calls each
        # proxy's image_announced); no filter looks the key up.
        for module, tree in _modules().items():
            if module == 'imgmw.streams':
                continue
            reads = [function for function, constant, how in _key_uses(tree)
                     if constant == 'IMAGE' and how == 'read']
            self.assertEqual([], reads, module)

    def test_a_filter_package_speaks_for_its_filter(self):
        self.assertEqual('quota', _party('imgmw.filters.quota'))
        self.assertEqual('quota', _party('imgmw.filters.quota.reservations'))
        self.assertEqual('the data app', _party('imgmw.app.upload'))
        self.assertEqual('streams', _party('imgmw.streams'))

    def test_the_doc_table_says_the_same(self):
        rows = {}
        key = None
        for line in environ.__doc__.splitlines():
            match = re.match(r'``(imgmw\.[a-z_]+)``\s', line)
            if match:
                key = match.group(1)
            elif line.startswith('='):
                key = None
            if key:
                set_by, read_by = rows.setdefault(key, ([], []))
                set_by.append(line[22:30])
                read_by.append(line[32:48])
        self.assertEqual(sorted(environ.PUBLISHER), sorted(rows))
        for key, (set_by, read_by) in rows.items():
            self.assertEqual(environ.PUBLISHER[key],
                             ' '.join(' '.join(set_by).split()), key)
            self.assertEqual(', '.join(environ.READERS[key]),
                             ' '.join(' '.join(read_by).split()), key)
