"""Default policy rules of imgmw, and how an enforcer is built.

The defaults follow Glance's secure RBAC (contract section 8), so a
``policy.yaml`` written for Glance carries over rule by rule:

========================  ================================================
rule                      default
========================  ================================================
``context_is_admin``      ``role:admin``; sets ``context.is_admin``
``service_api``           ``role:service or service_roles:service``
``get_image``             admin, or ``reader`` and (own project, or the
                          image is ``public`` or ``community``)
``get_images``            admin, or ``reader`` of the project listed
``add_image``             admin, or ``member`` of the project that will
                          own the image
``modify_image``          admin, or ``member`` of the owning project
``delete_image``          idem
``upload_image``          idem
``deactivate``            idem
``reactivate``            idem
``communitize_image``     idem
``copy_image``            admin (copy an image's data into more stores,
                          ``copy-image`` import)
``publicize_image``       admin
``download_image``        admin, or ``member`` and the ``get_image``
                          visibility (a ``reader`` alone gets 403)
``stores_info_detail``    admin, or ``rule:service_api``
========================  ================================================

Unlike Glance there are no image members, so a ``shared`` image is visible
to its own project only. Targets that the data app and the filters pass:

* image rules: ``{'project_id': owner, 'owner': owner, 'visibility': v,
  'image_id': id}``; for ``add_image`` the owner the new image will have
  (the caller's project when the request names none);
* ``get_images``: ``{'project_id': <caller's project>}``;
* ``stores_info_detail``: ``{}``.

Generate a sample file with ``oslopolicy-sample-generator --namespace
imgmw``; see the effective policy with ``oslopolicy-policy-generator
--namespace imgmw`` (it reads ``/etc/imgmw/policy.yaml`` when present).

Cost per request
----------------
oslo.policy's enforcer looks for its policy file on every check (a
``stat``, or a failed search when there is none) and evaluates the rules
anew each time (inspecting the signature of every check it calls): about
0.2 ms of CPU per check, two or three checks a request. :class:`Enforcer`
loads the rules at start-up, looks at the policy file at most once every
:data:`RELOAD_CHECK_INTERVAL` seconds (a change still takes effect, within
that second), and remembers its decisions: the answer of a rule depends
only on the rules and on the few values of the credentials and the target
the rules name (the roles, the project, the visibility, ...), so those
values are the key (read straight from an oslo.context request context,
without building its ``to_policy_values()``, unless its class has its own).
Decisions are forgotten whenever the rules change. A
policy file using a check whose answer may depend on anything else (an
``http:`` check, a plug-in) turns the memory off.
"""

import os
import re
import time
import typing

from oslo_config import cfg
from oslo_context import context as oslo_context
from oslo_policy import _checks
from oslo_policy import policy


ADMIN = 'role:admin'
SERVICE = 'rule:service_api'
PROJECT_MEMBER = 'role:member and project_id:%(project_id)s'
PROJECT_READER = 'role:reader and project_id:%(project_id)s'
_VISIBLE = ("project_id:%(project_id)s or 'public':%(visibility)s "
            "or 'community':%(visibility)s")
ADMIN_OR_PROJECT_MEMBER = '%s or (%s)' % (ADMIN, PROJECT_MEMBER)
ADMIN_OR_PROJECT_READER = '%s or (%s)' % (ADMIN, PROJECT_READER)
ADMIN_OR_READER_OF_VISIBLE = '%s or (role:reader and (%s))' % (ADMIN,
                                                               _VISIBLE)
ADMIN_OR_MEMBER_OF_VISIBLE = '%s or (role:member and (%s))' % (ADMIN,
                                                               _VISIBLE)
ADMIN_OR_MEMBER_OF_OWNER = '%s or (%s and project_id:%%(owner)s)' % (
    ADMIN, PROJECT_MEMBER)

_IMAGE_SCOPES = ['system', 'project']
#: Where operators usually keep the overrides (the package's data files).
DEFAULT_POLICY_FILE = '/etc/imgmw/policy.yaml'


def _image_rule(name: str, check_str: str, description: str,
                method: str, path: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name=name, check_str=check_str, description=description,
        operations=[{'method': method, 'path': path}],
        scope_types=_IMAGE_SCOPES)


_IMAGE = '/v2/images/{image_id}'

