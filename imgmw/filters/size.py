"""Size filter: hold an image upload to the size its client declared.

The filter guards ``PUT /v2/images/{id}/file`` and ``PUT
/v2/images/{id}/stage`` (also under ``/v2.N/``). It checks what the client
declares about the body before the app is called, then holds the body to it
while the app reads, so that no truncated, padded or oversized image is ever
stored. It never reads or buffers the body itself, and knows nothing of the
app behind it: it works the same in imgmw's pipeline and in front of Glance.

Before the app is called (contract section 3, in this order; the first
check that fails answers, and the app is not called):

===  =====  ==============================================================
row  code   condition
===  =====  ==============================================================
2    415    ``Content-Type`` is not ``application/octet-stream`` (media
            type compared case-insensitively; parameters, and blanks
            before ``;``, ignored). Option ``check_content_type``. An
            accepted one is handed on normalised
            (``application/octet-stream``, ``; <parameters>``), so that
            Glance, which compares it exactly, accepts it too.
2    415    ``Content-Encoding`` names a coding other than ``identity``:
            ``Content-Encoding <c> is not accepted: image data is stored
            as it is sent.``, with ``Accept-Encoding: identity``.
3    400    ``x-openstack-image-size`` is not a plain decimal integer:
            ASCII digits, blanks around them allowed; no sign, ``_``,
            ``0x``, fraction, list or other script's digits.
4    411    neither ``Content-Length`` nor ``Transfer-Encoding`` ending in
            ``chunked``. Option ``require_length``. (A ``Content-Length``
            that is not a decimal integer: 400 ``Invalid Content-Length
            header.``)
4    400    ``Transfer-Encoding`` applies a coding before ``chunked``
            (``gzip, chunked``): ``Transfer-Encoding <c> is not accepted:
            send image data as it is, chunked or with Content-Length.``
5    400    ``x-openstack-image-size`` and ``Content-Length`` both present
            and unequal.
6    413    the declared size (the header, else ``Content-Length``) is
            above ``image_size_cap``.
===  =====  ==============================================================

While the app reads the body:

===  =====  ==============================================================
row  code   condition
===  =====  ==============================================================
14   400    more bytes than declared: fails at the read that crosses the
            size, and never reads more than one byte past it. The
            message's "got" counts the bytes read.
15   400    fewer bytes than declared: fails at end of stream, before the
            app sees the end. A client gone mid-body is answered the same
            (if it still listens), and so is a ``Content-Length`` body cut
            short by a half-close: a read of a ``Content-Length`` body
            returns what was asked unless the body ends, so that an app
            that takes a short read for a disconnection (WebOb, Glance:
            500) sees this answer instead.
16   413    no size declared, and more than ``image_size_cap`` bytes.
18   400    chunked, no size declared, and the body is empty. Declare
            ``x-openstack-image-size: 0`` to store an empty image.
===  =====  ==============================================================

A chunked body with a declared size is confirmed to end there (one more
read of the server's input) before the app is handed its last chunk, so the
app never sees a complete body that is wrong. A ``Content-Length`` body is
never read past its length. ``x-openstack-image-size: 0`` means zero bytes
(Glance takes it as "unknown").

**Codings.** The image is the bytes the client sends: its size, checksums,
the declared size, the cap and the quota are of those bytes, and a client
downloads them as they were uploaded (as Glance stores them). A coding
that changes them is refused before the app, never stored still encoded
(the server removes only ``chunked``) nor decoded behind the client's
declarations:

- a content coding (``Content-Encoding: gzip``) is a property of the
  representation the client chose; RFC 9110 section 15.5.16 answers an
  unsupported content coding with 415 and ``Accept-Encoding`` naming what
  is accepted: ``identity``;
- a transfer coding before ``chunked`` (``Transfer-Encoding: gzip,
  chunked``) frames the body correctly but in a form the service does not
  take. RFC 9112 section 6.1 has 501 for codings a server does not
  understand; this one is understood and refused, a client error the
  client fixes by not applying it: 400. (A ``Transfer-Encoding`` that does
  not end in ``chunked`` has no framing at all: row 4's 411.) ``identity``
  and empty list elements (RFC 9110 section 5.6.1) are ignored.

``Transfer-Encoding`` and ``Content-Length`` together: as RFC 9112 section
6.3 says, the transfer coding wins. The body is taken as chunked, its
``Content-Length`` is ignored (no row 5) and removed from the environ before
the app, as the RFC asks of an intermediary, so that nothing below bounds
the body by it. A ``Transfer-Encoding`` whose last coding is not
``chunked`` frames no body the filter can hold: row 4.

The filter publishes the declared size in ``environ['imgmw.size']`` (the
header, else ``Content-Length``, else ``None``) for every request it
guards; the quota and checksum filters and the data app read it. It goes
after the context filter (the contract answers 401 before 415), before the
stores filter (3.6 before 3.7), and first of the filters that wrap
``wsgi.input``.

A failed check inside ``read()`` leaves it as an exception derived from
``BaseException`` (``imgmw.streams.StreamError``), so that no ``except
Exception`` in the app turns it into a 500; the filter answers the
contract's status, also when the app swallows the error and answers
something else.

imgmw's pipeline (``etc/api-paste.ini``)::

    [DEFAULT]
    image_size_cap = 1099511627776

    [pipeline:keystone-api]
    pipeline = request_id authtoken context size stores quota checksum
               inspect imgmw

    [filter:size]
    use = egg:imgmw#size

In front of Glance, set ``stream_errors = ioerror`` (why:
:ref:`stream-errors`). Put the filter after Glance's ``context`` filter;
set ``image_size_cap`` to the value of ``glance-api.conf``, which this
filter does not read::

    [pipeline:glance-api-keystone]
    pipeline = cors http_proxy_to_wsgi versionnegotiation osprofiler
               authtoken context imgmw_size rootapp

    [filter:imgmw_size]
    use = egg:imgmw#size
    stream_errors = ioerror
    image_size_cap = 1099511627776

Under uWSGI, a chunked body is not in ``wsgi.input``, and Glance reads it
with ``uwsgi.chunked_read()``: the filter moves it into ``wsgi.input`` first
(:mod:`imgmw.chunked`), so that Glance reads it through the filter's checks
on any server. What it cannot do: a check that fails after an app started
its response (by reading the body while it streams the response) cannot
change the status: the server cuts the response.

Options, in the filter's section or in ``[DEFAULT]`` (the section wins):

======================  =================  ==================================
option                  default            meaning
======================  =================  ==================================
``image_size_cap``      ``1099511627776``  largest image in bytes (1 TiB, as
                                           Glance); ``512MB``, ``10GB``,
                                           ``1TB`` are accepted (binary
                                           units)
``guarded_paths``       ``file, stage``    uploads to guard: ``file``
                                           (``PUT .../file``) and/or
                                           ``stage`` (``PUT .../stage``)
``require_length``      ``true``           row 4; when false, a request with
                                           neither framing header has an
                                           empty body (RFC 9112), as in
                                           Glance
``check_content_type``  ``true``           row 2
``stream_errors``       ``base``           ``base`` or ``ioerror``
                                           (:ref:`stream-errors`)
======================  =================  ==================================

Headers read: ``Content-Type``, ``Content-Encoding``,
``x-openstack-image-size``, ``Content-Length``, ``Transfer-Encoding``.
Logged: a 413 at INFO, naming ``image_size_cap`` and the sizes; other
refusals at DEBUG.
"""

