"""Chunked request bodies read through ``wsgi.input``, whatever the server.

A filter that checks a body wraps ``environ['wsgi.input']``
(:mod:`imgmw.streams`): it sees only what the app reads through that key.
Servers differ in where a chunked body (``Transfer-Encoding: chunked``, as
python-glanceclient sends every upload) can be read:

==========================  ==============================================
server                      a chunked request body
==========================  ==============================================
gunicorn                    decoded in ``wsgi.input``, read to its end
uWSGI                       read with ``uwsgi.chunked_read()``, one client
                            chunk a call, within ``chunked-input-limit``;
                            ``wsgi.input`` does not hold it reliably (empty
                            in a worker without threads, broken on 1 MiB
                            chunks in a threaded one)
mod_wsgi (Apache)           refused with 411 unless ``WSGIChunkedRequest
                            On``; then Apache decodes it into
                            ``wsgi.input``, read until ``read()`` returns
                            ``b''``
==========================  ==============================================

Glance reads a chunked body with ``uwsgi.chunked_read()`` whenever the
``uwsgi`` module imports and the request says ``Transfer-Encoding:
chunked`` (``glance.common.wsgi.Request.body_file``), so behind uWSGI it
would read around every filter. :func:`server_input` closes that path:
under uWSGI, for a request whose last transfer coding is ``chunked``, it

* makes ``wsgi.input`` a :class:`UwsgiChunkedInput`, a file reading the
  body through ``uwsgi.chunked_read()``;
* moves ``HTTP_TRANSFER_ENCODING`` to ``environ['imgmw.framing']``
  (see :func:`transfer_encoding`) and drops ``CONTENT_LENGTH`` (the
  transfer coding overrides it, RFC 9112 section 6.3), so that the app
  finds no chunked request to take its own uWSGI path for;
* sets ``wsgi.input_terminated``, so that WebOb (``is_body_readable``)
  reads ``wsgi.input`` to its end.

The app then reads the body through ``wsgi.input``, and through every proxy
the filters wrapped around it. Every filter that installs a body proxy calls
:func:`server_input` for the input it wraps; the first call does the work
and the others find it done. ``imgmw.wsgi:application`` calls it for every
request, so imgmw's own app reads chunked bodies under uWSGI too. Anything
that needs to know how the client framed the body reads
:func:`transfer_encoding`, never ``HTTP_TRANSFER_ENCODING`` alone.

Under any other server (gunicorn, mod_wsgi, a test's WebOb request) the
``uwsgi`` module does not import and nothing is changed: those servers
decode a chunked body into ``wsgi.input`` themselves. Under mod_wsgi the
app keeps ``Transfer-Encoding`` and Glance sets ``wsgi.input_terminated``
itself for it; set ``WSGIChunkedRequest On`` or Apache refuses chunked
uploads.

uWSGI settings for chunked uploads (as devstack serves Glance)::

    [uwsgi]
    http-socket = 127.0.0.1:60999
    http-raw-body = true
    http-chunked-input = true
    http-auto-chunked = true
    # Each client chunk must fit: python-glanceclient sends 1 MiB chunks,
    # and uWSGI's default limit is 1 MB.
    chunked-input-limit = 16777216

A chunk above ``chunked-input-limit``, a malformed chunk or a client gone
mid-body makes ``uwsgi.chunked_read()`` raise ``IOError``; the filters'
proxies answer it as an incomplete body (400).

Apache settings for uploads under mod_wsgi (daemon mode, as OpenStack APIs
are served under Apache)::

    # Chunked uploads are refused with 411 without it.
    WSGIChunkedRequest On
    # Apache 2.4.54 and newer refuse bodies over 1 GiB; Glance's
    # image_size_cap and the size filter are the limits.
    LimitRequestBody 0
    WSGIDaemonProcess glance-api processes=2 threads=4 \
        python-home=/opt/glance
    WSGIScriptAlias / /opt/glance/glance-api.wsgi \
        process-group=glance-api application-group=%{GLOBAL}

(``glance-api.wsgi`` imports ``application`` from ``glance.wsgi.api``.)
In daemon mode Apache's child reads the body and passes it on to the
daemon process. When a client's body ends short of its
``Content-Length``, the child answers 500 itself, whatever the app
answers (row 3.15 of the contract wants 400, as the filters answer
under gunicorn and uWSGI). The filters still refuse what the daemon
received: nothing is stored, and the image is free for a retry once the
daemon has finished the request (a retry before then is answered 409).
"""

