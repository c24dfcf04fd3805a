"""Verified downloads with sendfile, in imgmw-api's gunicorn worker.

The data app answers a download verified by blocks (:mod:`imgmw.app.
blocks`) with ``wsgi.file_wrapper(body)``, the body a
:class:`~imgmw.app.blocks.VerifiedSlice`. Any WSGI server iterates it: each
block is read into Python, checked, and handed on (uWSGI, mod_wsgi, plain
gunicorn). gunicorn would use sendfile for a wrapped file with
``fileno()``, but sendfile alone would send bytes nobody checked.

:func:`install` wraps the application in :class:`imgmw.cmd.worker.
ThreadWorker` so that gunicorn's response writes such a body with
verify-then-sendfile (:func:`imgmw.verified_sendfile.send_verified`): each
1 MiB block is read into one reused buffer, checked against its digest,
then sent from the file by the kernel. Bytes and CPU: the server copies a
block once (page cache to buffer) for the check instead of twice plus a
Python object, and the send is the kernel's.

The response is sent that way only when gunicorn itself would use sendfile
(``--no-sendfile`` not given, no TLS, a ``Content-Length``, a body to
send); otherwise, and for any other body, gunicorn's own ``write_file``
runs. A bad block ends the response before any of its bytes, as when
iterated: the worker closes the connection short of ``Content-Length``.
"""

import functools
import weakref

from gunicorn.http import wsgi


def install(app):
    """Wrap ``app`` so that verified bodies go out with sendfile."""
    def with_verified_sendfile(environ: dict, start_response):
        response = getattr(start_response, '__self__', None)
        if isinstance(response, wsgi.Response):
            response.write_file = WriteFile(response)
        return app(environ, start_response)
    return with_verified_sendfile


class WriteFile:
    """A response's ``write_file``: :func:`write_file`, else its class's.

    It holds the response by a weak reference: a strong one, from an
    attribute of the response itself, would make every response a
    reference cycle, freed with its request, body and buffers only when
    the garbage collector next runs.
    """

    __slots__ = ('response',)

    def __init__(self, response: wsgi.Response):
        self.response = weakref.ref(response)

    def __call__(self, respiter) -> None:
        response = self.response()
        default = functools.partial(type(response).write_file, response)
        return write_file(response, default, respiter)


def write_file(response: wsgi.Response, default, respiter) -> None:
    """gunicorn's ``Response.write_file``, verify-then-sendfile if it can."""
    body = getattr(respiter, 'filelike', None)
    if not (getattr(body, 'can_sendfile', None) and body.can_sendfile()
            and response.can_sendfile() and not response.cfg.is_ssl
            and response.response_length is not None
            and not response.is_chunked()
            and not getattr(response, '_omits_body', False)):
        return default(respiter)
    response.send_headers()
    response.sent += body.sendfile(response.sock)
