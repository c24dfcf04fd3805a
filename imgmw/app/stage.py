"""Stage: ``PUT /v2/images/{id}/stage`` (contract section 4).

The first half of Glance's interoperable import (``glance-direct``): the
client sends the image data to this node's *staging area*, then asks for
its import (:mod:`imgmw.app.importer`), which moves it into a store.

A stage goes through the same filters as an upload and is checked as
contract rows 1 to 6, 8, 9 and 13 to 22 of section 3, with Glance's
differences: the policy is ``modify_image``; ``disk_format`` and
``container_format`` need not be set yet; the image must be ``queued``,
else 409 ``Image status transition from <status> to uploading is not
allowed``; ``X-Image-Meta-Store`` is ignored (the store is chosen at
import); the checksums of the body are not recorded (the import computes
them). The image is ``uploading``, held by this process, while the body
streams; on success it stays ``uploading`` with its ``size`` set and
checksums null, and the registry records which node staged it (the hidden
property ``os_glance_stage_host``). Any failure removes what was written and
returns the image to ``queued``; an image deleted meanwhile answers 404, as
Glance.

The staging area is a directory of this node (option ``staging_dir`` of
the data app, default ``<state_dir>/staging``), one file per image named
after its id, written as the file store writes (temporary file, ``fsync``,
rename): a crash leaves no partial file under an image's name. It is not a
store: it never appears in ``/v2/info/stores`` and no download reads it.
With several API nodes sharing a registry, each has its own staging area;
the stage records this node's ``worker_self_reference_url`` (of
``[DEFAULT]``), and an import that reaches another node is forwarded here
(:mod:`imgmw.app.forward`). Without that option the stage records the host
name and staging directory, and the import must reach this node.
"""

import logging
import os
import socket
import typing

import webob
import webob.exc

from imgmw.app import download
from imgmw.app import errors
from imgmw.app import images
from imgmw.app import stores
from imgmw.app.stores import filesystem
from imgmw.app import upload
from imgmw import environ as keys


LOG = logging.getLogger(__name__)

#: The id of the staging area in logs and errors (Glance's name for it).
STAGING_ID = 'os_glance_staging_store'


class StagingArea:
    """This node's staging directory: one file per staged image.

    A thin layer over a :class:`imgmw.app.stores.filesystem.FilesystemStore`
    (same durability and error translation), addressed by image id.
    """

    def __init__(self, directory: str,
                 self_url: typing.Optional[str] = None):
        self.store = filesystem.FilesystemStore(
            STAGING_ID, {'filesystem_store_datadir': directory})
        self.directory = self.store.datadir
        #: Which staging area this is, as recorded with a staged image:
        #: this node's ``worker_self_reference_url``, where other nodes
        #: forward its imports, else ``<host name>:<directory>``.
        self.host = self_url or '%s:%s' % (socket.gethostname(),
                                           self.directory)

    def url(self, image_id: str) -> str:
        return filesystem.SCHEME + os.path.join(self.directory, image_id)

    def add(self, image_id: str, reader: stores.Reader,
            chunk_size: int) -> stores.Stored:
        return self.store.add(image_id, reader, chunk_size)

    def open(self, image_id: str) -> typing.BinaryIO:
        """The staged data; :class:`stores.DataNotFound` when gone."""
        return self.store.open(self.url(image_id))

    def size(self, image_id: str) -> int:
        return self.store.size(self.url(image_id))

    def remove(self, image_id: str) -> None:
        """Remove the staged data of ``image_id``, partial or whole.

        Never raises: failures are logged by the store.
        """
        self.store.remove_partial(image_id)

    def iter_listing(self) -> typing.Iterator[stores.Listed]:
        """Every staged file and stage in progress, for the orphan sweep.

        :raises stores.StorageUnavailable: the directory cannot be read.
        """
        return self.store.iter_listing()

    def remove_listed(self, listed: stores.Listed) -> None:
        self.store.remove_listed(listed)


def staging_area(options: typing.Mapping[str, typing.Any]) -> StagingArea:
    """The staging area of the data app's parsed ``options``."""
    directory = (options.get('staging_dir')
                 or os.path.join(options['state_dir'], 'staging'))
    return StagingArea(directory, options.get('worker_self_reference_url'))


class Stage(upload.Upload):
    """One stage of ``record`` by the data app ``app``."""

    IN_PROGRESS = 'uploading'

    def __call__(self) -> webob.Response:
        staging = self.app.stores.staging
        self.check()
        self.start()
        stored = self.stream(staging.store)
        return self.commit(staging.store, stored, None)

    def check(self) -> None:
        """Row 9 with ``modify_image``, then the status (section 4)."""
        authorize = keys.require(self.environ, keys.AUTHORIZE,
                                 upload.READER)
        authorize('modify_image', images.policy_target(self.record))
        status = self.record['status']
        if status != 'queued':
            raise errors.bad_transition(status, self.IN_PROGRESS)

    def commit(self, store: stores.Store, stored: stores.Stored,
               digests) -> webob.Response:
        """Record the size and the stage host; the image stays uploading."""
        try:
            staged = self.registry.finish_stage(
                self.image_id, self.holder, stored.size,
                self.app.stores.staging.host)
            if staged is None:
                raise upload.UploadLost()
        except BaseException as err:
            self.fail(store, stored, err)
        LOG.info('Image %s: %d bytes staged', self.image_id, stored.size)
        return download.no_content()

    def deleted_error(self) -> webob.exc.HTTPException:
        # Glance answers a stage of an image deleted meanwhile with 404.
        return errors.image_not_found(self.image_id)
