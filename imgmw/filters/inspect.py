"""Inspect: learn an image's format as it streams, refuse unsafe ones.

On ``PUT /v2/images/{id}/file`` (also under ``/v2.N/``) the filter runs
every disk-format inspector of oslo.utils
(:mod:`oslo_utils.imageutils.format_inspector`, the library Glance uses)
over the body while the app reads it, without reading or buffering it
itself and without a second pass over the data. It keeps only the few
regions of the stream the inspectors ask for (headers, descriptors, a
footer), never the image. Like Glance, it inspects images whose
``container_format`` is ``bare``; others pass untouched.

At end of stream, before the app is handed the last chunk (when the length
is known, else before it sees the end of the body), it judges the data as
Glance's upload does, and refuses it with one of these (contract section
3, format inspection):

=====  ==================================================  ===============
code   message                                             when
=====  ==================================================  ===============
415    ``Image disk_format <d> does not match stream       the data is not
       data <f>``                                          a ``<d>``
415    ``Multiple formats detected: <f>,<g>``              the data is
                                                           several formats
                                                           at once (an ISO
                                                           with a GPT is
                                                           an ISO)
415    ``Image failed safety checks``                      a qcow2 with a
                                                           backing or data
                                                           file, a vmdk
                                                           with extents
                                                           outside itself
                                                           or of a
                                                           multi-file
                                                           subformat, a
                                                           qed, a GPT with
                                                           a bad MBR, ...
415    ``Image format inspection failed``                  an inspector
                                                           could not judge
                                                           the data (a
                                                           truncated
                                                           descriptor)
=====  ==================================================  ===============

The first, second and fourth only when ``require_image_format_match`` is
on (the default). A refused upload is a failed upload: the app removes
what it wrote and the image stays ``queued`` with no data nor checksum, so
a corrected retry just works (Glance keeps the data, location and checksum
of a refused image, and the retry fails).

Which data matches which ``disk_format``, as Glance decides: the detected
format must equal it; a ``raw`` image may hold anything (its safety is
still checked, so a qcow2 with a backing file uploaded as ``raw`` is
refused); a format oslo.utils cannot inspect (``ami``, ``ari``, ``aki``,
``ploop``) may hold anything it does not recognise.

Unlike Glance, the safety checks of the detected format run even when a
mismatch is let through (``require_image_format_match = false``): that
option relaxes the format check, never safety.

What it publishes: ``environ['imgmw.inspection']``, an
:class:`Inspection` (``format``, ``virtual_size``, ``done``), set before
the app is called and final at end of stream. The data app records its
``virtual_size`` as the image's: the inspector's (the byte count for
``raw``, and for any data uploaded as ``raw``), ``None`` for an empty
image or a format without one.

What it needs: the image record (``disk_format``, ``container_format``),
which the data app hands over with :func:`imgmw.streams.announce_image`
before it reads the first byte (and publishes as
``environ['imgmw.image']``). The filter never looks it up later: in front
of an app that announces nothing (Glance), it still detects the format and
refuses what fails a safety check or matches several formats.

Where it goes: last before the app, after ``checksum``, so that a body
with the wrong size or digest gets that answer first:

.. code-block:: ini

    [pipeline:keystone-api]
    pipeline = request_id authtoken context size stores quota checksum
               inspect imgmw

    [filter:inspect]
    use = egg:imgmw#inspect
    # require_image_format_match = true
    # gpt_safety_checks_nonfatal =

Options (named as Glance's ``[image_format]`` ones; the section or
``[DEFAULT]``):

==============================  =======  ====================================
option                          default  meaning
==============================  =======  ====================================
``require_image_format_match``  true     refuse data that does not match its
                                         ``disk_format``, matches several
                                         formats, or cannot be inspected
``gpt_safety_checks_nonfatal``  (none)   safety checks (``mbr``) only logged
                                         for data detected as ``gpt``
``stream_errors``               base     how a refusal leaves ``read()``:
                                         ``base`` or ``ioerror``
                                         (:ref:`stream-errors`)
==============================  =======  ====================================

Glance's ``disk_formats`` and ``container_formats`` are the values an image
record may take; they are checked where records are written, not here.
Every inspector runs on every upload: limiting detection to some formats
would let the others through unchecked.

What it costs: each inspector is fed until it has what it needs: the
regions it captures, then one more chunk to be sure it asks for no other.
Only an inspector still waiting for the end of the stream (a vmdk footer)
or matching a format whose size is the stream's (``gpt``, ``luks``) sees
the rest, so a raw, qcow2, vhd(x), vdi or iso upload costs nothing after
its first few MiB. (oslo.utils' own ``InspectWrapper`` feeds every
inspector every byte: half a second per GiB at 64 KiB reads.) What it
holds: the regions captured, up to about 1 MiB an upload (the vmdk
inspector keeps the first MiB of every stream for its descriptor), let go
of with the verdict. oslo.utils' inspectors are reference cycles, which
only the garbage collector would free: left to it, a worker grew by
about 3 MiB a round of eight concurrent uploads, up to 105 MiB.

Logged: a refusal at INFO (image id, declared and detected formats, which
safety checks failed), an inspector that gives up at DEBUG. Never a byte of
the body.

Stage (``PUT .../stage``) is not inspected, as in Glance; the import is.
On ``POST .../import`` the filter publishes ``environ['imgmw.inspector']``
(a factory of :class:`Scan`, with these options), and the data app feeds
it the staged data while it copies it to the first store
(:mod:`imgmw.app.inspection`): the same detector, verdict and options as
for an upload, so inspection is configured once, here. A refused import
fails as every failed import does: the copy is removed, the image returns
to ``queued`` and the staged data is removed; its task (``GET
.../tasks``) fails with ``InvalidImageData: <one of the messages above>``
(Glance says ``Task failed due to Internal Error`` and leaves the image
``importing``). A good one gets the inspection's ``virtual_size``, for
every format. Without this filter in the pipeline imports are not
inspected, as uploads are not, and only ``raw`` gets a ``virtual_size``.
"""

