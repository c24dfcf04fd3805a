"""Forwarding an import to the node that staged the image.

With several API nodes, each has its own staging area, and ``PUT
.../stage`` records which node took the data (the hidden property
``os_glance_stage_host``). When each node knows its own URL (option
``worker_self_reference_url`` of ``[DEFAULT]``, Glance's name and meaning),
the stage records that URL, and a ``POST .../import`` that reaches another
node is sent on to it, as Glance does: the receiving node makes its own
checks first (contract section 4, rows 1 to 9 of :mod:`imgmw.app.importer`),
then replays the request to ``<stage host URL><request path>`` with the
caller's credentials and relays the answer (status, ``Content-Type`` and
body; the answer keeps the receiving node's ``x-openstack-request-id``,
which the staging node records as the global request id).

.. code-block:: ini

    [DEFAULT]
    # This node's own address, reachable from the other API nodes (not the
    # load balancer's).
    worker_self_reference_url = http://10.0.0.11:9292

Headers passed on: ``X-Auth-Token`` and ``X-Service-Token`` (keystone
pipeline), ``X-Project-Id``, ``X-Tenant-Id``, ``X-User-Id`` and ``X-Roles``
(a noauth pipeline that trusts them; keystonemiddleware on the staging node
strips them), ``X-Image-Meta-Store``, ``Accept`` and ``Accept-Language``;
the body is the parsed import request. The staging node must run the same
pipeline. A forwarded request carries ``X-Imgmw-Import-Forwarded``; a node
never forwards such a request again (it answers 409 instead), so a
misconfigured URL cannot make a loop.

When the staging node cannot be reached within 5 seconds (refused,
unresolvable, silent), the answer is 504 ``Stage host is unavailable``;
when it is reached but gives no usable answer within 30 seconds, 502 with
the same message (Glance's statuses and text). Otherwise its answer is
relayed as it is.

The detail of a failure (the URL and the error) is logged, never sent.
Requests go straight to the node: no proxy from the environment, no
redirect followed.

Without ``worker_self_reference_url`` a stage records the host name and
staging directory of the node instead, and an import elsewhere is refused
with 409 naming that node. Glance falls back to
``public_endpoint``; imgmw does not, as that is usually the load
balancer's address, shared by every node, which would send imports to a
node without the data.
"""

import http.client
import json
import logging
import ssl
import typing
import urllib.parse

import webob

from imgmw.app import errors


LOG = logging.getLogger(__name__)

#: Request headers the staging node needs to act as the caller would.
PASSED_HEADERS = ('X-Auth-Token', 'X-Service-Token', 'X-Project-Id',
                  'X-Tenant-Id', 'X-User-Id', 'X-Roles',
                  'X-Image-Meta-Store', 'Accept', 'Accept-Language')
#: Marks a forwarded import (its value: the forwarding node's URL).
FORWARDED_HEADER = 'X-Imgmw-Import-Forwarded'
FORWARDED_KEY = 'HTTP_X_IMGMW_IMPORT_FORWARDED'
#: Seconds to connect to the staging node, then to have its answer.
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 30.0
#: The most of an answer's body relayed (an import's answer is small).
MAX_ANSWER = 64 * 1024

_SCHEMES = {'http': http.client.HTTPConnection,
            'https': http.client.HTTPSConnection}


class Unreachable(Exception):
    """The staging node could not be reached (Glance: 504)."""


class BadExchange(Exception):
    """The staging node was reached; no usable answer came (502)."""


def node_url(value: str) -> str:
    """``worker_self_reference_url``: an ``http(s)://host[:port]`` URL.

    :raises ValueError: not such a URL.
    """
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in _SCHEMES or not parsed.hostname:
        raise ValueError('an http:// or https:// URL of this node')
    if parsed.query or parsed.fragment:
        raise ValueError('a URL without query or fragment')
    return value.rstrip('/')


def forwardable(stage_host: typing.Optional[str], environ: dict) -> bool:
    """Whether an import of data staged at ``stage_host`` can be sent on."""
    if not stage_host or FORWARDED_KEY in environ:
        return False
    try:
        node_url(stage_host)
    except ValueError:
        return False
    return True


class Forwarder:
    """Sends an import on to the node that staged it.

    :param self_url: this node's ``worker_self_reference_url``.
    :param connect: ``connect(scheme, host, port, timeout)`` returns an
        unconnected ``http.client.HTTPConnection``-like object (tests).
    """

    def __init__(self, self_url: typing.Optional[str],
                 connect: typing.Optional[typing.Callable] = None):
        self.self_url = self_url
        self.connect = connect or _connection

    def __call__(self, req: webob.Request, image_id: str, stage_host: str,
                 body: typing.Mapping) -> webob.Response:
        """The staging node's answer to this import, or 504/502.

        :raises webob.exc.HTTPException: 504 or 502.
        """
        target = urllib.parse.urlsplit(stage_host)
        path = target.path.rstrip('/') + req.path
        LOG.info('Image %s: staged on %s; forwarding its import there',
                 image_id, stage_host)
        try:
            status, reason, headers, content = self.exchange(
                target, path, self.headers(req), json.dumps(body).encode())
        except Unreachable as err:
            LOG.error('Image %s: cannot reach %s, which staged it: %s',
                      image_id, stage_host, err)
            raise errors.stage_host_unavailable(504)
        except BadExchange as err:
            LOG.error('Image %s: no answer from %s, which staged it: %s',
                      image_id, stage_host, err)
            raise errors.stage_host_unavailable(502)
        LOG.info('Image %s: %s answered the forwarded import %d (its '
                 'request %s)', image_id, stage_host, status,
                 headers.get('x-openstack-request-id'))
        resp = webob.Response(status='%d %s' % (status, reason),
                              body=content)
        if headers.get('content-type'):
            resp.headers['Content-Type'] = headers['content-type']
        else:
            del resp.content_type
        return resp

    def headers(self, req: webob.Request) -> typing.Dict[str, str]:
        sent = {name: req.headers[name] for name in PASSED_HEADERS
                if name in req.headers}
        sent['Content-Type'] = 'application/json'
        sent[FORWARDED_HEADER] = self.self_url or ''
        request_id = (req.environ.get('openstack.global_request_id')
                      or req.environ.get('openstack.request_id'))
        if request_id:
            sent['X-OpenStack-Request-ID'] = request_id
        return sent

    def exchange(self, target: urllib.parse.SplitResult, path: str,
                 headers: typing.Mapping[str, str], body: bytes):
        """``(status, reason, lower-cased headers, body)`` of the POST."""
        try:
            connection = self.connect(target.scheme, target.hostname,
                                      target.port, CONNECT_TIMEOUT)
            connection.connect()
        except (OSError, http.client.HTTPException) as err:
            raise Unreachable(err) from err
        try:
            connection.sock.settimeout(ANSWER_TIMEOUT)
            connection.request('POST', path, body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read(MAX_ANSWER)
            return (answer.status, answer.reason,
                    {name.lower(): value
                     for name, value in answer.getheaders()}, content)
        except (OSError, http.client.HTTPException) as err:
            raise BadExchange(err) from err
        finally:
            connection.close()


def _connection(scheme: str, host: str, port: typing.Optional[int],
                timeout: float):
    if scheme == 'https':
        return http.client.HTTPSConnection(
            host, port, timeout=timeout,
            context=ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)
