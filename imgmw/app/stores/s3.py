"""The ``s3`` store: image data as objects in a bucket of an S3 service.

Any S3-compatible object store will do: Ceph RGW, Swift's s3api, MinIO,
AWS S3. Each image is one object named after its id in
``s3_store_bucket``; its location URL is ``s3://<bucket>/<image id>``. The
URL carries no endpoint and no credentials (glance_store wrote
``s3://<access>:<secret>@<host>/<bucket>/<key>``, leaking the secret into
the registry): the endpoint and the keys are the store's configuration, so
they can be rotated without rewriting a single location. Locations in
glance_store's form are not served.

Uploads stream: the body is read one part at a time into buffers of
``s3_store_large_object_chunk_size`` MiB, each sent and then reused, and
nothing is written to local disk. A body that ends within the first part,
below ``s3_store_large_object_size``, is sent with one ``PutObject``; any
other is a multipart upload whose parts go up ``s3_store_thread_pools`` at
a time (glance_store's name; default 2): the next part is read while the
previous ones are sent, and at most that many part buffers exist, so an
upload holds at most ``s3_store_thread_pools`` ×
``s3_store_large_object_chunk_size`` MiB (20 MiB by default). More parts
at a time help wherever a part's round trip is what limits the rate (a
remote endpoint, a service that stores each part before it answers); each
costs one more part of memory per upload. With 1, each part is sent
before the next is read. The parts are fixed-size, so an
image may have up to 10,000 parts of that size (100 GiB with the default
10 MiB); a larger one fails with 413 naming the option to raise.

Any failure of an upload (the store's, or the body's: a size or checksum
check failing, the client going away) aborts the multipart upload, once
no part of it is still on its way, or
deletes the object a ``PutObject`` may have left, before the error
propagates; a completion that fails or goes unanswered (a service may take
minutes to assemble a large object: the driver waits up to 15 minutes,
keeping the upload's, import's or copy's hold fresh meanwhile) also
deletes the object it may have produced. An abort that fails (the
store went away mid-upload) is tried again in the background, with a
growing delay, for up to an hour: aborting one upload id can never touch
the data of a later, successful retry. A worker that dies meanwhile leaves
the unfinished upload to ``imgmw-manage recover``
(:meth:`S3Store.remove_partial`) or ``sweep``, or to a bucket lifecycle
rule (``AbortIncompleteMultipartUpload``, advised). The same holds for a
``copy-image`` into the store: recovery aborts the uploads of a copy
whose worker died, and ``sweep`` never takes those of a live copy,
however long it runs (:mod:`imgmw.app.copier`); a lifecycle rule's
delay must exceed the longest copy.

Downloads are ranged ``GetObject`` requests streamed to the client; the
connection is released when the response is closed.

The bucket must be dedicated to this store: :meth:`S3Store.iter_urls`, for
an orphan sweep, lists every object in it.

Options (in ``[store:<id>]`` with multi-store, else the app's section or
``[DEFAULT]``), glance_store's names and meanings::

    [DEFAULT]
    enabled_backends = fast:file, cheap:s3
    default_backend = fast

    [store:cheap]
    s3_store_host = https://rgw.example:8080
    s3_store_access_key = ...
    s3_store_secret_key = ...
    s3_store_bucket = images
    s3_store_large_object_chunk_size = 16

====================================  ======================================
option                                meaning
====================================  ======================================
``s3_store_host``                     endpoint URL; ``http://`` is assumed
                                      when no scheme is given (required)
``s3_store_access_key``               access key (required)
``s3_store_secret_key``               secret key (required; never logged)
``s3_store_bucket``                   the bucket (required)
``s3_store_create_bucket_on_put``     create the bucket at the first
                                      upload if it is missing (false)
``s3_store_large_object_size``        MiB from which uploads are multipart
                                      (100; bodies longer than one part
                                      always are)
``s3_store_large_object_chunk_size``  MiB per part, at least 5 (10)
``s3_store_region_name``              region, for signing and bucket
                                      creation (none: the endpoint's)
``s3_store_bucket_url_format``        ``auto``, ``path`` or ``virtual``
                                      bucket addressing (``auto``)
``s3_store_cacert``                   CA bundle for an https endpoint
                                      (the system's)
``s3_store_thread_pools``             parts of an upload buffered and
                                      sent at a time (2)
====================================  ======================================

Start-up: each worker asks for the bucket once (``HeadBucket``, a few
seconds at most). A bucket that does not exist stops start-up with a
message naming it, unless ``s3_store_create_bucket_on_put`` is set: a typo
in a bucket name is a configuration error. An endpoint that cannot be
reached, or that refuses the credentials, is logged as an error naming the
endpoint and the bucket, and start-up goes on: the other stores keep
serving, and this one answers 503 until it is back.

Errors: ``EntityTooLarge``, ``QuotaExceeded`` and HTTP 507 are
:class:`~imgmw.app.stores.StorageFull` (413); a missing object is
:class:`~imgmw.app.stores.DataNotFound`; anything else (unreachable
endpoint, ``AccessDenied``, a 5xx) is
:class:`~imgmw.app.stores.StorageUnavailable` (503). Clients are told the
store and the S3 error code only; the log has the endpoint and bucket.
"""

