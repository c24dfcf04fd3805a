"""imgmw.app.errors holds the app's messages, imgmw.errors the shared ones."""

import ast
import glob
import inspect
import os

import testtools

import imgmw
from imgmw.app import errors as app_errors
from imgmw import errors


PACKAGE = os.path.dirname(os.path.abspath(imgmw.__file__))


def used_names(paths) -> set:
    """The attributes of ``errors`` that the modules at ``paths`` use."""
    names = set()
    for path in paths:
        with open(path) as source:
            tree = ast.parse(source.read())
        names |= {node.attr for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name)
                  and node.value.id == 'errors'}
    return names


def defined(module) -> set:
    return {name for name, value in vars(module).items()
            if not name.startswith('_')
            and (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == module.__name__}


class SplitTest(testtools.TestCase):

    def app_modules(self):
        return [path for path in glob.glob(
            os.path.join(PACKAGE, 'app', '**', '*.py'), recursive=True)
            if not path.endswith(os.path.join('app', 'errors.py'))]

    def other_modules(self):
        return [path for path in glob.glob(
            os.path.join(PACKAGE, '**', '*.py'), recursive=True)
            if os.sep + 'app' + os.sep not in path
            and not path.endswith(os.path.join('imgmw', 'errors.py'))]

    def test_every_error_the_app_uses_is_in_its_module(self):
        for name in used_names(self.app_modules()):
            self.assertTrue(hasattr(app_errors, name), name)

    def test_the_shared_module_holds_only_what_others_use(self):
        others = used_names(self.other_modules())
        self.assertEqual(set(), defined(errors) - others)

    def test_the_app_module_holds_only_what_the_app_uses(self):
        self.assertEqual(set(), defined(app_errors)
                         - used_names(self.app_modules()))
        self.assertEqual(set(), defined(app_errors) & defined(errors))
        self.assertGreater(len(defined(app_errors)), 30)