import dataclasses
import logging
import re
import typing

import webob.exc

from imgmw import chunked
from imgmw import config
from imgmw import environ as keys
from imgmw import errors
from imgmw import paths
from imgmw import streams


LOG = logging.getLogger(__name__)

OWNER = 'size filter'
DEFAULT_IMAGE_SIZE_CAP = 1 << 40
MEDIA_TYPE = 'application/octet-stream'

#: ``guarded_paths`` words, and the routes they name.
GUARDABLE = {'file': paths.IMAGE_DATA, 'stage': paths.STAGE}

# Python refuses to convert longer digit strings (CVE-2020-10735 limit);
# such a header is refused as malformed rather than crashing.
_MAX_DIGITS = 4000
_DECIMAL = re.compile(r'[ \t]*([0-9]+)[ \t]*')


def guarded_paths(name: str, value: str) -> typing.FrozenSet[str]:
    """Parse ``guarded_paths`` into route kinds of :mod:`imgmw.paths`."""
    words = config.string_list(name, value)
    unknown = [word for word in words if word not in GUARDABLE]
    if unknown or not words:
        raise config.ConfigError(
            'invalid value %r for option %s: expected one or both of %s'
            % (value, name, ', '.join(sorted(GUARDABLE))))
    return frozenset(GUARDABLE[word] for word in words)


