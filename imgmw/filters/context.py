"""Who is calling, and what they may do: the request context and policy.

The ``context`` filter turns the caller's identity into an
:class:`oslo_context.context.RequestContext` (:class:`RequestContext`) and
publishes it, with a policy callback, for the filters and the data app
behind it:

``environ['imgmw.context']``
    the :class:`RequestContext`: ``user_id``, ``project_id`` (also
    ``owner``), ``roles`` (lower-cased), ``service_roles``, ``system_scope``,
    ``domain_id``, ``is_admin_project``, ``request_id``, ``is_admin`` (the
    policy rule ``context_is_admin``) and, with Keystone, ``auth_plugin``
    (``environ['keystone.token_auth']``, to act on the user's behalf).
``environ['imgmw.authorize']``
    ``authorize(action, target, do_raise=True) -> bool``: checks the policy
    rule ``action`` (see :mod:`imgmw.policies`) for this caller on
    ``target``. On denial it raises ``webob.exc.HTTPForbidden`` with the
    contract's text ``You are not authorized to complete <action>
    action.``, or returns ``False`` when ``do_raise`` is false.

It goes first in the pipeline, right after ``request_id`` and, with
Keystone, ``authtoken``. ``GET /`` and ``GET /versions`` (version discovery,
which clients send without a token) pass through without a context.

Keystone (``auth_strategy = keystone``, the default)
----------------------------------------------------
keystonemiddleware's ``auth_token`` must run before this filter, with
``delay_auth_decision = true``: it validates ``X-Auth-Token``, strips any
identity header the client sent, and sets the ones below. This filter
answers 401 (contract 3.1 and 5.1) when ``X-Identity-Status`` is not
``Confirmed``; ``auth_token`` adds ``WWW-Authenticate`` on the way out.
``imgmw-api`` and ``imgmw.wsgi`` refuse to load a pipeline where this
filter, in keystone mode, has no ``auth_token`` before it
(:func:`imgmw.wsgi.check_pipelines`). Where another loader builds the
pipeline (Glance's), a missing ``auth_token`` (no
``environ['keystone.token_auth']``) gets every request a 500 and the log an
error naming it: a pipeline that would trust client headers never serves.

.. code-block:: ini

    [pipeline:keystone-api]
    pipeline = request_id authtoken context size stores quota checksum
               inspect imgmw

    [filter:authtoken]
    paste.filter_factory = keystonemiddleware.auth_token:filter_factory
    delay_auth_decision = true
    # www_authenticate_uri, auth_url, ... as for any OpenStack service

    [filter:context]
    use = egg:imgmw#context
    # policy_file = /etc/imgmw/policy.yaml

The same two filters fit a Glance-style pipeline, in place of Glance's own
``context`` filter::

    pipeline = cors http_proxy_to_wsgi versionnegotiation osprofiler
               authtoken context ... rootapp

No authentication (``auth_strategy = noauth``)
----------------------------------------------
Every request runs as one configured identity, by default a project
``default`` with the roles ``admin, member, reader``, so a single user on a
laptop can do everything. With ``trust_identity_headers = true`` the
headers ``X-Project-Id`` (or ``X-Tenant-Id``), ``X-User-Id`` and ``X-Roles``
choose the identity instead, each falling back to its default when absent:
anyone who can connect can then be anyone. An id header that no id could
be (empty is absent; otherwise 1 to 255 visible ASCII characters) is
answered 400 ``Invalid <header> header: ...``. Serve a noauth pipeline on
loopback only (``imgmw-api`` refuses other addresses).

.. code-block:: ini

    [filter:context-noauth]
    use = egg:imgmw#context
    auth_strategy = noauth
    trust_identity_headers = true

Headers read
------------
=============================  ========================  ====================
header                         keystone                  noauth
=============================  ========================  ====================
``X-Identity-Status``          must be ``Confirmed``     ignored
``X-User-Id``                  user                      user, if trusted
``X-Project-Id``,              project                   project, if trusted
``X-Tenant-Id``
``X-Roles``                    roles (lower-cased)       roles, if trusted
``X-Service-Roles``            service token's roles     ignored
``X-Domain-Id``,               scope                     ignored
``OpenStack-System-Scope``
``X-Is-Admin-Project``         admin project flag        ignored
``X-Auth-Token``               kept in the context,      ignored
                               never logged
=============================  ========================  ====================

Options
-------
==========================  ================  ===============================
option                      default           meaning
==========================  ================  ===============================
``auth_strategy``           ``keystone``      ``keystone`` or ``noauth``
``policy_file``             ``policy.yaml``   rules overriding the defaults
                            (optional)        (YAML or JSON); relative to the
                                              directory of ``api-paste.ini``.
                                              Re-read when it changes. When
                                              set, it must exist at start-up.
``trust_identity_headers``  ``false``         noauth: take the identity from
                                              the headers above
``default_project_id``      ``default``       noauth identity
``default_user_id``         ``default``       noauth identity
``default_roles``           ``admin, member,  noauth identity
                            reader``
==========================  ================  ===============================
"""

