"""Usage read from Glance's database (``usage_source = glance``).

In front of Glance the quota filter counts what a project stores from
Glance's own tables, read-only, with SQLAlchemy Core on
``glance_connection`` (the ``[database] connection`` of
``glance-api.conf``; a read-only database user is enough). It counts as
Glance's own quota code does (``glance/db/sqlalchemy/api.py``), so that
``/v2/info/usage`` and the limits agree with Glance's:

``image_size_total``
    ``size`` of each of the owner's images with ``size > 0`` whose status
    is not ``killed``, ``deleted`` or ``pending_delete``, once per live
    location (a row of ``image_locations`` not deleted, whose status is
    not ``deleted``): an image copied to two stores counts twice.
``image_stage_total``
    ``size`` of its images ``uploading`` or ``importing``, and of those
    being copied to more stores (a non-empty
    ``os_glance_importing_to_stores`` property).
``image_count_uploading``
    its images ``importing``, and those being copied. Images in
    ``saving`` (uploads) and ``uploading`` (stages) are not counted here:
    each upload or stage in progress through the filter holds a
    reservation, which already counts it. (Glance counts them; an upload
    that bypasses the filter is thus not counted.)

The reservations themselves live in a database of imgmw's
(``quota_connection``), never in Glance's.
"""

import typing

import sqlalchemy as sa

from imgmw import config
from imgmw.filters.quota import usage


#: Statuses whose images hold no data for Glance's quota code.
GONE = ('killed', 'deleted', 'pending_delete')
STAGED = ('uploading', 'importing')
BUSY = ('importing',)
COPYING_PROPERTY = 'os_glance_importing_to_stores'

_images = sa.table('images', sa.column('id'), sa.column('owner'),
                   sa.column('status'), sa.column('size'))
_locations = sa.table('image_locations', sa.column('image_id'),
                      sa.column('deleted'), sa.column('status'))
_properties = sa.table('image_properties', sa.column('image_id'),
                       sa.column('name'), sa.column('value'),
                       sa.column('deleted'))


class GlanceUsage(usage.ReadOnlyDatabase):
    """A project's usage in Glance's tables; see the module documentation.

    Each reading is one statement in autocommit mode, which takes no lock.

    :param url: SQLAlchemy URL of Glance's database.
    """

    name = 'glance'

    @classmethod
    def from_conf(cls, values: typing.Mapping) -> 'GlanceUsage':
        """:raises config.ConfigError: no ``glance_connection``."""
        if not values.get('glance_connection'):
            raise config.ConfigError(
                'quota filter: usage_source = glance needs '
                'glance_connection, the URL of Glance\'s database')
        return cls(values['glance_connection'])

    def recorded(self, project_id: str,
                 excluded: typing.AbstractSet[str] = frozenset()
                 ) -> usage.RecordedUsage:
        mine = _images.c.owner == project_id
        if excluded:
            mine = sa.and_(mine, _images.c.id.not_in(sorted(excluded)))
        query = sa.select(
            self._stored_bytes(mine).label('stored_bytes'),
            self._staged_bytes(mine).label('staged_bytes'),
            self._busy_images(mine).label('busy_images'))
        return self.read(query)

    @staticmethod
    def _copying():
        """Ids of images being copied to more stores."""
        return (sa.select(_properties.c.image_id)
                .where(_properties.c.name == COPYING_PROPERTY,
                       _properties.c.value != '',
                       _properties.c.deleted == sa.false()))

    @staticmethod
    def _stored_bytes(mine):
        live = sa.and_(_locations.c.image_id == _images.c.id,
                       _locations.c.deleted == sa.false(),
                       _locations.c.status != 'deleted')
        return (sa.select(sa.func.coalesce(sa.func.sum(_images.c.size), 0))
                .select_from(_images.join(_locations, live))
                .where(mine, _images.c.size > 0,
                       _images.c.status.not_in(GONE))
                .scalar_subquery())

    def _staged_bytes(self, mine):
        copying = sa.and_(_images.c.id.in_(self._copying()),
                          _images.c.status.not_in(STAGED + GONE))
        return (sa.select(sa.func.coalesce(sa.func.sum(_images.c.size), 0))
                .where(mine, _images.c.size > 0,
                       sa.or_(_images.c.status.in_(STAGED), copying))
                .scalar_subquery())

    def _busy_images(self, mine):
        copying = sa.and_(_images.c.id.in_(self._copying()),
                          _images.c.status.not_in(
                              ('saving',) + STAGED + GONE))
        return (sa.select(sa.func.count())
                .select_from(_images)
                .where(mine, sa.or_(_images.c.status.in_(BUSY), copying))
                .scalar_subquery())
