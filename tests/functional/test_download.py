"""Download over HTTP against a real imgmw-api: contract section 5."""

import hashlib
import http.client
import os

from tests.functional import base


SIZE = 1000
DATA = b''.join(base.iter_pattern(SIZE, seed='download'))
MD5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()


class TestDownload(base.FunctionalTest):

    def active_image(self, data: bytes = DATA) -> str:
        image = self.create_image()
        resp = self.upload(image['id'], data)
        self.assertEqual(204, resp.status_code, resp.text)
        return image['id']

    def assert_range(self, image_id, header, first, last):
        resp = self.download(image_id, headers={'Range': header})
        self.assertEqual(206, resp.status_code, (header, resp.text))
        self.assertEqual('bytes %d-%d/%d' % (first, last, SIZE),
                         resp.headers['Content-Range'], header)
        self.assertEqual(DATA[first:last + 1], resp.content, header)
        self.assertEqual(str(last + 1 - first),
                         resp.headers['Content-Length'])

    def test_full_download_5_14(self):
        image_id = self.active_image()
        resp = self.download(image_id)
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual(DATA, resp.content)
        self.assertEqual('application/octet-stream',
                         resp.headers['Content-Type'])
        self.assertEqual(str(SIZE), resp.headers['Content-Length'])
        self.assertEqual(MD5, resp.headers['Content-MD5'])
        self.assertEqual('"%s"' % MD5, resp.headers['ETag'])
        self.assertEqual('bytes', resp.headers['Accept-Ranges'])
        self.assertTrue(resp.headers['Repr-Digest'].startswith('sha-512=:'))
        self.assertIn('x-openstack-request-id', resp.headers)

    def test_head_is_get_without_body_5(self):
        image_id = self.active_image()
        resp = self.download(image_id, method='HEAD')
        self.assertEqual(200, resp.status_code)
        self.assertEqual(b'', resp.content)
        self.assertEqual(str(SIZE), resp.headers['Content-Length'])
        self.assertEqual(MD5, resp.headers['Content-MD5'])

    def test_single_ranges_5_13(self):
        image_id = self.active_image()
        self.assert_range(image_id, 'bytes=0-9', 0, 9)
        self.assert_range(image_id, 'bytes=990-', 990, 999)
        self.assert_range(image_id, 'bytes=-5', 995, 999)
        self.assert_range(image_id, 'bytes=500-99999', 500, 999)
        self.assert_range(image_id, 'bytes=-5000', 0, 999)

    def test_if_range_mismatch_gives_whole_image_5_13(self):
        image_id = self.active_image()
        resp = self.download(image_id, headers={'Range': 'bytes=0-9',
                                                'If-Range': '"other"'})
        self.assertEqual(200, resp.status_code)
        self.assertEqual(DATA, resp.content)

    def test_other_range_unit_ignored_5_8(self):
        image_id = self.active_image()
        resp = self.download(image_id, headers={'Range': 'items=0-9'})
        self.assertEqual(200, resp.status_code)
        self.assertEqual(DATA, resp.content)

    def test_multiple_ranges_5_9(self):
        image_id = self.active_image()
        resp = self.download(image_id, headers={'Range': 'bytes=0-1,5-6'})
        self.assert_error(resp, 400, 'Requests with multiple ranges are not '
                          'supported in Glance.')

    def test_malformed_range_5_10(self):
        image_id = self.active_image()
        for header in ('bytes=', 'bytes=-', 'bytes=3-1'):
            resp = self.download(image_id, headers={'Range': header})
            self.assert_error(resp, 416, 'Invalid Range header.')
            self.assertEqual('bytes */%d' % SIZE,
                             resp.headers['Content-Range'], header)

    def test_range_start_beyond_size_5_11(self):
        image_id = self.active_image()
        resp = self.download(image_id, headers={'Range': 'bytes=1000-'})
        self.assert_error(resp, 416, 'Invalid start position in Range '
                          'header. Start position MUST be in the inclusive '
                          'range [0, 999].')
        self.assertEqual('bytes */1000', resp.headers['Content-Range'])

    def test_if_none_match_5_12(self):
        image_id = self.active_image()
        resp = self.download(image_id,
                             headers={'If-None-Match': '"%s"' % MD5})
        self.assertEqual(304, resp.status_code)
        self.assertEqual(b'', resp.content)

    def test_image_without_data_5_6(self):
        image = self.create_image()
        for headers in ({}, {'Range': 'bytes=0-9'}):
            resp = self.download(image['id'], headers=headers)
            self.assertEqual(204, resp.status_code, resp.text)
            self.assertEqual(b'', resp.content)
            self.assertNotIn('Content-Type', resp.headers)

    def test_unknown_image_5_3(self):
        resp = self.download('0b9c1d1e-0000-4000-8000-000000000000')
        self.assert_error(resp, 404, 'No image found with ID '
                          '0b9c1d1e-0000-4000-8000-000000000000')

    def test_body_not_expected_5_2(self):
        image_id = self.active_image()
        resp = self.request('GET', '/v2/images/%s/file' % image_id,
                            data=b'abc')
        self.assert_error(resp, 400, 'A body is not expected with this '
                          'request.')

    def test_chunked_body_not_expected_5_2(self):
        image_id = self.active_image()
        resp = self.raw_request(
            'GET', '/v2/images/%s/file' % image_id,
            [('Transfer-Encoding', 'chunked')], body=b'3\r\nabc\r\n0\r\n\r\n')
        self.assertEqual(400, resp.status, resp.body)
        self.assertIn(b'A body is not expected with this request.',
                      resp.body)

    def test_data_missing_from_store_5_7(self):
        image_id = self.active_image()
        for path in self.image_files(image_id):
            os.remove(path)
        resp = self.download(image_id)
        self.assert_error(resp, 503, 'Image data for %s is unavailable.'
                          % image_id)

    def test_data_altered_on_disk_is_never_delivered_whole_5(self):
        """The body is cut before the first block that does not match."""
        image_id = self.active_image(DATA * 3000)
        paths = self.image_files(image_id)
        self.assertEqual(1, len(paths))
        with open(paths[0], 'r+b') as stored:
            stored.seek(1500000)
            stored.write(b'corrupt')
        conn = http.client.HTTPConnection('127.0.0.1', self.server.port,
                                          timeout=30)
        self.addCleanup(conn.close)
        conn.request('GET', '/v2/images/%s/file' % image_id)
        resp = conn.getresponse()
        self.assertEqual(200, resp.status)
        self.assertEqual(str(len(DATA) * 3000),
                         resp.getheader('Content-Length'))
        err = self.assertRaises(http.client.IncompleteRead, resp.read)
        # Bytes 1500000.. are in the second block of 1 MiB.
        self.assertEqual((DATA * 3000)[:base.MiB], err.partial)
        self.assertIn('Image %s, store default: block 1 (bytes 1048576-'
                      '2097151) does not match its digest' % image_id,
                      self.server.log())
        # Ranges are verified too: one in the intact first block is
        # served, one reaching into the second block is cut.
        part = self.download(image_id, headers={'Range': 'bytes=0-99'})
        self.assertEqual(206, part.status_code)
        self.assertEqual((DATA * 3000)[:100], part.content)
        conn.close()
        conn.request('GET', '/v2/images/%s/file' % image_id,
                     headers={'Range': 'bytes=1000000-1100000'})
        resp = conn.getresponse()
        self.assertEqual(206, resp.status)
        err = self.assertRaises(http.client.IncompleteRead, resp.read)
        self.assertEqual((DATA * 3000)[1000000:base.MiB], err.partial)


class TestLargeImage(base.FunctionalTest):
    """A 100 MiB image goes through and comes back byte for byte."""

    SIZE = 100 * base.MiB

    def test_100_mib_round_trip_3_24_5_14(self):
        md5, sha512 = base.pattern_digests(self.SIZE, seed='large')
        image = self.create_image()
        resp = self.upload(image['id'],
                           base.PatternStream(self.SIZE, seed='large'))
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], self.SIZE, md5, sha512)

        resp = self.download(image['id'], stream=True)
        self.addCleanup(resp.close)
        self.assertEqual(200, resp.status_code)
        self.assertEqual(str(self.SIZE), resp.headers['Content-Length'])
        expected = base.iter_pattern(self.SIZE, seed='large')
        received = 0
        for index, block in enumerate(expected):
            got = resp.raw.read(len(block))
            self.assertEqual(len(block), len(got), 'block %d short' % index)
            if got != block:
                self.fail('block %d differs' % index)
            received += len(got)
        self.assertEqual(b'', resp.raw.read(1))
        self.assertEqual(self.SIZE, received)
