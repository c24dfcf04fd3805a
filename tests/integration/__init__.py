"""Tests that need a server, a tool or minutes: what ``tests/unit`` leaves.

The property-based tests of hypothesis (``test_properties``: parsers and
the shipped pipeline, minutes of CPU), and tests of single modules on what
a unit test cannot run without: the registry and the quota reservations
on PostgreSQL (127.0.0.1:5432, user ``postgres``, trust) and MariaDB or
MySQL (127.0.0.1:3306, ``root`` without a password), the S3 store against
a moto server the tests start, and the inspect filter on images
``qemu-img`` writes (Debian's qemu-utils). ``tox -e integration`` runs
them alone; the ``py3`` env runs them with the unit and functional tests,
and ``.ci/run`` starts the database servers and installs qemu-utils.
"""
