"""Usage providers: what a project already uses, as the records say.

The quota engine adds to these figures the reservations of uploads in
progress (:mod:`imgmw.filters.quota.reservations`); it never reads an image
table itself. A provider answers :meth:`UsageProvider.recorded` in one short
read-only statement on a connection of its own, so that it holds no lock
between two of the records' writes (Glance's or imgmw's app's).

Providers, chosen by the quota filter's ``usage_source``:

``imgmw``
    :class:`imgmw.app.usage.RegistryUsage`, imgmw's registry (its
    ``database_connection``);
``glance``
    :class:`imgmw.filters.quota.glance.GlanceUsage`, Glance's tables
    (``glance_connection``).

Each is imported only when chosen: the filter does not import the app.
"""

import dataclasses
import importlib
import typing

from imgmw import db


@dataclasses.dataclass(frozen=True)
class RecordedUsage:
    """A project's usage in the image records, before reservations.

    :ivar stored_bytes: bytes of its images that hold data.
    :ivar staged_bytes: bytes of its images staged for import.
    :ivar busy_images: its images busy outside any reservation
        (``importing``).
    """

    stored_bytes: int = 0
    staged_bytes: int = 0
    busy_images: int = 0


class UsageProvider(typing.Protocol):
    """The interface of a usage provider."""

    #: The ``usage_source`` that names it.
    name: str

    def recorded(self, project_id: str,
                 excluded: typing.AbstractSet[str] = frozenset()
                 ) -> RecordedUsage:
        """The project's usage but the images ``excluded`` (by id).

        :raises sqlalchemy.exc.DBAPIError: the database failed.
        """

    def dispose(self) -> None:
        """Close its connections (tests, shutdown)."""


#: ``usage_source`` -> ``module:factory``; a factory takes the quota
#: filter's typed options and raises :class:`config.ConfigError`.
PROVIDERS = {
    'imgmw': 'imgmw.app.usage:RegistryUsage.from_conf',
    'glance': 'imgmw.filters.quota.glance:GlanceUsage.from_conf',
}


def load(name: str, values: typing.Mapping) -> UsageProvider:
    """The provider ``name`` of :data:`PROVIDERS`, built from ``values``."""
    module_name, _, path = PROVIDERS[name].partition(':')
    factory = importlib.import_module(module_name)
    for attribute in path.split('.'):
        factory = getattr(factory, attribute)
    return factory(values)


class ReadOnlyDatabase:
    """The records' database, read one autocommitted statement at a time.

    A statement in autocommit mode is a consistent snapshot of its own
    that takes no lock and holds none afterwards.

    :param url: SQLAlchemy URL of the database.
    """

    def __init__(self, url: str):
        self.url = url
        self._engine = None

    @property
    def engine(self):
        # Made at first use, after the server forked its workers.
        if self._engine is None:
            self._engine = db.create_engine(self.url,
                                            isolation_level='AUTOCOMMIT')
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def read(self, query) -> RecordedUsage:
        """Run ``query``, whose one row has the three labelled columns."""
        with self.engine.connect() as connection:
            row = connection.execute(query).one()
        return RecordedUsage(int(row.stored_bytes), int(row.staged_bytes),
                             int(row.busy_images))