import dataclasses
import logging
import typing

from oslo_utils.imageutils import format_inspector

from imgmw import chunked
from imgmw import config
from imgmw import environ as env_keys
from imgmw import errors
from imgmw import paths
from imgmw import streams


LOG = logging.getLogger(__name__)

OWNER = 'inspect filter'

RAW = 'raw'

#: Only images in this container are inspected, as in Glance.
INSPECTED_CONTAINER = 'bare'

#: Formats whose virtual size and safety come from the regions their
#: inspector captures, not from the length of the stream: once those are
#: complete, the rest of the stream can change nothing. (The size of
#: ``gpt``, ``luks`` and ``qed`` is the stream's.)
SIZED_BY_HEADER = frozenset(('iso', 'qcow2', 'vdi', 'vhd', 'vhdx', 'vmdk'))

OPTS = (
    config.Opt('require_image_format_match', config.boolean, True,
               'Refuse data that does not match its disk_format.'),
    config.Opt('gpt_safety_checks_nonfatal', config.string_list, [],
               'Safety checks only logged for data detected as gpt.'),
    streams.STREAM_ERRORS_OPT,
)


@dataclasses.dataclass
class Inspection:
    """``environ['imgmw.inspection']``: what the body turned out to be.

    ``format`` is the detected format (``None`` when not inspected or
    ambiguous), ``virtual_size`` the size of the disk it holds in bytes
    (``None`` when unknown); both are final once ``done``.
    """

    format: typing.Optional[str] = None
    virtual_size: typing.Optional[int] = None
    done: bool = False


