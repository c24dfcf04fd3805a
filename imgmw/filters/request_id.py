"""Request id: oslo.middleware's ``request_id``, over-long client ids dropped.

Every response of a pipeline should carry ``x-openstack-request-id``
(contract section 2), 401s included. oslo.middleware's ``RequestId`` does
that when it stands before the filter that answers 401; this filter is that
middleware, with one addition for pipelines whose context filter takes the
client's ``X-Openstack-Request-ID`` as its own: Glance's ``context``
filter answers 500 to a value longer than its ``max_request_id_length``
(64 by default) and echoes any shorter one. This filter removes a client
id longer than ``max_request_id_length`` before the pipeline sees it, so
the request is served under an id of the server's (contract 9: "ignored
and replaced"). Shorter ids pass untouched.

In front of Glance, first after ``osprofiler`` (before ``authtoken`` and
``context``), with the ``max_request_id_length`` of ``glance-api.conf``:

.. code-block:: ini

    [pipeline:glance-api-keystone]
    pipeline = cors healthcheck http_proxy_to_wsgi versionnegotiation
               osprofiler request_id authtoken context ... rootapp

    [filter:request_id]
    paste.filter_factory = imgmw.filters.request_id:filter_factory
    # max_request_id_length = 64

imgmw's own pipeline (``etc/api-paste.ini``) takes no client id, and uses
oslo.middleware's filter as it is.

=========================  =======  ===========================================
option                     default  meaning
=========================  =======  ===========================================
``max_request_id_length``  64       longest ``X-Openstack-Request-ID`` let
                                    through (Glance's option of that name)
=========================  =======  ===========================================

Logged: a dropped id at INFO, with its length only.
"""

import logging
import typing

from oslo_middleware import request_id as oslo_request_id

from imgmw import config


LOG = logging.getLogger(__name__)

OWNER = 'request_id filter'
INBOUND = 'HTTP_X_OPENSTACK_REQUEST_ID'

OPTS = (
    config.Opt('max_request_id_length', config.integer(minimum=1), 64,
               'Longest client X-Openstack-Request-ID let through.'),
)


class RequestIdMiddleware:
    """oslo.middleware's RequestId, after dropping over-long client ids."""

    def __init__(self, app, conf: typing.Mapping, logger=None):
        self.logger = logger or LOG
        values = config.parse(OPTS, {}, conf, OWNER)
        self.max_length: int = values['max_request_id_length']
        self.request_id = oslo_request_id.RequestId(app)

    def __call__(self, environ: dict, start_response):
        client_id = environ.get(INBOUND)
        if client_id is not None and len(client_id) > self.max_length:
            del environ[INBOUND]
            self.logger.info('Dropped a client request id of %d characters '
                             '(max_request_id_length is %d)',
                             len(client_id), self.max_length)
        return self.request_id(environ, start_response)


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#request_id``."""
    conf = config.parse(OPTS, global_conf, local_conf, OWNER)

    def request_id_filter(app):
        return RequestIdMiddleware(app, conf)
    return request_id_filter
