"""Test doubles shared by the unit tests."""

import io
import typing

import webob
import webob.exc


class RecordingApp:
    """A WSGI app that reads ``wsgi.input`` in chunks and records what it saw.

    :param chunk_size: bytes asked of each ``read()``; ``-1`` reads all at
        once.
    :param catch: when true, the app catches ``Exception`` around its reads
        and answers 500, as a careless app would.
    :param status: the status answered after a complete read.
    :param body: the response body.
    :param headers: extra response headers.
    """

    def __init__(self, chunk_size: int = 65536, catch: bool = False,
                 status: int = 204, body: bytes = b'',
                 headers: typing.Optional[dict] = None, read: bool = True):
        self.chunk_size = chunk_size
        self.catch = catch
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.read = read
        self.calls = []
        self.received = b''
        self.reads = 0
        self.eof = False
        self.failed = None

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def environ(self) -> dict:
        return self.calls[-1]

    def __call__(self, environ, start_response):
        self.calls.append(dict(environ))
        self.received = b''
        self.eof = False
        if self.read and environ['REQUEST_METHOD'] in ('PUT', 'POST'):
            try:
                self._read_all(environ['wsgi.input'])
            except Exception as err:
                if not self.catch:
                    raise
                self.failed = err
                return webob.exc.HTTPInternalServerError()(
                    environ, start_response)
            except BaseException as err:
                self.failed = err
                raise
        resp = webob.Response(status=self.status, body=self.body,
                              headers=self.headers)
        if self.status == 204:
            del resp.content_type
        return resp(environ, start_response)

    def _read_all(self, wsgi_input):
        while True:
            chunk = wsgi_input.read(self.chunk_size)
            self.reads += 1
            if not chunk:
                self.eof = True
                return
            self.received += chunk
            if self.chunk_size < 0:
                # read() of everything returned it all; the next read is EOF.
                continue


def upload_request(path: str = '/v2/images/abc/file', body: bytes = b'',
                   chunked: bool = False, method: str = 'PUT',
                   headers: typing.Optional[dict] = None,
                   content_length: typing.Optional[int] = None
                   ) -> webob.Request:
    """A request as a server hands it over, Content-Length or chunked.

    A chunked request has no ``CONTENT_LENGTH`` and sets
    ``wsgi.input_terminated``, as gunicorn does. ``content_length`` may
    differ from ``len(body)`` to simulate a short body.
    """
    req = webob.Request.blank(path, method=method)
    req.headers['Content-Type'] = 'application/octet-stream'
    if headers:
        req.headers.update(headers)
    req.environ['wsgi.input'] = io.BytesIO(body)
    if chunked:
        req.environ.pop('CONTENT_LENGTH', None)
        req.environ['HTTP_TRANSFER_ENCODING'] = 'chunked'
        req.environ['wsgi.input_terminated'] = True
    else:
        length = len(body) if content_length is None else content_length
        req.environ['CONTENT_LENGTH'] = str(length)
    return req


class FailingInput(io.BytesIO):
    """A server input that breaks after ``fail_after`` bytes, as on a reset."""

    def __init__(self, data: bytes, fail_after: int,
                 error: BaseException = None):
        super().__init__(data)
        self.fail_after = fail_after
        self.error = error or OSError('connection reset by peer')

    def read(self, size=-1):
        if self.tell() >= self.fail_after:
            raise self.error
        if size is None or size < 0:
            size = self.fail_after - self.tell()
        return super().read(min(size, self.fail_after - self.tell()))
