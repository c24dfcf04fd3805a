"""Upload over HTTP against a real imgmw-api: contract section 3.

Every failed upload is checked against the section's invariants from
outside the server: the image is ``queued`` with no size nor checksum, in
the API and in the registry, no file of it is left in the state directory,
and a retry succeeds.
"""

import base64
import hashlib
import threading

from tests.functional import base


DATA = b'imgmw functional upload\n' * 100


def digests(data: bytes):
    return (hashlib.md5(data, usedforsecurity=False).hexdigest(),
            hashlib.sha512(data).hexdigest())


class TestUpload(base.FunctionalTest):

    def assert_retry_succeeds(self, image_id: str, data: bytes = DATA):
        resp = self.upload(image_id, data)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image_id, len(data), *digests(data))

    def test_upload_content_length_3_24(self):
        image = self.create_image()
        resp = self.upload(image['id'], DATA)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assertEqual(b'', resp.content)
        self.assertNotIn('Content-Type', resp.headers)
        self.assertIn('x-openstack-request-id', resp.headers)
        self.assert_active_with(image['id'], len(DATA), *digests(DATA))
        row = self.registry_row(image['id'])
        self.assertEqual(('active', len(DATA)), (row['status'], row['size']))
        self.assertEqual(1, len(self.image_files(image['id'])))

    def test_upload_chunked_undeclared_3_24(self):
        image = self.create_image()
        resp = self.upload(image['id'], [DATA[:1000], DATA[1000:]],
                           chunked=True)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], len(DATA), *digests(DATA))

    def test_upload_chunked_declared_3_24(self):
        image = self.create_image()
        resp = self.upload(image['id'], DATA, chunked=True, headers={
            'x-openstack-image-size': str(len(DATA))})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], len(DATA), *digests(DATA))

    def test_empty_image_declared_zero_3_18(self):
        image = self.create_image()
        resp = self.upload(image['id'], b'', chunked=True,
                           headers={'x-openstack-image-size': '0'})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], 0, *digests(b''))

    def test_wrong_content_type_3_2(self):
        image = self.create_image()
        resp = self.upload(image['id'], DATA,
                           headers={'Content-Type': 'text/plain'})
        self.assert_error(resp, 415, 'Invalid content type text/plain')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_content_type_case_and_parameters_accepted_3_2(self):
        image = self.create_image()
        resp = self.upload(image['id'], DATA, headers={
            'Content-Type': 'Application/Octet-Stream ; a=b'})
        self.assertEqual(204, resp.status_code, resp.text)

    def test_malformed_size_header_3_3(self):
        image = self.create_image()
        for value in ('+4', '-1', '0x4', '1_0'):
            resp = self.upload(image['id'], b'abcd', headers={
                'x-openstack-image-size': value})
            self.assert_error(
                resp, 400, 'Invalid or missing image size in request '
                'headers.')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_no_length_nor_chunked_3_4(self):
        image = self.create_image()
        resp = self.raw_request(
            'PUT', '/v2/images/%s/file' % image['id'],
            [('Content-Type', 'application/octet-stream'),
             ('Connection', 'close')])
        self.assertEqual(411, resp.status, resp.body)
        self.assertIn(b'A request body with a declared length or chunked '
                      b'encoding is required.', resp.body)
        self.assertIn('x-openstack-request-id', resp.headers)
        self.assert_failed_upload_left_nothing(image['id'])

    def test_size_header_and_content_length_differ_3_5(self):
        image = self.create_image()
        resp = self.upload(image['id'], DATA, headers={
            'x-openstack-image-size': str(len(DATA) + 1)})
        self.assert_error(
            resp, 400, 'Size mismatch: x-openstack-image-size %d does not '
            'match Content-Length %d' % (len(DATA) + 1, len(DATA)))
        self.assert_failed_upload_left_nothing(image['id'])
        self.assert_retry_succeeds(image['id'])

    def test_unknown_image_3_8(self):
        resp = self.upload('6e4b5c7a-0000-4000-8000-000000000000', DATA)
        self.assert_error(resp, 404, 'No image found with ID '
                          '6e4b5c7a-0000-4000-8000-000000000000')

    def test_upload_to_active_image_3_10(self):
        image = self.create_image()
        self.assertEqual(204, self.upload(image['id'], DATA).status_code)
        resp = self.upload(image['id'], b'other data')
        self.assert_error(resp, 409, 'Image status transition from active '
                          'to saving is not allowed')
        self.assert_active_with(image['id'], len(DATA), *digests(DATA))

    def test_formats_unset_3_11(self):
        image = self.create_image(disk_format=None, container_format=None)
        resp = self.upload(image['id'], DATA)
        self.assert_error(resp, 400, 'Properties disk_format, '
                          'container_format must be set prior to saving '
                          'data.')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_one_format_unset_3_11(self):
        image = self.create_image(container_format=None)
        resp = self.upload(image['id'], DATA)
        self.assert_error(resp, 400, 'Property container_format must be '
                          'set prior to saving data.')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_more_bytes_than_declared_3_14(self):
        image = self.create_image()
        resp = self.upload(image['id'], DATA, chunked=True, headers={
            'x-openstack-image-size': '100'})
        self.assert_error(resp, 400, 'Size exceeds: expected 100 bytes, '
                          'got ')
        self.assert_failed_upload_left_nothing(image['id'])
        self.assert_retry_succeeds(image['id'])

    def test_fewer_bytes_than_declared_chunked_3_15(self):
        image = self.create_image()
        resp = self.upload(image['id'], DATA, chunked=True, headers={
            'x-openstack-image-size': str(len(DATA) + 10)})
        self.assert_error(resp, 400, 'Size mismatch: expected %d bytes, '
                          'got %d bytes' % (len(DATA) + 10, len(DATA)))
        self.assert_failed_upload_left_nothing(image['id'])
        self.assert_retry_succeeds(image['id'])

    def test_content_length_body_cut_short_client_listens_3_15(self):
        image = self.create_image()
        resp = self.raw_request(
            'PUT', '/v2/images/%s/file' % image['id'],
            [('Content-Type', 'application/octet-stream'),
             ('Content-Length', '1000')], body=DATA[:500], then='shutdown')
        self.assertEqual(400, resp.status, resp.body)
        self.assertIn(b'Size mismatch: expected 1000 bytes, got 500 bytes',
                      resp.body)
        self.assertIn('x-openstack-request-id', resp.headers)
        self.assert_failed_upload_left_nothing(image['id'])
        self.assert_retry_succeeds(image['id'])

    def test_content_length_body_one_byte_short_3_15(self):
        image = self.create_image()
        resp = self.raw_request(
            'PUT', '/v2/images/%s/file' % image['id'],
            [('Content-Type', 'application/octet-stream'),
             ('Content-Length', str(len(DATA)))], body=DATA[:-1],
            then='shutdown')
        self.assertEqual(400, resp.status, resp.body)
        self.assertIn(b'Size mismatch: expected %d bytes, got %d bytes'
                      % (len(DATA), len(DATA) - 1), resp.body)
        self.assert_failed_upload_left_nothing(image['id'])
        self.assert_retry_succeeds(image['id'])

    def test_chunked_body_without_its_terminating_chunk_3_15(self):
        """The client stops before ``0\r\n\r\n``: nothing is stored.

        With the size declared, the answer is row 15's; without it, the
        body still never completes, so no truncated image becomes active.
        """
        for declared in (True, False):
            image = self.create_image()
            headers = [('Content-Type', 'application/octet-stream'),
                       ('Transfer-Encoding', 'chunked')]
            if declared:
                headers.append(('x-openstack-image-size', str(len(DATA))))
            half = DATA[:len(DATA) // 2]
            body = b'%x\r\n%s\r\n' % (len(half), half)
            resp = self.raw_request('PUT', '/v2/images/%s/file' % image['id'],
                                    headers, body=body, then='shutdown')
            self.assertEqual(400, resp.status, resp.body)
            # gunicorn hands on nothing of a chunk whose successor never
            # came, so the count is what reached the filters.
            self.assertRegex(
                resp.body.decode(),
                r'Size mismatch: expected %d bytes, got \d+ bytes'
                % len(DATA) if declared else
                r'Size mismatch: the request body ended after \d+ bytes')
            self.assert_failed_upload_left_nothing(image['id'])
            self.assert_retry_succeeds(image['id'])

    def test_client_disconnects_mid_body_3(self):
        image = self.create_image()
        sock = self.open_raw(
            'PUT', '/v2/images/%s/file' % image['id'],
            [('Content-Type', 'application/octet-stream'),
             ('Content-Length', str(4 * base.MiB))],
            body=b'x' * base.MiB)
        try:
            self.wait_for_status(image['id'], 'saving')
        finally:
            sock.close()
        self.assert_failed_upload_left_nothing(image['id'])
        self.assert_retry_succeeds(image['id'])

    def test_empty_chunked_undeclared_3_18(self):
        image = self.create_image()
        resp = self.upload(image['id'], [], chunked=True)
        self.assert_error(resp, 400, 'Image data is empty. Declare '
                          'x-openstack-image-size: 0 to store an empty '
                          'image.')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_client_md5_mismatch_3_19(self):
        image = self.create_image()
        wrong = base64.b64encode(hashlib.md5(
            b'other', usedforsecurity=False).digest()).decode()
        resp = self.upload(image['id'], DATA, headers={'Content-MD5': wrong})
        self.assert_error(resp, 400, 'Checksum verification failed: md5 '
                          'mismatch')
        self.assert_failed_upload_left_nothing(image['id'])
        right = base64.b64encode(hashlib.md5(
            DATA, usedforsecurity=False).digest()).decode()
        resp = self.upload(image['id'], DATA, headers={'Content-MD5': right})
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], len(DATA), *digests(DATA))

    def test_client_sha256_digest_mismatch_3_19(self):
        image = self.create_image()
        wrong = base64.b64encode(hashlib.sha256(b'other').digest()).decode()
        resp = self.upload(image['id'], DATA, chunked=True, headers={
            'Content-Digest': 'sha-256=:%s:' % wrong})
        self.assert_error(resp, 400, 'Checksum verification failed: '
                          'sha-256 mismatch')
        self.assert_failed_upload_left_nothing(image['id'])


