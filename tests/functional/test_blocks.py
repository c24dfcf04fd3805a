"""Downloads verified block by block, through the real imgmw-api.

A byte flipped in any block of the stored data cuts a full or ranged
download at that block: the client gets every byte before it, none of it,
and never ``Content-Length`` bytes (contract section 5: a corrupt image is
never delivered whole). File store, and s3 through moto in server mode.
An image recorded without block digests is still verified, by the checksum
filter's hash of the whole body. The file store's downloads are tested
under imgmw-api's worker (verify-then-sendfile) and under gunicorn's own
gthread worker (verified in Python, as any other WSGI server).
"""

import http.client
import os
import typing

import sqlalchemy as sa

from tests.functional import base
from tests import s3fixture


MiB = base.MiB
#: 3 whole blocks and a short one.
SIZE = 3 * MiB + 123456


class BlockVerificationMixin:
    """The cases, for any store; subclasses say how to corrupt the data."""

    upload_headers: typing.Mapping[str, str] = {}

    def stored_image(self) -> typing.Tuple[str, bytes]:
        image = self.create_image()
        data = b''.join(base.iter_pattern(SIZE, seed=image['id']))
        resp = self.upload(image['id'], data,
                           headers=dict(self.upload_headers))
        self.assertEqual(204, resp.status_code, resp.text)
        return image['id'], data

    def corrupt(self, image_id: str, data: bytes, position: int) -> None:
        raise NotImplementedError

    def flip(self, image_id: str, data: bytes, position: int) -> bytes:
        changed = bytearray(data)
        changed[position] ^= 0x01
        self.corrupt(image_id, bytes(changed), position)
        return bytes(changed)

    def get_raw(self, image_id: str,
                headers: typing.Mapping[str, str] = None
                ) -> typing.Tuple[int, typing.Dict[str, str], bytes, bool]:
        """Status, headers, the bytes received, and whether all came."""
        conn = http.client.HTTPConnection('127.0.0.1', self.server.port,
                                          timeout=30)
        self.addCleanup(conn.close)
        conn.request('GET', '/v2/images/%s/file' % image_id,
                     headers=dict(headers or {}))
        resp = conn.getresponse()
        try:
            body = resp.read()
            complete = True
        except http.client.IncompleteRead as err:
            body = err.partial
            complete = False
        return resp.status, dict(resp.getheaders()), body, complete

    def assert_cut(self, image_id: str, data: bytes, first: int, last: int,
                   bad_block: int, headers=None) -> None:
        """A download of bytes first..last stops at ``bad_block``.

        When that is the first block of the download, it is found before
        the response starts: no location is good, 503 (contract 5.7).
        """
        delivered = max(bad_block * MiB - first, 0)
        if delivered == 0:
            resp = self.download(image_id, headers=headers)
            self.assert_error(resp, 503, 'Image data for %s is unavailable.'
                              % image_id)
            self.assertIn('block %d (bytes %d-%d) does not match its digest'
                          % (bad_block, bad_block * MiB,
                             min((bad_block + 1) * MiB, SIZE) - 1),
                          self.server.log())
            return
        status, got_headers, body, complete = self.get_raw(image_id,
                                                           headers)
        self.assertIn(status, (200, 206))
        self.assertEqual(str(last - first + 1),
                         got_headers['Content-Length'])
        self.assertFalse(complete, 'a corrupt body was delivered whole')
        self.assertEqual(data[first:first + delivered], body)
        self.assertIn('block %d (bytes %d-%d) does not match its digest'
                      % (bad_block, bad_block * MiB,
                         min((bad_block + 1) * MiB, SIZE) - 1),
                      self.server.log())

    def test_flipped_byte_in_any_block_cuts_full_download_there_5(self):
        for block in range(4):
            image_id, data = self.stored_image()
            position = block * MiB + (77 if block < 3 else 123455)
            self.flip(image_id, data, position)
            self.assert_cut(image_id, data, 0, SIZE - 1, block)

    def test_flipped_byte_cuts_a_range_at_that_block_5_13(self):
        image_id, data = self.stored_image()
        self.flip(image_id, data, 2 * MiB + 5)
        # Starts inside block 0, ends inside block 3: cut at block 2.
        self.assert_cut(image_id, data, 1000, SIZE - 10, 2,
                        {'Range': 'bytes=1000-%d' % (SIZE - 10)})
        # Inside the bad block, away from the bad byte: nothing sent.
        self.assert_cut(image_id, data, 2 * MiB + 100, 2 * MiB + 199, 2,
                        {'Range': 'bytes=%d-%d' % (2 * MiB + 100,
                                                   2 * MiB + 199)})
        # Ranges that do not touch the bad block are served whole.
        for first, last in ((0, 2 * MiB - 1), (3 * MiB, SIZE - 1)):
            status, _, body, complete = self.get_raw(
                image_id, {'Range': 'bytes=%d-%d' % (first, last)})
            self.assertEqual(206, status)
            self.assertTrue(complete)
            self.assertEqual(data[first:last + 1], body)

    def test_bad_edge_block_outside_the_range_is_still_caught_5_13(self):
        """The whole first and last blocks are read and verified."""
        image_id, data = self.stored_image()
        self.flip(image_id, data, MiB + 10)
        self.assert_cut(image_id, data, MiB + 500000, MiB + 500009, 1,
                        {'Range': 'bytes=%d-%d' % (MiB + 500000,
                                                   MiB + 500009)})

    def test_intact_image_is_served_by_blocks_5_14(self):
        image_id, data = self.stored_image()
        status, _, body, complete = self.get_raw(image_id)
        self.assertEqual((200, True), (status, complete))
        self.assertEqual(data, body)
        for first, last in ((0, 0), (MiB - 1, MiB), (5, SIZE - 1),
                            (SIZE - 1, SIZE - 1)):
            status, _, body, complete = self.get_raw(
                image_id, {'Range': 'bytes=%d-%d' % (first, last)})
            self.assertEqual((206, True), (status, complete))
            self.assertEqual(data[first:last + 1], body)

    def test_image_without_block_digests_is_still_verified_5(self):
        """An image recorded before block digests: the checksum filter."""
        image_id, data = self.stored_image()
        with self.registry.begin() as connection:
            connection.execute(sa.text(
                'UPDATE image_locations SET block_algorithm = NULL, '
                'block_size = NULL, block_digests = NULL '
                'WHERE image_id = :id'), {'id': image_id})
        status, _, body, complete = self.get_raw(image_id)
        self.assertEqual((200, True), (status, complete))
        self.assertEqual(data, body)
        self.flip(image_id, data, MiB + 3)
        status, got_headers, body, complete = self.get_raw(image_id)
        self.assertEqual(200, status)
        self.assertEqual(str(SIZE), got_headers['Content-Length'])
        self.assertFalse(complete)
        self.assertLess(len(body), SIZE)
        self.assertIn('Image %s: the data sent does not match' % image_id,
                      self.server.log())


