"""Tests of the inspect filter (contract 3, format inspection).

Images are built here byte by byte, from the layouts the inspectors read
(qcow2, vmdk, vhd, vhdx, vdi, iso, gpt). Images that qemu-img writes are
uploaded by ``tests/integration/test_inspect_qemu.py``.
"""

import gc
import io
import os
import struct
import uuid
import weakref

import fixtures
import paste.deploy
import testtools

from imgmw import config
from imgmw import environ as env_keys
from imgmw.filters import inspect
from imgmw import streams
from tests.unit import fakes


MiB = 1 << 20
GiB = 1 << 30


# Images, byte by byte.

def qcow2(size: int = GiB, backing_file: bytes = b'',
          incompatible: int = 0, version: int = 3) -> bytes:
    """A qcow2 v3 header (104 bytes), a backing file name, 64 KiB in all."""
    backing_offset = 104 if backing_file else 0
    header = struct.pack(
        '>4sIQIIQIIQQIIQQQQII', b'QFI\xfb', version, backing_offset,
        len(backing_file), 16, size, 0, 0, 0, 0, 0, 0, 0, incompatible, 0,
        0, 4, 104)
    return (header + backing_file).ljust(65536, b'\0')


QCOW2_DATA_FILE = 1 << 2  # incompatible feature bit 2: external data file

VMDK_SPARSE_DESCRIPTOR = (
    '# Disk DescriptorFile\n'
    'version=1\n'
    'CID=2b7a3c5d\n'
    'parentCID=ffffffff\n'
    'createType="%s"\n'
    '\n'
    '# Extent description\n'
    '%s\n'
    '\n'
    '# The Disk Data Base\n'
    '#DDB\n'
    '\n'
    'ddb.virtualHWVersion = "4"\n'
    'ddb.adapterType = "ide"\n')


def vmdk(sectors: int = 2048, create_type: str = 'monolithicSparse',
         extent: str = 'RW 2048 SPARSE "disk.vmdk"',
         footer: bool = False) -> bytes:
    """A hosted sparse extent: header, embedded descriptor, grains."""
    gd_offset = 0xFFFFFFFFFFFFFFFF if footer else 21
    header = vmdk_header(sectors, gd_offset)
    descriptor = (VMDK_SPARSE_DESCRIPTOR % (create_type, extent)).encode()
    body = (header + descriptor.ljust(1024, b'\0')).ljust(65536, b'\0')
    if footer:
        marker = struct.pack('<QII', 0, 0, 3).ljust(512, b'\0')
        eos = bytes(512)
        body += marker + vmdk_header(sectors, 21) + eos
    return body


def vmdk_header(sectors: int, gd_offset: int) -> bytes:
    return struct.pack('<4sIIQQQQIQQQ', b'KDMV', 1, 3, sectors, 128, 1, 2,
                       512, 20, gd_offset, 128).ljust(512, b'\0')


def vmdk_descriptor_file(create_type: str, extent: str) -> bytes:
    """A descriptor-only vmdk: text pointing at extents in other files."""
    return (VMDK_SPARSE_DESCRIPTOR % (create_type, extent)).encode()


def vhd(size: int = GiB) -> bytes:
    """A dynamic VHD's footer copy at offset 0, then its headers."""
    footer = struct.pack('>8sIIQI4sI4sQQ', b'conectix', 2, 0x10000, 512,
                         0, b'qemu', 0x50003, b'Wi2k', size, size)
    return footer.ljust(512, b'\0') + bytes(1536)


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


