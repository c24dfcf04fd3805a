"""Apache's mod_wsgi for the Glance tests: where it is, and its virtualenv.

Glance under Apache runs in the Python that mod_wsgi was built against,
with a virtualenv of that Python as its ``python-home``. The tests use
Debian's ``libapache2-mod-wsgi-py3`` (``apt install apache2
libapache2-mod-wsgi-py3``; ``.ci/run`` installs both when it runs as
root), the module operators of Debian and Ubuntu load: it embeds the
system's ``python3``, so that Python, not the one running tox, makes the
virtualenv::

    python -m tests.modwsgi VENV SOURCE

makes ``VENV`` with Glance, PyMySQL and imgmw (``SOURCE[service]``) in it,
or, where Apache has no mod_wsgi, says so and makes nothing (the tests
that need it are then skipped, saying why). ``tox -e functional-glance``
runs it.

Apache refuses to run its children as root, and mod_wsgi to run Python as
root: a test running as root hands its directory to :data:`APACHE_USER`,
and Apache's children run as that user. The virtualenv and the Python
must then be readable by it: a system Python is, the virtualenv is made
with the default umask, and :func:`make_venv` lets others traverse (not
list) the directories between it and the source tree (tox makes ``.tox``
for its owner only); it changes nothing above the source tree, and says
so when a directory there bars the way (a clone in ``/root``).
"""

import os
import re
import stat
import subprocess
import sys
import typing

#: Where Debian's apache2-bin keeps its modules and binary.
MODULES_DIR = '/usr/lib/apache2/modules'
APACHE_BIN = '/usr/sbin/apache2'
#: Apache's children run as this user when the test runs as root.
APACHE_USER = 'www-data'
HELP = ('needs Apache with mod_wsgi: apt install apache2 '
        'libapache2-mod-wsgi-py3 (.ci/run does as root)')


def module_python() -> typing.Optional[str]:
    """The Python that Apache's ``mod_wsgi.so`` embeds, or ``None``.

    Debian installs the module as ``mod_wsgi.so-X.Y``, linked to as
    ``mod_wsgi.so``; the interpreter is ``/usr/bin/pythonX.Y``.
    """
    module = os.path.join(MODULES_DIR, 'mod_wsgi.so')
    if not (os.path.exists(module) and os.access(APACHE_BIN, os.X_OK)):
        return None
    match = re.search(r'-(\d+\.\d+)$', os.path.realpath(module))
    if match is None:
        done = subprocess.run(['ldd', module], capture_output=True,
                              text=True)
        match = re.search(r'libpython(\d+\.\d+)', done.stdout)
    if match is None:
        return None
    python = '/usr/bin/python%s' % match.group(1)
    return python if os.access(python, os.X_OK) else None


def make_venv(venv: str, source: str) -> bool:
    """Make ``venv`` for Glance under Apache; False where there is none."""
    python = module_python()
    if python is None:
        print('tests.modwsgi: no mod_wsgi in %s; the Glance tests under '
              'Apache will be skipped (%s)' % (MODULES_DIR, HELP))
        return False
    subprocess.run([python, '-m', 'venv', venv], check=True)
    if os.getuid() == 0:
        _let_others_traverse(os.path.abspath(venv), os.path.abspath(source))
    subprocess.run([os.path.join(venv, 'bin', 'pip'), 'install', '--quiet',
                    'glance', 'PyMySQL', '%s[service]' % source],
                   check=True)
    return True


def _let_others_traverse(venv: str, source: str) -> None:
    """Let others traverse the directories from ``source`` to ``venv``."""
    directory = os.path.dirname(venv)
    while directory.startswith(source + os.sep):
        mode = os.stat(directory).st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)
        directory = os.path.dirname(directory)
    while True:
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            print('tests.modwsgi: %s bars %s from %s: Glance under Apache '
                  'will not start' % (directory, APACHE_USER, venv))
        parent = os.path.dirname(directory)
        if parent == directory:
            return
        directory = parent


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: python -m tests.modwsgi VENV SOURCE')
    make_venv(sys.argv[1], sys.argv[2])
