"""imgmw-api's gunicorn worker: gthread with HTTP/1.1 framing fixed.

``imgmw-api`` serves with :class:`ThreadWorker` (``--worker-class``
defaults to ``imgmw.cmd.worker.ThreadWorker``), gunicorn's ``gthread``
worker with two changes at the server layer, where framing belongs:

``Expect: 100-continue`` (RFC 9110 section 10.1.1)
    gunicorn writes ``100 Continue`` as soon as it has parsed the head,
    before the pipeline has looked at the request, so a client whose upload
    is then refused (415, 404, 409, 413 over the cap or the quota) sends
    its whole body anyway. This worker sends the interim response only when
    the application first reads the body. An answer given before that costs
    the client no body byte: the final response goes out without a
    ``100 Continue`` and with ``Connection: close``, since the client may
    or may not send the body it announced (RFC 9110 section 10.1.1: a
    server that answers before reading the content closes, or reads and
    discards it).

Empty elements of ``Transfer-Encoding`` (RFC 9110 section 5.6.1)
    ``Transfer-Encoding: chunked,`` (nothing after the comma) lists an
    empty element, which a recipient must accept and ignore; gunicorn
    answered it 501. The worker
    drops empty elements before gunicorn reads the header; a header with
    no coding at all is left as it is.

Everything else, options included, is gunicorn's ``gthread``. Another
worker class can be chosen with ``--worker-class`` (then without these
fixes).
"""

import typing

from gunicorn.http import message
from gunicorn.http import parser
from gunicorn.workers import gthread

CONTINUE = b'HTTP/1.1 100 Continue\r\n\r\n'


class Request(message.Request):
    """gunicorn's request, empty ``Transfer-Encoding`` elements dropped."""

    def set_body_reader(self) -> None:
        self.headers = [(name, _without_empty_elements(value))
                        if name == 'TRANSFER-ENCODING' else (name, value)
                        for name, value in self.headers]
        super().set_body_reader()


def _without_empty_elements(value: str) -> str:
    elements = [element.strip(' \t') for element in value.split(',')]
    kept = [element for element in elements if element]
    return ', '.join(kept) if kept else value


class RequestParser(parser.RequestParser):

    mesg_class = Request


class ContinueInput:
    """A ``wsgi.input`` that sends ``100 Continue`` at its first read.

    :param wsgi_input: the server's input.
    :param sock: the client's socket.
    """

    def __init__(self, wsgi_input, sock):
        self.wsgi_input = wsgi_input
        self.sock = sock
        #: True until the interim response is sent or no longer may be.
        self.pending = True

    def send_continue(self) -> None:
        if self.pending:
            self.pending = False
            self.sock.sendall(CONTINUE)

    def read(self, *args) -> bytes:
        self.send_continue()
        return self.wsgi_input.read(*args)

    def readline(self, *args) -> bytes:
        self.send_continue()
        return self.wsgi_input.readline(*args)

    def readlines(self, *args) -> typing.List[bytes]:
        self.send_continue()
        return self.wsgi_input.readlines(*args)

    def __iter__(self):
        self.send_continue()
        return iter(self.wsgi_input)


def expect_continue(app):
    """Wrap ``app`` so that ``100 Continue`` waits for the first read."""
    def continue_on_read(environ: dict, start_response):
        expects = (environ.get('HTTP_EXPECT', '').lower() == '100-continue'
                   and environ.get('SERVER_PROTOCOL') == 'HTTP/1.1'
                   and 'gunicorn.socket' in environ)
        if not expects:
            return app(environ, start_response)
        body = ContinueInput(environ['wsgi.input'],
                             environ['gunicorn.socket'])
        environ['wsgi.input'] = body

        def start(status, headers, exc_info=None):
            if body.pending:
                # Answered before the body was asked for: the client may
                # still send it or not; the connection cannot be reused.
                body.pending = False
                response = getattr(start_response, '__self__', None)
                if hasattr(response, 'force_close'):
                    response.force_close()
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)
        return app(environ, start)
    return continue_on_read


class ThreadWorker(gthread.ThreadWorker):
    """gunicorn's gthread worker with the fixes of the module."""

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = expect_continue(self.wsgi)

    def handle(self, conn):
        if conn.parser is None and not self.cfg.is_ssl:
            conn.parser = RequestParser(self.cfg, conn.sock, conn.client)
        return super().handle(conn)

    def handle_request(self, req, conn):
        # The interim response is sent by ContinueInput, if ever.
        req._expected_100_continue = False
        return super().handle_request(req, conn)