import collections
from concurrent import futures
import logging
import threading
import time
import typing
import urllib.parse

import boto3
from botocore import config as botocore_config
from botocore import exceptions as botocore_exc

from imgmw.app import stores
from imgmw import backends
from imgmw import config


LOG = logging.getLogger(__name__)

SCHEME = 's3://'
MiB = 1 << 20
#: S3's limits on multipart uploads.
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10000

OPTS = backends.OPTS['s3']
REQUIRED = backends.REQUIRED['s3']

_FULL_CODES = frozenset(('EntityTooLarge', 'QuotaExceeded',
                         'InsufficientStorage', '507'))
_MISSING_CODES = frozenset(('NoSuchKey', 'NotFound', '404'))
_NO_BUCKET_CODES = frozenset(('NoSuchBucket',))

# Requests of the service: a few retries with backoff; checksums only where
# S3 requires them, as many S3-compatible stores reject botocore's newer
# default trailing checksums; connections kept for a threaded worker's
# concurrent requests.
_CLIENT_CONFIG = dict(
    connect_timeout=10, read_timeout=60, max_pool_connections=32,
    retries={'mode': 'standard', 'max_attempts': 3},
    request_checksum_calculation='when_required',
    response_checksum_validation='when_required')
# Completing a multipart upload may take minutes (the service assembles
# the object; AWS sends blanks meanwhile, some services send nothing).
_COMPLETE_CONFIG = dict(_CLIENT_CONFIG, read_timeout=900)
# The start-up probe: one quick try, so a dead endpoint delays no worker.
_PROBE_CONFIG = dict(_CLIENT_CONFIG, connect_timeout=3, read_timeout=5,
                     retries={'mode': 'standard', 'max_attempts': 1})


def endpoint_url(host: str) -> str:
    """``s3_store_host`` as a URL: ``http://`` unless a scheme is given."""
    host = host.strip().rstrip('/')
    if '://' not in host:
        host = 'http://' + host
    return host


def error_code(err: botocore_exc.ClientError) -> str:
    """The S3 error code of ``err``, else its HTTP status as a string."""
    error = err.response.get('Error', {})
    return str(error.get('Code') or err.response.get(
        'ResponseMetadata', {}).get('HTTPStatusCode', ''))


