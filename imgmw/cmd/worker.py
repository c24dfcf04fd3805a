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

Request heads read by the event loop
    gthread gives a connection a thread as soon as its first byte arrives,
    and the thread then waits for the rest of the head: clients trickling
    their heads (before any authentication) held every thread, and normal
    requests waited. This worker reads heads in its event loop, without a
    thread, and hands a connection to a thread only with its whole head. A
    connection that has not sent its whole head within ``--header-timeout``
    seconds (default 10; a kept-alive connection from the start of its
    next request) is cut, with ``408 Request Timeout`` when it had begun
    one.

The first window of a body read by the event loop
    After the head, the event loop also reads all of a small body, or the
    first ``--body-window`` bytes of a larger one (default 65536; framing
    bytes of a chunked body count), and only then hands the request to a
    thread. A connection that has not sent them within ``--body-timeout``
    seconds (default 30) is cut with ``408 Request Timeout`` without ever
    taking a thread: the application never saw the request, so its image
    stays as it was (queued) and nothing is stored. Buffered bytes are at
    most ``--body-window`` times ``--worker-connections`` per worker
    (64 MiB at the defaults). A request with ``Expect: 100-continue`` goes
    to a thread at once (its client waits for the interim response, sent
    at the first read), as does one with unusual framing (the thread
    answers it as gthread does).

Request bodies held to a minimum pace in the thread
    The thread reads the rest of a body through
    :class:`imgmw.cmd.body_guard.PacedSocket`: one read waits at most
    ``--body-timeout`` seconds, and after 10 s the bytes read since the
    thread took the request must average ``--body-min-rate`` bytes a second
    (default 1024; a slow WAN upload at 64 KiB/s is far above it). A body
    that breaks either fails the upload with ``408 Request Timeout`` (the
    stream filters and the app tell a timeout from a body that ended
    early, which is 400): the image stays queued, nothing is stored, and
    the client may retry.

    Measured with ``tools/slow_clients.py``: with 200 connections trickling
    their heads, or their upload bodies, at one byte a second, normal
    requests (reads and small uploads) are answered in milliseconds (see
    :doc:`front-proxy`). A client that sends the first window at once and
    then trickles holds a thread for about 10 s before it is cut; many of
    those at once still call for a front proxy.

New connections spread across the workers
    The workers share a small table of the connections each holds
    (:mod:`imgmw.cmd.balance`); a worker that holds more than another
    leaves a new connection to it for 50 ms, then takes it if it still
    waits. Kept-alive clients no longer end up all on one worker.

Verified downloads with sendfile
    A download verified block by block goes out with verify-then-sendfile
    (:mod:`imgmw.cmd.sendfile`): each block is checked in a reused buffer,
    then sent by the kernel from the file.

Request bodies read with one copy a byte
    ``wsgi.input`` of a ``Content-Length`` or chunked body is a
    :class:`imgmw.cmd.lean_body.LeanBody`: the bytes handed to the
    application are received into them directly, instead of through
    gunicorn's two layers of buffers (five to seven copies a byte).

Free memory given back at rest
    After requests were served, the event loop hands the heaps' free
    memory back to the system, at most once a second
    (:func:`imgmw.malloc.release`), so a worker at rest holds what it held
    fresh, while a busy one reuses the memory it freed without faulting it
    in again.

