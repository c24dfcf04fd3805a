"""The ``s3`` store through the real imgmw-api (contract 3, 5 and 6).

A multi-store server (``fast:file``, ``cheap:s3``) in front of an S3
service on a loopback port, started by the tests: moto in server mode, or
OpenStack Swift's s3api with ``IMGMW_TEST_S3=swift`` (tests/s3fixture.py).
"""

import base64
import hashlib
import os
import typing

from tests.functional import base
from tests import s3fixture


MiB = base.MiB
PART_MIB = 5
MULTI_STORE = {'enabled_backends': 'fast:file, cheap:s3',
               'default_backend': 'fast'}


def store_sections(endpoint: str, bucket: str,
                   access_key: str = s3fixture.ACCESS_KEY,
                   secret_key: str = s3fixture.SECRET_KEY) -> str:
    return '\n'.join((
        '[store:fast]',
        'filesystem_store_datadir = %(here)s/state/fast',
        'store_description = Local disks',
        '',
        '[store:cheap]',
        's3_store_host = %s' % endpoint,
        's3_store_access_key = %s' % access_key,
        's3_store_secret_key = %s' % secret_key,
        's3_store_bucket = %s' % bucket,
        's3_store_large_object_size = %d' % PART_MIB,
        's3_store_large_object_chunk_size = %d' % PART_MIB,
        '',
    ))


