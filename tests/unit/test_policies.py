"""Tests of imgmw.policies: the default rules (contract section 8)."""

import os
import subprocess
import sys

import fixtures
from oslo_config import cfg
from oslo_context import context
from oslo_policy import policy
import testtools
import yaml

from imgmw import policies


BIN = os.path.dirname(sys.executable)

ACTIONS = ('get_image', 'get_images', 'add_image', 'modify_image',
           'delete_image', 'upload_image', 'download_image', 'deactivate',
           'reactivate', 'publicize_image', 'communitize_image',
           'stores_info_detail', 'copy_image')


def creds(project_id='p1', roles=('member', 'reader'), **extra):
    values = {'project_id': project_id, 'roles': list(roles),
              'user_id': 'u1', 'service_roles': []}
    values.update(extra)
    return values


def image(owner='p1', visibility='private'):
    return {'project_id': owner, 'owner': owner, 'visibility': visibility,
            'image_id': 'img1'}


class DefaultRulesTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        directory = self.useFixture(fixtures.TempDir()).path
        self.enforcer = policies.make_enforcer(
            os.path.join(directory, 'policy.yaml'))

    def allowed(self, action, target, credentials):
        return bool(self.enforcer.authorize(action, target, credentials))

    def test_every_action_is_registered(self):
        names = {rule.name for rule in policies.list_rules()}
        self.assertTrue(set(ACTIONS).issubset(names), names)
        self.assertIn('context_is_admin', names)

    def test_context_is_admin(self):
        self.assertTrue(self.allowed('context_is_admin', {},
                                     creds(roles=['admin'])))
        self.assertFalse(self.allowed('context_is_admin', {}, creds()))

    def test_get_image_needs_reader_and_visibility(self):
        reader = creds(roles=['reader'])
        self.assertTrue(self.allowed('get_image', image(), reader))
        for visibility in ('public', 'community'):
            self.assertTrue(self.allowed(
                'get_image', image('p2', visibility), reader), visibility)
        # No image members: a shared image of another project is hidden.
        for visibility in ('shared', 'private'):
            self.assertFalse(self.allowed(
                'get_image', image('p2', visibility), reader), visibility)
        self.assertFalse(self.allowed('get_image', image(),
                                      creds(roles=['foo'])))

    def test_download_needs_member(self):
        """Section 8: a reader-only caller gets 403 on download."""
        self.assertFalse(self.allowed('download_image', image(),
                                      creds(roles=['reader'])))
        self.assertTrue(self.allowed('download_image', image(), creds()))
        self.assertTrue(self.allowed('download_image',
                                     image('p2', 'public'), creds()))
        self.assertFalse(self.allowed('download_image',
                                      image('p2', 'shared'), creds()))

    def test_writes_need_member_of_the_owner(self):
        for action in ('modify_image', 'delete_image', 'upload_image',
                       'deactivate', 'reactivate', 'communitize_image'):
            self.assertTrue(self.allowed(action, image(), creds()), action)
            self.assertFalse(self.allowed(action, image(),
                                          creds(roles=['reader'])), action)
            self.assertFalse(self.allowed(action, image('p2', 'public'),
                                          creds()), action)
            self.assertTrue(self.allowed(action, image('p2'),
                                         creds('ops', ['admin'])), action)

    def test_add_image_for_own_project_only(self):
        self.assertTrue(self.allowed('add_image', image(), creds()))
        target = {'project_id': 'p1', 'owner': 'p2'}
        self.assertFalse(self.allowed('add_image', target, creds()))
        self.assertTrue(self.allowed('add_image', target,
                                     creds(roles=['admin'])))

    def test_get_images_needs_reader(self):
        self.assertTrue(self.allowed('get_images', {'project_id': 'p1'},
                                     creds(roles=['reader'])))
        self.assertFalse(self.allowed('get_images', {'project_id': 'p1'},
                                      creds(roles=['foo'])))

    def test_publicize_needs_admin(self):
        self.assertFalse(self.allowed('publicize_image', image(), creds()))
        self.assertTrue(self.allowed('publicize_image', image(),
                                     creds(roles=['admin'])))

    def test_copy_image_needs_admin(self):
        """Glance's default: only an admin copies data between stores."""
        self.assertFalse(self.allowed('copy_image', image(), creds()))
        self.assertFalse(self.allowed('copy_image', image(),
                                      creds(roles=['member', 'reader',
                                                   'service'])))
        self.assertTrue(self.allowed('copy_image', image('p2'),
                                     creds('ops', ['admin'])))

    def test_stores_info_detail_admin_or_service(self):
        self.assertTrue(self.allowed('stores_info_detail', {},
                                     creds(roles=['admin'])))
        self.assertTrue(self.allowed('stores_info_detail', {},
                                     creds(roles=['service'])))
        self.assertTrue(self.allowed('stores_info_detail', {},
                                     creds(service_roles=['service'])))
        self.assertFalse(self.allowed('stores_info_detail', {}, creds()))

    def test_domain_scoped_token_is_out_of_scope(self):
        self.assertFalse(self.allowed('upload_image', image(),
                                      creds(roles=['admin'], domain_id='d')))


