"""The inspect filter on images qemu-img writes, as an operator would upload.

Needs ``qemu-img`` (Debian's qemu-utils), which ``.ci/run`` installs; the
tests skip without it.
"""

import os
import shutil
import subprocess

import fixtures

from tests.unit.filters import test_inspect


class TestQemuImgImages(test_inspect.FilterTestCase):
    """Images qemu-img wrote, as an operator would upload them."""

    def setUp(self):
        super().setUp()
        self.qemu_img = shutil.which('qemu-img')
        if not self.qemu_img:
            self.skipTest('qemu-img is not installed (qemu-utils)')
        self.dir = self.useFixture(fixtures.TempDir()).path

    def make_image(self, fmt: str, *options: str, size: str = '64M',
                   name: str = 'disk') -> bytes:
        path = os.path.join(self.dir, '%s.%s' % (name, fmt))
        subprocess.run([self.qemu_img, 'create', '-q', '-f', fmt]
                       + list(options) + [path, size], check=True,
                       cwd=self.dir, capture_output=True)
        with open(path, 'rb') as image:
            return image.read()

    def test_formats(self):
        for fmt, disk_format, options in (
                ('qcow2', 'qcow2', ()),
                ('vmdk', 'vmdk', ()),
                ('vmdk', 'vmdk', ('-o', 'subformat=streamOptimized')),
                ('vhdx', 'vhdx', ()),
                ('vpc', 'vhd', ()),
                ('vdi', 'vdi', ())):
            body = self.make_image(fmt, *options)
            resp = self.upload(body, disk_format)
            self.assertEqual(204, resp.status_int, (fmt, options))
            # VHD rounds the size to its disk geometry.
            self.assertGreaterEqual(self.inspection().virtual_size,
                                    64 * test_inspect.MiB)
            self.assertEqual(disk_format, self.inspection().format)

    def test_raw(self):
        body = self.make_image('raw', size='3M')
        self.assertStored(self.upload(body), body, 'raw', 3 * test_inspect.MiB)

    def test_qcow2_with_backing_file(self):
        self.make_image('raw', name='base')
        body = self.make_image('qcow2', '-b', 'base.raw', '-F', 'raw')
        resp = self.upload(body, 'qcow2')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_qcow2_with_data_file(self):
        body = self.make_image('qcow2', '-o', 'data_file=data.raw')
        resp = self.upload(body, 'qcow2')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_vmdk_monolithic_flat(self):
        body = self.make_image('vmdk', '-o', 'subformat=monolithicFlat')
        resp = self.upload(body, 'vmdk')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_qcow2_declared_vhdx(self):
        body = self.make_image('qcow2')
        resp = self.upload(body, 'vhdx')
        self.assertRefused(
            resp, 'Image disk_format vhdx does not match stream data qcow2')