class ObjectBody:
    """A ranged ``GetObject`` response body: ``read(size)`` and ``close()``.

    Closing releases the connection, whether or not the body was read to
    its end. Failures of the stream are raised as
    :class:`~imgmw.app.stores.StorageUnavailable`.
    """

    def __init__(self, store: 'S3Store', body, length: int):
        self._store = store
        self._body = body
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0 or self._body is None:
            return b''
        if size is None or size < 0 or size > self._left:
            size = self._left
        try:
            data = self._body.read(size)
        except botocore_exc.BotoCoreError as err:
            raise self._store.translate(err, 'GetObject') from err
        self._left -= len(data)
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class AbortRetrier:
    """Aborts, in a background thread, uploads that could not be aborted.

    :param abort: ``abort(key, upload_id)``; returns when the upload is
        gone (aborted, or already finished), raises otherwise.
    :param delay: seconds before the first retry; doubled after each
        round, up to ``max_delay``.
    :param give_up_after: seconds after which an upload is left to the
        sweep and lifecycle rules, with an error logged.
    """

    def __init__(self, abort: typing.Callable[[str, str], None],
                 delay: float = 1.0, max_delay: float = 60.0,
                 give_up_after: float = 3600.0,
                 clock: typing.Callable[[], float] = time.monotonic):
        self.abort = abort
        self.delay = delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self.clock = clock
        self._pending: typing.Dict[typing.Tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._thread: typing.Optional[threading.Thread] = None

    @property
    def pending(self) -> typing.List[typing.Tuple[str, str]]:
        with self._lock:
            return list(self._pending)

    def add(self, key: str, upload_id: str) -> None:
        with self._lock:
            self._pending.setdefault((key, upload_id), self.clock())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name='imgmw-s3-abort', daemon=True)
                self._thread.start()

    def _run(self) -> None:
        delay = self.delay
        while True:
            time.sleep(delay)
            for (key, upload_id), since in self.pending_since():
                self._try(key, upload_id, since)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
            delay = min(delay * 2, self.max_delay)

    def pending_since(self) -> typing.List[
            typing.Tuple[typing.Tuple[str, str], float]]:
        with self._lock:
            return list(self._pending.items())

    def _try(self, key: str, upload_id: str, since: float) -> None:
        try:
            self.abort(key, upload_id)
        except Exception as err:
            if self.clock() - since < self.give_up_after:
                return
            LOG.error('Giving up aborting the multipart upload %s of %s: '
                      '%s; imgmw-manage sweep or a lifecycle rule will '
                      'remove it', upload_id, key, err)
        else:
            LOG.info('Aborted the multipart upload %s of %s on retry',
                     upload_id, key)
        with self._lock:
            self._pending.pop((key, upload_id), None)


class PartSender:
    """Sends the parts of one multipart upload, several at a time.

    At most ``limit`` part buffers exist (the caller's first one, and new
    ones made while fewer exist), and a buffer is refilled only once its part
    was sent: memory holds at most ``limit`` parts, and up to ``limit``
    parts are on their way while the next one is read. With a ``limit`` of
    1 each part is sent in the calling thread before the next is read.

    :param upload: ``upload(number, body)`` sends one part and returns
        its ``{'PartNumber', 'ETag'}``; it runs in a thread of the sender.
    """

    def __init__(self, upload: typing.Callable[[int, bytearray],
                                               typing.Dict],
                 limit: int):
        self.upload = upload
        self.limit = max(limit, 1)
        self.made = 1
        self.free: typing.List[bytearray] = []
        self.sent: typing.List[typing.Dict] = []
        self.pending: typing.Deque[
            typing.Tuple[futures.Future, bytearray]] = collections.deque()
        self.executor = None
        if self.limit > 1:
            self.executor = futures.ThreadPoolExecutor(
                max_workers=self.limit, thread_name_prefix='imgmw-s3-part')

    def send(self, number: int, body: bytearray) -> None:
        """Send part ``number``; raises the failure of an earlier part."""
        if self.executor is None:
            self.sent.append(self.upload(number, body))
            self.free.append(body)
            return
        self._raise_failures()
        self.pending.append((self.executor.submit(self.upload, number,
                                                  body), body))

    def free_buffer(self, size: int) -> bytearray:
        """A buffer to fill with the next part; waits for one if needed."""
        if self.free:
            return self.free.pop()
        if self.made < self.limit:
            self.made += 1
            return bytearray(size)
        future, body = self.pending.popleft()
        self.sent.append(future.result())
        return body

    def finish(self) -> typing.List[typing.Dict]:
        """Wait for every part; their list in order, for the completion."""
        while self.pending:
            future, _ = self.pending.popleft()
            self.sent.append(future.result())
        self._shutdown()
        return sorted(self.sent, key=lambda part: part['PartNumber'])

    def stop(self) -> None:
        """Send no more parts; return once none is on its way."""
        for future, _ in self.pending:
            future.cancel()
        futures.wait([future for future, _ in self.pending])
        self.pending.clear()
        self._shutdown()

    def _raise_failures(self) -> None:
        for future, _ in self.pending:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def _shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None


