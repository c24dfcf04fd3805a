"""Glance 33's configuration as the tests and the benchmark deploy it.

Standard library only, so that ``tools/bench.py`` can start the same Glance
as :class:`tests.glancefixture.Glance` without the tests' requirements:
``glance-api.conf`` (SQLite, one file store, the reserved staging and tasks
stores), the ``[DEFAULT]`` values of ``etc/glance-api-paste.ini``, and
uWSGI configured as devstack configures it, and Apache with mod_wsgi.
"""

import os
import re
import typing

PASTE_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'etc',
                          'glance-api-paste.ini')

#: Every project's image_size_total in the tests' deployment.
STORAGE_QUOTA = 4 << 20


class ConfigError(AssertionError):
    """The paste file cannot be configured; the message says why."""


GLANCE_API_CONF = """\
[DEFAULT]
enabled_backends = fast:file
log_file = %(tempdir)s/glance-api.log
image_size_cap = 1099511627776

[database]
connection = %(database_url)s

[glance_store]
default_backend = fast

[fast]
filesystem_store_datadir = %(tempdir)s/images

[os_glance_staging_store]
filesystem_store_datadir = %(tempdir)s/staging

[os_glance_tasks_store]
filesystem_store_datadir = %(tempdir)s/tasks

[paste_deploy]
flavor = %(flavor)s
config_file = %(tempdir)s/glance-api-paste.ini
"""

KEYSTONE_AUTHTOKEN = """
[keystone_authtoken]
www_authenticate_uri = %(keystone_url)s
auth_url = %(keystone_url)s
auth_type = password
username = %(service_user)s
password = %(service_password)s
project_name = %(service_project)s
user_domain_id = default
project_domain_id = default
"""

#: The [DEFAULT] values of etc/glance-api-paste.ini a deployment sets.
PASTE_DEFAULTS = {
    'glance_connection': 'sqlite:///%(tempdir)s/glance.sqlite',
    'quota_connection': 'sqlite:///%(tempdir)s/imgmw-quota.sqlite',
    'image_size_cap': '1099511627776',
    'user_storage_quota': '%d' % STORAGE_QUOTA,
}

GUNICORN_CONF = """\
wsgi_app = 'glance.wsgi.api:application'
bind = ['127.0.0.1:%(port)d']
workers = 1
worker_class = 'gthread'
threads = 8
raw_env = ['OS_GLANCE_CONFIG_DIR=%(tempdir)s']
control_socket_disable = True
"""

# devstack's settings (lib/apache, write_local_uwsgi_http_config), with two
# processes of four threads, and a chunked-input-limit of 16 MiB (uWSGI's
# default of 1 MB fails glanceclient's 1 MiB chunks).
# The app's own lines follow (module, virtualenv, env).
UWSGI_SERVER = """\
[uwsgi]
http-socket = 127.0.0.1:%(port)d
processes = 2
threads = 4
master = true
die-on-term = true
exit-on-reload = false
enable-threads = true
thunder-lock = true
buffer-size = 65535
add-header = Connection: close
lazy-apps = true
http-raw-body = true
http-chunked-input = true
http-auto-chunked = true
http-keepalive = false
socket-timeout = 30
chunked-input-limit = 16777216
need-app = true
"""

UWSGI_INI = UWSGI_SERVER + """\
module = glance.wsgi.api:application
virtualenv = %(venv)s
env = OS_GLANCE_CONFIG_DIR=%(tempdir)s
"""

# Apache httpd with Debian's mod_wsgi (libapache2-mod-wsgi-py3) in daemon
# mode, two processes of four threads, as OpenStack APIs are served under
# Apache. Two settings matter for image uploads: WSGIChunkedRequest On
# (else Apache answers a chunked upload 411) and LimitRequestBody 0 (Apache
# 2.4.54 and newer refuse bodies over 1 GiB by default; Glance's
# image_size_cap is the limit). Both processes load Glance when they start
# (process-group and application-group on WSGIScriptAlias), not at their
# first request. %(user)s names the user Apache's children
# run as when it starts as root, which mod_wsgi refuses to run Python as.
APACHE_CONF = """\
ServerRoot "%(tempdir)s"
ServerName 127.0.0.1
PidFile %(tempdir)s/httpd.pid
DefaultRuntimeDir %(tempdir)s
Listen 127.0.0.1:%(port)d
LoadModule mpm_event_module %(modules)s/mod_mpm_event.so
LoadModule authz_core_module %(modules)s/mod_authz_core.so
LoadModule wsgi_module %(modules)s/mod_wsgi.so
%(user)s
ErrorLog %(tempdir)s/server.log
LogLevel info
LimitRequestBody 0
WSGISocketPrefix %(tempdir)s/wsgi
WSGIDaemonProcess glance-api processes=2 threads=4 python-home=%(venv)s \
    display-name=%%{GROUP}
WSGIProcessGroup glance-api
WSGIApplicationGroup %%{GLOBAL}
WSGIPassAuthorization On
WSGIChunkedRequest On
WSGIScriptAlias / %(tempdir)s/glance-api.wsgi process-group=glance-api \
    application-group=%%{GLOBAL}
<Directory %(tempdir)s>
    Require all granted
</Directory>
"""

# The WSGI script file Apache serves: Glance's WSGI entry point, with its
# configuration directory.
GLANCE_WSGI_SCRIPT = """\
import os

os.environ.setdefault('OS_GLANCE_CONFIG_DIR', %(tempdir)r)

from glance.wsgi.api import application  # noqa: E402,F401
"""


def set_defaults(paste_text: str, values: typing.Mapping[str, str]) -> str:
    """``paste_text`` with the ``[DEFAULT]`` options of ``values`` set.

    Only lines ``name = value`` of the ``[DEFAULT]`` section change, as an
    operator edits the file; the rest is kept byte for byte.

    :raises ConfigError: when an option is not in ``[DEFAULT]``.
    """
    match = re.search(r'^\[DEFAULT\][^\n]*\n(.*?)(?=^\[|\Z)', paste_text,
                      re.M | re.S)
    if match is None:
        raise ConfigError('%s has no [DEFAULT] section' % PASTE_FILE)
    section = match.group(1)
    for name, value in values.items():
        section, found = re.subn(r'^%s[ \t]*=.*$' % re.escape(name),
                                 lambda _: '%s = %s' % (name, value),
                                 section, count=1, flags=re.M)
        if not found:
            raise ConfigError('%s: [DEFAULT] has no option %s'
                              % (PASTE_FILE, name))
    return paste_text[:match.start(1)] + section + paste_text[match.end(1):]