Everything else, options included, is gunicorn's ``gthread`` (with TLS
served by gunicorn itself, heads are read by threads as in gthread). Another
worker class can be chosen with ``--worker-class`` (then without these
fixes).
"""

import collections
import errno
import functools
import selectors
import time
import typing

from gunicorn.http import message
from gunicorn.http import parser
from gunicorn.workers import gthread

from imgmw.cmd import balance
from imgmw.cmd import body_guard
from imgmw.cmd import lean_body
from imgmw.cmd import sendfile
from imgmw import malloc

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


#: Seconds a client has to send a whole request head.
HEADER_TIMEOUT = 10.0

#: The answer to a client too slow with its head (RFC 9110 15.5.9).
REQUEST_TIMEOUT = (b'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n'
                   b'Content-Type: text/plain\r\nContent-Length: 33\r\n'
                   b'\r\nThe request head took too long.\r\n')

#: The answer to a client too slow with the start of its body.
SLOW_BODY = (b'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n'
             b'Content-Type: text/plain\r\nContent-Length: 33\r\n'
             b'\r\nThe request body took too long.\r\n')

_END_OF_HEAD = b'\r\n\r\n'


class ThreadWorker(gthread.ThreadWorker):
    """gunicorn's gthread worker with the fixes of the module."""

    #: Seconds a client has to send its request head.
    header_timeout = HEADER_TIMEOUT

    #: Least seconds between two releases of free memory.
    release_interval = 1.0

    #: This worker's side of the table of connections (none with TLS).
    balancer = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: Connections whose head is read by the event loop, oldest first.
        self.heads = collections.deque()
        #: Connections whose first body window is read, oldest first.
        self.bodies = collections.deque()
        #: Requests served, and when free memory was last given back.
        self.served = 0
        self.served_at_release = 0
        self.released_at = 0.0
        # imgmw-api's options, when it is the application.
        args = getattr(self.app, 'args', None)
        self.header_timeout = getattr(args, 'header_timeout', HEADER_TIMEOUT)
        self.body_timeout = getattr(args, 'body_timeout',
                                    body_guard.BODY_TIMEOUT)
        self.body_window = getattr(args, 'body_window',
                                   body_guard.BODY_WINDOW)
        self.body_min_rate = getattr(args, 'body_min_rate',
                                     body_guard.BODY_MIN_RATE)

    def run(self) -> None:
        # In the table once the application is loaded: a worker still
        # loading it is not left connections it cannot serve yet.
        if not self.cfg.is_ssl:
            self.balancer = balance.Balancer(
                balance.TABLE, balance.TABLE.slot_of(self.age),
                time.monotonic)
        try:
            super().run()
        finally:
            if self.balancer is not None:
                self.balancer.leave()

    # New connections spread across the workers (imgmw.cmd.balance).

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled and self.balancer is not None and \
                self.balancer.deferring():
            enabled = False
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.balancer is not None and self.balancer.deferring():
            timeout = min(timeout, self.balancer.wait_left())
        super().wait_for_and_dispatch_events(timeout)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = sendfile.install(
            lean_body.install(expect_continue(self.wsgi)))

    # Request heads are read by the event loop, not by a thread.

    def accept(self, listener) -> None:
        if self.cfg.is_ssl:
            return super().accept(listener)
        if not self.balancer.should_accept(self.nr_conns):
            # A less loaded worker was woken for it too.
            self.set_accept_enabled(False)
            return
        try:
            client, address = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED,
                                 errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client, address,
                             listener.getsockname())
        conn.parser = RequestParser(self.cfg, conn.sock, conn.client)
        self.balancer.publish(self.nr_conns)
        self.await_head(conn)

    def on_client_socket_readable(self, conn, client) -> None:
        if self.cfg.is_ssl:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.await_head(conn)

    def await_head(self, conn) -> None:
        """Buffer ``conn``'s request head; a thread gets it when whole."""
        conn.head = b''
        self.watch(conn, self.heads, self.header_timeout,
                   self.on_head_readable)

    def on_head_readable(self, conn, client) -> None:
        if not self.receive(conn, self.heads):
            return
        limit = self.cfg.limit_request_line + self.cfg.limit_request_fields * (
            self.cfg.limit_request_field_size + 2) + 4
        if _END_OF_HEAD not in conn.head and len(conn.head) < max(limit,
                                                                  8192):
            return
        self.unwatch(conn, self.heads)
        head, sep, body = conn.head.partition(_END_OF_HEAD)
        needed = body_guard.body_window(head, self.body_window) if sep else 0
        if needed == 0 or body_guard.window_filled(body, needed,
                                                   self.body_window):
            self.hand_over(conn)
        else:
            conn.body_needed = needed
            self.watch(conn, self.bodies, self.body_timeout,
                       self.on_body_readable)

    def on_body_readable(self, conn, client) -> None:
        """Buffer the first window of the body; a thread gets it then."""
        if not self.receive(conn, self.bodies, hand_over_at_end=True):
            return
        body = conn.head.partition(_END_OF_HEAD)[2]
        if body_guard.window_filled(body, conn.body_needed,
                                    self.body_window):
            self.unwatch(conn, self.bodies)
            self.hand_over(conn)

    def hand_over(self, conn) -> None:
        """Give ``conn``, its buffered bytes put back, to a thread."""
        conn.parser.unreader.unread(conn.head)
        conn.head = b''
        conn.data_ready = True
        self.enqueue_req(conn)

    def watch(self, conn, queue, timeout: float, on_readable) -> None:
        """Read ``conn`` in the event loop for at most ``timeout`` s."""
        conn.deadline = time.monotonic() + timeout
        queue.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             functools.partial(on_readable, conn))

    def receive(self, conn, queue, hand_over_at_end: bool = False) -> bool:
        """Add what ``conn`` sent to its buffer; false if none or gone.

        :param hand_over_at_end: a connection whose client stopped sending
            (a body that ended early, the client perhaps still listening)
            goes to a thread, which answers it, instead of being closed.
        """
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b''
        if not data:
            self.unwatch(conn, queue)
            if hand_over_at_end:
                self.hand_over(conn)
            else:
                self.nr_conns -= 1
                conn.close()
            return False
        conn.head += data
        return True

    def unwatch(self, conn, queue) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            queue.remove(conn)
        except ValueError:
            pass

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        # A head begun and not finished, a body window not filled: say
        # why the connection is cut.
        self.cut_late(self.heads, now, REQUEST_TIMEOUT)
        self.cut_late(self.bodies, now, SLOW_BODY)
        self.release_memory(now)
        if self.balancer is not None:
            self.balancer.publish(self.nr_conns)

    def release_memory(self, now: float) -> None:
        """Give the heaps' free memory back, after requests were served.

        At most once every :attr:`release_interval` seconds, from the event
        loop (see :mod:`imgmw.malloc`): a worker at rest holds no more than
        it did fresh, and the memory a busy worker frees between chunks is
        used again without page faults.
        """
        if (self.served == self.served_at_release
                or now - self.released_at < self.release_interval):
            return
        self.served_at_release = self.served
        self.released_at = now
        malloc.release()

    def cut_late(self, queue, now: float, answer: bytes) -> None:
        while queue and queue[0].deadline <= now:
            conn = queue.popleft()
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            if conn.head:
                try:
                    conn.sock.send(answer)
                except OSError:
                    pass
            self.nr_conns -= 1
            conn.close()

    def handle(self, conn):
        if conn.parser is None and not self.cfg.is_ssl:
            conn.parser = RequestParser(self.cfg, conn.sock, conn.client)
        return super().handle(conn)

    def handle_request(self, req, conn):
        # The interim response is sent by ContinueInput, if ever.
        req._expected_100_continue = False
        if not self.cfg.is_ssl:
            self.pace(conn)
        try:
            return super().handle_request(req, conn)
        finally:
            self.served += 1

    def pace(self, conn) -> None:
        """Hold the body reads of this request to the minimum pace."""
        unreader = conn.parser.unreader
        if not isinstance(unreader.sock, body_guard.PacedSocket):
            unreader.sock = body_guard.PacedSocket(
                unreader.sock, self.body_timeout, self.body_min_rate)
        unreader.sock.restart()