class S3Store(stores.Store):
    """A bucket of an S3-compatible object store."""

    type_name = 's3'

    def __init__(self, store_id: str, options: typing.Mapping[str, str]):
        super().__init__(store_id, options)
        # Checked by imgmw.backends; other stores' and common keys ignored.
        values = config.parse(OPTS, options, {}, 'store %s' % store_id)
        for name in REQUIRED:
            if not values[name]:
                raise config.ConfigError('store %s: %s is required'
                                         % (store_id, name))
        chunk_mib = values['s3_store_large_object_chunk_size']
        if chunk_mib * MiB < MIN_PART_SIZE:
            raise config.ConfigError(
                'store %s: s3_store_large_object_chunk_size must be at '
                'least %d (MiB)' % (store_id, MIN_PART_SIZE // MiB))
        self.endpoint = endpoint_url(values['s3_store_host'])
        self.bucket = values['s3_store_bucket']
        self.region = values['s3_store_region_name'] or None
        self.create_bucket_on_put = values['s3_store_create_bucket_on_put']
        self.part_size = chunk_mib * MiB
        self.large_object_size = values['s3_store_large_object_size'] * MiB
        self.thread_pools = values['s3_store_thread_pools']
        session = boto3.session.Session(
            aws_access_key_id=values['s3_store_access_key'],
            aws_secret_access_key=values['s3_store_secret_key'])
        self.client = self._client(session, values, _CLIENT_CONFIG)
        self.completer = self._client(session, values, _COMPLETE_CONFIG)
        self.abort_retrier = AbortRetrier(self._abort)
        self._check_bucket(self._client(session, values, _PROBE_CONFIG))

    def _client(self, session, values: typing.Mapping,
                settings: typing.Mapping):
        client_config = botocore_config.Config(
            s3={'addressing_style': values['s3_store_bucket_url_format']},
            **settings)
        return session.client(
            's3', endpoint_url=self.endpoint, region_name=self.region,
            verify=values['s3_store_cacert'] or None, config=client_config)

    def _check_bucket(self, probe) -> None:
        """Report at start-up a bucket that cannot be used.

        :raises config.ConfigError: the bucket does not exist and may not
            be created.
        """
        try:
            probe.head_bucket(Bucket=self.bucket)
        except botocore_exc.ClientError as err:
            code = error_code(err)
            if code not in ('404', 'NoSuchBucket'):
                LOG.error('Store %s: bucket %s at %s cannot be used (%s); '
                          'check the credentials and permissions. Requests '
                          'to this store fail with 503 meanwhile.',
                          self.store_id, self.bucket, self.endpoint, code)
            elif self.create_bucket_on_put:
                LOG.info('Store %s: bucket %s at %s does not exist yet; it '
                         'is created at the first upload.', self.store_id,
                         self.bucket, self.endpoint)
            else:
                raise config.ConfigError(
                    'store %s: bucket %s does not exist at %s; create it or '
                    'set s3_store_create_bucket_on_put = true'
                    % (self.store_id, self.bucket, self.endpoint))
        except botocore_exc.BotoCoreError as err:
            LOG.error('Store %s: cannot reach %s (bucket %s): %s. Requests '
                      'to this store fail with 503 until it is back.',
                      self.store_id, self.endpoint, self.bucket, err)
        else:
            LOG.info('Store %s: bucket %s at %s is ready.', self.store_id,
                     self.bucket, self.endpoint)

    # Errors.

    def translate(self, err: Exception, operation: str) -> stores.StoreError:
        """The store exception of a botocore error, logged."""
        if isinstance(err, botocore_exc.ClientError):
            code = error_code(err)
            detail = 'store %s: %s' % (self.store_id, code)
        else:
            code = None
            detail = 'store %s: the object store cannot be reached' % (
                self.store_id)
        if code in _MISSING_CODES:
            return stores.DataNotFound('store %s: no such object'
                                       % self.store_id)
        LOG.error('Store %s: %s on bucket %s at %s failed: %s',
                  self.store_id, operation, self.bucket, self.endpoint, err)
        if code in _FULL_CODES:
            return stores.StorageFull(detail)
        return stores.StorageUnavailable(detail)

    def _call(self, operation: str, client=None, **kwargs) -> typing.Dict:
        """``client.<operation>(**kwargs)``, its errors translated."""
        method = getattr(client or self.client, _snake(operation))
        try:
            return method(**kwargs)
        except (botocore_exc.ClientError,
                botocore_exc.BotoCoreError) as err:
            raise self.translate(err, operation) from err

    # Writing.

    def add(self, image_id: str, reader: stores.Reader,
            chunk_size: int) -> stores.Stored:
        key = self._key(image_id)
        part = bytearray(self.part_size)
        filled = _fill(reader, part, chunk_size)
        if filled < self.part_size and filled < self.large_object_size:
            del part[filled:]
            self._put(key, part, reader)
        else:
            filled = self._multipart(key, reader, chunk_size, part, filled)
        LOG.debug('Store %s: wrote %d bytes to %s', self.store_id, filled,
                  key)
        return stores.Stored(self._url(key), filled)

    def _put(self, key: str, body: bytearray,
             reader: stores.Reader) -> None:
        try:
            with stores.kept_alive(reader):
                self._with_bucket('PutObject', Bucket=self.bucket, Key=key,
                                  Body=body)
        except BaseException:
            self._delete_quietly(key)
            raise

    def _multipart(self, key: str, reader: stores.Reader, chunk_size: int,
                   part: bytearray, filled: int) -> int:
        """Upload ``part`` then the rest of ``reader`` in parts.

        :param filled: the bytes ``part`` holds.
        :returns: the byte count.
        """
        upload_id = self._with_bucket('CreateMultipartUpload',
                                      Bucket=self.bucket,
                                      Key=key)['UploadId']
        sender = PartSender(
            lambda number, body: self._upload_part(key, upload_id, number,
                                                   body),
            self.thread_pools)
        completing = False
        try:
            size, number = 0, 0
            while filled:
                ended = filled < len(part)
                if ended:
                    del part[filled:]
                number += 1
                self._check_part_number(key, number)
                sender.send(number, part)
                size += filled
                if ended:
                    break
                part = sender.free_buffer(self.part_size)
                filled = _fill(reader, part, chunk_size)
            # The last parts' uploads, then the assembly (minutes for a
            # large object), read nothing: the hold is kept fresh.
            with stores.kept_alive(reader):
                parts = sender.finish()
                completing = True
                self._call('CompleteMultipartUpload', client=self.completer,
                           Bucket=self.bucket, Key=key, UploadId=upload_id,
                           MultipartUpload={'Parts': parts})
        except BaseException:
            # No part may still be on its way when the upload is aborted:
            # S3 would keep a part that lands after the abort.
            sender.stop()
            self._abort_quietly(key, upload_id)
            if completing:
                # The service may have completed it all the same.
                self._delete_quietly(key)
            raise
        return size

    def _check_part_number(self, key: str, number: int) -> None:
        if number > MAX_PARTS:
            LOG.error('Store %s: %s needs more than %d parts of %d MiB; '
                      'raise s3_store_large_object_chunk_size',
                      self.store_id, key, MAX_PARTS, self.part_size // MiB)
            raise stores.StorageFull(
                'store %s: more than %d parts of %d MiB (raise '
                's3_store_large_object_chunk_size)'
                % (self.store_id, MAX_PARTS, self.part_size // MiB))

    def _upload_part(self, key: str, upload_id: str, number: int,
                     body: bytearray) -> typing.Dict:
        result = self._call('UploadPart', Bucket=self.bucket, Key=key,
                            UploadId=upload_id, PartNumber=number,
                            Body=body)
        return {'PartNumber': number, 'ETag': result['ETag']}

    def _with_bucket(self, operation: str, **kwargs) -> typing.Dict:
        """The first write of an upload; creates a missing bucket if told."""
        if self.create_bucket_on_put:
            try:
                return getattr(self.client, _snake(operation))(**kwargs)
            except botocore_exc.ClientError as err:
                if error_code(err) not in _NO_BUCKET_CODES:
                    raise self.translate(err, operation) from err
            except botocore_exc.BotoCoreError as err:
                raise self.translate(err, operation) from err
            self._create_bucket()
        return self._call(operation, **kwargs)

    def _create_bucket(self) -> None:
        kwargs = {'Bucket': self.bucket}
        if self.region and self.region != 'us-east-1':
            kwargs['CreateBucketConfiguration'] = {
                'LocationConstraint': self.region}
        LOG.info('Store %s: creating bucket %s at %s', self.store_id,
                 self.bucket, self.endpoint)
        try:
            self.client.create_bucket(**kwargs)
        except botocore_exc.ClientError as err:
            # Another worker may have just created it.
            if error_code(err) not in ('BucketAlreadyOwnedByYou',):
                raise self.translate(err, 'CreateBucket') from err
        except botocore_exc.BotoCoreError as err:
            raise self.translate(err, 'CreateBucket') from err

    def _abort(self, key: str, upload_id: str) -> None:
        """Abort one upload; one that no longer exists is done."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                               UploadId=upload_id)
        except botocore_exc.ClientError as err:
            if error_code(err) != 'NoSuchUpload':
                raise

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            self._abort(key, upload_id)
        except (botocore_exc.ClientError, botocore_exc.BotoCoreError) as err:
            LOG.error('Store %s: cannot abort the multipart upload %s of %s '
                      'in bucket %s at %s: %s; trying again in the '
                      'background', self.store_id, upload_id, key,
                      self.bucket, self.endpoint, err)
            self.abort_retrier.add(key, upload_id)

    def _delete_quietly(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (botocore_exc.ClientError, botocore_exc.BotoCoreError) as err:
            LOG.error('Store %s: cannot delete %s from bucket %s at %s: %s',
                      self.store_id, key, self.bucket, self.endpoint, err)

    # Reading and deleting.

    def open(self, url: str, offset: int = 0,
             length: typing.Optional[int] = None) -> ObjectBody:
        key = self._key_of_url(url)
        if length is None:
            length = max(self.size(url) - offset, 0)
        if length <= 0:
            # No byte to read (S3 has no empty range); the data is there.
            self.size(url)
            return ObjectBody(self, None, 0)
        response = self._call('GetObject', Bucket=self.bucket, Key=key,
                              Range='bytes=%d-%d' % (offset,
                                                     offset + length - 1))
        return ObjectBody(self, response['Body'], length)

    def size(self, url: str) -> int:
        key = self._key_of_url(url)
        return self._call('HeadObject', Bucket=self.bucket,
                          Key=key)['ContentLength']

    def delete(self, url: str) -> None:
        # S3 deletes of a missing key succeed.
        self._call('DeleteObject', Bucket=self.bucket,
                   Key=self._key_of_url(url))

    def owns(self, url: str) -> bool:
        try:
            self._key_of_url(url)
        except stores.DataNotFound:
            return False
        return True

    def remove_partial(self, image_id: str) -> None:
        """Abort every unfinished upload of ``image_id``, delete its object.

        As the file store does, for an image whose upload never finished:
        its data, complete or not, belongs to no image.
        """
        key = self._key(image_id)
        try:
            for upload in self._unfinished_uploads(key):
                self._abort_quietly(key, upload['UploadId'])
        except (botocore_exc.ClientError, botocore_exc.BotoCoreError) as err:
            LOG.error('Store %s: cannot list the unfinished uploads of %s: '
                      '%s', self.store_id, key, err)
        self._delete_quietly(key)

    def _unfinished_uploads(self, key: str) -> typing.Iterator[typing.Dict]:
        paginator = self.client.get_paginator('list_multipart_uploads')
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for upload in page.get('Uploads', ()):
                if upload['Key'] == key:
                    yield upload

    def iter_urls(self) -> typing.Iterator[str]:
        """The URL of every object in the bucket (for an orphan sweep).

        :raises StorageUnavailable: the listing failed.
        """
        paginator = self.client.get_paginator('list_objects_v2')
        try:
            for page in paginator.paginate(Bucket=self.bucket):
                for item in page.get('Contents', ()):
                    yield self._url(item['Key'])
        except (botocore_exc.ClientError, botocore_exc.BotoCoreError) as err:
            raise self.translate(err, 'ListObjectsV2') from err

    def iter_listing(self) -> typing.Iterator[stores.Listed]:
        """Every object and unfinished multipart upload of the bucket.

        For the orphan sweep; the bucket must be dedicated to this store.

        :raises StorageUnavailable: the listing failed.
        """
        try:
            for page in self.client.get_paginator(
                    'list_objects_v2').paginate(Bucket=self.bucket):
                for item in page.get('Contents', ()):
                    yield stores.Listed(
                        self._url(item['Key']), item['Key'],
                        item['LastModified'].timestamp())
            for page in self.client.get_paginator(
                    'list_multipart_uploads').paginate(Bucket=self.bucket):
                for upload in page.get('Uploads', ()):
                    yield stores.Listed(
                        self._url(upload['Key']), upload['Key'],
                        upload['Initiated'].timestamp(), partial=True,
                        token=upload['UploadId'])
        except (botocore_exc.ClientError, botocore_exc.BotoCoreError) as err:
            raise self.translate(err, 'ListObjectsV2') from err

    def remove_listed(self, listed: stores.Listed) -> None:
        """Delete the object, or abort the upload, :meth:`iter_listing` gave.

        :raises StorageUnavailable: the store refused.
        """
        key = self._key_of_url(listed.url)
        if not listed.partial:
            self._call('DeleteObject', Bucket=self.bucket, Key=key)
            return
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=listed.token)
        except botocore_exc.ClientError as err:
            if error_code(err) != 'NoSuchUpload':  # finished meanwhile
                raise self.translate(err, 'AbortMultipartUpload') from err
        except botocore_exc.BotoCoreError as err:
            raise self.translate(err, 'AbortMultipartUpload') from err

    # Names.

    @staticmethod
    def _key(image_id: str) -> str:
        if not image_id or '/' in image_id or image_id.startswith('.'):
            raise ValueError('unsafe image id %r' % image_id)
        return image_id

    def _url(self, key: str) -> str:
        return '%s%s/%s' % (SCHEME, self.bucket, urllib.parse.quote(key))

    def _key_of_url(self, url: str) -> str:
        """The key a location URL names in this store's bucket.

        :raises DataNotFound: not an ``s3://`` URL of this bucket.
        """
        if not url.startswith(SCHEME):
            raise stores.DataNotFound(url)
        bucket, _, key = url[len(SCHEME):].partition('/')
        key = urllib.parse.unquote(key)
        if bucket != self.bucket or not key or '/' in key:
            raise stores.DataNotFound(url)
        return key


def _fill(reader: stores.Reader, buffer: bytearray, chunk_size: int) -> int:
    """Read ``reader`` into ``buffer`` until it is full or the body ends.

    Asks for at most ``chunk_size`` bytes at a time, and never for more
    than room is left. Returns the byte count now held.
    """
    filled = 0
    with memoryview(buffer) as view:
        while filled < len(buffer):
            chunk = reader.read(min(chunk_size, len(buffer) - filled))
            if not chunk:
                break
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
    return filled


def _snake(operation: str) -> str:
    """``PutObject`` -> ``put_object``: boto3's method of an operation."""
    return ''.join('_' + c.lower() if c.isupper() else c
                   for c in operation).lstrip('_')
