"""The keystone pipeline of etc/api-paste.ini against a real Keystone.

One Keystone (:class:`tests.keystonefixture.Keystone`) and one imgmw-api
serving ``--pipeline keystone`` for the class. The server's paste file is
the shipped one with only what an operator fills in: ``[filter:authtoken]``
pointing to that Keystone with a service user, and, for the policy test, a
``policy.yaml`` named by ``[filter:context] policy_file``. Users:

=============  ==========  ======================================
user           project     roles (Keystone adds implied ones)
=============  ==========  ======================================
``member-a``   A           ``member`` (and ``reader``)
``reader-a``   A           ``reader``
``member-b``   B           ``member`` (and ``reader``)
``imgmw``      service     ``service``: auth_token's service user
``admin``      admin       ``admin`` (``keystone-manage bootstrap``)
=============  ==========  ======================================

Run with ``tox -e functional-keystone``, which makes Keystone's virtualenv
and names it in ``IMGMW_TEST_KEYSTONE_VENV``; without that variable (``tox
-e py3``) the class is skipped, saying so.
"""

import configparser
import os
import typing

import requests
import sqlalchemy as sa
import testtools
from testtools import content

from tests import dbfixture
from tests.functional import base
from tests import keystonefixture


MESSAGE_DOWNLOAD_DENIED = ('You are not authorized to complete '
                           'download_image action.')
MESSAGE_UPLOAD_DENIED = ('You are not authorized to complete upload_image '
                         'action.')
DATA_SIZE = 3 * base.MiB + 17
BAD_TOKEN = 'gAAAAABnot-a-token-issued-by-this-keystone'


class KeystoneApiServer(base.ApiServer):
    """imgmw-api serving the shipped keystone pipeline, at debug level.

    :param authtoken: options set in ``[filter:authtoken]``.
    :param policy: the text of ``policy.yaml``, written next to the paste
        file and named by ``[filter:context] policy_file``; ``None`` keeps
        the default rules.
    """

    def __init__(self, database_url: str,
                 authtoken: typing.Mapping[str, str],
                 policy: typing.Optional[str] = None, **kwargs):
        kwargs.setdefault('args', ['--log-level', 'debug'])
        super().__init__(database_url, pipeline='keystone', **kwargs)
        self.authtoken = dict(authtoken)
        self.policy = policy
        self._configured = False

    def _start(self) -> None:
        if not self._configured:
            self._configure()
            self._configured = True
        super()._start()

    def _configure(self) -> None:
        """Fill in the copy of etc/api-paste.ini as an operator would."""
        paste = configparser.RawConfigParser(interpolation=None)
        paste.optionxform = str
        paste.read(self.config_file)
        for key, value in self.authtoken.items():
            paste.set('filter:authtoken', key, value)
        if self.policy is not None:
            with open(os.path.join(self.tempdir, 'policy.yaml'), 'w') as f:
                f.write(self.policy)
            paste.set('filter:context', 'policy_file', 'policy.yaml')
        with open(self.config_file, 'w') as f:
            paste.write(f)


@testtools.skipUnless(
    os.environ.get(keystonefixture.VENV_VARIABLE),
    'needs a Keystone virtualenv in $%s: tox -e functional-keystone'
    % keystonefixture.VENV_VARIABLE)