class TestConcurrentUploads(base.FunctionalTest):
    """Contract 3.10 and 3.12: one upload at a time; the loser gets 409."""

    def test_second_upload_while_first_streams_gets_409_3_10(self):
        image = self.create_image()
        path = '/v2/images/%s/file' % image['id']
        data = b'y' * (2 * base.MiB)
        sock = self.open_raw(
            'PUT', path, [('Content-Type', 'application/octet-stream'),
                          ('Content-Length', str(len(data)))],
            body=data[:base.MiB])
        try:
            self.wait_for_status(image['id'], 'saving')
            resp = self.upload(image['id'], DATA)
            self.assert_error(resp, 409, 'Image status transition from '
                              'saving to saving is not allowed')
            sock.sendall(data[base.MiB:])
            first = self.read_raw(sock, 'PUT')
        finally:
            sock.close()
        self.assertEqual(204, first.status, first.body)
        self.assert_active_with(image['id'], len(data), *digests(data))

    def test_two_simultaneous_uploads_one_204_one_409_3_12(self):
        image = self.create_image()
        data = b'z' * (8 * base.MiB)
        statuses = []
        start = threading.Barrier(2)

        def upload():
            start.wait()
            resp = self.upload(image['id'], data)
            statuses.append((resp.status_code, resp.text))

        threads = [threading.Thread(target=upload) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual([204, 409], sorted(s for s, _ in statuses),
                         statuses)
        loser = [text for status, text in statuses if status == 409][0]
        self.assertIn('to saving is not allowed', loser)
        self.assert_active_with(image['id'], len(data), *digests(data))
        self.assertEqual(1, len(self.image_files(image['id'])))


class TestSizeCap(base.FunctionalTest):
    """Contract 3.6 and 3.16, with ``-o image_size_cap=1024``."""

    server_options = {'image_size_cap': '1024'}

    def test_declared_size_above_cap_3_6(self):
        image = self.create_image()
        resp = self.upload(image['id'], b'x' * 1025)
        self.assert_error(resp, 413, 'The incoming image is too large: The '
                          'provided image is too large.')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_undeclared_stream_above_cap_3_16(self):
        image = self.create_image()
        resp = self.upload(image['id'], [b'x' * 1000, b'x' * 1000],
                           chunked=True)
        self.assert_error(resp, 413, 'The incoming image is too large: The '
                          'provided image is too large.')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_exactly_the_cap_is_accepted_3_6(self):
        image = self.create_image()
        resp = self.upload(image['id'], b'x' * 1024)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], 1024, *digests(b'x' * 1024))
