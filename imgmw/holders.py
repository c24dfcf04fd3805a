"""Holders: which process streams an upload, and whether it still runs.

The data app records the holder of an image in progress, and the quota
filter the holder of each reservation; both write :func:`holder_id`, so
that recovery, which declares a holder dead (:func:`holder_is_alive`),
returns its images to ``queued`` and releases its reservations alike.

While a holder streams data into a store it keeps its hold fresh with a
:class:`Heartbeat`, so that recovery on another host (which cannot see
the process) leaves it alone.
"""

import os
import socket
import threading
import time
import typing

_own_holder: typing.Dict[int, str] = {}


def _start_time(process) -> str:
    return '%.2f' % process.create_time()


def holder_id() -> str:
    """``<hostname>:<pid>:<process start time>`` of this process.

    The start time tells a recycled pid from the process that held an
    upload. Computed again after a fork (gunicorn workers).
    """
    import psutil
    pid = os.getpid()
    if pid not in _own_holder:
        _own_holder.clear()
        _own_holder[pid] = '%s:%d:%s' % (
            socket.gethostname(), pid, _start_time(psutil.Process(pid)))
    return _own_holder[pid]


def holder_is_alive(holder: str) -> bool:
    """Whether the process ``holder`` names may still be streaming.

    False only when the holder is a process of this host that no longer
    runs (or whose pid now belongs to another process). A holder on another
    host, or one this function cannot read, is presumed alive: the heartbeat
    age (or a reservation's expiry) decides for it.
    """
    import psutil
    host, _, rest = holder.partition(':')
    pid, _, started = rest.partition(':')
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        process = psutil.Process(int(pid))
        return (_start_time(process) == started
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


class Heartbeat:
    """A hold kept fresh while its data goes into a store.

    :meth:`check` calls ``beat`` once ``interval`` seconds have passed
    since the last beat, and raises ``lost()`` when ``beat`` answers False
    (the hold was taken away: the image recovered or deleted, the copy's
    lock released). The readers a store reads call it at each read; a
    store that waits on its backend without reading (S3 assembling a
    multipart object, which may take minutes) keeps calling it from a
    thread (:func:`imgmw.app.stores.kept_alive`), hence the lock.

    :param beat: refreshes the hold; False when it is no longer held.
    :param lost: makes the exception that stops the stream.
    """

    def __init__(self, beat: typing.Callable[[], bool], interval: float,
                 lost: typing.Callable[[], BaseException],
                 clock: typing.Callable[[], float] = time.monotonic):
        self.beat = beat
        self.interval = interval
        self.lost = lost
        self.clock = clock
        self.last_beat = clock()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Beat if it is time; raise ``lost()`` if the hold is gone."""
        with self._lock:
            now = self.clock()
            if now - self.last_beat < self.interval:
                return
            if not self.beat():
                raise self.lost()
            self.last_beat = now
