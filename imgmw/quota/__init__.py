"""The quota filter's engine: limit sources and cross-node reservations.

This package belongs to the quota filter (:mod:`imgmw.filters.quota`, the
operator's manual) and to nothing else: it imports neither the data app
nor another filter. The data app uses two of its interfaces, never its
tables directly: it provides a usage provider
(:mod:`imgmw.app.usage`), and its recovery releases the reservations of
dead holders (:func:`imgmw.quota.reservations.release_held`). The engine
is built from these parts, each replaceable:

* :mod:`imgmw.quota.limits`: the limits in force for a project, from the
  paste file (``limit_source = static``), or :mod:`imgmw.quota.keystone`:
  from Keystone unified limits through oslo.limit
  (``limit_source = keystone``, imported only then);
* :mod:`imgmw.quota.usage`: what a project already uses, from a usage
  provider: imgmw's registry (:class:`imgmw.app.usage.RegistryUsage`,
  ``usage_source = imgmw``) or Glance's tables
  (:class:`imgmw.quota.glance.GlanceUsage`, ``usage_source = glance``);
* :class:`imgmw.quota.reservations.ReservationStore`: the reserver,
  with an injected clock: reservations of uploads in progress in an SQL
  database every API node shares, checked and taken under a per-project
  row lock so that no two API nodes ever grant the same bytes;
* :mod:`imgmw.quota.schema` and :mod:`imgmw.quota.migrations`: its
  tables, and their own Alembic chain.

The resources are those of Glance, with Glance's names.
"""

#: Bytes of the project's images that hold data (MiB in Keystone).
IMAGE_SIZE_TOTAL = 'image_size_total'
#: Uploads and stages in progress (a count).
IMAGE_COUNT_UPLOADING = 'image_count_uploading'
#: Bytes staged for import (MiB in Keystone).
IMAGE_STAGE_TOTAL = 'image_stage_total'

RESOURCES = (IMAGE_SIZE_TOTAL, IMAGE_COUNT_UPLOADING, IMAGE_STAGE_TOTAL)

#: Resources counted in MiB in Keystone and in ``/v2/info/usage``.
MIB_RESOURCES = frozenset((IMAGE_SIZE_TOTAL, IMAGE_STAGE_TOTAL))

MiB = 1 << 20
