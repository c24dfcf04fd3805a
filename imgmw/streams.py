"""Streaming checks on request bodies, and calling an app under them.

No filter reads a request body. A filter that must count, limit, hash or
inspect one wraps ``environ['wsgi.input']`` in a subclass of
:class:`InputProxy` (assigning the environ key directly: WebOb's
``req.body_file = x`` would erase ``CONTENT_LENGTH``) and overrides one hook,
:meth:`InputProxy.chunk_update`, which sees every chunk on its way to the
reader. Proxies stack: each filter wraps what the filter before it installed.

A hook that finds the body wrong raises a :class:`StreamError`. It derives
from ``BaseException``, so that no ``except Exception`` in the app between
the filter and the reader can turn it into a 500. The proxy also remembers
the error, so the filter that installed it can answer the contract's status
even when an app catches everything and answers something else. Both cases
are handled by :func:`call_app`. :meth:`InputProxy.body_failed` tells the
proxy once, when its body failed there or below it (or the client went
away), so that it can let go of what it holds for a body never finished.

In front of an app that cleans up a failed upload only on ``except
Exception`` (Glance restores the image and deletes partial data that way),
a ``BaseException`` would skip that cleanup. A proxy built with
``stream_errors='ioerror'`` therefore raises its errors as a
:class:`StreamIOError`, an ``IOError`` carrying the :class:`StreamError`:
the app cleans up and answers what it answers (a 500), and :func:`call_app`
replaces that answer with the contract's, because the proxy remembered the
error. Proxies stacked on one another understand both forms.

End of stream is signalled to the hook together with the last chunk when the
proxy knows the body's length, and with an empty chunk otherwise. A check
that completes a body (declared size reached, digest compared) therefore
runs before the reader is handed the last chunk, or before it sees end of
stream: an app never sees a complete body that is wrong. A subclass that
knows where a body must end on an input that does not (a chunked body of a
declared size) overrides :meth:`InputProxy.end_of_stream` and confirms the
end with :meth:`InputProxy.input_ended` before the last chunk is handed on.

A proxy that needs the image record (whose owner to charge, which format
to expect) learns it through one defined step: the app calls
:func:`announce_image` before its first read of the body, which publishes
``environ['imgmw.image']`` and calls :meth:`InputProxy.image_announced` of
every proxy of the stack. A proxy never looks the record up later: one that
reads its first chunk unannounced (in front of an app that does not
announce, such as Glance) knows no image.

A proxy bounds what it asks of its input with :meth:`InputProxy.read_limit`:
it never reads past ``length``, and a subclass may bound further (never read
more than one byte past a declared size).
"""

import itertools
import logging
import types
import typing

import webob.exc

from imgmw import chunked
from imgmw import config
from imgmw import environ as environ_keys


LOG = logging.getLogger(__name__)

#: How a proxy raises a failed check out of ``read()``.
BASE = 'base'
IOERROR = 'ioerror'
STREAM_ERROR_MODES = (BASE, IOERROR)

#: The ``stream_errors`` option of every filter that checks a body.
STREAM_ERRORS_OPT = config.Opt(
    'stream_errors', config.choice(*STREAM_ERROR_MODES), BASE,
    'How a refused body leaves read(): base (a BaseException), or ioerror '
    'in front of an app that cleans up only on Exception (Glance).')


class StreamError(BaseException):
    """A check of the body failed inside ``read()``.

    :param http_error: the ``webob.exc`` response the client gets.
    """

    def __init__(self, http_error: webob.exc.HTTPException):
        super().__init__(http_error.explanation)
        self.http_error = http_error


class ClientDisconnected(StreamError):
    """The body could not be read to its end: the client went away.

    Nobody may listen for the answer, but the app cleans up as after any
    failed upload, and the filter answers as the contract says (a client
    that only half-closed its side still reads it).
    """


class StreamIOError(IOError):
    """A :class:`StreamError` raised as an ``IOError``.

    Raised by proxies built with ``stream_errors='ioerror'``, for apps that
    clean up a failed read only on ``except Exception``.

    :param stream_error: the :class:`StreamError` it stands for.
    """

    def __init__(self, stream_error: StreamError):
        super().__init__(str(stream_error))
        self.stream_error = stream_error


