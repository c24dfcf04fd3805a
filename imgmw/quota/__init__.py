"""Per-project storage limits: limit sources and cross-node reservations.

The quota filter (:mod:`imgmw.filters.quota`, the operator's manual) is
built from three parts, each replaceable:

* :mod:`imgmw.quota.limits`: the limits in force for a project, from the
  paste file (``limit_source = static``), or :mod:`imgmw.quota.keystone`:
  from Keystone unified limits through oslo.limit
  (``limit_source = keystone``, imported only then);
* :mod:`imgmw.quota.usage`: what a project already uses, from a usage
  provider: imgmw's registry (:class:`imgmw.app.usage.RegistryUsage`,
  ``usage_source = imgmw``) or Glance's tables
  (:class:`imgmw.quota.glance.GlanceUsage`, ``usage_source = glance``);
* :class:`imgmw.quota.reservations.ReservationStore`: reservations of
  uploads in progress, in the same SQL database, checked and taken under a
  per-project row lock so that no two API nodes ever grant the same bytes.

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