def vhdx(size: int = GiB) -> bytes:
    """Ident, region table at 192 KiB, metadata at 1 MiB, its size item."""
    data = bytearray(MiB + 65536 + 4096)
    data[0:8] = b'vhdxfile'
    table = struct.pack('<4sIII', b'regi', 0, 1, 0)
    table += _guid(inspect.format_inspector.VHDXInspector.METAREGION)
    table += struct.pack('<QII', MiB, MiB, 1)
    data[192 * 1024:192 * 1024 + len(table)] = table
    metadata = struct.pack('<8sHH20x', b'metadata', 0, 1)
    metadata += _guid(inspect.format_inspector.VHDXInspector
                      .VIRTUAL_DISK_SIZE)
    metadata += struct.pack('<III4x', 65536, 8, 2)
    data[MiB:MiB + len(metadata)] = metadata
    data[MiB + 65536:MiB + 65536 + 8] = struct.pack('<Q', size)
    return bytes(data)


def vdi(size: int = GiB) -> bytes:
    header = bytearray(1024)
    header[0x40:0x44] = struct.pack('<I', 0xBEDA107F)
    header[0x170:0x178] = struct.pack('<Q', size)
    return bytes(header)


def iso(blocks: int = 400, system_area: bytes = b'') -> bytes:
    """System area, then a primary volume descriptor at 32 KiB."""
    pvd = bytearray(2048)
    pvd[0:7] = b'\x01CD001\x01'
    pvd[80:88] = struct.pack('<I', blocks) + struct.pack('>I', blocks)
    pvd[128:132] = struct.pack('<H', 2048) + struct.pack('>H', 2048)
    return system_area.ljust(32768, b'\0') + bytes(pvd) + bytes(2048)


def mbr(gpt: bool = True, boot_flag: int = 0, extra: bool = False) -> bytes:
    """A protective MBR (or a plain one) with its 0x55AA signature."""
    sector = bytearray(512)
    entry = struct.pack('<B3BB3BII', boot_flag, 0, 2, 0,
                        0xEE if gpt else 0x83, 0xFF, 0xFF, 0xFF, 1, 2047)
    sector[446:462] = entry
    if extra:
        sector[462:478] = struct.pack('<B3BB3BII', 0, 0, 0, 0, 0x83, 0, 0,
                                      0, 2048, 2048)
    sector[510:512] = b'\x55\xaa'
    return bytes(sector)


def gpt_disk(**kwargs) -> bytes:
    return mbr(**kwargs) + bytes(MiB - 512)


RANDOM = os.urandom(3 * MiB + 123)


# The filter.

def make(app, global_conf=None, **local_conf):
    return inspect.filter_factory(global_conf or {}, **local_conf)(app)


class PublishingApp(fakes.RecordingApp):
    """Announces its image before its first read, as the data app.

    :param announce: ``False`` sets ``environ['imgmw.image']`` without the
        announcement, as an app that skips the defined step.
    """

    def __init__(self, image=None, announce=True, **kwargs):
        super().__init__(**kwargs)
        self.image = image
        self.announce = announce

    def __call__(self, environ, start_response):
        if self.image is not None and self.announce:
            streams.announce_image(environ, self.image)
        elif self.image is not None:
            environ[env_keys.IMAGE] = dict(self.image)
        return super().__call__(environ, start_response)


class FilterTestCase(testtools.TestCase):

    chunk_size = 65536

    def setUp(self):
        super().setUp()
        # The inspectors of oslo.utils log too; keep it all out of stderr.
        self.log = self.useFixture(fixtures.FakeLogger())

    def upload(self, body: bytes, disk_format='raw', container='bare',
               filt=None, app=None, **kwargs):
        self.app = app or PublishingApp(
            {'id': 'img', 'owner': 'p', 'disk_format': disk_format,
             'container_format': container, 'status': 'saving'},
            chunk_size=self.chunk_size)
        req = fakes.upload_request(body=body, **kwargs)
        resp = req.get_response(filt or make(self.app))
        return resp

    def inspection(self) -> inspect.Inspection:
        return self.app.environ[env_keys.INSPECTION]

    def assertStored(self, resp, body, fmt, virtual_size):
        self.assertEqual(204, resp.status_int, resp.text)
        self.assertEqual(body, self.app.received)
        self.assertTrue(self.app.eof)
        inspection = self.inspection()
        self.assertTrue(inspection.done)
        self.assertEqual((fmt, virtual_size),
                         (inspection.format, inspection.virtual_size))

    def assertRefused(self, resp, message, body=None):
        """A 415 before the app was handed the end of the body."""
        self.assertEqual(415, resp.status_int, resp.text)
        self.assertIn(message, resp.text)
        self.assertFalse(self.app.eof)
        if body is not None:
            # Content-Length: the last chunk is withheld.
            self.assertLess(len(self.app.received), len(body))
        self.assertFalse(self.inspection().done)