import logging
import os
import re
import typing

from oslo_context import context as oslo_context
from oslo_policy import policy
import webob.exc

from imgmw import config
from imgmw import environ as env_keys
from imgmw import errors
from imgmw import paths
from imgmw import policies


LOG = logging.getLogger(__name__)

KEYSTONE = 'keystone'
NOAUTH = 'noauth'
OWNER = 'context filter'
#: What keystonemiddleware's auth_token sets on every request it passes.
#: (bandit B105 takes the name for a password: it is an environ key.)
TOKEN_AUTH = 'keystone.token_auth'  # nosec B105
DEFAULT_POLICY_FILE = 'policy.yaml'

OPTS = (
    config.Opt('auth_strategy', config.choice(KEYSTONE, NOAUTH), KEYSTONE,
               'keystone: identity from keystonemiddleware auth_token; '
               'noauth: a configured identity.'),
    config.Opt('policy_file', config.string, None,
               'Policy rules overriding the defaults; relative to the '
               'directory of api-paste.ini.'),
    config.Opt('trust_identity_headers', config.boolean, False,
               'noauth: take the identity from X-Project-Id, X-User-Id '
               'and X-Roles.'),
    config.Opt('default_project_id', config.string, 'default',
               'noauth: the project of every request.'),
    config.Opt('default_user_id', config.string, 'default',
               'noauth: the user of every request.'),
    config.Opt('default_roles', config.string_list,
               ['admin', 'member', 'reader'],
               'noauth: the roles of every request.'),
)


def _lower(roles: typing.Optional[typing.Iterable[str]]) -> typing.List[str]:
    return [role.strip().lower() for role in roles or () if role.strip()]


def _split_roles(value: typing.Optional[str]) -> typing.List[str]:
    return _lower(value.split(',')) if value else []


#: A trusted identity header's value: visible ASCII, as Keystone's ids,
#: and no longer than the registry's ``owner`` column.
_IDENTITY_VALUE = re.compile(r'[\x21-\x7e]{1,255}')

_IDENTITY_HEADERS = (('HTTP_X_PROJECT_ID', 'X-Project-Id'),
                     ('HTTP_X_TENANT_ID', 'X-Tenant-Id'),
                     ('HTTP_X_USER_ID', 'X-User-Id'))


def _check_identity_headers(environ: dict) -> None:
    """Refuse trusted identity headers no identity could carry.

    :raises webob.exc.HTTPBadRequest: naming the header.
    """
    for key, header in _IDENTITY_HEADERS:
        value = environ.get(key)
        if value and not _IDENTITY_VALUE.fullmatch(value):
            raise errors.invalid_identity_header(header)


class RequestContext(oslo_context.RequestContext):
    """The caller of an imgmw request.

    Roles are lower-cased (``Member`` is ``member``), as Glance does.

    :param auth_plugin: keystonemiddleware's ``keystone.token_auth``, to
        call other services on the user's behalf; ``None`` without Keystone.
    """

    def __init__(self, auth_plugin=None, **kwargs):
        kwargs['roles'] = _lower(kwargs.get('roles'))
        kwargs['service_roles'] = _lower(kwargs.get('service_roles'))
        super().__init__(**kwargs)
        self.auth_plugin = auth_plugin

    @property
    def owner(self) -> typing.Optional[str]:
        """The project that owns what this caller creates."""
        return self.project_id


class Authorizer:
    """``environ['imgmw.authorize']``: policy checks for one caller."""

    def __init__(self, enforcer: policy.Enforcer, context: RequestContext):
        self.enforcer = enforcer
        self.context = context

    def __call__(self, action: str, target: typing.Mapping,
                 do_raise: bool = True) -> bool:
        """Whether ``action`` is allowed on ``target``.

        :raises webob.exc.HTTPForbidden: when denied and ``do_raise``.
        :raises oslo_policy.policy.PolicyNotRegistered: for an unknown
            action (a programming error).
        """
        allowed = self.enforcer.authorize(action, dict(target),
                                          self.context, do_raise=False)
        if allowed:
            return True
        LOG.debug('Policy %s denied to user %s of project %s', action,
                  self.context.user_id, self.context.project_id)
        if do_raise:
            raise errors.not_authorized(action)
        return False