class KeystonePipelineTest(base.FunctionalTest):
    """Tokens of a real Keystone through the keystone pipeline."""

    pipeline = 'keystone'

    @classmethod
    def setUpClass(cls) -> None:
        # Not FunctionalTest's: Keystone comes first, the server needs it.
        super(base.FunctionalTest, cls).setUpClass()
        cls._fixtures = []
        try:
            cls.keystone = cls._use(keystonefixture.Keystone())
            cls._create_users()
            cls.database = cls._use(dbfixture.Database())
            base.sync_database(cls.database.url)
            cls.server = cls._use(cls.make_server())
        except BaseException:
            cls._clean_up()
            raise
        cls.registry = sa.create_engine(cls.database.url,
                                        poolclass=sa.pool.NullPool)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.dispose()
        cls._clean_up()
        super(base.FunctionalTest, cls).tearDownClass()

    @classmethod
    def _use(cls, fixture):
        """Set ``fixture`` up; :meth:`_clean_up` cleans it up."""
        fixture.setUp()
        cls._fixtures.append(fixture)
        return fixture

    @classmethod
    def _clean_up(cls) -> None:
        while cls._fixtures:
            cls._fixtures.pop().cleanUp()

    @classmethod
    def _create_users(cls) -> None:
        keystone = cls.keystone
        cls.project_a = keystone.create_project('project-a')
        cls.project_b = keystone.create_project('project-b')
        service = keystone.create_project('service')
        cls.service_user = keystone.create_user('imgmw', service,
                                                ['service'])
        users = {
            'member_a': keystone.create_user('member-a', cls.project_a,
                                             ['member']),
            'reader_a': keystone.create_user('reader-a', cls.project_a,
                                             ['reader']),
            'member_b': keystone.create_user('member-b', cls.project_b,
                                             ['member']),
        }
        cls.tokens = {name: keystone.token(user)
                      for name, user in users.items()}
        cls.tokens['admin'] = keystone.admin.get_token()

    @classmethod
    def make_server(cls, **kwargs) -> KeystoneApiServer:
        """An imgmw-api of the keystone pipeline, not yet set up."""
        authtoken = {
            'www_authenticate_uri': cls.keystone.url,
            'auth_url': cls.keystone.url,
            'auth_type': 'password',
            'username': cls.service_user.name,
            'password': cls.service_user.password,
            'project_name': 'service',
            'user_domain_id': keystonefixture.DOMAIN,
            'project_domain_id': keystonefixture.DOMAIN,
        }
        return KeystoneApiServer(cls.database.url, authtoken, **kwargs)

    def setUp(self) -> None:
        super().setUp()
        self.addOnException(self._attach_keystone_log)

    def _attach_keystone_log(self, exc_info) -> None:
        self.addDetail('keystone.log', content.text_content(
            self.keystone.log()))

    # Helpers.

    def use_token(self, name: typing.Optional[str]) -> None:
        """Send the token of user ``name`` from now on; ``None``: none."""
        if name is None:
            self.http.headers.pop('X-Auth-Token', None)
        elif name in self.tokens:
            self.http.headers['X-Auth-Token'] = self.tokens[name]
        else:
            self.http.headers['X-Auth-Token'] = name

    def queued_image(self, owner: str = 'member_a') -> dict:
        self.use_token(owner)
        return self.create_image()

    def active_image(self, owner: str = 'member_a') -> dict:
        """An image of ``owner``'s project with DATA_SIZE bytes."""
        image = self.queued_image(owner)
        resp = self.upload(image['id'], base.PatternStream(DATA_SIZE))
        self.assertEqual(204, resp.status_code, resp.text)
        self.assert_active_with(image['id'], DATA_SIZE,
                                *base.pattern_digests(DATA_SIZE))
        return image

    def assert_downloads(self, image_id: str) -> None:
        resp = self.download(image_id)
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual(b''.join(base.iter_pattern(DATA_SIZE)),
                         resp.content)

    def assert_unauthenticated(self, resp: requests.Response) -> None:
        """Contract 3.1 and 5.1: 401, the Keystone to ask, a request id."""
        self.assertEqual(401, resp.status_code, resp.text)
        self.assertEqual('Keystone uri="%s"' % self.keystone.url,
                         resp.headers.get('WWW-Authenticate'))
        self.assertIn('x-openstack-request-id', resp.headers)

    # Tests.

    def test_member_uploads_and_downloads_contract_3_and_5_14(self):
        image = self.active_image('member_a')
        self.assertEqual(self.project_a, image['owner'])
        self.assertEqual(self.project_a,
                         self.registry_row(image['id'])['owner'])
        self.assert_downloads(image['id'])

    def test_no_token_is_401_contract_3_1_and_5_1(self):
        queued = self.queued_image()
        active = self.active_image()
        self.use_token(None)
        self.assert_unauthenticated(self.download(active['id']))
        self.assert_unauthenticated(
            self.upload(queued['id'], b'data'))
        self.assert_unauthenticated(self.request('GET', '/v2/images'))
        self.use_token('member_a')
        self.assert_failed_upload_left_nothing(queued['id'])

    def test_bad_token_is_401_contract_3_1_and_5_1(self):
        queued = self.queued_image()
        active = self.active_image()
        self.use_token(BAD_TOKEN)
        self.assert_unauthenticated(self.download(active['id']))
        self.assert_unauthenticated(self.upload(queued['id'], b'data'))
        self.use_token('member_a')
        self.assert_failed_upload_left_nothing(queued['id'])

    def test_reader_download_is_403_contract_5_5(self):
        image = self.active_image()
        self.use_token('reader_a')
        self.assertEqual('active', self.get_image(image['id'])['status'])
        self.assert_error(self.download(image['id']), 403,
                          MESSAGE_DOWNLOAD_DENIED)

    def test_reader_upload_is_403_contract_3_9(self):
        image = self.queued_image()
        self.use_token('reader_a')
        self.assert_error(self.upload(image['id'], b'data'), 403,
                          MESSAGE_UPLOAD_DENIED)
        self.use_token('member_a')
        self.assert_failed_upload_left_nothing(image['id'])

    def test_other_project_is_404_contract_3_8_and_5_3(self):
        queued = self.queued_image()
        active = self.active_image()
        self.use_token('member_b')
        self.assert_error(self.download(active['id']), 404,
                          'No image found with ID %s' % active['id'])
        self.assert_error(self.upload(queued['id'], b'data'), 404,
                          'No image found with ID %s' % queued['id'])
        self.use_token('member_a')
        self.assert_failed_upload_left_nothing(queued['id'])

    def test_policy_file_overrides_download_image_contract_5_5(self):
        image = self.active_image()
        strict = self.make_server(
            policy='"download_image": "role:admin"\n',
            options={'state_dir': self.server.state_dir})
        self.useFixture(strict)
        self.addOnException(lambda exc_info: self.addDetail(
            'strict-imgmw-api.log',
            content.text_content(strict.log())))

        def download(token: str) -> requests.Response:
            return requests.get(
                '%s/v2/images/%s/file' % (strict.url, image['id']),
                headers={'X-Auth-Token': self.tokens[token]},
                timeout=base.REQUEST_TIMEOUT)

        self.assert_error(download('member_a'), 403,
                          MESSAGE_DOWNLOAD_DENIED)
        resp = download('admin')
        self.assertEqual(200, resp.status_code, resp.text)
        self.assertEqual(b''.join(base.iter_pattern(DATA_SIZE)),
                         resp.content)
        # The same token, the same image, the default rules: allowed.
        self.use_token('member_a')
        self.assert_downloads(image['id'])

    def test_tokens_never_logged(self):
        image = self.active_image('member_a')
        self.assert_downloads(image['id'])
        for name, status in (('reader_a', 403), ('member_b', 404),
                             (BAD_TOKEN, 401), ('admin', 200)):
            self.use_token(name)
            self.assertEqual(status, self.download(image['id']).status_code)
        log = self.server.log()
        self.assertIn('GET /v2/images/%s/file' % image['id'], log)
        for name, token in list(self.tokens.items()) + [('bad', BAD_TOKEN)]:
            for part in (token, token[-32:]):
                self.assertNotIn(part, log, 'the token of %s' % name)