class TestMatchingFormats(FilterTestCase):
    """Data that matches its disk_format: stored, virtual_size learned."""

    def test_raw_virtual_size_is_the_byte_count(self):
        resp = self.upload(RANDOM)
        self.assertStored(resp, RANDOM, 'raw', len(RANDOM))

    def test_raw_empty_has_no_virtual_size(self):
        resp = self.upload(b'')
        self.assertStored(resp, b'', 'raw', None)

    def test_qcow2(self):
        body = qcow2(5 * GiB) + RANDOM
        resp = self.upload(body, 'qcow2')
        self.assertStored(resp, body, 'qcow2', 5 * GiB)

    def test_qcow2_version_2(self):
        body = qcow2(GiB, version=2)
        self.assertStored(self.upload(body, 'qcow2'), body, 'qcow2', GiB)

    def test_vmdk_monolithic_sparse(self):
        body = vmdk(sectors=4096)
        self.assertStored(self.upload(body, 'vmdk'), body, 'vmdk',
                          4096 * 512)

    def test_vmdk_stream_optimized_footer_checked_at_the_end(self):
        body = vmdk(sectors=4096, create_type='streamOptimized',
                    footer=True)
        self.assertStored(self.upload(body, 'vmdk'), body, 'vmdk',
                          4096 * 512)

    def test_vhd(self):
        body = vhd(3 * GiB)
        self.assertStored(self.upload(body, 'vhd'), body, 'vhd', 3 * GiB)

    def test_vhdx(self):
        body = vhdx(7 * GiB)
        self.assertStored(self.upload(body, 'vhdx'), body, 'vhdx', 7 * GiB)

    def test_vdi(self):
        body = vdi(2 * GiB)
        self.assertStored(self.upload(body, 'vdi'), body, 'vdi', 2 * GiB)

    def test_iso(self):
        body = iso(blocks=400)
        self.assertStored(self.upload(body, 'iso'), body, 'iso', 400 * 2048)

    def test_iso_with_a_gpt_in_its_system_area_is_an_iso(self):
        body = iso(blocks=100, system_area=mbr())
        self.assertStored(self.upload(body, 'iso'), body, 'iso', 100 * 2048)

    def test_raw_may_hold_another_format_sized_by_its_bytes(self):
        # As Glance: a qcow2 uploaded as raw is kept as raw.
        body = qcow2(5 * GiB)
        self.assertStored(self.upload(body, 'raw'), body, 'qcow2',
                          len(body))

    def test_raw_disk_with_a_valid_gpt(self):
        body = gpt_disk()
        self.assertStored(self.upload(body, 'raw'), body, 'gpt', len(body))

    def test_uninspectable_disk_format_takes_unrecognised_data(self):
        for disk_format in ('ami', 'aki', 'ari', 'ploop'):
            resp = self.upload(RANDOM[:4096], disk_format)
            self.assertStored(resp, RANDOM[:4096], 'raw', None)

    def test_chunked_body_judged_before_end_of_stream(self):
        body = qcow2(GiB)
        resp = self.upload(body, 'qcow2', chunked=True)
        self.assertStored(resp, body, 'qcow2', GiB)

    def test_read_all_at_once_and_byte_by_byte(self):
        body = vmdk() + RANDOM[:1000]
        for chunk_size in (-1, 1, 511, 4096):
            self.chunk_size = chunk_size
            resp = self.upload(body, 'vmdk')
            self.assertStored(resp, body, 'vmdk', 2048 * 512)