OPTS = (
    config.Opt('image_size_cap', config.byte_size, DEFAULT_IMAGE_SIZE_CAP,
               'Largest image accepted, in bytes.'),
    config.Opt('guarded_paths', guarded_paths,
               frozenset((paths.IMAGE_DATA, paths.STAGE)),
               'Uploads to guard: file and/or stage.', written='file, stage'),
    config.Opt('require_length', config.boolean, True,
               'Refuse uploads with neither Content-Length nor chunking.'),
    config.Opt('check_content_type', config.boolean, True,
               'Refuse uploads that are not application/octet-stream.'),
    streams.STREAM_ERRORS_OPT,
)


def parse_decimal(value: typing.Optional[str]) -> typing.Optional[int]:
    """Parse a plain non-negative decimal integer, else return ``None``.

    ASCII digits only, with blanks (space, tab) around them allowed.
    """
    match = _DECIMAL.fullmatch(value or '')
    if match is None or len(match.group(1)) > _MAX_DIGITS:
        return None
    return int(match.group(1))


@dataclasses.dataclass(frozen=True)
class Framing:
    """How the request body is delimited.

    ``content_length`` is the header's value when it frames the body;
    ``length`` is what the server's input holds when known (``None`` for
    chunked).
    """

    chunked: bool
    content_length: typing.Optional[int]
    length: typing.Optional[int]


@dataclasses.dataclass(frozen=True)
class Declared:
    """What the client declared: the size (or ``None``) and the framing."""

    size: typing.Optional[int]
    framing: Framing


