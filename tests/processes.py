"""Starting and stopping the servers the tests run (imgmw-api, moto,
Keystone, Glance), each in a process group of its own."""

import os
import signal
import subprocess
import typing


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """End ``process``: SIGTERM, then SIGKILL to its whole process group.

    The process must have been started with ``start_new_session=True``, so
    that the group holds the server and its workers only.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_logs(directory: str, names: typing.Iterable[str],
              tail: int = 20000) -> str:
    """The last ``tail`` characters of each log, for failure messages."""
    parts = []
    for name in names:
        try:
            with open(os.path.join(directory, name),
                      errors='replace') as log:
                parts.append('--- %s\n%s' % (name, log.read()[-tail:]))
        except FileNotFoundError:
            pass
    return '\n'.join(parts)