import io
import typing

from imgmw import environ as keys


def _import_uwsgi():
    """uWSGI's embedded module, or ``None`` under any other server."""
    try:
        import uwsgi
    except ImportError:
        return None
    return uwsgi


def transfer_encoding(environ: dict) -> str:
    """The client's ``Transfer-Encoding``, even once moved out of the way.

    ``''`` when the request has none.
    """
    return (environ.get('HTTP_TRANSFER_ENCODING')
            or environ.get(keys.TRANSFER_ENCODING) or '')


def codings(raw: str) -> typing.List[str]:
    """A coding list (RFC 9110 5.6.1), lower-cased.

    Parameters and empty elements are dropped. For ``Transfer-Encoding``
    and ``Content-Encoding`` alike.
    """
    found = (item.split(';', 1)[0].strip().lower() for item in raw.split(','))
    return [coding for coding in found if coding]


def transfer_codings(environ: dict) -> typing.List[str]:
    """The request's transfer codings, lower-cased, parameters dropped."""
    return codings(transfer_encoding(environ))


def is_chunked(environ: dict) -> bool:
    """True when the last transfer coding of the request is ``chunked``."""
    codings = transfer_codings(environ)
    return bool(codings) and codings[-1] == 'chunked'


def server_input(environ: dict, uwsgi_module: typing.Any = None):
    """``environ['wsgi.input']``, made to hold the whole body on any server.

    See the module's documentation. Idempotent: the work is done once per
    request, whoever calls first.

    :param uwsgi_module: the ``uwsgi`` module; by default the one that
        imports (only inside uWSGI). For tests.
    :returns: the input to read or wrap.
    """
    if keys.TRANSFER_ENCODING in environ or not is_chunked(environ):
        return environ['wsgi.input']
    if uwsgi_module is None:
        uwsgi_module = _import_uwsgi()
    if uwsgi_module is None:
        return environ['wsgi.input']
    environ['wsgi.input'] = UwsgiChunkedInput(uwsgi_module.chunked_read)
    environ[keys.TRANSFER_ENCODING] = environ.pop('HTTP_TRANSFER_ENCODING')
    environ.pop('CONTENT_LENGTH', None)
    environ['wsgi.input_terminated'] = True
    return environ['wsgi.input']


class UwsgiChunkedInput(io.RawIOBase):
    """A chunked request body, read as a file through uWSGI's chunked API.

    :param chunked_read: ``uwsgi.chunked_read``: returns the next chunk of
        the body, ``b''`` after the last, and raises ``IOError`` on a
        broken or oversized chunk or a client gone.

    ``read(n)`` returns ``n`` bytes, fewer only at the end of the body;
    ``read()`` the rest of the body. A chunk is never copied whole when a
    reader takes it whole. ``readlines()`` and iteration come from
    :class:`io.RawIOBase`.
    """

    def __init__(self, chunked_read: typing.Callable[[], bytes]):
        super().__init__()
        self._chunked_read = chunked_read
        self._pending = b''
        self._ended = False

    def _next_chunk(self) -> bytes:
        """The pending bytes, else the next chunk; ``b''`` at the end."""
        if self._pending:
            chunk, self._pending = self._pending, b''
            return chunk
        if self._ended:
            return b''
        chunk = self._chunked_read()
        if not chunk:
            self._ended = True
            return b''
        return bytes(chunk)

    def readable(self) -> bool:
        return True

    def readall(self) -> bytes:
        return self.read()

    def read(self, size: typing.Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            return b''.join(iter(self._next_chunk, b''))
        parts = []
        wanted = size
        while wanted > 0:
            chunk = self._next_chunk()
            if not chunk:
                break
            if len(chunk) > wanted:
                chunk, self._pending = chunk[:wanted], chunk[wanted:]
            parts.append(chunk)
            wanted -= len(chunk)
        return parts[0] if len(parts) == 1 else b''.join(parts)

    def readline(self, size: typing.Optional[int] = -1) -> bytes:
        limit = None if size is None or size < 0 else size
        parts = []
        got = 0
        while limit is None or got < limit:
            chunk = self._next_chunk()
            if not chunk:
                break
            end = chunk.find(b'\n') + 1 or len(chunk)
            if limit is not None:
                end = min(end, limit - got)
            chunk, self._pending = chunk[:end], chunk[end:]
            parts.append(chunk)
            got += len(chunk)
            if chunk.endswith(b'\n'):
                break
        return b''.join(parts)
