"""Body framing as a client sees it on the wire: chunk sizes, transfer and
content codings, ``Expect: 100-continue`` (contract section 3).

Raw requests on real sockets, to the real ``imgmw-api`` (gunicorn and the
shipped pipeline): what the server layer and the size filter answer to
each framing, and that a refused upload leaves the image as every failed
upload does.
"""

import gzip
import json

from tests.functional import base

OCTETS = ('Content-Type', 'application/octet-stream')
JSON = ('Accept', 'application/json')


def message(resp: base.RawResponse) -> str:
    return json.loads(resp.body)['message'].split('<br />')[0]


class TestChunks(base.FunctionalTest):

    def put(self, image_id: str, headers, body: bytes) -> base.RawResponse:
        return self.raw_request('PUT', '/v2/images/%s/file' % image_id,
                                [OCTETS, JSON] + list(headers), body,
                                then='shutdown')

    def test_a_malformed_chunk_size_is_named(self):
        """Not "the request body ended after 0 bytes": the chunk size."""
        image = self.create_image()
        for body in (b'zz\r\nabc\r\n0\r\n\r\n',
                     b'3\r\nabc\r\nzz\r\nabc\r\n0\r\n\r\n'):
            resp = self.put(image['id'], [('Transfer-Encoding', 'chunked')],
                            body)
            self.assertEqual(400, resp.status, resp.body)
            # The count is what reached the app: gunicorn decodes ahead.
            self.assertRegex(message(resp), r"^Malformed chunked request "
                             r"body after [03] bytes: Invalid chunk size: "
                             r"b'zz'$")
            self.assert_failed_upload_left_nothing(image['id'])

    def test_an_empty_transfer_coding_element_is_ignored(self):
        """RFC 9110 5.6.1: ``chunked, `` is ``chunked`` (gunicorn: 501)."""
        image = self.create_image()
        for value in ('chunked, ', ', chunked', 'chunked ,,'):
            resp = self.put(image['id'], [('Transfer-Encoding', value)],
                            b'4\r\ndata\r\n0\r\n\r\n')
            self.assertEqual(204, resp.status, resp.body)
            self.assertEqual(4, self.get_image(image['id'])['size'])
            self.assertEqual(204, self.request(
                'DELETE', '/v2/images/%s' % image['id']).status_code)
            image = self.create_image()

    def test_encoded_uploads_are_refused_not_stored_encoded(self):
        image = self.create_image()
        data = gzip.compress(b'image data')
        resp = self.put(image['id'], [('Transfer-Encoding', 'gzip, chunked')],
                        b'%x\r\n%s\r\n0\r\n\r\n' % (len(data), data))
        self.assertEqual(400, resp.status, resp.body)
        self.assertEqual('Transfer-Encoding gzip is not accepted: send '
                         'image data as it is, chunked or with '
                         'Content-Length.', message(resp))
        self.assert_failed_upload_left_nothing(image['id'])
        resp = self.put(image['id'], [('Content-Encoding', 'gzip'),
                                      ('Content-Length', str(len(data)))],
                        data)
        self.assertEqual(415, resp.status, resp.body)
        self.assertEqual('Content-Encoding gzip is not accepted: image data '
                         'is stored as it is sent.', message(resp))
        self.assertEqual('identity', resp.headers['Accept-Encoding'])
        self.assert_failed_upload_left_nothing(image['id'])


GiB = 1 << 30


class TestExpectContinue(base.FunctionalTest):
    """``100 Continue`` only once the pipeline reads the body."""

    def expect(self, path: str, headers,
               length: int = GiB) -> base.RawResponse:
        """Send the head of an upload with ``Expect``, no body byte.

        :returns: the first response the server sends.
        """
        sock = self.open_raw('PUT', path, [
            ('Content-Length', str(length)), ('Expect', '100-continue'),
            JSON] + list(headers), timeout=30)
        with sock:
            return self.read_raw(sock, 'PUT')

    def test_a_refused_upload_costs_the_client_no_body_byte(self):
        image = self.create_image()
        refusals = [
            ('/v2/images/%s/file' % image['id'],
             [('Content-Type', 'text/plain')], 415, GiB),
            ('/v2/images/%s/file' % '0' * 8 + '-0000-4000-8000-' + '0' * 12,
             [OCTETS], 404, GiB),
            ('/v2/images/%s/file' % image['id'],
             [OCTETS], 413, 2 << 40),
        ]
        for path, headers, status, length in refusals:
            resp = self.expect(path, headers, length)
            # The final answer first: no 100 Continue went before it.
            self.assertEqual(status, resp.status, resp.body)
            self.assertEqual('close', resp.headers['Connection'])
        self.assert_failed_upload_left_nothing(image['id'])

    def test_an_accepted_upload_gets_100_continue_when_read(self):
        image = self.create_image()
        sock = self.open_raw('PUT', '/v2/images/%s/file' % image['id'], [
            OCTETS, ('Content-Length', '4'), ('Expect', '100-continue')],
            timeout=30)
        with sock:
            interim = b''
            while not interim.endswith(b'\r\n\r\n'):
                interim += sock.recv(1)
            self.assertEqual(b'HTTP/1.1 100 Continue\r\n\r\n', interim)
            sock.sendall(b'data')
            resp = self.read_raw(sock, 'PUT')
        self.assertEqual(204, resp.status, resp.body)
        self.assertEqual(4, self.get_image(image['id'])['size'])