rules = [
    policy.RuleDefault(
        name='context_is_admin', check_str=ADMIN,
        description='Who is an administrator: sets context.is_admin, which '
                    'may download deactivated images.'),
    policy.RuleDefault(
        name='service_api', check_str='role:service or service_roles:service',
        description='A service acting on its own (role service) or on a '
                    "user's behalf with a service token."),
    _image_rule('get_image', ADMIN_OR_READER_OF_VISIBLE,
                'Show an image.', 'GET', _IMAGE),
    _image_rule('get_images', ADMIN_OR_PROJECT_READER,
                'List the images visible to a project.', 'GET',
                '/v2/images'),
    _image_rule('add_image', ADMIN_OR_MEMBER_OF_OWNER,
                'Create an image.', 'POST', '/v2/images'),
    _image_rule('modify_image', ADMIN_OR_PROJECT_MEMBER,
                'Update an image, or stage its data.', 'PATCH', _IMAGE),
    _image_rule('publicize_image', ADMIN,
                'Make an image public.', 'PATCH', _IMAGE),
    _image_rule('communitize_image', ADMIN_OR_PROJECT_MEMBER,
                'Make an image a community image.', 'PATCH', _IMAGE),
    _image_rule('delete_image', ADMIN_OR_PROJECT_MEMBER,
                'Delete an image and its data.', 'DELETE', _IMAGE),
    _image_rule('upload_image', ADMIN_OR_PROJECT_MEMBER,
                "Upload an image's data.", 'PUT', _IMAGE + '/file'),
    _image_rule('download_image', ADMIN_OR_MEMBER_OF_VISIBLE,
                "Download an image's data.", 'GET', _IMAGE + '/file'),
    _image_rule('deactivate', ADMIN_OR_PROJECT_MEMBER,
                'Deactivate an image.', 'POST',
                _IMAGE + '/actions/deactivate'),
    _image_rule('reactivate', ADMIN_OR_PROJECT_MEMBER,
                'Reactivate an image.', 'POST',
                _IMAGE + '/actions/reactivate'),
    _image_rule('copy_image', ADMIN,
                "Copy an image's data into more stores (copy-image).",
                'POST', _IMAGE + '/import'),
    policy.DocumentedRuleDefault(
        name='stores_info_detail', check_str='%s or %s' % (ADMIN, SERVICE),
        description='Show the type, properties and weight of each store.',
        operations=[{'method': 'GET', 'path': '/v2/info/stores/detail'}],
        scope_types=['project']),
]


def list_rules() -> typing.List[policy.RuleDefault]:
    """The default rules (entry point ``oslo.policy.policies``)."""
    return rules


#: Seconds between two looks at the policy file for changes.
RELOAD_CHECK_INTERVAL = 1.0

#: Most decisions an enforcer remembers (it then starts afresh).
DECISIONS_MAX = 10000

#: Credentials the scope of a token is read from (oslo.policy).
_SCOPE_CREDS = ('system_scope', 'system', 'domain_id', 'project_id')

#: Checks whose answer depends only on the values they name.
_PURE_CHECKS = frozenset((
    _checks.TrueCheck, _checks.FalseCheck, _checks.RuleCheck,
    _checks.RoleCheck, _checks.GenericCheck, _checks.AndCheck,
    _checks.OrCheck, _checks.NotCheck))

#: oslo.context's own ``to_policy_values``, and the attributes it copies
#: (each under its own name).
_POLICY_VALUES = oslo_context.RequestContext.to_policy_values
_CONTEXT_VALUES = frozenset((
    'user_id', 'user_domain_id', 'system_scope', 'domain_id', 'project_id',
    'project_domain_id', 'roles', 'is_admin_project', 'service_user_id',
    'service_user_domain_id', 'service_project_id',
    'service_project_domain_id', 'service_roles'))

_TEMPLATE = re.compile(r'%\(([^)]+)\)')
_MISSING = object()


def referenced_keys(checks: typing.Iterable[_checks.BaseCheck]
                    ) -> typing.Optional[typing.Tuple[typing.Tuple[str, ...],
                                                      typing.Tuple[str, ...]]]:
    """``(target keys, credential keys)`` the checks read, sorted.

    None when a check is not one of :data:`_PURE_CHECKS`.
    """
    target_keys, creds_keys = set(), set(_SCOPE_CREDS)
    pending = list(checks)
    while pending:
        check = pending.pop()
        if type(check) not in _PURE_CHECKS:
            return None
        if isinstance(check, (_checks.AndCheck, _checks.OrCheck)):
            pending.extend(check.rules)
        elif isinstance(check, _checks.NotCheck):
            pending.append(check.rule)
        elif isinstance(check, _checks.RoleCheck):
            creds_keys.add('roles')
            target_keys.update(_TEMPLATE.findall(check.match))
        elif isinstance(check, _checks.GenericCheck):
            creds_keys.add(check.kind.split('.')[0])
            target_keys.update(_TEMPLATE.findall(check.match))
    return tuple(sorted(target_keys)), tuple(sorted(creds_keys))


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