def policy_path(policy_file: typing.Optional[str],
                here: typing.Optional[str]) -> str:
    """The absolute path of the policy file; ``here`` anchors relative ones.

    :raises config.ConfigError: when ``policy_file`` is set and missing.
    """
    path = policy_file or DEFAULT_POLICY_FILE
    if not os.path.isabs(path):
        path = os.path.join(here or os.getcwd(), path)
    path = os.path.abspath(path)
    if policy_file and not os.path.isfile(path):
        raise config.ConfigError('%s: policy_file %s does not exist'
                                 % (OWNER, path))
    return path


class ContextMiddleware:
    """Publishes the caller's context and a policy callback (see module)."""

    def __init__(self, app, conf: typing.Mapping, logger=None):
        self.app = app
        self.logger = logger or LOG
        values = config.parse(OPTS, {}, conf, OWNER)
        self.auth_strategy: str = values['auth_strategy']
        self.trust_identity_headers: bool = values['trust_identity_headers']
        self.default_project_id: str = values['default_project_id']
        self.default_user_id: str = values['default_user_id']
        self.default_roles: typing.List[str] = _lower(values['default_roles'])
        self.policy_file: str = policy_path(values['policy_file'],
                                            conf.get('here'))
        self.enforcer = policies.make_enforcer(self.policy_file)

    def __call__(self, environ: dict, start_response):
        route = paths.route_of(environ)
        if route is not None and route.kind == paths.VERSIONS:
            return self.app(environ, start_response)
        if self.auth_strategy == KEYSTONE:
            refusal = self._refuse_keystone(environ)
            if refusal is not None:
                return refusal(environ, start_response)
            context = self._keystone_context(environ)
        else:
            try:
                context = self._noauth_context(environ)
            except webob.exc.HTTPBadRequest as err:
                return err(environ, start_response)
        context.is_admin = bool(self.enforcer.enforce(
            'context_is_admin', {}, context))
        environ[env_keys.CONTEXT] = context
        environ[env_keys.AUTHORIZE] = Authorizer(self.enforcer, context)
        return self.app(environ, start_response)

    def _refuse_keystone(self, environ: dict
                         ) -> typing.Optional[webob.exc.HTTPException]:
        if TOKEN_AUTH not in environ:
            err = errors.MissingFilter(
                TOKEN_AUTH, 'authtoken (keystonemiddleware.auth_token)',
                'the %s' % OWNER)
            self.logger.error('Pipeline misconfigured: %s', err)
            return webob.exc.HTTPInternalServerError(explanation=str(err))
        if environ.get('HTTP_X_IDENTITY_STATUS') != 'Confirmed':
            return webob.exc.HTTPUnauthorized()
        return None

    def _keystone_context(self, environ: dict) -> RequestContext:
        return RequestContext.from_environ(
            environ, auth_plugin=environ[TOKEN_AUTH],
            roles=_split_roles(environ.get('HTTP_X_ROLES')),
            service_roles=_split_roles(environ.get('HTTP_X_SERVICE_ROLES')))

    def _noauth_context(self, environ: dict) -> RequestContext:
        if self.trust_identity_headers:
            _check_identity_headers(environ)
        headers = environ if self.trust_identity_headers else {}
        project_id = (headers.get('HTTP_X_PROJECT_ID')
                      or headers.get('HTTP_X_TENANT_ID')
                      or self.default_project_id)
        roles = (_split_roles(headers.get('HTTP_X_ROLES'))
                 or self.default_roles)
        return RequestContext(
            user_id=headers.get('HTTP_X_USER_ID') or self.default_user_id,
            project_id=project_id, roles=roles,
            request_id=environ.get('openstack.request_id'),
            global_request_id=environ.get('openstack.global_request_id'))


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#context``."""
    conf = config.parse(OPTS, global_conf, local_conf, OWNER)
    conf['here'] = local_conf.get('here', global_conf.get('here'))
    policy_path(conf['policy_file'], conf['here'])

    def context_filter(app):
        return ContextMiddleware(app, conf)
    return context_filter
