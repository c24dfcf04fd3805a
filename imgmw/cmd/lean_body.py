"""Request bodies read with one copy a byte, for :mod:`imgmw.cmd.worker`.

gunicorn's ``wsgi.input`` (``gunicorn.http.body.Body``) buffers every
read twice: its reader gathers socket reads in a ``BytesIO``, slices what
was asked for and writes the rest back, then ``Body.read`` does the same
again. For an upload read in 1 MiB pieces that is five to seven copies of
each byte into freshly allocated memory, and, since gunicorn 27 reads up
to 1 MiB ahead, the rest of the read-ahead is copied again at every read:
measured on a 1 GiB upload through imgmw-api, 40 to 60 per cent of the
worker's CPU went to those copies and to the page faults of their new
buffers, more than to MD5 and SHA-512 together.

:class:`LeanBody` stands in for gunicorn's ``Body`` when the body is
framed by ``Content-Length`` or ``chunked``:

* a ``Content-Length`` body is received straight into the bytes handed to
  the application, at most what was asked and what is left of the body,
  so nothing is read ahead; bytes the server had already buffered (the
  first body window, read by the event loop) are handed out first;
* a chunked body is handed out as gunicorn's parser yields it, pieces
  joined once; a surplus beyond what was asked is kept for the next read
  (and given back to gunicorn's chunk reader before a ``readline``).

gunicorn's own accounting (the bytes left of a ``Content-Length`` body,
the chunk parser) is kept up to date, so the server finds the connection
where it expects it: reading what is left of an unread body before the
next request on a kept-alive connection, closing after a failed read.
``readline`` and anything else go to gunicorn's ``Body``, which is used
whole whenever it holds bytes of its own. Body reads go through the
connection's socket as gunicorn's would (:class:`~imgmw.cmd.body_guard.
PacedSocket` included), so pacing, timeouts and ``100 Continue`` are
unchanged.
"""

import typing

from gunicorn.http import body as gunicorn_body

#: Most bytes asked of one socket read (gunicorn's own bound too).
MAX_RECV = 1024 * 1024


class LeanBody:
    """``wsgi.input`` over gunicorn's ``Body`` of a framed request body.

    :param body: gunicorn's ``Body``, whose reader is a ``LengthReader``
        or a ``ChunkedReader``.
    """

    def __init__(self, body):
        self.body = body
        self.reader = body.reader
        #: Bytes of a chunked body received and not yet handed out, from
        #: ``offset`` on.
        self.pending = b''
        self.offset = 0

    @property
    def failed(self) -> bool:
        return self.body.failed

    def read(self, size: typing.Optional[int] = None) -> bytes:
        if self.body.buf.tell():
            # readline() left bytes in gunicorn's own buffer: they come
            # first, and gunicorn knows how to hand them out.
            return self.body.read(size)
        if size is not None and not isinstance(size, int):
            raise TypeError('size must be an integral type')
        if size is not None and size < 0:
            size = None
        if size == 0:
            return b''
        try:
            if isinstance(self.reader, gunicorn_body.LengthReader):
                return self._read_length(size)
            return self._read_chunked(size)
        except Exception:
            self.body.failed = True
            raise

    def _read_length(self, size: typing.Optional[int]) -> bytes:
        reader = self.reader
        want = reader.length if size is None else min(size, reader.length)
        if want <= 0:
            return b''
        unreader = reader.unreader
        parts = []
        got = 0
        held = unreader.buf.getvalue() if unreader.buf.tell() else b''
        if held:
            parts.append(held[:want])
            got = len(parts[0])
            unreader.buf = type(unreader.buf)()
            if len(held) > want:
                unreader.buf.write(held[want:])
        while got < want:
            # A socket read allocates what it may receive: never more
            # than MAX_RECV, whatever the read asks (read() of a body
            # declared at many GiB must not reserve them).
            chunk = unreader.sock.recv(min(want - got, MAX_RECV))
            if not chunk:
                # The client stopped early: as gunicorn's reader, nothing
                # more is expected of this body.
                reader.length = 0
                return b''.join(parts)
            parts.append(chunk)
            got += len(chunk)
        reader.length -= got
        return parts[0] if len(parts) == 1 else b''.join(parts)

    def _read_chunked(self, size: typing.Optional[int]) -> bytes:
        reader = self.reader
        parts = []
        got = 0
        if self.pending:
            held = len(self.pending) - self.offset
            if size is not None and held > size:
                start = self.offset
                self.offset += size
                return self.pending[start:self.offset]
            parts.append(self.pending[self.offset:] if self.offset
                         else self.pending)
            got = held
            self.pending, self.offset = b'', 0
        if reader.buf.tell():
            held = reader.buf.getvalue()
            reader.buf = type(reader.buf)()
            if size is not None and got + len(held) > size:
                keep = size - got
                self.pending, self.offset = held, keep
                held = held[:keep]
            parts.append(held)
            got += len(held)
        while reader.parser and (size is None or got < size):
            try:
                piece = next(reader.parser)
            except StopIteration:
                reader.parser = None
                break
            if size is not None and got + len(piece) > size:
                # Only the piece that goes past the read is split; its
                # rest is kept for the next read, not copied now.
                keep = size - got
                parts.append(piece[:keep])
                self.pending, self.offset = piece, keep
                got = size
                break
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b''.join(parts)

    def _give_back(self) -> None:
        """Hand bytes held here back to gunicorn's chunk reader."""
        if self.pending:
            buf = type(self.reader.buf)()
            buf.write(self.pending[self.offset:])
            buf.write(self.reader.buf.getvalue())
            self.reader.buf = buf
            self.pending, self.offset = b'', 0

    def readline(self, size: typing.Optional[int] = None) -> bytes:
        self._give_back()
        return self.body.readline(size)

    def readlines(self, size: typing.Optional[int] = None) -> list:
        self._give_back()
        return self.body.readlines(size)

    def __iter__(self):
        self._give_back()
        return iter(self.body)


def lean(body):
    """``body`` as a :class:`LeanBody` where it can be one, else itself."""
    reader = getattr(body, 'reader', None)
    if isinstance(reader, gunicorn_body.LengthReader):
        if hasattr(reader.unreader, 'sock'):
            return LeanBody(body)
    elif isinstance(reader, gunicorn_body.ChunkedReader):
        if hasattr(reader, 'parser') and hasattr(reader, 'buf'):
            return LeanBody(body)
    return body


def install(app):
    """Wrap a WSGI ``app`` so that its ``wsgi.input`` is lean."""
    def with_lean_body(environ: dict, start_response):
        body = environ.get('wsgi.input')
        if body is not None:
            environ['wsgi.input'] = lean(body)
        return app(environ, start_response)
    return with_lean_body