class TestFileStore(BlockVerificationMixin, base.FunctionalTest):

    def corrupt(self, image_id: str, data: bytes, position: int) -> None:
        paths = self.image_files(image_id)
        self.assertEqual(1, len(paths))
        with open(paths[0], 'r+b') as stored:
            stored.seek(position)
            stored.write(data[position:position + 1])
        self.assertEqual(SIZE, os.path.getsize(paths[0]))

    def test_short_data_is_cut_at_the_missing_block_5(self):
        image_id, data = self.stored_image()
        path = self.image_files(image_id)[0]
        os.truncate(path, 2 * MiB + 10)
        # The size no longer matches: no location serves it (row 5.7).
        resp = self.download(image_id)
        self.assertEqual(503, resp.status_code)


class TestFileStoreWithoutSendfileHook(TestFileStore):
    """The same, under gunicorn's own gthread worker.

    There the verified body is iterated in Python, as under any WSGI
    server (imgmw-api's worker sends it with verify-then-sendfile,
    :mod:`imgmw.cmd.sendfile`).
    """

    server_args = ('--worker-class', 'gthread')


class TestS3Store(BlockVerificationMixin, base.FunctionalTest):

    server_options = {'enabled_backends': 'fast:file, cheap:s3',
                      'default_backend': 'fast'}
    upload_headers = {'X-Image-Meta-Store': 'cheap'}

    @classmethod
    def setUpClass(cls) -> None:
        cls.moto = s3fixture.MotoServer()
        cls.moto.setUp()
        try:
            cls.bucket = cls.moto.make_bucket()
            options = cls.moto.store_options(cls.bucket)
            cls.server_config = '\n'.join(
                ['[store:fast]',
                 'filesystem_store_datadir = %(here)s/state/fast', '',
                 '[store:cheap]']
                + ['%s = %s' % option for option in options.items()] + [''])
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

    def corrupt(self, image_id: str, data: bytes, position: int) -> None:
        self.assertIn(image_id, self.moto.keys(self.bucket))
        self.moto.client.put_object(Bucket=self.bucket, Key=image_id,
                                    Body=data)
