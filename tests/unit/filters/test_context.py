"""Tests of imgmw.filters.context: identity, 401s and the policy callback.

Keystone cases go through the real keystonemiddleware ``auth_token`` with
its ``AuthTokenFixture`` (contract 3.1, 5.1 and section 8).
"""

import datetime
import logging
import os

import fixtures
from keystonemiddleware import auth_token
from keystonemiddleware import fixture as ks_fixture
from oslo_policy import policy
import paste.deploy
import testtools
import webob
import webob.exc

from imgmw import config
from imgmw import environ as env_keys
from imgmw.filters import context
from tests.unit import fakes


WWW_AUTHENTICATE = 'Keystone uri="https://keystone.example/v3"'


def image_target(owner, visibility='private', image_id='img1'):
    return {'project_id': owner, 'owner': owner, 'visibility': visibility,
            'image_id': image_id}


def recording_app_factory(global_conf, **local_conf):
    """paste.app_factory for the paste.deploy test."""
    return fakes.RecordingApp()


class NoauthTest(testtools.TestCase):

    def make(self, **conf):
        self.app = fakes.RecordingApp()
        conf.setdefault('auth_strategy', 'noauth')
        return context.filter_factory({}, **conf)(self.app)

    def call(self, middleware, path='/v2/images/img1', **headers):
        req = webob.Request.blank(path, headers=headers)
        req.environ['openstack.request_id'] = 'req-abc'
        return req.get_response(middleware)

    def context(self):
        return self.app.environ[env_keys.CONTEXT]

    def authorize(self):
        return self.app.environ[env_keys.AUTHORIZE]

    def test_defaults_give_a_laptop_user_every_right(self):
        resp = self.call(self.make())
        self.assertEqual(204, resp.status_int)
        ctx = self.context()
        self.assertIsInstance(ctx, context.RequestContext)
        self.assertEqual('default', ctx.project_id)
        self.assertEqual('default', ctx.owner)
        self.assertEqual('default', ctx.user_id)
        self.assertEqual(['admin', 'member', 'reader'], ctx.roles)
        self.assertTrue(ctx.is_admin)
        self.assertEqual('req-abc', ctx.request_id)
        self.assertIsNone(ctx.auth_plugin)
        self.assertTrue(self.authorize()('upload_image',
                                         image_target('default')))

    def test_untrusted_identity_headers_are_ignored(self):
        self.call(self.make(), X_Project_Id='p9', X_User_Id='u9',
                  X_Roles='reader')
        ctx = self.context()
        self.assertEqual('default', ctx.project_id)
        self.assertEqual('default', ctx.user_id)
        self.assertEqual(['admin', 'member', 'reader'], ctx.roles)

    def test_trusted_identity_headers_choose_the_identity(self):
        self.call(self.make(trust_identity_headers='true'),
                  X_Project_Id='p9', X_User_Id='u9', X_Roles='Member, Reader')
        ctx = self.context()
        self.assertEqual('p9', ctx.project_id)
        self.assertEqual('u9', ctx.user_id)
        self.assertEqual(['member', 'reader'], ctx.roles)
        self.assertFalse(ctx.is_admin)

    def test_trusted_tenant_id_and_absent_headers_fall_back(self):
        self.call(self.make(trust_identity_headers='true',
                            default_user_id='alice', default_roles='member'),
                  X_Tenant_Id='t1')
        ctx = self.context()
        self.assertEqual('t1', ctx.project_id)
        self.assertEqual('alice', ctx.user_id)
        self.assertEqual(['member'], ctx.roles)

    def test_trusted_identity_headers_that_no_id_could_be_are_400(self):
        """No value the registry cannot store gets past (no 500 later)."""
        middleware = self.make(trust_identity_headers='true')
        for header, value in (('X_Project_Id', 'p' * 256),
                              ('X_Tenant_Id', 'a\x00b'),
                              ('X_User_Id', 'with space'),
                              ('X_Project_Id', 'caf\u00e9')):
            resp = self.call(middleware, **{header: value})
            self.assertEqual(400, resp.status_int, header)
            self.assertIn('Invalid %s header' % header.replace('_', '-'),
                          resp.text)
        self.assertFalse(self.app.called)
        resp = self.call(middleware, X_Project_Id='p' * 255)
        self.assertEqual(204, resp.status_int)
        self.assertEqual('p' * 255, self.context().project_id)

    def test_untrusted_identity_headers_are_not_checked(self):
        self.call(self.make(), X_Project_Id='p' * 300)
        self.assertEqual('default', self.context().project_id)

    def test_configured_default_identity(self):
        self.call(self.make(default_project_id='lab', default_roles='reader'))
        self.assertEqual('lab', self.context().project_id)
        self.assertEqual(['reader'], self.context().roles)

    def test_reader_denied_download_with_contract_message(self):
        """Contract 5.5 and section 8: a reader alone may not download."""
        self.call(self.make(trust_identity_headers='true'),
                  X_Project_Id='p1', X_Roles='reader')
        authorize = self.authorize()
        self.assertTrue(authorize('get_image', image_target('p1')))
        err = self.assertRaises(webob.exc.HTTPForbidden, authorize,
                                'download_image', image_target('p1'))
        self.assertEqual(
            'You are not authorized to complete download_image action.',
            err.explanation)
        self.assertIs(False, authorize('download_image', image_target('p1'),
                                       do_raise=False))

    def test_member_of_another_project(self):
        """Contract 3.9: upload_image needs a member of the owner."""
        self.call(self.make(trust_identity_headers='true'),
                  X_Project_Id='p2', X_Roles='member,reader')
        authorize = self.authorize()
        err = self.assertRaises(webob.exc.HTTPForbidden, authorize,
                                'upload_image', image_target('p1'))
        self.assertEqual(
            'You are not authorized to complete upload_image action.',
            err.explanation)
        self.assertFalse(authorize('get_image', image_target('p1'),
                                   do_raise=False))
        self.assertTrue(authorize('download_image',
                                  image_target('p1', 'public')))

    def test_unknown_action_is_a_programming_error(self):
        self.call(self.make())
        self.assertRaises(policy.PolicyNotRegistered, self.authorize(),
                          'donwload_image', image_target('default'))

    def test_version_discovery_needs_no_context(self):
        for path in ('/', '/versions'):
            self.call(self.make(), path=path)
            self.assertNotIn(env_keys.CONTEXT, self.app.environ)

    def test_policy_file_overrides_download_image(self):
        """Section 8: a policy file changes the answer, not the code."""
        directory = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(directory, 'policy.yaml'), 'w') as f:
            f.write('"download_image": "role:reader"\n')
        middleware = self.make(trust_identity_headers='true',
                               policy_file='policy.yaml', here=directory)
        self.call(middleware, X_Project_Id='p1', X_Roles='reader')
        self.assertTrue(self.authorize()('download_image',
                                         image_target('p1')))

    def test_default_policy_file_beside_the_paste_file_is_read(self):
        directory = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(directory, 'policy.yaml'), 'w') as f:
            f.write('"upload_image": "!"\n')
        self.call(self.make(here=directory))
        self.assertFalse(self.authorize()('upload_image',
                                          image_target('default'),
                                          do_raise=False))

    def test_missing_policy_file_stops_start_up(self):
        directory = self.useFixture(fixtures.TempDir()).path
        err = self.assertRaises(config.ConfigError, context.filter_factory,
                                {'here': directory}, policy_file='nope.yaml')
        self.assertIn('nope.yaml', str(err))

    def test_bad_options_stop_start_up(self):
        err = self.assertRaises(config.ConfigError, context.filter_factory,
                                {}, auth_strategy='none')
        self.assertIn('auth_strategy', str(err))
        err = self.assertRaises(config.ConfigError, context.filter_factory,
                                {}, trust_identity_header='true')
        self.assertIn('trust_identity_header', str(err))

    def test_each_instance_has_its_own_enforcer(self):
        first = self.make()
        second = self.make()
        self.assertIsNot(first.enforcer, second.enforcer)
        self.assertIsNot(first.enforcer.conf, second.enforcer.conf)

    def test_loaded_by_paste_deploy_entry_point(self):
        directory = self.useFixture(fixtures.TempDir()).path
        ini = os.path.join(directory, 'api-paste.ini')
        with open(ini, 'w') as f:
            f.write('[pipeline:main]\npipeline = context app\n\n'
                    '[filter:context]\nuse = egg:imgmw#context\n'
                    'auth_strategy = noauth\n\n'
                    '[app:app]\npaste.app_factory = '
                    'tests.unit.filters.test_context:recording_app_factory\n')
        pipeline = paste.deploy.loadapp('config:' + ini)
        self.assertIsInstance(pipeline, context.ContextMiddleware)
        self.assertEqual(os.path.join(directory, 'policy.yaml'),
                         pipeline.policy_file)
        self.assertEqual(204, self.call(pipeline).status_int)


