"""Format inspection of the staged data of an import (contract section 4).

The inspect filter (:mod:`imgmw.filters.inspect`) publishes, on ``POST
.../import``, ``environ['imgmw.inspector']``: a factory of its ``Scan``,
built with its options (``require_image_format_match``,
``gpt_safety_checks_nonfatal``), so an operator configures inspection once,
in ``[filter:inspect]``. The import feeds the scan the staged data as it
copies it to the first store (one pass, the same one that hashes it) and
asks for the verdict before anything else: a refusal fails the import as
any failed import does (the copy is removed, the image returns to
``queued``, the staged data is removed) and the import's task fails with
``InvalidImageData: <the upload's 415 message>``. A good image gets the
inspection's ``virtual_size``, whatever its format.

Without the inspect filter in the pipeline nothing is inspected, as for
uploads, and ``virtual_size`` is the size for ``raw`` only. Stage is never
inspected (as Glance), so the import always is.
"""

import typing

from imgmw import environ as keys
from imgmw import streams


class InvalidImageData(Exception):
    """The staged data failed its format inspection (Glance's name)."""


def scan_for(environ: dict, record: typing.Mapping):
    """The inspect filter's scan of ``record``'s data, or None."""
    start = environ.get(keys.IMPORT_INSPECT)
    return start(record) if start is not None else None


def verdict(scan) -> typing.Any:
    """The inspection of a scanned stream, or None when not inspected.

    :raises InvalidImageData: the data is refused.
    """
    if scan is None:
        return None
    try:
        return scan.finish()
    except streams.StreamError as err:
        raise InvalidImageData(err.http_error.explanation) from None


def release(scan) -> None:
    """Let go of a scan that will not be judged (its copy failed)."""
    if scan is not None:
        scan.release()


def virtual_size(inspection, disk_format: str,
                 size: int) -> typing.Optional[int]:
    """The image's ``virtual_size`` after an import of ``size`` bytes."""
    if inspection is not None:
        return inspection.virtual_size
    return size if disk_format == 'raw' and size else None
