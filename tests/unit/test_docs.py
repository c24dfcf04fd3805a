"""The docs' paste snippets against the shipped paste files.

Every ``pipeline =`` line of a filter's (or the app's) module docstring and
of ``doc/source`` must be a part of a pipeline of the file it describes, in
that file's order (an ordered subsequence; ``...`` stands for any filters):
imgmw's snippets against ``etc/api-paste.ini``, Glance's (ending in
``rootapp``) against ``etc/glance-api-paste.ini`` when it exists, else the
Glance file the functional tests serve. imgmw's filters appear under their
entry points (``use = egg:imgmw#size``), never a dotted factory path.
"""

import configparser
import glob
import importlib
import os
import re
import typing

import testtools


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PASTE_FILE = os.path.join(ROOT, 'etc', 'api-paste.ini')
GLANCE_FILES = (os.path.join(ROOT, 'etc', 'glance-api-paste.ini'),
                os.path.join(ROOT, 'tests', 'functional_glance',
                             'glance-api-paste.ini'))
DOCUMENTED_MODULES = ('imgmw.app', 'imgmw.filters.checksum',
                      'imgmw.filters.context', 'imgmw.filters.inspect',
                      'imgmw.filters.quota', 'imgmw.filters.size',
                      'imgmw.filters.stores')
ANY = '...'


def glance_file() -> str:
    return next(path for path in GLANCE_FILES if os.path.exists(path))


def documents() -> typing.Dict[str, str]:
    """``{where: text}``: the module docstrings and the pages of the docs."""
    found = {name: importlib.import_module(name).__doc__ or ''
             for name in DOCUMENTED_MODULES}
    pages = os.path.join(ROOT, 'doc', 'source')
    for path in sorted(glob.glob(os.path.join(pages, '**', '*.rst'),
                                 recursive=True)):
        with open(path) as page:
            found[os.path.relpath(path, ROOT)] = page.read()
    return found


def snippets(text: str) -> typing.List[typing.List[str]]:
    """The filter names of each ``pipeline =`` line, continuations included.

    A continuation is a following line indented deeper than ``pipeline``.
    """
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r'(\s*)pipeline\s*=\s*(.*)$', line)
        if not match:
            continue
        names = match.group(2).split()
        for following in lines[index + 1:]:
            indent = len(following) - len(following.lstrip())
            if not following.strip() or indent <= len(match.group(1)):
                break
            names += following.split()
        found.append(names)
    return found


def pipelines(path: str) -> typing.List[typing.List[str]]:
    """Every pipeline of a paste file.

    The ``[pipeline:*]`` sections, and the flavors of a composite made by
    Glance's ``pipeline_factory`` (one pipeline a key).
    """
    parser = configparser.RawConfigParser()
    parser.read(path)
    found = []
    for section in parser.sections():
        if section.startswith('pipeline:'):
            found.append(parser.get(section, 'pipeline').split())
        elif parser.get(section, 'paste.composite_factory',
                        fallback='').endswith(':pipeline_factory'):
            found += [value.split() for key, value in parser.items(section)
                      if key != 'paste.composite_factory']
    return found


def is_part_of(snippet: typing.Sequence[str],
               pipeline: typing.Sequence[str]) -> bool:
    """Whether ``snippet`` (but its ``...``) is an ordered subsequence."""
    remaining = iter(pipeline)
    return all(name in remaining for name in snippet if name != ANY)


class SnippetTest(testtools.TestCase):

    def test_the_subsequence_rule(self):
        pipeline = ['request_id', 'context', 'size', 'stores', 'imgmw']
        self.assertTrue(is_part_of(['context', 'stores', 'imgmw'], pipeline))
        self.assertTrue(is_part_of(['request_id', ANY, 'imgmw'], pipeline))
        self.assertFalse(is_part_of(['stores', 'size'], pipeline))
        self.assertFalse(is_part_of(['quota'], pipeline))

    def test_snippets_follow_the_shipped_files(self):
        shipped = {'imgmw': pipelines(PASTE_FILE),
                   'glance': pipelines(glance_file())}
        counted = {'imgmw': 0, 'glance': 0}
        for where, text in documents().items():
            for snippet in snippets(text):
                kind = 'glance' if 'rootapp' in snippet else 'imgmw'
                counted[kind] += 1
                self.assertTrue(
                    any(is_part_of(snippet, pipeline)
                        for pipeline in shipped[kind]),
                    '%s: pipeline = %s is no part of any pipeline of %s'
                    % (where, ' '.join(snippet),
                       PASTE_FILE if kind == 'imgmw' else glance_file()))
        # Enough snippets were found for the check to mean something.
        self.assertGreaterEqual(counted['imgmw'], 6)
        self.assertGreaterEqual(counted['glance'], 3)

    def test_the_diagram_of_the_pipeline_page_follows_the_file(self):
        with open(os.path.join(ROOT, 'doc', 'source', 'pipeline.rst')) as f:
            names = re.findall(r'^\s+-> (\S+)', f.read(), re.MULTILINE)
        keystone = next(pipeline for pipeline in pipelines(PASTE_FILE)
                        if 'authtoken' in pipeline)
        self.assertEqual(keystone, names)

    def test_imgmw_filters_are_named_by_entry_point(self):
        for where, text in documents().items():
            self.assertIsNone(
                re.search(r'paste\.(filter|app)_factory\s*=\s*imgmw', text),
                where)