class Enforcer(policy.Enforcer):
    """oslo.policy's enforcer with its per-request work done once.

    See "Cost per request" above. Only ``enforce`` of a rule name without
    ``do_raise`` (what :meth:`authorize` does for imgmw) is remembered;
    everything else is oslo.policy's as it is.
    """

    def __init__(self, *args, clock=time.monotonic, **kwargs):
        super().__init__(*args, **kwargs)
        self._clock = clock
        self._next_look = None
        self._fingerprint = None
        self._keys = None
        self._decisions: typing.Dict[tuple, typing.Any] = {}

    def load_rules(self, force_reload: bool = False) -> None:
        now = self._clock()
        if (not force_reload and self._next_look is not None
                and now < self._next_look):
            return
        super().load_rules(force_reload)
        self._next_look = now + RELOAD_CHECK_INTERVAL
        fingerprint = (id(self.rules), tuple(
            (name, id(check)) for name, check in self.rules.items()))
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self._decisions = {}
            self._keys = referenced_keys(self.rules.values())

    def enforce(self, rule, target, creds, do_raise=False, exc=None,
                *args, **kwargs):
        if do_raise or not isinstance(rule, str):
            return super().enforce(rule, target, creds, do_raise, exc,
                                   *args, **kwargs)
        self.load_rules()
        key = self._decision_key(rule, target, creds)
        if key is None:
            return super().enforce(rule, target, creds)
        decisions = self._decisions
        try:
            return decisions[key]
        except KeyError:
            pass
        result = super().enforce(rule, target, creds)
        if len(decisions) >= DECISIONS_MAX:
            decisions = self._decisions = {}
        decisions[key] = result
        return result

    def _decision_key(self, rule: str, target, creds
                      ) -> typing.Optional[tuple]:
        if self._keys is None:
            return None
        target_keys, creds_keys = self._keys
        if (isinstance(creds, oslo_context.RequestContext)
                and type(creds).to_policy_values is _POLICY_VALUES):
            # What to_policy_values() would give, without building it.
            creds_values = tuple(
                _frozen(getattr(creds, name)) if name in _CONTEXT_VALUES
                else _MISSING for name in creds_keys)
        else:
            if isinstance(creds, oslo_context.RequestContext):
                creds = creds.to_policy_values()
            creds_values = tuple(_frozen(creds.get(name, _MISSING))
                                 for name in creds_keys)
        key = (rule,
               tuple(_frozen(target.get(name, _MISSING))
                     for name in target_keys),
               creds_values)
        try:
            hash(key)
        except TypeError:
            return None
        return key


def make_enforcer(policy_file: str,
                  clock: typing.Callable[[], float] = time.monotonic
                  ) -> policy.Enforcer:
    """An enforcer of the default rules, overridden by ``policy_file``.

    The enforcer has a configuration object of its own, so nothing is read
    from, or registered in, a process-global configuration. ``policy_file``
    must be an absolute path; it may be absent (then the defaults apply) and
    is re-read when it changes (looked at once a second at most).
    ``policy.d`` directories are not searched. The rules are loaded now.
    """
    if not os.path.isabs(policy_file):
        raise ValueError('policy_file must be an absolute path: %s'
                         % policy_file)
    conf = cfg.ConfigOpts()
    conf([], project='imgmw', default_config_files=[],
         default_config_dirs=[])
    enforcer = Enforcer(conf, policy_file=policy_file, clock=clock)
    conf.set_override('policy_dirs', [], group='oslo_policy')
    enforcer.register_defaults(list_rules())
    enforcer.load_rules()
    return enforcer


def get_enforcer() -> policy.Enforcer:
    """Entry point ``oslo.policy.enforcer``, for oslopolicy-policy-generator.

    Merges the defaults with ``/etc/imgmw/policy.yaml`` when it exists.
    """
    return make_enforcer(DEFAULT_POLICY_FILE)