class SizeCheckedInput(streams.InputProxy):
    """Holds a request body to its declared size, or to the cap.

    :param length: what the server's input holds, when it bounds the body
        (``Content-Length``); ``None`` for a chunked body.
    :param declared: the declared size, or ``None`` when unknown.
    :param cap: the most bytes a body of unknown size may hold.
    :param empty_allowed: false for a chunked body of unknown size (row 18).
    """

    def __init__(self, wsgi_input, length: typing.Optional[int],
                 declared: typing.Optional[int], cap: int,
                 empty_allowed: bool = True,
                 stream_errors: str = streams.BASE):
        super().__init__(wsgi_input, length, stream_errors=stream_errors)
        self.declared = declared
        self.cap = cap
        self.empty_allowed = empty_allowed
        #: The input of a Content-Length body ended before its length.
        self.input_ended_early = False

    def read(self, size: typing.Optional[int] = -1) -> bytes:
        return self._next(self._read_full, size)

    def _read_full(self, size: int) -> bytes:
        """Read ``size`` bytes of a ``Content-Length`` body, or to its end.

        A server's input may return fewer bytes than asked before the
        body ends; WebOb (Glance) takes a short read for a disconnection
        (a 500). Reading on until ``size`` bytes or the end of the input
        lets a body cut short (a half-close) end here, as row 15.
        """
        if self.length is None or size < 0:
            return self.wsgi_input.read(size)
        parts = []
        got = 0
        while got < size:
            try:
                chunk = self.wsgi_input.read(size - got)
            except Exception:
                if parts:
                    break  # Count what came; the next read fails again.
                raise
            if not chunk:
                self.input_ended_early = True
                break
            parts.append(chunk)
            got += len(chunk)
        return b''.join(parts)

    def read_limit(self, size: typing.Optional[int]) -> int:
        size = super().read_limit(size)
        if self.length is not None:
            return size
        # Never read more than one byte past what may come.
        ceiling = self.cap if self.declared is None else self.declared
        room = max(ceiling - self.bytes_received, 0) + 1
        return room if size < 0 else min(size, room)

    def end_of_stream(self, chunk: bytes) -> bool:
        if super().end_of_stream(chunk) or self.input_ended_early:
            return True
        if self.declared is None or self.bytes_received != self.declared:
            return False
        # The declared size is reached on an input that does not end by
        # itself: confirm its end before the last chunk is handed on. A
        # byte found makes the count exceed the size (row 14).
        return self.input_ended()

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        got = self.bytes_received
        if self.declared is not None:
            if got > self.declared:
                raise streams.StreamError(
                    errors.size_exceeds(self.declared, got))
            if eof and got < self.declared:
                raise streams.StreamError(
                    errors.size_mismatch(self.declared, got))
        elif got > self.cap:
            LOG.info('Refused an upload of unknown size above '
                     'image_size_cap (%d bytes)', self.cap)
            raise streams.StreamError(errors.image_too_large())
        elif eof and got == 0 and not self.empty_allowed:
            raise streams.StreamError(errors.empty_chunked_body())
        return chunk

    def disconnected(self, cause: Exception) -> streams.ClientDisconnected:
        """The error of a server input that failed mid-body.

        A ``TimeoutError`` (a socket timeout, or imgmw-api's minimum pace)
        is a body that came too slowly: 408. Any other ``OSError``
        (gunicorn's ``NoMoreData`` included) is a body that ended early:
        row 15. Any other exception is the server's refusal of
        the framing itself (gunicorn's ``InvalidChunkSize``,
        ``ChunkMissingTerminator``, ...): the client is there and is told
        what was wrong, not that its body was short.
        """
        err = super().disconnected(cause)
        if isinstance(cause, TimeoutError):
            return err  # Too slow, not short: 408.
        if not isinstance(cause, OSError):
            return streams.ClientDisconnected(errors.malformed_chunks(
                self.bytes_received, str(cause)))
        if self.declared is None:
            return err
        return streams.ClientDisconnected(
            errors.incomplete_body(self.declared, self.bytes_received))