class S3StoreTest(base.FunctionalTest):

    server_options = MULTI_STORE

    @classmethod
    def setUpClass(cls) -> None:
        cls.moto = s3fixture.server()
        cls.moto.setUp()
        try:
            cls.bucket = cls.moto.make_bucket()
            cls.server_config = store_sections(
                cls.moto.endpoint, cls.bucket, cls.moto.access_key,
                cls.moto.secret_key)
            super().setUpClass()
        except BaseException:
            cls.moto.cleanUp()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
        finally:
            cls.moto.cleanUp()

    def upload_pattern(self, image_id: str, size: int,
                       store: typing.Optional[str] = None,
                       **headers: str):
        if store is not None:
            headers['X-Image-Meta-Store'] = store
        return self.upload(image_id, base.PatternStream(size, image_id),
                           headers=headers)

    def assert_in_bucket(self, image_id: str, size: int) -> None:
        self.assertIn(image_id, self.moto.keys(self.bucket))
        head = self.moto.client.head_object(Bucket=self.bucket,
                                            Key=image_id)
        self.assertEqual(size, head['ContentLength'])

    def assert_not_in_bucket(self, image_id: str) -> None:
        self.assertNotIn(image_id, self.moto.keys(self.bucket))
        self.assertNotIn(image_id, self.moto.unfinished_uploads(self.bucket))

    def test_upload_to_cheap_lands_in_the_bucket(self):
        """Contract 3.24 and 6: X-Image-Meta-Store picks the s3 store."""
        image_id = self.create_image()['id']
        size = 3 * PART_MIB * MiB + 1234
        resp = self.upload_pattern(image_id, size, store='cheap')
        self.assertEqual(204, resp.status_code, resp.text)
        md5, sha512 = base.pattern_digests(size, image_id)
        image = self.assert_active_with(image_id, size, md5, sha512)
        self.assertEqual('cheap', image['stores'])
        self.assert_in_bucket(image_id, size)
        # Sent in parts, none left unfinished, nothing on local disk.
        etag = self.moto.client.head_object(Bucket=self.bucket,
                                            Key=image_id)['ETag']
        self.assertTrue(etag.endswith('-4"'), etag)
        self.assertEqual([], self.moto.unfinished_uploads(self.bucket))
        self.assertEqual([], self.image_files(image_id))

    def test_upload_without_a_store_lands_in_the_default(self):
        image_id = self.create_image()['id']
        resp = self.upload(image_id, b'default data')
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual('fast', self.get_image(image_id)['stores'])
        files = self.image_files(image_id)
        self.assertEqual([os.path.join(self.server.state_dir, 'fast',
                                       image_id)], files)
        self.assert_not_in_bucket(image_id)

    def test_small_upload_to_cheap_is_one_object(self):
        image_id = self.create_image()['id']
        resp = self.upload(image_id, b'small', headers={
            'X-Image-Meta-Store': 'cheap'})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual(b'small', self.moto.get(self.bucket, image_id))

    def stored_in_cheap(self, size: int) -> typing.Tuple[str, bytes]:
        image_id = self.create_image()['id']
        resp = self.upload_pattern(image_id, size, store='cheap')
        self.assertEqual(204, resp.status_code, resp.text)
        data = b''.join(base.iter_pattern(size, image_id))
        return image_id, data

    def test_full_and_ranged_downloads(self):
        """Contract 5: 200 with the whole data, 206 with a range."""
        image_id, data = self.stored_in_cheap(PART_MIB * MiB + 100)
        resp = self.download(image_id)
        self.assertEqual(200, resp.status_code)
        self.assertEqual(len(data), int(resp.headers['Content-Length']))
        self.assertEqual(data, resp.content)
        first, last = PART_MIB * MiB - 10, PART_MIB * MiB + 20
        resp = self.download(image_id, headers={
            'Range': 'bytes=%d-%d' % (first, last)})
        self.assertEqual(206, resp.status_code, resp.text)
        self.assertEqual('bytes %d-%d/%d' % (first, last, len(data)),
                         resp.headers['Content-Range'])
        self.assertEqual(data[first:last + 1], resp.content)
        resp = self.download(image_id, headers={'Range': 'bytes=-7'})
        self.assertEqual(206, resp.status_code, resp.text)
        self.assertEqual(data[-7:], resp.content)

    def test_download_of_an_object_gone_from_the_bucket(self):
        """Contract 5.7: active, data missing from every store: 503."""
        image_id, _data = self.stored_in_cheap(100)
        self.moto.client.delete_object(Bucket=self.bucket, Key=image_id)
        resp = self.download(image_id)
        self.assert_error(resp, 503,
                          'Image data for %s is unavailable.' % image_id)

    def test_delete_removes_the_object(self):
        image_id, _data = self.stored_in_cheap(100)
        resp = self.request('DELETE', '/v2/images/%s' % image_id)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_not_in_bucket(image_id)

    def test_checksum_failure_after_parts_leaves_nothing(self):
        """Contract 3.19: the last part withheld, the upload aborted."""
        image_id = self.create_image()['id']
        size = 2 * PART_MIB * MiB + 1
        wrong = base64.b64encode(hashlib.md5(b'other').digest()).decode()
        resp = self.upload_pattern(image_id, size, store='cheap',
                                   **{'Content-MD5': wrong})
        self.assert_error(resp, 400,
                          'Checksum verification failed: md5 mismatch')
        self.assert_failed_upload_left_nothing(image_id)
        self.assert_not_in_bucket(image_id)

    def test_short_body_mid_part_leaves_nothing(self):
        """Contract 3.15: the body ends early, after a whole part."""
        image_id = self.create_image()['id']
        size = 2 * PART_MIB * MiB
        sent = PART_MIB * MiB + MiB
        body = b''.join(base.iter_pattern(sent, image_id))
        resp = self.raw_request(
            'PUT', '/v2/images/%s/file' % image_id,
            headers=[('Content-Type', 'application/octet-stream'),
                     ('Content-Length', str(size)),
                     ('X-Image-Meta-Store', 'cheap')],
            body=body, then='shutdown')
        self.assertEqual(400, resp.status, resp.body)
        self.assertIn(b'Size mismatch: expected %d bytes, got %d bytes'
                      % (size, sent), resp.body)
        self.assert_failed_upload_left_nothing(image_id)
        self.assert_not_in_bucket(image_id)

    def test_stores_detail_shows_no_secret(self):
        resp = self.request('GET', '/v2/info/stores/detail')
        if resp.status_code == 403:
            self.skipTest('stores_info_detail is admin only here')
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertNotIn(self.moto.secret_key, resp.text)
        self.assertNotIn(self.moto.secret_key, self.server.log())
        cheap = [store for store in resp.json()['stores']
                 if store['id'] == 'cheap']
        self.assertEqual('s3', cheap[0]['type'])
        self.assertEqual(self.bucket, cheap[0]['properties']['bucket'])


class UnreachableS3StoreTest(base.FunctionalTest):
    """An s3 store whose endpoint is down at start-up and after."""

    server_options = MULTI_STORE

    @classmethod
    def setUpClass(cls) -> None:
        cls.endpoint = 'http://127.0.0.1:%d' % s3fixture.free_port()
        cls.server_config = store_sections(cls.endpoint, 'images')
        super().setUpClass()

    def test_start_up_reports_it_and_serves_the_other_store(self):
        self.assertIn('Store cheap: cannot reach %s (bucket images)'
                      % self.endpoint, self.server.log())
        image_id = self.create_image()['id']
        resp = self.upload(image_id, b'data')
        self.assertEqual(204, resp.status_code, resp.text)

    def test_upload_is_unavailable_and_leaves_the_image_queued(self):
        """Contract 3.21."""
        image_id = self.create_image()['id']
        resp = self.upload(image_id, b'data', headers={
            'X-Image-Meta-Store': 'cheap'})
        self.assert_error(resp, 503, 'Image storage is unavailable: store '
                          'cheap: the object store cannot be reached')
        self.assert_failed_upload_left_nothing(image_id)
