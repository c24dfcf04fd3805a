"""The registry's tests on PostgreSQL and MySQL (see tests/dbfixture.py)."""

import testtools

from tests.unit.app import test_registry


class TestRegistryPostgreSQL(test_registry.ServerTests, testtools.TestCase):
    KIND = 'postgresql'


class TestRegistryMySQL(test_registry.ServerTests, testtools.TestCase):
    KIND = 'mysql'