class SizeMiddleware:
    """Checks the declared size of uploads and holds their bodies to it.

    :param conf: options (see the module's documentation), as strings or
        already typed.
    """

    def __init__(self, app, conf: typing.Mapping,
                 logger: typing.Optional[logging.Logger] = None):
        self.app = app
        self.logger = logger or LOG
        values = config.parse(OPTS, {}, conf, OWNER)
        self.image_size_cap: int = values['image_size_cap']
        self.guarded: typing.FrozenSet[str] = frozenset(
            values['guarded_paths'])
        self.require_length: bool = values['require_length']
        self.check_content_type: bool = values['check_content_type']
        self.stream_errors: str = values['stream_errors']

    def __call__(self, environ: dict, start_response):
        route = paths.is_data_upload(environ)
        if route is None or route.kind not in self.guarded:
            return self.app(environ, start_response)
        try:
            declared = self.check_request(environ)
        except webob.exc.HTTPException as err:
            self.logger.debug('Refused %s of image %s: %s', route.kind,
                              route.image_id, err.explanation)
            return err(environ, start_response)
        environ[keys.SIZE] = declared.size
        proxy = streams.install(environ, SizeCheckedInput(
            chunked.server_input(environ), declared.framing.length,
            declared.size,
            self.image_size_cap,
            empty_allowed=not declared.framing.chunked,
            stream_errors=self.stream_errors))
        return streams.call_app(self.app, environ,
                                _bare_no_content(start_response), proxy)

    def check_request(self, environ: dict) -> Declared:
        """Rows 2 to 6 of the contract, in order.

        :raises webob.exc.HTTPException: the first check that fails.
        """
        if self.check_content_type:
            check_content_type(environ)
        check_content_coding(environ)
        header = declared_header(environ)
        framing = self.framing(environ)
        length = framing.content_length
        if header is not None and length is not None and header != length:
            raise errors.size_header_mismatch(header, length)
        size = header if header is not None else length
        if size is not None and size > self.image_size_cap:
            self.logger.info('Declared size %d is above image_size_cap '
                             '(%d bytes)', size, self.image_size_cap)
            raise errors.image_too_large()
        return Declared(size, framing)

    def framing(self, environ: dict) -> Framing:
        """Row 4: how the body is delimited (RFC 9112 section 6.3)."""
        codings = transfer_codings(environ)
        if codings:
            if codings[-1] != 'chunked':
                raise errors.length_required()
            applied = [coding for coding in codings[:-1]
                       if coding != 'identity']
            if applied:
                raise errors.transfer_coding_refused(', '.join(applied))
            # The transfer coding overrides Content-Length; drop it so
            # that nothing below bounds the body by it.
            environ.pop('CONTENT_LENGTH', None)
            return Framing(True, None, None)
        raw = (environ.get('CONTENT_LENGTH') or '').strip()
        if not raw:
            if self.require_length:
                raise errors.length_required()
            return Framing(False, None, 0)
        length = parse_decimal(raw)
        if length is None:
            raise errors.invalid_content_length()
        return Framing(False, length, length)


def check_content_type(environ: dict) -> None:
    """Row 2: raise the 415 unless the body is application/octet-stream.

    An accepted ``Content-Type`` is handed on normalised (the media type
    in lower case, no blanks before ``;``), as an app that compares it
    exactly (Glance) accepts it.
    """
    media_type, semicolon, parameters = (
        environ.get('CONTENT_TYPE') or '').partition(';')
    media_type = media_type.strip()
    if media_type.lower() != MEDIA_TYPE:
        raise errors.invalid_content_type(media_type or None)
    environ['CONTENT_TYPE'] = MEDIA_TYPE + (
        '; ' + parameters.strip() if parameters.strip() else '')


def _bare_no_content(start_response):
    """Row 3.24: a 204 goes out without ``Content-Type`` or a length.

    WebOb (Glance) gives its 204 ``Content-Type: text/html`` and
    ``Content-Length: 0``; a 204 has no content to describe.
    """
    def no_content_start_response(status, headers, exc_info=None):
        if status.startswith('204'):
            headers = [(name, value) for name, value in headers
                       if name.lower() not in ('content-type',
                                               'content-length')]
        return start_response(status, headers, exc_info)
    return no_content_start_response


def check_content_coding(environ: dict) -> None:
    """415 unless the body has no content coding but ``identity``."""
    applied = [coding for coding in chunked.codings(
        environ.get('HTTP_CONTENT_ENCODING') or '') if coding != 'identity']
    if applied:
        raise errors.content_coding_refused(applied[-1])


def declared_header(environ: dict) -> typing.Optional[int]:
    """Row 3: ``x-openstack-image-size``, or ``None`` when absent."""
    raw = environ.get('HTTP_X_OPENSTACK_IMAGE_SIZE')
    if raw is None:
        return None
    size = parse_decimal(raw)
    if size is None:
        raise errors.invalid_image_size()
    return size


def transfer_codings(environ: dict) -> typing.List[str]:
    """The request's transfer codings, lower-cased, parameters dropped."""
    return chunked.transfer_codings(environ)


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#size``."""
    conf = config.parse(OPTS, global_conf, local_conf, OWNER)

    def size_filter(app):
        return SizeMiddleware(app, conf)
    return size_filter
