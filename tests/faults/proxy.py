"""A fault-injecting TCP proxy for the fault tests.

:class:`FaultProxy` listens on a free loopback port and forwards every
connection to ``upstream`` (a database server, an S3 service), byte for
byte, one thread per connection. A test points the server under test at
:attr:`FaultProxy.port` instead of the real service, then causes faults
for real, on the wire:

* :meth:`FaultProxy.cut` closes every open connection and the listening
  socket: new connections are refused (``ECONNREFUSED``) as by a service
  that is down or restarting; :meth:`FaultProxy.restore` listens again on
  the same port.
* :meth:`FaultProxy.fail_requests` (HTTP upstreams) fails the requests a
  predicate picks, by their request line: answer an S3-style XML ``500``
  without forwarding (``'error'``), cut the connection before forwarding
  (``'drop'``), or forward the request and cut the connection before the
  answer comes back (``'lose_answer'``: the service did the work, the
  client never hears of it).

Requests are told apart by parsing their heads and skipping their
``Content-Length`` bodies; a connection that sends a chunked request is
forwarded as it is, without further inspection.
"""

import re
import select
import socket
import threading
import time
import typing


ERROR = 'error'
DROP = 'drop'
LOSE_ANSWER = 'lose_answer'
MODES = (ERROR, DROP, LOSE_ANSWER)

_BUFFER = 256 * 1024
_MAX_HEAD = 64 * 1024
_CONTENT_LENGTH = re.compile(br'^content-length:\s*(\d+)\s*$',
                             re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(br'^transfer-encoding:.*chunked',
                      re.IGNORECASE | re.MULTILINE)

INTERNAL_ERROR = (
    b'HTTP/1.1 500 Internal Server Error\r\n'
    b'Content-Type: application/xml\r\n'
    b'Content-Length: %d\r\n'
    b'Connection: close\r\n\r\n%s')
INTERNAL_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError'
    b'</Code><Message>We encountered an internal error. Please try again.'
    b'</Message></Error>')


class RequestLine(typing.NamedTuple):
    method: str
    target: str


Predicate = typing.Callable[[RequestLine], bool]


class _Rule:
    def __init__(self, predicate: Predicate, mode: str, times: int):
        self.predicate = predicate
        self.mode = mode
        self.left = times
        self.hits = 0


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; inject faults.

    :param upstream: ``(host, port)`` of the real service.
    :param http: parse HTTP requests, so :meth:`fail_requests` may pick
        them.
    """

    def __init__(self, upstream: typing.Tuple[str, int], http: bool = False):
        self.upstream = upstream
        self.http = http
        self.port = None
        self.requests: typing.List[RequestLine] = []
        self._lock = threading.Lock()
        self._rules: typing.List[_Rule] = []
        self._connections: typing.Set['_Connection'] = set()
        self._listener = None
        self._acceptor = None

    # Life cycle.

    def start(self) -> None:
        self._listen(0)

    def stop(self) -> None:
        self.cut()

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
            self._acceptor.join(5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._listener is None:
            self._listen(self.port)

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def _listen(self, port: int) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(('127.0.0.1', port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), daemon=True,
            name='fault-proxy-accept-%d' % self.port)
        self._acceptor.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                # A timeout, so that closing the listener ends the loop.
                readable, _, _ = select.select([listener], [], [], 0.2)
                if not readable:
                    if self._listener is not listener:
                        return
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                return
            if self._listener is not listener:
                _close(client)
                return
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _close(client)
            return
        connection = _Connection(self, client, upstream)
        with self._lock:
            self._connections.add(connection)
        threading.Thread(target=connection.run, daemon=True,
                         name='fault-proxy-%d' % self.port).start()

    def _forget(self, connection: '_Connection') -> None:
        with self._lock:
            self._connections.discard(connection)

    # HTTP faults.

    def fail_requests(self, predicate: Predicate, mode: str = ERROR,
                      times: int = 1 << 30) -> None:
        """Fail the next ``times`` requests ``predicate`` picks."""
        if mode not in MODES:
            raise ValueError('mode %r: one of %s' % (mode, MODES))
        if not self.http:
            raise ValueError('request faults need an HTTP proxy')
        with self._lock:
            self._rules.append(_Rule(predicate, mode, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._rules = []

    def reset(self) -> None:
        """No faults, and an empty :attr:`requests` log."""
        with self._lock:
            self._rules = []
            self.requests = []

    def faults_injected(self) -> int:
        with self._lock:
            return sum(rule.hits for rule in self._rules)

    def _decide(self, line: RequestLine) -> typing.Optional[str]:
        with self._lock:
            self.requests.append(line)
            for rule in self._rules:
                if rule.left > 0 and rule.predicate(line):
                    rule.left -= 1
                    rule.hits += 1
                    return rule.mode
        return None


class _Connection:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket,
                 upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = False
        # HTTP parsing of the client's bytes.
        self.head = b''
        self.body_left = 0
        self.opaque = False
        # After a LOSE_ANSWER request went through: swallow the answer.
        self.losing = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            _close(sock)

    def run(self) -> None:
        try:
            while not self.closed:
                readable, _, _ = select.select(
                    [self.client, self.upstream], [], [], 0.5)
                for sock in readable:
                    if not self._pump(sock):
                        return
        except (OSError, ValueError):
            pass
        finally:
            self.close()
            self.proxy._forget(self)

    def _pump(self, sock: socket.socket) -> bool:
        data = sock.recv(_BUFFER)
        if not data:
            return False
        if sock is self.upstream:
            if self.losing:
                if self.body_left:
                    return True  # an interim 100 Continue: swallowed
                # The service answered: the client must never know.
                time.sleep(0.1)
                return False
            self.client.sendall(data)
            return True
        if not self.proxy.http or self.opaque:
            self.upstream.sendall(data)
            return True
        return self._from_client(data)

    def _from_client(self, data: bytes) -> bool:
        while data:
            if self.body_left:
                body, data = data[:self.body_left], data[self.body_left:]
                self.body_left -= len(body)
                self.upstream.sendall(body)
                continue
            self.head += data
            data = b''
            end = self.head.find(b'\r\n\r\n')
            if end < 0:
                if len(self.head) > _MAX_HEAD:
                    return False
                return True
            head, data = self.head[:end + 4], self.head[end + 4:]
            self.head = b''
            if not self._request(head):
                return False
        return True

    def _request(self, head: bytes) -> bool:
        """Decide the fate of one request from its head."""
        method, _, rest = head.partition(b' ')
        target = rest.partition(b' ')[0]
        line = RequestLine(method.decode('latin-1'),
                           target.decode('latin-1'))
        mode = self.proxy._decide(line)
        if mode == ERROR:
            self.client.sendall(INTERNAL_ERROR % (len(INTERNAL_ERROR_BODY),
                                                  INTERNAL_ERROR_BODY))
            return False
        if mode == DROP:
            return False
        if mode == LOSE_ANSWER:
            self.losing = True
        length = _CONTENT_LENGTH.search(head)
        self.body_left = int(length.group(1)) if length else 0
        if _CHUNKED.search(head):
            self.opaque = True
        self.upstream.sendall(head)
        return True


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