class EnforcerTest(testtools.TestCase):

    def test_relative_policy_file_refused(self):
        self.assertRaises(ValueError, policies.make_enforcer, 'policy.yaml')

    def test_file_overrides_one_enforcer_only(self):
        directory = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(directory, 'policy.yaml')
        with open(path, 'w') as f:
            f.write('"download_image": "role:reader"\n')
        overridden = policies.make_enforcer(path)
        default = policies.make_enforcer(os.path.join(directory, 'none'))
        reader = creds(roles=['reader'])
        self.assertTrue(overridden.authorize('download_image', image(),
                                             reader))
        self.assertFalse(default.authorize('download_image', image(),
                                           reader))

    def test_get_enforcer_has_every_rule(self):
        enforcer = policies.get_enforcer()
        self.assertIn('stores_info_detail', enforcer.registered_rules)


class Clock:

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class RememberingEnforcerTest(testtools.TestCase):
    """Decisions remembered, the policy file looked at once a second."""

    def setUp(self):
        super().setUp()
        self.directory = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.directory, 'policy.yaml')

    def plain(self):
        """oslo.policy's own enforcer on the same rules, nothing kept."""
        conf = cfg.ConfigOpts()
        conf([], project='imgmw', default_config_files=[],
             default_config_dirs=[])
        enforcer = policy.Enforcer(conf, policy_file=self.path)
        conf.set_override('policy_dirs', [], group='oslo_policy')
        enforcer.register_defaults(policies.list_rules())
        return enforcer

    def test_decisions_are_oslo_policys_every_time(self):
        with open(self.path, 'w') as f:
            f.write('"download_image": "role:reader and '
                    'project_id:%(owner)s"\n')
        remembering = policies.make_enforcer(self.path)
        plain = self.plain()
        callers = [creds(), creds(roles=['reader']), creds(roles=['admin']),
                   creds(project_id='p2'), creds(roles=[]),
                   creds(roles=['service']), creds(service_roles=['service']),
                   creds(roles=['admin'], domain_id='d'),
                   creds(roles=['admin'], system_scope='all')]
        targets = [image(), image(owner='p2'),
                   image(owner='p2', visibility='public'),
                   image(owner='p2', visibility='community'), {},
                   {'project_id': 'p1'}]
        for _ in range(2):
            for action in ACTIONS + ('context_is_admin',):
                for caller in callers:
                    for target in targets:
                        self.assertEqual(
                            bool(plain.enforce(action, dict(target),
                                               dict(caller))),
                            bool(remembering.enforce(action, dict(target),
                                                     dict(caller))),
                            (action, caller, target))

    def test_image_id_is_no_part_of_the_key(self):
        enforcer = policies.make_enforcer(self.path)
        enforcer.authorize('get_image', image(), creds())
        other = dict(image(), image_id='img2')
        enforcer.authorize('get_image', other, creds())
        self.assertEqual(1, len(enforcer._decisions))
        self.assertNotIn('image_id', enforcer._keys[0])
        self.assertIn('visibility', enforcer._keys[0])
        self.assertIn('roles', enforcer._keys[1])

    def test_a_request_context_is_its_policy_values(self):
        enforcer = policies.make_enforcer(self.path)
        member = context.RequestContext(project_id='p1', roles=['member',
                                                                'reader'])
        reader = context.RequestContext(project_id='p1', roles=['reader'])
        self.assertTrue(enforcer.authorize('download_image', image(),
                                           member))
        self.assertFalse(enforcer.enforce('download_image', image(),
                                          reader))
        self.assertTrue(enforcer.authorize('download_image', image(),
                                           member))

    def test_context_values_are_oslo_contexts_policy_values(self):
        self.assertEqual(
            set(context.RequestContext(overwrite=False).to_policy_values()),
            policies._CONTEXT_VALUES)

    def test_a_request_context_is_keyed_without_its_policy_values(self):
        built = []

        class Counted(context._DeprecatedPolicyValues):
            def __init__(self, data):
                built.append(data)
                super().__init__(data)
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_context.context._DeprecatedPolicyValues', Counted))
        enforcer = policies.make_enforcer(self.path)
        caller = context.RequestContext(project_id='p1', roles=['reader'],
                                        overwrite=False)
        self.assertTrue(enforcer.authorize('get_image', image(), caller))
        self.assertFalse(enforcer.enforce('download_image', image(),
                                          caller))
        built.clear()
        # Remembered decisions: oslo.policy is not asked, nothing built.
        self.assertTrue(enforcer.authorize('get_image', image(), caller))
        self.assertFalse(enforcer.enforce('download_image', image(),
                                          caller))
        self.assertEqual([], built)
        self.assertEqual(
            enforcer._decision_key('get_image', image(), caller),
            enforcer._decision_key('get_image', image(),
                                   dict(caller.to_policy_values())))

    def test_a_context_with_its_own_policy_values_is_keyed_on_them(self):
        class Elevated(context.RequestContext):
            def to_policy_values(self):
                return dict(super().to_policy_values(), roles=['admin'])
        enforcer = policies.make_enforcer(self.path)
        caller = Elevated(project_id='p1', roles=['reader'], overwrite=False)
        self.assertTrue(enforcer.enforce('publicize_image', image(),
                                         caller))
        plain = context.RequestContext(project_id='p1', roles=['reader'],
                                       overwrite=False)
        self.assertFalse(enforcer.enforce('publicize_image', image(), plain))

    def test_a_changed_policy_file_applies_within_the_interval(self):
        clock = Clock()
        enforcer = policies.make_enforcer(self.path, clock)
        reader = creds(roles=['reader'])
        self.assertFalse(enforcer.enforce('download_image', image(), reader))
        with open(self.path, 'w') as f:
            f.write('"download_image": "role:reader"\n')
        clock.now += policies.RELOAD_CHECK_INTERVAL / 2
        self.assertFalse(enforcer.enforce('download_image', image(), reader))
        clock.now += policies.RELOAD_CHECK_INTERVAL
        self.assertTrue(enforcer.enforce('download_image', image(), reader))

    def test_the_file_is_not_looked_at_on_every_check(self):
        clock = Clock()
        enforcer = policies.make_enforcer(self.path, clock)
        looks = []
        real = policy.Enforcer.load_rules

        def counting(this, force_reload=False):
            looks.append(force_reload)
            return real(this, force_reload)

        self.useFixture(fixtures.MonkeyPatch(
            'oslo_policy.policy.Enforcer.load_rules', counting))
        for _ in range(5):
            enforcer.authorize('get_image', image(), creds())
        self.assertEqual([], looks)
        clock.now += policies.RELOAD_CHECK_INTERVAL
        for _ in range(5):
            enforcer.authorize('get_image', image(), creds())
        self.assertEqual([False], looks)

    def test_impure_checks_turn_the_memory_off(self):
        with open(self.path, 'w') as f:
            f.write('"get_image": "http://127.0.0.1:9/check"\n')
        enforcer = policies.make_enforcer(self.path)
        self.assertIsNone(enforcer._keys)
        self.assertIsNone(enforcer._decision_key('get_image', image(),
                                                 creds()))

    def test_do_raise_is_oslo_policys(self):
        enforcer = policies.make_enforcer(self.path)
        self.assertRaises(policy.PolicyNotAuthorized, enforcer.enforce,
                          'publicize_image', image(), creds(),
                          do_raise=True)
        self.assertEqual({}, enforcer._decisions)


class GeneratorTest(testtools.TestCase):
    """The oslo.policy entry points work with the oslopolicy tools."""

    def run_tool(self, name):
        return subprocess.run(
            [os.path.join(BIN, name), '--namespace', 'imgmw'],
            check=True, capture_output=True, text=True, timeout=120).stdout

    def test_sample_generator(self):
        sample = self.run_tool('oslopolicy-sample-generator')
        rules = yaml.safe_load('\n'.join(
            line[1:] for line in sample.splitlines()
            if line.startswith('#"')))
        for action in ACTIONS:
            self.assertIn(action, rules)
        self.assertEqual('role:admin', rules['context_is_admin'])

    def test_policy_generator(self):
        effective = yaml.safe_load(self.run_tool(
            'oslopolicy-policy-generator'))
        self.assertIn('download_image', effective)
