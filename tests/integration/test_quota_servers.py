"""Quota reservations held in parallel on PostgreSQL and MySQL."""

from tests.unit.filters import test_quota


class TestStoreConcurrencyPostgreSQL(test_quota.StoreConcurrency,
                                     test_quota.DatabaseTest):
    KIND = 'postgresql'


class TestStoreConcurrencyMySQL(test_quota.StoreConcurrency,
                                test_quota.DatabaseTest):
    KIND = 'mysql'