class InputProxy:
    """A file-like proxy of a WSGI input with a per-chunk hook.

    :param wsgi_input: the input to read from (the server's, or another
        proxy).
    :param length: the number of bytes the body holds, when known. The hook
        is told of end of stream with the chunk that reaches it, and reads
        past it return ``b''`` without touching ``wsgi_input``.
    :param stream_errors: ``'base'`` (default) raises failed checks as
        :class:`StreamError`, ``'ioerror'`` as :class:`StreamIOError`.
    """

    def __init__(self, wsgi_input, length: typing.Optional[int] = None,
                 stream_errors: str = BASE):
        if stream_errors not in STREAM_ERROR_MODES:
            raise ValueError('stream_errors must be one of %s, not %r'
                             % (', '.join(STREAM_ERROR_MODES), stream_errors))
        self.wsgi_input = wsgi_input
        self.length = length
        self.stream_errors = stream_errors
        self.bytes_received = 0
        self.error: typing.Optional[StreamError] = None
        self.finished = False

    # Hooks for subclasses.

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        """Check, count or transform one chunk on its way to the reader.

        Called once per read with the chunk read (possibly empty) and whether
        the stream ends with it; ``bytes_received`` already counts it. Raise
        a :class:`StreamError` to fail the body; return the chunk to hand on.
        """
        return chunk

    def body_failed(self) -> None:
        """The body just failed (``error`` is set): nothing more is read.

        Called once, when a check of this proxy or of one below it fails,
        or the client goes away; every later read raises ``error``.
        """

    def image_announced(self, image: typing.Mapping) -> None:
        """The app's image record, before its first read (see the module).

        Called by :func:`announce_image`; the record is a read-only view.
        """

    def end_of_stream(self, chunk: bytes) -> bool:
        """Whether the stream ends with ``chunk`` (just read and counted).

        True on an empty chunk, or when ``length`` is reached. A subclass
        may confirm an end the input does not announce with
        :meth:`input_ended`, and may raise a :class:`StreamError`.
        """
        if not chunk:
            return True
        return self.length is not None and self.bytes_received >= self.length

    def read_limit(self, size: typing.Optional[int]) -> int:
        """How many bytes to ask of the input for a read of ``size``.

        ``-1`` means all. Never more than what is left of ``length``.
        """
        if size is None or size < 0:
            size = -1
        if self.length is None:
            return size
        left = max(self.length - self.bytes_received, 0)
        return left if size < 0 else min(size, left)

    def raise_as(self, err: StreamError) -> BaseException:
        """The exception that carries ``err`` out of ``read()``."""
        if self.stream_errors == IOERROR:
            return StreamIOError(err)
        return err

    def disconnected(self, cause: Exception) -> ClientDisconnected:
        """The error to raise when the server's input fails mid-body."""
        from imgmw import errors
        if isinstance(cause, TimeoutError):
            LOG.info('Request body too slow, cut after %d bytes: %s',
                     self.bytes_received, cause)
            return ClientDisconnected(errors.body_too_slow(
                self.bytes_received))
        LOG.info('Request body ended early after %d bytes: %s',
                 self.bytes_received, cause)
        return ClientDisconnected(errors.incomplete_body(
            self.length, self.bytes_received))

    def input_ended(self) -> bool:
        """Read once more from the input; true if it has no byte left.

        For :meth:`end_of_stream` of a subclass that knows where the body
        must end. A byte found is counted in ``bytes_received`` and never
        handed on: the caller fails the body.
        """
        extra = self._pull(self.wsgi_input.read, 1)
        self.bytes_received += len(extra)
        return not extra

    # The file interface.

    def read(self, size: typing.Optional[int] = -1) -> bytes:
        return self._next(self.wsgi_input.read, size)

    def readline(self, size: typing.Optional[int] = -1) -> bytes:
        return self._next(self.wsgi_input.readline, size)

    def readlines(self, hint: int = -1) -> typing.List[bytes]:
        lines = []
        total = 0
        for line in iter(self.readline, b''):
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return iter(self.readline, b'')

    def _next(self, reader, size) -> bytes:
        if self.error is not None:
            raise self.raise_as(self.error)
        if self.finished or size == 0:
            return b''
        try:
            chunk = self._pull(reader, self.read_limit(size))
            self.bytes_received += len(chunk)
            eof = self.end_of_stream(chunk)
            chunk = self.chunk_update(chunk, eof)
        except StreamError as err:
            self.error = err
            self.body_failed()
            raise self.raise_as(err)
        self.finished = eof
        return chunk

    def _pull(self, reader, size: int) -> bytes:
        """Read from the input; its failures become :class:`StreamError`."""
        try:
            return reader(size)
        except StreamError:
            raise  # A proxy below this one failed.
        except StreamIOError as err:
            raise err.stream_error  # The same, raised as an IOError.
        except Exception as err:
            raise self.disconnected(err) from err