class FormatDetector:
    """Every non-raw inspector of oslo.utils over one stream.

    Each inspector is fed a chunk as long as it may change its answer: an
    inspector that raised is dropped (as ``InspectWrapper`` does), and one
    that holds every region it asked for is dropped once a further chunk
    added no region, unless it matches a format whose size is the
    stream's (or waits for the end of the stream: a vmdk footer). ``raw``
    is what matches when nothing else does; its size is the byte count.
    """

    def __init__(self):
        self.inspectors = [
            inspector() for name, inspector
            in sorted(format_inspector.ALL_FORMATS.items()) if name != RAW]
        self.received = 0
        self._feeding = list(self.inspectors)
        self._failed: typing.Set[object] = set()
        self._settling: typing.Dict[object, frozenset] = {}

    @property
    def feeding(self) -> typing.List[str]:
        """The names of the inspectors still fed."""
        return [inspector.NAME for inspector in self._feeding]

    def eat(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.received += len(chunk)
        self._feeding = [inspector for inspector in self._feeding
                         if self._eat(inspector, chunk)]

    def _eat(self, inspector, chunk: bytes) -> bool:
        """Feed ``inspector``; whether it should see the next chunk."""
        try:
            inspector.eat_chunk(chunk)
        except Exception as err:
            LOG.debug('The %s inspector gave up after %d bytes: %s',
                      inspector.NAME, self.received, err)
            self._failed.add(inspector)
            return False
        if not inspector.complete or (
                inspector.format_match
                and inspector.NAME not in SIZED_BY_HEADER):
            self._settling.pop(inspector, None)
            return True
        regions = frozenset(inspector.context_info)
        if self._settling.get(inspector) == regions:
            return False
        self._settling[inspector] = regions
        return True

    def release(self) -> None:
        """Let go of every inspector and of the regions it captured.

        oslo.utils' inspectors hold their safety checks as methods bound to
        themselves, so each is a reference cycle, freed only when the
        garbage collector next runs its oldest generation, and with it what
        it captured (the VMDK inspector keeps the first MiB of every
        stream). Emptying each inspector's attributes frees it at once.
        The detector is not fed nor judged after this.
        """
        for inspector in self.inspectors:
            attributes = getattr(inspector, '__dict__', None)
            if attributes is not None:
                attributes.clear()
        self.inspectors = []
        self._feeding = []
        self._failed.clear()
        self._settling.clear()

    def finish(self) -> list:
        """The inspectors whose format the stream matches, by name."""
        matches = []
        for inspector in self.inspectors:
            if inspector in self._failed:
                continue
            inspector.finish()
            if inspector.format_match:
                matches.append(inspector)
        return matches


@dataclasses.dataclass(frozen=True)
class Judge:
    """Glance's verdict on a stream, from the detector's matches."""

    require_match: bool = True
    gpt_nonfatal: typing.FrozenSet[str] = frozenset()
    logger: logging.Logger = LOG

    def __call__(self, detector: FormatDetector, image: dict) -> Inspection:
        """The inspection of a complete stream, or raise its 415.

        :param image: the record (``id``, ``disk_format``), or ``{}``.
        :raises streams.StreamError: when the data is refused.
        """
        try:
            return self._judge(detector, image)
        except streams.StreamError as err:
            self.logger.info('Image %s refused: %s', image.get('id'), err)
            raise
        except Exception:
            if self.require_match:
                self.logger.info('Image %s refused: its format inspection '
                                 'failed', image.get('id'), exc_info=True)
                raise streams.StreamError(errors.inspection_failed())
            self.logger.warning('Image %s: format inspection failed; '
                                'accepted', image.get('id'), exc_info=True)
            return Inspection(done=True)

    def _judge(self, detector: FormatDetector, image: dict) -> Inspection:
        matches = detector.finish()
        if len(matches) > 1:
            matches = self._one_of(matches, image)
        if len(matches) > 1:
            for inspector in matches:
                self._check_safety(inspector)
            return Inspection(done=True)
        inspector = matches[0] if matches else None
        detected = inspector.NAME if inspector else RAW
        size = self._virtual_size(inspector, detected, image, detector)
        if inspector is not None:
            self._check_safety(inspector)
        return Inspection(detected, size or None, True)

    def _one_of(self, matches: list, image: dict) -> list:
        names = {inspector.NAME: inspector for inspector in matches}
        if set(names) == {'iso', 'gpt'}:
            # A bootable ISO may carry a GPT in its system area.
            return [names['iso']]
        if self.require_match:
            raise streams.StreamError(errors.formats_ambiguous(
                sorted(names)))
        self.logger.warning('Image %s matches several formats (%s); '
                            'accepted', image.get('id'),
                            ', '.join(sorted(names)))
        return matches

    def _virtual_size(self, inspector, detected: str, image: dict,
                      detector: FormatDetector) -> typing.Optional[int]:
        declared = image.get('disk_format')
        if declared is None or detected == declared:
            return inspector.virtual_size if inspector else detector.received
        if detected == RAW and declared not in format_inspector.ALL_FORMATS:
            return None  # ami, aki, ari, ploop: nothing to inspect.
        if declared == RAW:
            # As Glance: raw may hold anything; its size is the bytes'.
            self.logger.warning('Image %s claims raw but holds %s',
                                image.get('id'), detected)
            return detector.received
        if self.require_match:
            raise streams.StreamError(errors.format_mismatch(declared,
                                                             detected))
        self.logger.warning('Image %s claims %s but holds %s; accepted',
                            image.get('id'), declared, detected)
        return None

    def _check_safety(self, inspector) -> None:
        try:
            inspector.safety_check()
        except format_inspector.SafetyCheckFailed as err:
            fatal = set(err.failures) - self.gpt_nonfatal
            if inspector.NAME == 'gpt' and not fatal:
                self.logger.warning('Non-fatal gpt safety checks failed: %s',
                                    ', '.join(sorted(err.failures)))
                return
            self.logger.info('%s safety checks failed: %s', inspector.NAME,
                             ', '.join(sorted(err.failures)))
            raise streams.StreamError(errors.unsafe_image())


class Scan:
    """One stream judged as Glance does: a detector fed, then a verdict.

    Used by the filter for an upload's body and, through
    ``environ['imgmw.inspector']``, by the data app for the staged
    data of an import. Data outside the ``bare`` container is not
    inspected.
    """

    def __init__(self, judge: Judge, image: typing.Mapping):
        self.judge = judge
        self.image = dict(image)
        container = self.image.get('container_format', INSPECTED_CONTAINER)
        self.detector: typing.Optional[FormatDetector] = (
            FormatDetector() if container == INSPECTED_CONTAINER else None)

    def eat(self, chunk: bytes) -> None:
        if self.detector is not None:
            self.detector.eat(chunk)

    def finish(self) -> Inspection:
        """The inspection of the complete stream (once).

        :raises streams.StreamError: the contract's 415 when refused.
        """
        if self.detector is None:
            return Inspection(done=True)
        try:
            return self.judge(self.detector, self.image)
        finally:
            self.release()

    def release(self) -> None:
        """Let go of the inspectors: judged, or never to be."""
        if self.detector is not None:
            self.detector.release()


class InspectingInput(streams.InputProxy):
    """Feeds the body to a :class:`Scan`; judges it at its end.

    The record comes from :meth:`image_announced`, before the first read;
    a first chunk read unannounced means no record. ``inspection`` is
    updated when the body ended and passed.
    """

    def __init__(self, wsgi_input, length: typing.Optional[int],
                 judge: Judge, inspection: Inspection,
                 stream_errors: str = streams.BASE):
        super().__init__(wsgi_input, length, stream_errors=stream_errors)
        self.judge = judge
        self.inspection = inspection
        self.scan: typing.Optional[Scan] = None

    def image_announced(self, image: typing.Mapping) -> None:
        if self.bytes_received == 0 and self.scan is None:
            self.scan = Scan(self.judge, image)

    def body_failed(self) -> None:
        # Never judged: the inspectors can go.
        if self.scan is not None:
            self.scan.release()

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        if self.scan is None:
            self.scan = Scan(self.judge, {})
        self.scan.eat(chunk)
        if eof:
            self._complete()
        return chunk

    def _complete(self) -> None:
        if self.length is not None and self.bytes_received < self.length:
            raise streams.StreamError(errors.incomplete_body(
                self.length, self.bytes_received))
        verdict = self.scan.finish()
        self.inspection.format = verdict.format
        self.inspection.virtual_size = verdict.virtual_size
        self.inspection.done = True


class InspectMiddleware:
    """Inspects the format of uploads (see the module)."""

    def __init__(self, app, conf: typing.Mapping, logger=None):
        self.app = app
        self.logger = logger or LOG
        values = config.parse(OPTS, {}, conf, OWNER)
        self.require_image_format_match: bool = values[
            'require_image_format_match']
        self.gpt_safety_checks_nonfatal: typing.FrozenSet[str] = frozenset(
            values['gpt_safety_checks_nonfatal'])
        self.stream_errors: str = values['stream_errors']
        self.judge = Judge(self.require_image_format_match,
                           self.gpt_safety_checks_nonfatal, self.logger)

    def scan(self, image: typing.Mapping) -> Scan:
        """A :class:`Scan` of data for ``image``, with these options."""
        return Scan(self.judge, image)

    def __call__(self, environ: dict, start_response):
        if (environ.get('REQUEST_METHOD') == 'POST' and getattr(
                paths.route_of(environ), 'kind', None) == paths.IMPORT):
            # The data app inspects the staged data as it imports it.
            environ[env_keys.IMPORT_INSPECT] = self.scan
            return self.app(environ, start_response)
        route = paths.is_data_upload(environ)
        if route is None or route.kind != paths.IMAGE_DATA:
            return self.app(environ, start_response)
        inspection = Inspection()
        environ[env_keys.INSPECTION] = inspection
        proxy = InspectingInput(chunked.server_input(environ),
                                streams.body_length(environ),
                                self.judge, inspection, self.stream_errors)
        streams.install(environ, proxy)
        return streams.call_app(self.app, environ, start_response, proxy)


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#inspect``."""
    conf = config.parse(OPTS, global_conf, local_conf, OWNER)

    def inspect_filter(app):
        return InspectMiddleware(app, conf)
    return inspect_filter