class TestRefusals(FilterTestCase):
    """The three 415s of the contract (and Glance's ambiguous one)."""

    def test_disk_format_that_lies(self):
        body = qcow2()
        resp = self.upload(body, 'vmdk')
        self.assertRefused(
            resp, 'Image disk_format vmdk does not match stream data qcow2',
            body)

    def test_raw_data_declared_qcow2(self):
        resp = self.upload(RANDOM, 'qcow2')
        self.assertRefused(
            resp, 'Image disk_format qcow2 does not match stream data raw',
            RANDOM)

    def test_empty_body_declared_qcow2(self):
        resp = self.upload(b'', 'qcow2')
        self.assertRefused(
            resp, 'Image disk_format qcow2 does not match stream data raw')

    def test_truncated_qcow2_header_is_raw(self):
        body = qcow2()[:100]
        resp = self.upload(body, 'qcow2')
        self.assertRefused(
            resp, 'Image disk_format qcow2 does not match stream data raw')

    def test_truncated_vmdk_descriptor_cannot_be_inspected(self):
        body = vmdk()[:600]
        resp = self.upload(body, 'vmdk')
        self.assertRefused(resp, 'Image format inspection failed', body)

    def test_qcow2_with_backing_file(self):
        body = qcow2(backing_file=b'/etc/shadow')
        resp = self.upload(body, 'qcow2')
        self.assertRefused(resp, 'Image failed safety checks', body)
        self.assertIn('backing_file', self.log.output)

    def test_qcow2_with_data_file(self):
        body = qcow2(incompatible=QCOW2_DATA_FILE)
        resp = self.upload(body, 'qcow2')
        self.assertRefused(resp, 'Image failed safety checks', body)
        self.assertIn('data_file', self.log.output)

    def test_unsafe_qcow2_uploaded_as_raw(self):
        resp = self.upload(qcow2(backing_file=b'base.img'), 'raw')
        self.assertRefused(resp, 'Image failed safety checks')

    def test_vmdk_extent_outside_itself(self):
        body = vmdk(extent='RW 2048 FLAT "/etc/passwd" 0')
        resp = self.upload(body, 'vmdk')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_vmdk_multi_file_subformat(self):
        body = vmdk(create_type='monolithicFlat',
                    extent='RW 2048 FLAT "disk-flat.vmdk" 0')
        resp = self.upload(body, 'vmdk')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_vmdk_descriptor_file_pointing_elsewhere(self):
        body = vmdk_descriptor_file('twoGbMaxExtentFlat',
                                    'RW 2048 FLAT "disk-f001.vmdk" 0')
        resp = self.upload(body, 'vmdk')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_vmdk_stream_optimized_with_a_bad_footer(self):
        body = bytearray(vmdk(create_type='streamOptimized', footer=True))
        body[-1] = 1  # the end-of-stream marker
        resp = self.upload(bytes(body), 'vmdk')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_gpt_with_a_bad_mbr(self):
        body = gpt_disk(boot_flag=0x12)
        resp = self.upload(body, 'raw')
        self.assertRefused(resp, 'Image failed safety checks', body)

    def test_gpt_mbr_check_made_nonfatal(self):
        body = gpt_disk(extra=True)
        filt = make(None, gpt_safety_checks_nonfatal='mbr')
        app = PublishingApp({'id': 'i', 'disk_format': 'raw',
                             'container_format': 'bare'})
        filt.app = app
        resp = self.upload(body, filt=filt, app=app)
        self.assertStored(resp, body, 'gpt', len(body))
        self.assertRefused(self.upload(body), 'Image failed safety checks')

    def test_several_formats_at_once(self):
        body = iso(system_area=qcow2()[:32768])
        resp = self.upload(body, 'qcow2')
        self.assertRefused(resp, 'Multiple formats detected: iso,qcow2',
                           body)

    def test_refusal_answered_when_the_app_catches_everything(self):
        app = PublishingApp({'id': 'i', 'disk_format': 'qcow2',
                             'container_format': 'bare'}, catch=True)
        resp = self.upload(RANDOM, app=app)
        self.assertRefused(
            resp, 'Image disk_format qcow2 does not match stream data raw')

    def test_stream_errors_ioerror(self):
        app = PublishingApp({'id': 'i', 'disk_format': 'qcow2',
                             'container_format': 'bare'}, catch=True)
        resp = self.upload(RANDOM, app=app,
                           filt=make(app, stream_errors='ioerror'))
        self.assertRefused(
            resp, 'Image disk_format qcow2 does not match stream data raw')
        self.assertIsInstance(app.failed, streams.StreamIOError)

    def test_json_error_body(self):
        resp = self.upload(qcow2(), 'vmdk',
                           headers={'Accept': 'application/json'})
        self.assertEqual('application/json', resp.content_type)
        self.assertIn(
            'Image disk_format vmdk does not match stream data qcow2',
            resp.json['message'])

    def test_short_body_is_a_size_failure_not_a_verdict(self):
        resp = self.upload(qcow2()[:1000], 'qcow2', content_length=5000)
        self.assertEqual(400, resp.status_int, resp.text)
        self.assertIn('Size mismatch: expected 5000 bytes, got 1000 bytes',
                      resp.text)


