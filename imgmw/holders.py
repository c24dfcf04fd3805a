"""Holders: which process streams an upload, and whether it still runs.

The data app records the holder of an image in progress, and the quota
filter the holder of each reservation; both write :func:`holder_id`, so
that recovery, which declares a holder dead (:func:`holder_is_alive`),
returns its images to ``queued`` and releases its reservations alike.
"""

import os
import socket
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
