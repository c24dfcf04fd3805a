"""Tests of imgmw.errors and imgmw.app.errors: the contract's messages."""

import json

import testtools
import webob

from imgmw.app import errors as app_errors
from imgmw import errors


def render(error, accept=None):
    req = webob.Request.blank('/')
    if accept is not None:
        req.headers['Accept'] = accept
    return req.get_response(error)


class RenderingTest(testtools.TestCase):
    """Contract section 2: the body follows Accept."""

    def test_json_alone_gives_message_code_title(self):
        resp = render(errors.size_mismatch(5, 4), 'application/json')
        self.assertEqual('application/json', resp.content_type)
        body = json.loads(resp.body)
        self.assertEqual('400 Bad Request', body['code'])
        self.assertEqual('Bad Request', body['title'])
        self.assertTrue(body['message'].startswith(
            'Size mismatch: expected 5 bytes, got 4 bytes'))

    def test_html_for_any(self):
        resp = render(app_errors.image_not_found('abc'), '*/*')
        self.assertEqual('text/html', resp.content_type)
        self.assertIn(b'No image found with ID abc', resp.body)

    def test_plain_text_otherwise(self):
        resp = render(errors.image_too_large())
        self.assertEqual('text/plain', resp.content_type)
        self.assertEqual(
            b'413 Request Entity Too Large\n\nThe incoming image is too '
            b'large: The provided image is too large.\n\n   ', resp.body)

    def test_415_carries_the_contract_message(self):
        """WebOb's own 415 template would drop it (contract 3.2)."""
        resp = render(errors.invalid_content_type('text/plain'))
        self.assertEqual(415, resp.status_int)
        self.assertIn(b'Invalid content type text/plain', resp.body)


class MessagesTest(testtools.TestCase):
    """A sample of the contract's exact texts."""

    def test_upload_rows(self):
        cases = (
            (errors.invalid_image_size(), 400,
             'Invalid or missing image size in request headers.'),
            (errors.length_required(), 411,
             'A request body with a declared length or chunked encoding is '
             'required.'),
            (errors.size_header_mismatch(4, 5), 400,
             'Size mismatch: x-openstack-image-size 4 does not match '
             'Content-Length 5'),
            (errors.store_not_found('x'), 400,
             'Store for identifier x not found'),
            (app_errors.bad_transition('active', 'saving'), 409,
             'Image status transition from active to saving is not allowed'),
            (app_errors.formats_unset(['disk_format']), 400,
             'Property disk_format must be set prior to saving data.'),
            (app_errors.formats_unset(['disk_format', 'container_format']),
             400,
             'Properties disk_format, container_format must be set prior '
             'to saving data.'),
            (errors.storage_quota_exceeded(10, 3), 413,
             'Image exceeds the storage quota: The size of the data 10 will '
             'exceed the limit. 3 bytes remaining.'),
            (errors.size_exceeds(4, 5), 400,
             'Size exceeds: expected 4 bytes, got 5 bytes'),
            (errors.checksum_mismatch('sha-256'), 400,
             'Checksum verification failed: sha-256 mismatch'),
            (errors.registry_unavailable(), 503,
             'Image registry is unavailable.'),
        )
        for error, status, message in cases:
            self.assertEqual(status, error.status_int, message)
            self.assertEqual(message, error.explanation)

    def test_range_errors_carry_content_range(self):
        """Contract 5.10 and 5.11, and section 9: bytes */size."""
        for error in (errors.invalid_range(10),
                      errors.invalid_range_start(10)):
            self.assertEqual(416, error.status_int)
            self.assertEqual('bytes */10', error.headers['Content-Range'])
        self.assertEqual(
            'Invalid start position in Range header. Start position MUST be '
            'in the inclusive range [0, 9].',
            errors.invalid_range_start(10).explanation)

    def test_method_not_allowed_lists_allow(self):
        error = errors.method_not_allowed(['GET', 'PUT'])
        self.assertEqual(405, error.status_int)
        self.assertEqual('GET, PUT', error.headers['Allow'])

    def test_missing_filter_names_the_publisher(self):
        err = errors.MissingFilter('imgmw.size', 'size', 'quota')
        self.assertIn('quota needs', str(err))
        self.assertIn('size filter', str(err))
