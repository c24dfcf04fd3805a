"""Connections spread across imgmw-api's workers, for :mod:`imgmw.cmd.worker`.

gunicorn's workers share one listening socket and whichever is first to
call ``accept()`` gets a new connection. Clients that keep their
connections alive (wrk, a load balancer's pool, python-glanceclient's
session) then often end up all on one worker: with 8 connections, splits
of 8/0 and 6/2 between two workers were common, and the lone worker's 8
threads share one interpreter lock while the other worker idles. Measured
with ``wrk -c8`` on ``GET /v2/images/{id}``: about 1,550 requests a second
with a 4/4 split, 500 to 660 with 8/0, at twice the CPU a request.

:class:`LoadTable` is a small table in memory shared by the workers of one
``imgmw-api`` (an anonymous shared mapping made when the master imports
the worker class, before it forks them): each worker writes in its slot
its process id and how many connections it holds. A worker that holds
more connections than another live worker leaves a new connection to that
worker for :data:`DEFER` seconds (the kernel wakes every worker for it); if
the connection is still waiting after that, the worker takes it (the other
one may be busy), so a connection is never delayed by more than that.
Kept-alive connections count, since they are the ones that stay.

The table holds :data:`SLOTS` workers; a worker's slot is its gunicorn
``age`` (which grows with each worker the master starts) modulo that, and a
slot whose process is gone counts for nothing. Several ``imgmw-api``
processes sharing a port with ``--reuse-port`` each have their own table:
the kernel spreads connections between them.
"""

import mmap
import os
import struct
import typing

#: Workers the table holds (a worker's slot is its age modulo this).
SLOTS = 64

#: Seconds a worker leaves a new connection to a less loaded one: more
#: than a busy machine's scheduling delay, far less than nginx's 500 ms
#: ``accept_mutex_delay``.
DEFER = 0.05

_SLOT = struct.Struct('=ii')


class LoadTable:
    """Connections held by each worker, in memory shared across a fork."""

    def __init__(self, slots: int = SLOTS):
        self.slots = slots
        self.memory = mmap.mmap(-1, _SLOT.size * slots)

    def slot_of(self, age: int) -> int:
        return age % self.slots

    def write(self, slot: int, pid: int, connections: int) -> None:
        _SLOT.pack_into(self.memory, slot * _SLOT.size, pid, connections)

    def read(self, slot: int) -> typing.Tuple[int, int]:
        return _SLOT.unpack_from(self.memory, slot * _SLOT.size)

    def fewest_elsewhere(self, slot: int) -> typing.Optional[int]:
        """Fewest connections a live worker other than ``slot``'s holds."""
        fewest = None
        mine = self.read(slot)[0]
        for other, (pid, connections) in enumerate(
                _SLOT.iter_unpack(self.memory)):
            if pid <= 0 or other == slot or pid == mine or not _alive(pid):
                continue
            if fewest is None or connections < fewest:
                fewest = connections
        return fewest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Balancer:
    """One worker's side of the table: whether to take a new connection.

    :param table: the shared table.
    :param slot: this worker's slot.
    :param clock: a monotonic clock.
    """

    def __init__(self, table: LoadTable, slot: int, clock):
        self.table = table
        self.slot = slot
        self.clock = clock
        self.pid = os.getpid()
        #: When the current deferral ends (0: none).
        self.deferred_until = 0.0
        self.table.write(slot, self.pid, 0)

    def publish(self, connections: int) -> None:
        self.table.write(self.slot, self.pid, connections)

    def leave(self) -> None:
        """Empty this worker's slot: it stops, and its id may be reused."""
        self.table.write(self.slot, 0, 0)

    def deferring(self) -> bool:
        """Whether a deferral is running (accepting stays off)."""
        return self.clock() < self.deferred_until

    def wait_left(self) -> float:
        """Seconds left of the running deferral (0 when none)."""
        return max(self.deferred_until - self.clock(), 0.0)

    def should_accept(self, connections: int) -> bool:
        """Take a waiting connection now, or leave it to another worker.

        After a deferral the next connection is taken whatever the loads:
        the less loaded worker had its chance (if another worker took the
        one deferred, the next one is taken at once, which is at most one
        connection out of balance, and never a wait).
        """
        if self.deferred_until:
            self.deferred_until = 0.0
            return True
        fewest = self.table.fewest_elsewhere(self.slot)
        if fewest is None or connections <= fewest:
            return True
        self.deferred_until = self.clock() + DEFER
        return False


#: The table of this imgmw-api's workers: made when the master imports
#: this module, before it forks them.
TABLE = LoadTable()
