"""The quota filter's usage provider for imgmw's registry.

``usage_source = imgmw`` (the default) of :mod:`imgmw.filters.quota`: what
a project already uses, read from the registry's ``images`` table (the
interface is :class:`imgmw.filters.quota.usage.UsageProvider`):

* stored bytes: ``size`` of its images that hold data (``active``,
  ``deactivated``) or are being imported (``importing``: the app checked
  their size against the storage quota, once per store, before the import
  started), once per copy: its locations, and the stores a copy-image or
  an import is writing to (``os_glance_importing_to_stores``); at least
  once each. A store leaves that list in the transaction that records its
  location (:mod:`imgmw.app.registry`), so each store counts once, never
  twice, while an import or a copy runs;
* staged bytes: ``size`` of its images staged or importing
  (``uploading``, ``importing``);
* busy images: its ``importing`` images and those being copied (an
  upload or a stage in progress holds a reservation, which the quota
  engine counts).

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
_locations = models.image_locations
_properties = models.image_properties

_copying = (sa.select(_properties.c.value)
            .where(_properties.c.image_id == _images.c.id,
                   _properties.c.name == registry.IMPORTING_PROPERTY)
            .scalar_subquery())
#: The stores a copy is writing to: commas plus one, none when empty.
_copying_count = sa.case(
    (sa.func.coalesce(_copying, '') == '', 0),
    else_=sa.func.length(_copying)
    - sa.func.length(sa.func.replace(_copying, ',', '')) + 1)
_copies = (sa.select(sa.func.count()).where(
    _locations.c.image_id == _images.c.id).scalar_subquery()
    + _copying_count)
#: Bytes of one image: its size once per copy, and at least once (an
#: import has no location yet; an image recorded without one holds data).
_stored = _images.c.size * sa.case((_copies == 0, 1), else_=_copies)


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
        stored = sa.func.coalesce(sa.func.sum(_stored), 0)
        busy = (sa.select(sa.func.count())
                .where(mine, sa.or_(_images.c.status.in_(BUSY),
                                    _copying_count > 0))
                .scalar_subquery())
        query = sa.select(
            self._of(mine, WITH_DATA, stored).label('stored_bytes'),
            self._of(mine, STAGED, total).label('staged_bytes'),
            busy.label('busy_images'))
        return self.read(query)