class KeystoneTest(testtools.TestCase):
    """Through the real auth_token, with delay_auth_decision = true."""

    def setUp(self):
        super().setUp()
        self.tokens = self.useFixture(ks_fixture.AuthTokenFixture())
        self.logs = self.useFixture(fixtures.FakeLogger(
            name='imgmw', level=logging.DEBUG))
        self.app = fakes.RecordingApp()
        self.pipeline = self.make_pipeline(context.filter_factory({}))

    def make_pipeline(self, context_filter):
        authtoken = auth_token.filter_factory(
            {}, delay_auth_decision='true',
            www_authenticate_uri='https://keystone.example/v3')
        return authtoken(context_filter(self.app))

    def token(self, project_id='p1', roles=('member', 'reader'), **kwargs):
        token_id = 'tok-%s-%s' % (project_id, '-'.join(roles))
        self.tokens.add_token_data(token_id=token_id, project_id=project_id,
                                   user_id='u-' + project_id,
                                   role_list=list(roles), **kwargs)
        return token_id

    def call(self, token=None, path='/v2/images/img1', **headers):
        req = webob.Request.blank(path, headers=headers)
        if token is not None:
            req.headers['X-Auth-Token'] = token
        return req.get_response(self.pipeline)

    def authorize(self):
        return self.app.environ[env_keys.AUTHORIZE]

    def assertUnauthorized(self, resp):
        """Contract 3.1 and 5.1: 401 with WWW-Authenticate."""
        self.assertEqual(401, resp.status_int)
        self.assertEqual(WWW_AUTHENTICATE, resp.headers['WWW-Authenticate'])
        self.assertFalse(self.app.called)

    def test_valid_token(self):
        token = self.token(roles=('Member', 'reader'))
        resp = self.call(token, X_Roles='admin', X_Project_Id='evil')
        self.assertEqual(204, resp.status_int)
        environ = self.app.environ
        ctx = environ[env_keys.CONTEXT]
        self.assertEqual('p1', ctx.project_id)
        self.assertEqual('u-p1', ctx.user_id)
        self.assertEqual(['member', 'reader'], ctx.roles)
        self.assertFalse(ctx.is_admin)
        self.assertIs(environ['keystone.token_auth'], ctx.auth_plugin)
        self.assertTrue(self.authorize()('upload_image', image_target('p1')))
        self.assertNotIn(token, self.logs.output)

    def test_expired_token_is_401(self):
        past = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None) - datetime.timedelta(hours=1)
        self.assertUnauthorized(self.call(self.token(expires=past)))

    def test_unknown_token_is_401(self):
        self.assertUnauthorized(self.call('no-such-token'))

    def test_missing_token_is_401(self):
        self.assertUnauthorized(self.call())

    def test_version_discovery_without_token_passes(self):
        resp = self.call(path='/')
        self.assertEqual(204, resp.status_int)
        self.assertNotIn(env_keys.CONTEXT, self.app.environ)

    def test_reader_only_gets_403_on_download(self):
        """Contract 5.5: a reader may see the image but not download it."""
        self.assertEqual(204, self.call(self.token(roles=('reader',)))
                         .status_int)
        authorize = self.authorize()
        self.assertTrue(authorize('get_image', image_target('p1')))
        err = self.assertRaises(webob.exc.HTTPForbidden, authorize,
                                'download_image', image_target('p1'))
        self.assertEqual(403, err.status_int)
        self.assertEqual(
            'You are not authorized to complete download_image action.',
            err.explanation)

    def test_member_of_another_project(self):
        self.call(self.token(project_id='p2'))
        authorize = self.authorize()
        self.assertFalse(authorize('get_image', image_target('p1'),
                                   do_raise=False))
        self.assertFalse(authorize('download_image', image_target('p1'),
                                   do_raise=False))
        self.assertFalse(authorize('upload_image', image_target('p1'),
                                   do_raise=False))
        self.assertTrue(authorize('download_image',
                                  image_target('p1', 'community')))

    def test_admin(self):
        self.call(self.token(project_id='ops', roles=('admin',)))
        self.assertTrue(self.app.environ[env_keys.CONTEXT].is_admin)
        authorize = self.authorize()
        self.assertTrue(authorize('download_image', image_target('p1')))
        self.assertTrue(authorize('stores_info_detail', {}))

    def test_service_roles_from_a_service_token(self):
        user = self.token()
        service = self.token(project_id='services', roles=('service',))
        self.call(user, X_Service_Token=service)
        ctx = self.app.environ[env_keys.CONTEXT]
        self.assertEqual('p1', ctx.project_id)
        self.assertEqual(['service'], ctx.service_roles)
        self.assertTrue(self.authorize()('stores_info_detail', {}))

    def test_member_without_service_token_denied_stores_detail(self):
        self.call(self.token())
        self.assertFalse(self.authorize()('stores_info_detail', {},
                                          do_raise=False))

    def test_keystone_mode_without_authtoken_is_500(self):
        middleware = context.filter_factory({})(self.app)
        req = webob.Request.blank('/v2/images/img1', headers={
            'X-Identity-Status': 'Confirmed', 'X-Roles': 'admin'})
        resp = req.get_response(middleware)
        self.assertEqual(500, resp.status_int)
        self.assertIn('authtoken', resp.text)
        self.assertIn('authtoken', self.logs.output)
        self.assertFalse(self.app.called)

    def test_policy_file_overrides_download_image(self):
        directory = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(directory, 'policy.yaml'), 'w') as f:
            f.write('"download_image": "role:reader"\n')
        self.pipeline = self.make_pipeline(context.filter_factory(
            {'here': directory}, policy_file='policy.yaml'))
        self.call(self.token(roles=('reader',)))
        self.assertTrue(self.authorize()('download_image',
                                         image_target('p1')))