def announce_image(environ: dict, image: typing.Mapping) -> None:
    """Hand the image record over, before the first read of the body.

    The app's one step (see the module): publishes ``environ['imgmw.image']``
    and calls :meth:`InputProxy.image_announced` of each proxy stacked on
    ``environ['wsgi.input']``, outermost first.
    """
    record = types.MappingProxyType(dict(image))
    environ[environ_keys.IMAGE] = record
    stream = environ.get('wsgi.input')
    while isinstance(stream, InputProxy):
        stream.image_announced(record)
        stream = stream.wsgi_input


def body_length(environ: dict) -> typing.Optional[int]:
    """The length to bound the body proxy by, or ``None``.

    The size filter's declared size, else ``Content-Length`` of a body that
    is not chunked. A declared size of zero is passed as unknown: the proxy
    then asks the size filter's proxy below it for data, so that it sees
    (and refuses) any byte beyond the declared zero.
    """
    if environ_keys.SIZE in environ:
        return environ[environ_keys.SIZE] or None
    if chunked.transfer_encoding(environ):
        return None
    length = (environ.get('CONTENT_LENGTH') or '').strip()
    return int(length) if length.isascii() and length.isdigit() else None


def install(environ: dict, proxy: InputProxy) -> InputProxy:
    """Make ``proxy`` the request's ``wsgi.input``, leaving headers alone."""
    environ['wsgi.input'] = proxy
    return proxy


def close_if_possible(iterable) -> None:
    close = getattr(iterable, 'close', None)
    if close is not None:
        close()


def call_app(app, environ: dict, start_response,
             proxy: InputProxy) -> typing.Iterable[bytes]:
    """Call ``app`` with ``proxy`` installed and answer its stream errors.

    When the body failed a check, the client gets the check's answer: if the
    :class:`StreamError` (or its :class:`StreamIOError`) propagated out of
    the app, if the app raised something else after the body failed, and
    if the app caught the error and answered something else (its answer is
    discarded). The app's status and headers are held back until the app
    returned (or yielded its first chunk, for an app that calls
    ``start_response`` lazily), so replacing them is always possible. Data
    the app passes to the ``write`` callable is sent before its iterable.

    A check that fails after the response started (an app reading the body
    while it streams its response) can no longer change the status; the
    error then propagates to the server, which cuts the response.
    """
    captured = []
    written = []

    def capture(status, headers, exc_info=None):
        captured[:] = [status, headers, exc_info]
        return written.append

    try:
        app_iter = app(environ, capture)
        if not captured:
            # The app may call start_response on its first iteration.
            app_iter = _prime(app_iter)
    except StreamError as err:
        return _answer(err, environ, start_response)
    except StreamIOError as err:
        return _answer(err.stream_error, environ, start_response)
    except Exception:
        if proxy.error is None:
            raise
        LOG.debug('The app failed after the request body failed a check',
                  exc_info=True)
        return _answer(proxy.error, environ, start_response)
    if proxy.error is not None:
        close_if_possible(app_iter)
        return _answer(proxy.error, environ, start_response)
    if not captured:
        close_if_possible(app_iter)
        raise RuntimeError('the app returned without calling start_response')
    start_response(*captured)
    if written:
        return _chain_closing(written, app_iter)
    return app_iter


def _answer(err: StreamError, environ: dict, start_response):
    return err.http_error(environ, start_response)


def _prime(app_iter):
    iterator = iter(app_iter)
    try:
        first = next(iterator)
    except StopIteration:
        close_if_possible(app_iter)
        return []
    except BaseException:
        close_if_possible(app_iter)
        raise
    return _chain_closing([first], app_iter, iterator)


class _chain_closing:
    """Iterate ``head`` then ``app_iter``; close ``app_iter`` when closed."""

    def __init__(self, head, app_iter, iterator=None):
        self._app_iter = app_iter
        self._iter = itertools.chain(
            head, iterator if iterator is not None else app_iter)

    def __iter__(self):
        return self._iter

    def close(self):
        close_if_possible(self._app_iter)