class TestRequireImageFormatMatchOff(FilterTestCase):

    def filt(self, image):
        self.app = PublishingApp(image)
        return make(self.app, require_image_format_match='false')

    def upload_off(self, body, disk_format):
        filt = self.filt({'id': 'i', 'disk_format': disk_format,
                          'container_format': 'bare'})
        return self.upload(body, filt=filt, app=self.app)

    def test_mismatch_accepted_without_virtual_size(self):
        body = qcow2()
        self.assertStored(self.upload_off(body, 'vmdk'), body, 'qcow2',
                          None)

    def test_safety_still_checked_on_a_mismatch(self):
        # Glance skips the safety checks here; imgmw does not.
        resp = self.upload_off(qcow2(backing_file=b'b'), 'vmdk')
        self.assertRefused(resp, 'Image failed safety checks')

    def test_uninspectable_accepted(self):
        body = vmdk()[:600]
        self.assertStored(self.upload_off(body, 'vmdk'), body, None, None)

    def test_several_formats_each_checked(self):
        body = iso(system_area=qcow2()[:32768])
        self.assertStored(self.upload_off(body, 'qcow2'), body, None, None)
        unsafe = iso(system_area=qcow2(backing_file=b'b')[:32768])
        resp = self.upload_off(unsafe, 'qcow2')
        self.assertRefused(resp, 'Image failed safety checks')


