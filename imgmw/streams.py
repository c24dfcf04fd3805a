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
are handled by :func:`call_app`.

End of stream is signalled to the hook together with the last chunk when the
proxy knows the body's length, and with an empty chunk otherwise. A check
that completes a body (declared size reached, digest compared) therefore
runs before the reader is handed the last chunk, or before it sees end of
stream: an app never sees a complete body that is wrong.
"""

import itertools
import logging
import typing

import webob.exc


LOG = logging.getLogger(__name__)


class StreamError(BaseException):
    """A check of the body failed inside ``read()``.

    :param http_error: the ``webob.exc`` response the client gets.
    """

    def __init__(self, http_error: webob.exc.HTTPException):
        super().__init__(http_error.explanation)
        self.http_error = http_error


class ClientDisconnected(StreamError):
    """The body could not be read to its end: the client went away.

    Nobody listens for the answer, but the app cleans up as after any
    failed upload, and the filter logs and answers as the contract says.
    """


class InputProxy:
    """A file-like proxy of a WSGI input with a per-chunk hook.

    :param wsgi_input: the input to read from (the server's, or another
        proxy).
    :param length: the number of bytes the body holds, when known. The hook
        is told of end of stream with the chunk that reaches it, and reads
        past it return ``b''`` without touching ``wsgi_input``.
    """

    def __init__(self, wsgi_input, length: typing.Optional[int] = None):
        self.wsgi_input = wsgi_input
        self.length = length
        self.bytes_received = 0
        self.error: typing.Optional[StreamError] = None
        self.finished = False

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        """Check, count or transform one chunk on its way to the reader.

        Called once per read with the chunk read (possibly empty) and whether
        the stream ends with it. Raise a :class:`StreamError` to fail the
        body; return the chunk to hand on.
        """
        return chunk

    def read(self, size: int = -1) -> bytes:
        return self._next(self.wsgi_input.read, size)

    def readline(self, size: int = -1) -> bytes:
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

    def _bounded(self, size: typing.Optional[int]) -> int:
        if self.length is None:
            return -1 if size is None else size
        left = self.length - self.bytes_received
        if size is None or size < 0:
            return left
        return min(size, left)

    def _next(self, reader, size) -> bytes:
        if self.error is not None:
            raise self.error
        if self.finished:
            return b''
        try:
            chunk = reader(self._bounded(size))
        except StreamError as err:
            # A proxy below this one failed; remember it here too.
            self.error = err
            raise
        except Exception as err:
            self.error = self.disconnected(err)
            raise self.error from err
        self.bytes_received += len(chunk)
        eof = not chunk or (self.length is not None
                            and self.bytes_received >= self.length)
        try:
            chunk = self.chunk_update(chunk, eof)
        except StreamError as err:
            self.error = err
            raise
        self.finished = eof
        return chunk

    def disconnected(self, cause: Exception) -> ClientDisconnected:
        """The error to raise when the server's input fails mid-body."""
        from imgmw import errors
        LOG.info('Request body ended early after %d bytes: %s',
                 self.bytes_received, cause)
        return ClientDisconnected(errors.incomplete_body(
            self.length, self.bytes_received))


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
    :class:`StreamError` propagated out of the app, and also if the app
    caught it and answered something else (its answer is discarded). The
    app's status and headers are held back until the app returned, so
    replacing them is always possible.
    """
    captured = []

    def capture(status, headers, exc_info=None):
        captured[:] = [status, headers, exc_info]
        return _deferred_write

    written = []

    def _deferred_write(data):
        written.append(data)

    try:
        app_iter = app(environ, capture)
        if not captured:
            # The app may call start_response on its first iteration.
            app_iter = _prime(app_iter)
    except StreamError as err:
        return err.http_error(environ, start_response)
    if proxy.error is not None:
        close_if_possible(app_iter)
        return proxy.error.http_error(environ, start_response)
    start_response(*captured)
    if written:
        return _chain_closing(written, app_iter)
    return app_iter


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
