"""Format inspection over HTTP against a real imgmw-api (contract 3).

Each 415 of the contract's format inspection is provoked through the
default ``noauth`` pipeline (``... checksum inspect imgmw``), and the
section's invariants are checked afterwards from outside the server: the
image is ``queued`` with no size, checksum nor ``virtual_size``, no file
of it is left, and a retry with good data succeeds (Glance keeps the
refused data, and its retry fails).

:class:`TestUploadRate` is the benchmark: it uploads 1 GiB with and without
the filter, once each, and runs only with ``IMGMW_BENCHMARK=1``.
"""

import hashlib
import os
import time

import psutil

from tests.functional import base
from tests.unit.filters import test_inspect as images


GiB = 1 << 30


def digests(data: bytes):
    return (hashlib.md5(data, usedforsecurity=False).hexdigest(),
            hashlib.sha512(data).hexdigest())


class TestInspect(base.FunctionalTest):

    def refused(self, disk_format: str, data: bytes, message: str,
                **kwargs) -> str:
        image = self.create_image(disk_format=disk_format)
        resp = self.upload(image['id'], data, **kwargs)
        self.assert_error(resp, 415, message)
        self.assert_failed_upload_left_nothing(image['id'])
        self.assertIsNone(self.get_image(image['id'])['virtual_size'])
        self.assertIsNone(self.registry_row(image['id'])['virtual_size'])
        return image['id']

    def assert_retry_succeeds(self, image_id: str, data: bytes,
                              virtual_size: int) -> None:
        resp = self.upload(image_id, data)
        self.assertEqual(204, resp.status_code, resp.text)
        image = self.assert_active_with(image_id, len(data), *digests(data))
        self.assertEqual(virtual_size, image['virtual_size'])
        self.assertEqual(virtual_size,
                         self.registry_row(image_id)['virtual_size'])

    def test_raw_virtual_size_is_its_size(self):
        data = images.RANDOM
        image = self.create_image(disk_format='raw')
        self.assertIsNone(image['virtual_size'])
        resp = self.upload(image['id'], data)
        self.assertEqual(204, resp.status_code, resp.text)
        image = self.assert_active_with(image['id'], len(data),
                                        *digests(data))
        self.assertEqual(len(data), image['virtual_size'])

    def test_qcow2_virtual_size_from_its_header(self):
        data = images.qcow2(5 * images.GiB) + images.RANDOM[:100000]
        image = self.create_image(disk_format='qcow2')
        resp = self.upload(image['id'], data, chunked=True)
        self.assertEqual(204, resp.status_code, resp.text)
        image = self.assert_active_with(image['id'], len(data),
                                        *digests(data))
        self.assertEqual(5 * images.GiB, image['virtual_size'])

    def test_disk_format_mismatch_3(self):
        image_id = self.refused(
            'vmdk', images.qcow2(),
            'Image disk_format vmdk does not match stream data qcow2')
        self.assert_retry_succeeds(image_id, images.vmdk(sectors=4096),
                                   4096 * 512)

    def test_disk_format_mismatch_chunked_3(self):
        image_id = self.refused(
            'qcow2', images.RANDOM,
            'Image disk_format qcow2 does not match stream data raw',
            chunked=True)
        self.assert_retry_succeeds(image_id, images.qcow2(images.GiB),
                                   images.GiB)

    def test_qcow2_with_backing_file_fails_safety_checks_3(self):
        image_id = self.refused(
            'qcow2', images.qcow2(backing_file=b'/etc/shadow'),
            'Image failed safety checks')
        self.assert_retry_succeeds(image_id, images.qcow2(images.GiB),
                                   images.GiB)

    def test_qcow2_with_data_file_fails_safety_checks_3(self):
        self.refused('qcow2',
                     images.qcow2(incompatible=images.QCOW2_DATA_FILE),
                     'Image failed safety checks')

    def test_vmdk_extent_outside_itself_fails_safety_checks_3(self):
        self.refused('vmdk',
                     images.vmdk(extent='RW 2048 FLAT "/etc/passwd" 0'),
                     'Image failed safety checks')

    def test_unsafe_qcow2_uploaded_as_raw_3(self):
        self.refused('raw', images.qcow2(backing_file=b'base.img'),
                     'Image failed safety checks')

    def test_inspection_failed_3(self):
        image_id = self.refused('vmdk', images.vmdk()[:600],
                                'Image format inspection failed')
        self.assert_retry_succeeds(image_id, images.vmdk(), 2048 * 512)

    def test_several_formats_3(self):
        self.refused('iso', images.iso(system_area=images.qcow2()[:32768]),
                     'Multiple formats detected: iso,qcow2')

    def test_refusal_as_json(self):
        image = self.create_image(disk_format='vhd')
        resp = self.upload(image['id'], images.vdi(),
                           headers={'Accept': 'application/json'})
        self.assertEqual(415, resp.status_code)
        self.assertIn('Image disk_format vhd does not match stream data vdi',
                      resp.json()['message'])

    def test_other_container_not_inspected(self):
        data = images.qcow2()
        image = self.create_image(disk_format='vmdk', container_format='ovf')
        resp = self.upload(image['id'], data)
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], len(data), *digests(data))


class UploadRate(base.FunctionalTest):

    def setUp(self):
        if os.environ.get('IMGMW_BENCHMARK') != '1':
            self.skipTest('benchmark: set IMGMW_BENCHMARK=1')
        super().setUp()

    def server_cpu(self) -> float:
        """CPU seconds used so far by imgmw-api and its workers."""
        main = psutil.Process(self.server.process.pid)
        return sum(sum(process.cpu_times()[:2]) for process
                   in [main] + main.children(recursive=True))

    def rate(self, disk_format: str, head: bytes = b'') -> str:
        """MiB/s of a 1 GiB upload sent in 1 MiB writes, and server CPU.

        One random MiB (after ``head``) is sent over and over, so that the
        server, not the client, sets the rate. The server's CPU seconds
        per GiB hold when other work shares the machine; the rate does
        not.
        """
        image = self.create_image(disk_format=disk_format)
        block = head + os.urandom(base.MiB - len(head))
        other = os.urandom(base.MiB)
        path = '/v2/images/%s/file' % image['id']
        cpu = self.server_cpu()
        started = time.monotonic()
        sock = self.open_raw('PUT', path, (
            ('Content-Type', 'application/octet-stream'),
            ('Content-Length', str(GiB))))
        try:
            sock.sendall(block)
            for _ in range(GiB // base.MiB - 1):
                sock.sendall(other)
            resp = self.read_raw(sock, 'PUT')
        finally:
            sock.close()
        elapsed = time.monotonic() - started
        cpu = self.server_cpu() - cpu
        self.assertEqual(204, resp.status, resp.body)
        return '%.0f MiB/s, server CPU %.2f s' % (
            GiB / elapsed / base.MiB, cpu)


class TestUploadRateWithout(UploadRate):

    server_config = """
[composite:noinspect]
use = egg:Paste#urlmap
/ = noinspect-api
/healthcheck = healthcheck

[pipeline:noinspect-api]
pipeline = request_id context-noauth size stores checksum imgmw
"""
    pipeline = 'noinspect'

    def test_upload_rate_1gib(self):
        print('\nwithout inspect: raw %s; qcow2 %s' % (
            self.rate('raw'), self.rate('qcow2', images.qcow2())))


class TestUploadRateWith(UploadRate):

    def test_upload_rate_1gib(self):
        print('\nwith inspect: raw %s; qcow2 %s' % (
            self.rate('raw'), self.rate('qcow2', images.qcow2())))
