"""The resources the quota filter counts, with Glance's names."""

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
