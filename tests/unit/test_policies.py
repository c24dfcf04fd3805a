"""Tests of imgmw.policies: the default rules (contract section 8)."""

import os
import subprocess
import sys

import fixtures
import testtools
import yaml

from imgmw import policies


BIN = os.path.dirname(sys.executable)

ACTIONS = ('get_image', 'get_images', 'add_image', 'modify_image',
           'delete_image', 'upload_image', 'download_image', 'deactivate',
           'reactivate', 'publicize_image', 'communitize_image',
           'stores_info_detail')


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
