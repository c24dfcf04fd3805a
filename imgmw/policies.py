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
"""

import os
import typing

from oslo_config import cfg
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
    policy.DocumentedRuleDefault(
        name='stores_info_detail', check_str='%s or %s' % (ADMIN, SERVICE),
        description='Show the type, properties and weight of each store.',
        operations=[{'method': 'GET', 'path': '/v2/info/stores/detail'}],
        scope_types=['project']),
]


def list_rules() -> typing.List[policy.RuleDefault]:
    """The default rules (entry point ``oslo.policy.policies``)."""
    return rules


def make_enforcer(policy_file: str) -> policy.Enforcer:
    """An enforcer of the default rules, overridden by ``policy_file``.

    The enforcer has a configuration object of its own, so nothing is read
    from, or registered in, a process-global configuration. ``policy_file``
    must be an absolute path; it may be absent (then the defaults apply) and
    is re-read when it changes. ``policy.d`` directories are not searched.
    """
    if not os.path.isabs(policy_file):
        raise ValueError('policy_file must be an absolute path: %s'
                         % policy_file)
    conf = cfg.ConfigOpts()
    conf([], project='imgmw', default_config_files=[],
         default_config_dirs=[])
    enforcer = policy.Enforcer(conf, policy_file=policy_file)
    conf.set_override('policy_dirs', [], group='oslo_policy')
    enforcer.register_defaults(list_rules())
    return enforcer


def get_enforcer() -> policy.Enforcer:
    """Entry point ``oslo.policy.enforcer``, for oslopolicy-policy-generator.

    Merges the defaults with ``/etc/imgmw/policy.yaml`` when it exists.
    """
    return make_enforcer(DEFAULT_POLICY_FILE)