class TestWhatIsInspected(FilterTestCase):

    def test_other_containers_pass_untouched(self):
        body = qcow2(backing_file=b'/etc/shadow')
        for container in ('ovf', 'ova', 'docker', 'compressed', 'ami'):
            resp = self.upload(body, 'vmdk', container=container)
            self.assertStored(resp, body, None, None)

    def test_without_a_record_safety_still_checked(self):
        app = fakes.RecordingApp()
        body = qcow2(3 * GiB)
        self.assertStored(self.upload(body, app=app), body, 'qcow2',
                          3 * GiB)
        resp = self.upload(qcow2(backing_file=b'b'), app=app)
        self.assertRefused(resp, 'Image failed safety checks')
        resp = self.upload(iso(system_area=qcow2()[:32768]), app=app)
        self.assertRefused(resp, 'Multiple formats detected: iso,qcow2')

    def test_an_unannounced_record_is_never_looked_up(self):
        app = PublishingApp({'id': 'i', 'disk_format': 'vmdk',
                             'container_format': 'bare'}, announce=False)
        resp = fakes.upload_request(body=qcow2()).get_response(make(app))
        self.assertEqual(204, resp.status_int, resp.text)
        inspection = app.calls[0][env_keys.INSPECTION]
        self.assertEqual('qcow2', inspection.format)

    def test_the_announced_record_counts_not_one_set_before_the_call(self):
        app = PublishingApp({'id': 'i', 'disk_format': 'vmdk',
                             'container_format': 'bare'})
        filt = make(app)
        req = fakes.upload_request(body=qcow2())
        req.environ[env_keys.IMAGE] = {'disk_format': 'qcow2',
                                       'container_format': 'bare'}
        resp = req.get_response(filt)
        self.assertEqual(415, resp.status_int)
        self.assertIn('disk_format vmdk', resp.text)

    def test_stage_download_and_listing_untouched(self):
        app = fakes.RecordingApp()
        filt = make(app)
        body = qcow2(backing_file=b'b')
        for method, path in (('PUT', '/v2/images/i/stage'),
                             ('POST', '/v2/images'),
                             ('GET', '/v2/images/i/file'),
                             ('HEAD', '/v2/images/i/file')):
            req = fakes.upload_request(path, body, method=method)
            original = req.environ['wsgi.input']
            resp = req.get_response(filt)
            self.assertEqual(204, resp.status_int, (method, path))
            self.assertIs(original, app.environ['wsgi.input'])
            self.assertNotIn(env_keys.INSPECTION, app.environ)

    def test_versioned_path_inspected(self):
        resp = self.upload(RANDOM, 'qcow2', path='/v2.15/images/i/file')
        self.assertEqual(415, resp.status_int)


class TestFeeding(testtools.TestCase):
    """Inspectors stop being fed once nothing can change their answer."""

    def feed(self, body: bytes, chunk: int = 65536):
        detector = inspect.FormatDetector()
        for start in range(0, len(body), chunk):
            detector.eat(body[start:start + chunk])
        return detector

    def test_raw_stream_feeds_nothing_after_its_first_mib(self):
        self.assertEqual([], self.feed(RANDOM).feeding)

    def test_header_sized_formats_stop_too(self):
        for body in (qcow2() + RANDOM, vhd() + RANDOM, vdi() + RANDOM,
                     vhdx() + RANDOM, iso() + RANDOM, vmdk() + RANDOM):
            self.assertEqual([], self.feed(body).feeding)

    def test_a_vmdk_footer_is_waited_for(self):
        body = vmdk(create_type='streamOptimized', footer=True)
        detector = self.feed(body[:65536] + RANDOM)
        self.assertEqual(['vmdk'], detector.feeding)

    def test_a_gpt_is_fed_to_the_end(self):
        self.assertEqual(['gpt'], self.feed(gpt_disk() + RANDOM).feeding)

    def test_one_byte_reads(self):
        detector = self.feed(qcow2()[:2048] + bytes(300000), chunk=4096)
        self.assertEqual(['qcow2'], [i.NAME for i in detector.finish()])
        self.assertEqual(len(qcow2()[:2048]) + 300000, detector.received)


