"""The quota filter's usage provider for imgmw's registry.

``usage_source = imgmw`` (the default) of :mod:`imgmw.filters.quota`: what
a project already uses, read from the registry's ``images`` table (the
interface is :class:`imgmw.filters.quota.usage.UsageProvider`):

* stored bytes: ``size`` of its images that hold data (``active``,
  ``deactivated``) or are being imported (``importing``: the app checked
  their size against the storage quota before the import started);
* staged bytes: ``size`` of its images staged or importing
  (``uploading``, ``importing``);
* busy images: its ``importing`` images (an upload or a stage in progress
  holds a reservation, which the quota engine counts).

It lives with the registry, whose tables and statuses it reads; the quota
engine never reads them.
"""

import typing

import sqlalchemy as sa

from imgmw.app import models
from imgmw.app import registry
from imgmw.filters.quota import usage

WITH_DATA = ('active', 'deactivated', 'importing')
STAGED = ('uploading', 'importing')
BUSY = ('importing',)

_images = models.images


class RegistryUsage(usage.ReadOnlyDatabase):
    """A project's usage in imgmw's registry; see the module.

    Each reading is one statement in autocommit mode, which takes no lock.

    :param url: SQLAlchemy URL of the registry's database.
    """

    name = 'imgmw'

    @classmethod
    def from_conf(cls, values: typing.Mapping) -> 'RegistryUsage':
        return cls(registry.database_url(values))

    @staticmethod
    def _of(mine, statuses: typing.Sequence[str], column):
        return (sa.select(column)
                .where(mine, _images.c.status.in_(statuses))
                .scalar_subquery())

    def recorded(self, project_id: str,
                 excluded: typing.AbstractSet[str] = frozenset()
                 ) -> usage.RecordedUsage:
        mine = _images.c.owner == project_id
        if excluded:
            mine = sa.and_(mine, _images.c.id.not_in(sorted(excluded)))
        total = sa.func.coalesce(sa.func.sum(_images.c.size), 0)
        query = sa.select(
            self._of(mine, WITH_DATA, total).label('stored_bytes'),
            self._of(mine, STAGED, total).label('staged_bytes'),
            self._of(mine, BUSY, sa.func.count()).label('busy_images'))
        return self.read(query)
