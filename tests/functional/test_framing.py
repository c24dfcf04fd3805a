"""Body framing as a client sees it on the wire: chunk sizes, transfer and
content codings, ``Expect: 100-continue`` (contract section 3).

Raw requests on real sockets, to the real ``imgmw-api`` (gunicorn and the
shipped pipeline): what the server layer and the size filter answer to
each framing, and that a refused upload leaves the image as every failed
upload does.
"""

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