class TestRelease(testtools.TestCase):
    """Captured regions are freed with the verdict, not by the collector.

    Each of oslo.utils' inspectors is a reference cycle, and the VMDK one
    captures the first MiB of every stream: without the release, a worker
    held that memory until the garbage collector's next full run.
    """

    def setUp(self):
        super().setUp()
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    def scan(self, body: bytes, disk_format: str) -> inspect.Scan:
        scan = inspect.Scan(inspect.Judge(), {
            'disk_format': disk_format, 'container_format': 'bare'})
        for start in range(0, len(body), MiB):
            scan.eat(body[start:start + MiB])
        return scan

    def regions(self, detector: inspect.FormatDetector) -> list:
        """Weak references to every region captured, and their bytes."""
        refs = []
        held = 0
        for inspector in detector.inspectors:
            for name, size in inspector.context_info.items():
                refs.append(weakref.ref(inspector.region(name)))
                held += size
        return refs, held

    def alive_after_finish(self, body: bytes, disk_format: str,
                           refused: bool) -> list:
        scan = self.scan(body, disk_format)
        refs, held = self.regions(scan.detector)
        self.assertGreater(held, 0)
        try:
            scan.finish()
        except streams.StreamError:
            self.assertTrue(refused)
        else:
            self.assertFalse(refused)
        return [ref for ref in refs if ref() is not None]

    def test_accepted_streams(self):
        for body, disk_format in ((RANDOM, 'raw'), (vmdk() + RANDOM, 'vmdk'),
                                  (qcow2() + RANDOM, 'qcow2')):
            self.assertEqual(
                [], self.alive_after_finish(body, disk_format, False),
                disk_format)

    def test_refused_streams(self):
        for body, disk_format in ((RANDOM, 'qcow2'),
                                  (qcow2(backing_file=b'/etc/passwd')
                                   + RANDOM, 'qcow2')):
            self.assertEqual(
                [], self.alive_after_finish(body, disk_format, True),
                disk_format)

    def test_failed_bodies(self):
        # The body ends short of its length, or the client goes away: the
        # stream is never judged.
        class Gone(io.BytesIO):
            def read(self, size=-1):
                data = super().read(size)
                if not data:
                    raise ConnectionResetError('gone')
                return data
        for source in (io.BytesIO(RANDOM), Gone(RANDOM)):
            proxy = inspect.InspectingInput(
                source, len(RANDOM) + 1, inspect.Judge(), inspect.Inspection())
            proxy.image_announced({'disk_format': 'raw',
                                   'container_format': 'bare'})
            proxy.read(MiB)
            refs, held = self.regions(proxy.scan.detector)
            self.assertGreater(held, MiB // 2)

            def to_the_end():
                while proxy.read(MiB):
                    pass
            self.assertRaises(streams.StreamError, to_the_end)
            self.assertEqual([], [ref for ref in refs if ref()])
            self.assertRaises(streams.StreamError, proxy.read, MiB)

    def test_without_release_only_the_collector_frees_them(self):
        # What the tests above guard against.
        detector = self.scan(RANDOM, 'raw').detector
        refs, held = self.regions(detector)
        self.assertGreater(held, MiB // 2)
        del detector
        self.assertNotEqual([], [ref for ref in refs if ref()])
        gc.collect()
        self.assertEqual([], [ref for ref in refs if ref()])


class TestFactory(testtools.TestCase):

    def test_defaults(self):
        filt = make(fakes.RecordingApp())
        self.assertIsInstance(filt, inspect.InspectMiddleware)
        self.assertTrue(filt.require_image_format_match)
        self.assertEqual(frozenset(), filt.gpt_safety_checks_nonfatal)
        self.assertEqual(streams.BASE, filt.stream_errors)

    def test_options_and_default_section(self):
        filt = make(fakes.RecordingApp(),
                    {'require_image_format_match': 'false'},
                    gpt_safety_checks_nonfatal='mbr, gptmbr')
        self.assertFalse(filt.require_image_format_match)
        self.assertEqual({'mbr', 'gptmbr'}, filt.gpt_safety_checks_nonfatal)

    def test_bad_and_unknown_options_stop_start_up(self):
        err = self.assertRaises(config.ConfigError, make, None,
                                require_image_format_match='maybe')
        self.assertIn('require_image_format_match', str(err))
        err = self.assertRaises(config.ConfigError, make, None,
                                disk_formats='raw')
        self.assertIn('unknown option(s) disk_formats', str(err))

    def test_entry_point(self):
        factory = paste.deploy.loadfilter('egg:imgmw#inspect')
        self.assertIsInstance(factory(fakes.RecordingApp()),
                              inspect.InspectMiddleware)
