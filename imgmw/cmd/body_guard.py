"""Request bodies held to a minimum pace, for :mod:`imgmw.cmd.worker`.

Two pieces, used by the worker around the thread that serves a request:

:func:`body_window`
    From a whole request head, how many body bytes the event loop waits
    for before a thread takes the connection: all of a small body, the
    first ``window`` bytes of a larger one (``--body-window``), none for a
    request without a body or one that sends ``Expect: 100-continue`` (its
    client waits for the interim response, sent at the first read).
    :func:`window_filled` tells when a buffered body has reached it;
    framing bytes of a chunked body count.

:class:`PacedSocket`
    The socket a thread reads a body from: every read waits at most
    ``--body-timeout`` seconds, and past a grace period the bytes received
    since the thread took the connection must average at least
    ``--body-min-rate`` bytes a second. A read that breaks either raises
    :class:`BodyTooSlow` (an ``OSError``), which the application takes for
    a client that went away: the upload fails, the image stays queued and
    nothing is stored.
"""

import re
import socket
import time
import typing

#: Body bytes the event loop buffers before a thread takes the request.
BODY_WINDOW = 64 * 1024

#: Seconds a client has to send that first window, and longest pause
#: between two reads of the body in a thread.
BODY_TIMEOUT = 30.0

#: Lowest average bytes a second of a body read by a thread.
BODY_MIN_RATE = 1024

#: Seconds a thread reads a body before the average is enforced.
GRACE = 10.0

_LAST_CHUNK = re.compile(rb'(?:^|\r\n)0+(?:;[^\r\n]*)?\r\n')


class BodyTooSlow(TimeoutError):
    """A request body that came too slowly; the connection is cut."""


def _headers(head: bytes) -> typing.Tuple[bytes, typing.Dict[bytes, list]]:
    lines = head.split(b'\r\n')
    fields = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b':')
        if sep:
            fields.setdefault(name.strip().lower(), []).append(
                value.strip(b' \t'))
    return lines[0], fields


def body_window(head: bytes, window: int) -> typing.Optional[int]:
    """Body bytes to buffer after ``head`` before a thread takes it.

    :param head: the request head, up to its empty line (excluded).
    :param window: most bytes to buffer.
    :returns: a number of bytes (0: hand over now), or ``None`` for a
        chunked body (buffer ``window`` bytes or up to its last chunk).
        Anything unusual (``Expect``, several or bad ``Content-Length``,
        a coding other than ``chunked``) is handed over at once, for the
        thread to answer as it does.
    """
    request_line, fields = _headers(head)
    if window <= 0 or b'expect' in fields:
        return 0
    codings = fields.get(b'transfer-encoding')
    lengths = fields.get(b'content-length')
    if codings is not None:
        elements = [element.strip(b' \t').lower()
                    for value in codings for element in value.split(b',')]
        elements = [element for element in elements if element]
        if lengths is None and elements == [b'chunked']:
            return None
        return 0
    if lengths is None or len(lengths) != 1 or not lengths[0].isdigit():
        return 0
    return min(int(lengths[0]), window)


def window_filled(body: bytes, needed: typing.Optional[int],
                  window: int) -> bool:
    """Whether ``body``, buffered after the head, is enough to hand over."""
    if needed is not None:
        return len(body) >= needed
    if len(body) >= window:
        return True
    return body.endswith(b'\r\n\r\n') and bool(_LAST_CHUNK.search(body))


class PacedSocket:
    """A client socket whose reads are held to a minimum pace.

    :param sock: the blocking client socket.
    :param timeout: longest wait for one read, seconds.
    :param min_rate: lowest average bytes a second, after ``grace``.
    :param grace: seconds before the average is enforced.
    :param clock: a monotonic clock.
    """

    def __init__(self, sock, timeout: float = BODY_TIMEOUT,
                 min_rate: float = BODY_MIN_RATE, grace: float = GRACE,
                 clock=time.monotonic):
        self.sock = sock
        self.timeout = timeout
        self.min_rate = min_rate
        self.grace = grace
        self.clock = clock
        self.restart()

    def restart(self) -> None:
        """Start counting anew (a new request on the connection)."""
        self.began = self.clock()
        self.received = 0

    def recv(self, size: int, *args) -> bytes:
        try:
            self.sock.settimeout(self.timeout)
            try:
                data = self.sock.recv(size, *args)
            finally:
                self.sock.settimeout(None)
        except socket.timeout as err:
            raise BodyTooSlow('no byte of the request body for %g s'
                              % self.timeout) from err
        self.received += len(data)
        elapsed = self.clock() - self.began
        if (data and elapsed > self.grace
                and self.received < self.min_rate * elapsed):
            raise BodyTooSlow('request body at %.0f bytes/s, below %g'
                              % (self.received / elapsed, self.min_rate))
        return data

    def __getattr__(self, name: str):
        return getattr(self.sock, name)
