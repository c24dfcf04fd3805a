"""Tests of the quota filter, its limit sources and its reservation store.

Contract section 8 and section 3 rows 13 and 17. The database is the one
of ``IMGMW_TEST_DATABASE`` (SQLite by default); the concurrency tests of
the store also run on PostgreSQL and MySQL/MariaDB.
"""

import datetime
import os
import threading
import uuid

import fixtures
from oslo_context import context as oslo_context
from oslo_limit import exception as limit_exceptions
from oslo_limit import fixture as limit_fixture
import paste.deploy
import sqlalchemy as sa
import testtools
import webob

from imgmw.app import registry
from imgmw import config
from imgmw import environ as keys
from imgmw.filters import quota as quota_filter
from imgmw.filters.quota import keystone as keystone_limits
from imgmw.filters.quota import limits
from imgmw.filters.quota import reservations
from imgmw.filters.quota import resources
from imgmw.filters.quota import schema
from imgmw import streams
from tests import dbfixture
from tests.unit import fakes

MiB = 1 << 20
IMAGE_ID = 'c0ffee00-0000-4000-8000-000000000001'


def row13(size, remaining):
    return ('Image exceeds the storage quota: The size of the data %d will '
            'exceed the limit. %d bytes remaining.' % (size, remaining))


def count_refusal(project, limit, usage):
    return ('Project %s is over a limit for [Resource image_count_uploading '
            'is over limit of %d due to current usage %d and delta 0]'
            % (project, limit, usage))


def message(resp: webob.Response) -> str:
    return resp.json['message'].split('<br />')[0]


class ImageApp(fakes.RecordingApp):
    """The data app's order: refuse, or announce the image, then read.

    :param owner: the image's owner, in the record the app announces.
    :param refuse: a response to answer instead of reading (rows 8 to 12).
    :param during: called with the environ after the first chunk is read.
    :param announce: ``'first'``: :func:`imgmw.streams.announce_image`
        before the first read (the app's order); ``'never'``: the record is
        set in ``environ['imgmw.image']`` without the announcement, as an
        app that skips the defined step; ``'late'``: announced after the
        first chunk is read.
    """

    def __init__(self, owner='p1', refuse=None, during=None,
                 announce='first', **kwargs):
        kwargs.setdefault('chunk_size', 16)
        super().__init__(**kwargs)
        self.owner = owner
        self.refuse = refuse
        self.during = during
        self.announce = announce
        self.environ_now = None

    @property
    def record(self) -> dict:
        return {'id': IMAGE_ID, 'owner': self.owner, 'status': 'saving'}

    def __call__(self, environ, start_response):
        if self.refuse is not None:
            self.calls.append(dict(environ))
            return self.refuse(environ, start_response)
        self.environ_now = environ
        if self.announce == 'first':
            streams.announce_image(environ, self.record)
        elif self.announce == 'never':
            environ[keys.IMAGE] = self.record
        return super().__call__(environ, start_response)

    def _read_all(self, wsgi_input):
        # Small chunks of a MiB body: gathered in a bytearray, not copied
        # whole at each chunk.
        received = bytearray()
        try:
            self._read_into(wsgi_input, received)
        finally:
            self.received += bytes(received)

    def _read_into(self, wsgi_input, received: bytearray) -> None:
        first = True
        while True:
            chunk = wsgi_input.read(self.chunk_size)
            self.reads += 1
            if not chunk:
                self.eof = True
                return
            received += chunk
            if first and self.announce == 'late':
                streams.announce_image(self.environ_now, self.record)
            if first and self.during is not None:
                self.during()
            first = False


class DatabaseTest(testtools.TestCase):
    """A registry database with the quota tables (``IMGMW_TEST_DATABASE``)."""

    KIND = None

    def setUp(self):
        super().setUp()
        self.database = self.useFixture(dbfixture.Database(self.KIND))
        self.registry = registry.Registry(self.database.url, sync=True)
        self.addCleanup(self.registry.dispose)
        self.engine = sa.create_engine(self.database.url,
                                       poolclass=sa.pool.NullPool)
        self.addCleanup(self.engine.dispose)

    def add_image(self, owner='p1', status='active', size=0):
        image = self.registry.create({'owner': owner})
        with self.engine.begin() as connection:
            connection.execute(
                sa.text('UPDATE images SET status = :status, size = :size '
                        'WHERE id = :id'),
                {'status': status, 'size': size, 'id': image['id']})
        return image['id']

    def reservation_rows(self):
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(
                sa.select(schema.reservations)).mappings()]

    def add_reservation(self, project='p1', size=0, kind=schema.UPLOAD,
                        expires_in=300, image_id=None):
        now = reservations.utcnow()
        with self.engine.begin() as connection:
            connection.execute(schema.reservations.insert().values(
                id=str(uuid.uuid4()), project_id=project,
                image_id=image_id or str(uuid.uuid4()), kind=kind,
                size=size, holder='elsewhere:1', created_at=now,
                expires_at=now + datetime.timedelta(seconds=expires_in)))


class FilterTest(DatabaseTest):

    def build(self, app=None, global_conf=None, **local_conf):
        self.app = app if app is not None else ImageApp()
        conf = {'database_connection': self.database.url}
        conf.update(global_conf or {})
        self.middleware = quota_filter.filter_factory(
            conf, **local_conf)(self.app)
        self.addCleanup(self.middleware.store.dispose)
        return self.middleware

    def send(self, body=b'', declared='length', chunked=False,
             route='file', project='p1', middleware=None):
        """An upload as the context and size filters hand it on."""
        req = fakes.upload_request(
            path='/v2/images/%s/%s' % (IMAGE_ID, route), body=body,
            chunked=chunked, headers={'Accept': 'application/json'})
        if declared == 'length':
            declared = None if chunked else len(body)
        req.environ[keys.SIZE] = declared
        req.environ[keys.CONTEXT] = oslo_context.RequestContext(
            project_id=project)
        return req.get_response(middleware or self.middleware)

    def assertRefused(self, resp, text, status=413):
        self.assertEqual(status, resp.status_int, resp.text)
        self.assertEqual(text, message(resp))


class TestStorageQuota(FilterTest):
    """image_size_total on PUT .../file (contract 3.13, 3.17, section 8)."""

    def test_contract_3_13_usage_plus_delta_equal_to_limit_passes(self):
        self.add_image(size=60)
        self.build(user_storage_quota='100')
        resp = self.send(b'x' * 40)
        self.assertEqual(204, resp.status_int, resp.text)
        self.assertEqual(b'x' * 40, self.app.received)

    def test_contract_3_13_declared_size_above_remaining_is_413_unread(self):
        self.add_image(size=60)
        self.build(user_storage_quota='100')
        resp = self.send(b'x' * 41)
        self.assertRefused(resp, row13(41, 40))
        self.assertEqual(b'', self.app.received)
        self.assertEqual([], self.reservation_rows())

    def test_contract_3_13_declared_size_over_chunked_framing(self):
        self.build(user_storage_quota='10')
        resp = self.send(b'x' * 11, chunked=True, declared=11)
        self.assertRefused(resp, row13(11, 10))
        self.assertEqual(b'', self.app.received)

    def test_contract_3_17_unknown_size_within_quota_passes(self):
        self.add_image(size=60)
        self.build(user_storage_quota='100', reservation_increment='7')
        resp = self.send(b'y' * 40, chunked=True)
        self.assertEqual(204, resp.status_int, resp.text)
        self.assertEqual(b'y' * 40, self.app.received)
        self.assertEqual([], self.reservation_rows())

    def test_contract_3_17_unknown_size_fails_at_the_breaching_chunk(self):
        self.add_image(size=60)
        self.build(ImageApp(chunk_size=1), user_storage_quota='100',
                   reservation_increment='7')
        resp = self.send(b'y' * 50, chunked=True)
        self.assertRefused(resp, row13(41, 40))
        # The breaching byte never reached the app.
        self.assertEqual(b'y' * 40, self.app.received)
        self.assertEqual([], self.reservation_rows())

    def test_contract_3_17_unknown_size_over_a_used_up_quota_says_so(self):
        """Not "the size of the data 0": the usage is the cause."""
        self.add_image(size=60)
        self.build(user_storage_quota='50', reservation_increment='7')
        resp = self.send(b'y' * 40, chunked=True)
        self.assertRefused(resp, 'Image exceeds the storage quota: The '
                           'project stores 60 bytes of its limit of 50 '
                           'bytes; no data can be added.')
        self.assertEqual(b'', self.app.received)

    def test_contract_3_17_with_a_large_increment_still_fills_the_quota(self):
        self.build(user_storage_quota='100', reservation_increment='1GB')
        resp = self.send(b'y' * 100, chunked=True)
        self.assertEqual(204, resp.status_int, resp.text)

    def test_section_8_overlapping_unknown_sizes_that_fit_both_pass(self):
        answers = []

        def second():
            if not answers:
                answers.append(None)
                answers.append(self.send(b'b' * 8, chunked=True))
        self.build(ImageApp(during=second, chunk_size=4),
                   user_storage_quota='20', reservation_increment='64')
        resp = self.send(b'a' * 12, chunked=True)
        self.assertEqual(204, resp.status_int, resp.text)
        self.assertEqual(204, answers[1].status_int, answers[1].text)
        self.assertEqual([], self.reservation_rows())

    def test_section_8_an_unknown_size_reserves_in_steps(self):
        seen = []
        self.build(ImageApp(during=lambda: seen.extend(
            row['size'] for row in self.reservation_rows()), chunk_size=4),
            user_storage_quota='1000', reservation_increment='10')
        self.assertEqual(204, self.send(b'a' * 30, chunked=True).status_int)
        # A first step, not the 1000 bytes the quota has left.
        self.assertEqual([10], seen)

    def test_section_8_only_images_with_data_count(self):
        self.add_image(size=60)
        self.add_image(size=60, status='deactivated')
        for status in ('queued', 'saving', 'killed', 'deleted', 'uploading'):
            self.add_image(size=1000, status=status)
        self.add_image(size=1000, owner='p2')
        self.build(user_storage_quota='130')
        self.assertEqual(204, self.send(b'z' * 10).status_int)
        self.assertRefused(self.send(b'z' * 11), row13(11, 10))

    def test_section_8_uploads_in_progress_count(self):
        self.build(user_storage_quota='100')
        answers = []
        second = lambda: answers.append(self.send(b'b' * 41))  # noqa: E731
        self.build(ImageApp(during=second), user_storage_quota='100')
        resp = self.send(b'a' * 60)
        self.assertEqual(204, resp.status_int)
        self.assertRefused(answers[0], row13(41, 40))

    def test_section_8_live_reservations_of_other_nodes_count(self):
        self.add_reservation(size=30)
        self.build(user_storage_quota='100')
        self.assertRefused(self.send(b'z' * 71), row13(71, 70))
        self.assertEqual(204, self.send(b'z' * 70).status_int)

    def test_an_image_recorded_while_its_reservation_lives_counts_once(self):
        # The app records the image active a moment before its upload's
        # reservation ends: charged by its reservation alone meanwhile.
        image_id = self.add_image(size=30)
        self.add_reservation(size=30, image_id=image_id)
        self.build(user_storage_quota='100')
        self.assertRefused(self.send(b'z' * 71), row13(71, 70))
        self.assertEqual(204, self.send(b'z' * 70).status_int)

    def test_a_reservation_larger_than_its_recorded_image_counts_whole(self):
        image_id = self.add_image(size=10)
        self.add_reservation(size=30, image_id=image_id)
        self.build(user_storage_quota='100')
        self.assertRefused(self.send(b'z' * 71), row13(71, 70))

    def test_expired_reservations_never_count_and_are_deleted(self):
        self.add_reservation(size=100, expires_in=-1)
        self.build(user_storage_quota='100')
        self.assertEqual(204, self.send(b'z' * 100).status_int)
        self.assertEqual([], self.reservation_rows())

    def test_the_image_owner_is_charged_with_its_limit(self):
        self.add_image(owner='owner', size=50)
        self.build(ImageApp(owner='owner'), user_storage_quota='1GB',
                   project_storage_quota='owner:60, other:0')
        self.assertRefused(self.send(b'z' * 11, project='admin'),
                           row13(11, 10))

    def test_an_unannounced_record_is_never_looked_up(self):
        # An app that reads without announcing is charged as in front of
        # Glance: the caller's project, whatever the environ holds.
        self.build(ImageApp(owner='owner', announce='never'),
                   user_storage_quota='1GB',
                   project_storage_quota='owner:1GB, admin:5')
        self.assertRefused(self.send(b'z' * 11, project='admin'),
                           row13(11, 5))

    def test_a_late_announcement_charges_the_caller_and_says_so(self):
        log = self.useFixture(fixtures.FakeLogger(
            name=quota_filter.__name__))
        self.build(ImageApp(owner='owner', announce='late', chunk_size=4),
                   user_storage_quota='1GB',
                   project_storage_quota='owner:5')
        self.assertEqual(204, self.send(b'z' * 11, project='admin')
                         .status_int)
        self.assertIn('Image %s was announced after its first read: '
                      'charged to project admin, not to its owner owner'
                      % IMAGE_ID, log.output)

    def test_an_announcement_of_the_callers_own_image_is_quiet(self):
        log = self.useFixture(fixtures.FakeLogger(
            name=quota_filter.__name__))
        self.build(ImageApp(owner='p1', announce='late', chunk_size=4),
                   user_storage_quota='1GB')
        self.assertEqual(204, self.send(b'z' * 11).status_int)
        self.assertEqual('', log.output)

    def test_without_a_published_owner_the_caller_is_charged(self):
        self.build(ImageApp(owner=None), user_storage_quota='1GB',
                   project_storage_quota='p9:5')
        self.assertRefused(self.send(b'z' * 6, project='p9'), row13(6, 5))

    def test_a_zero_quota_is_unlimited(self):
        self.add_image(size=10 * MiB)
        self.build(user_storage_quota='0')
        self.assertEqual(204, self.send(b'z' * 100).status_int)

    def test_a_project_override_of_zero_is_unlimited(self):
        self.build(user_storage_quota='10', project_storage_quota='p1:0')
        self.assertEqual(204, self.send(b'z' * 100).status_int)

    def test_stage_quota_does_not_limit_uploads(self):
        self.build(user_stage_quota='1')
        self.assertEqual(204, self.send(b'z' * 100).status_int)


class TestReservationLifetime(FilterTest):

    def test_reservation_is_held_while_the_body_streams(self):
        seen = []
        self.build(ImageApp(during=lambda: seen.extend(
            self.reservation_rows())), user_storage_quota='1GB')
        self.assertEqual(204, self.send(b'a' * 60).status_int)
        self.assertEqual(1, len(seen))
        self.assertEqual(('p1', IMAGE_ID, 'upload', 60),
                         (seen[0]['project_id'], seen[0]['image_id'],
                          seen[0]['kind'], seen[0]['size']))
        self.assertEqual([], self.reservation_rows())

    def test_contract_3_8_no_decision_before_the_app_opens_the_body(self):
        self.build(ImageApp(refuse=webob.exc.HTTPNotFound()),
                   user_storage_quota='1')
        resp = self.send(b'a' * 60)
        self.assertEqual(404, resp.status_int)
        self.assertEqual([], self.reservation_rows())

    def test_released_when_the_app_fails(self):
        class Broken(ImageApp):
            def _read_all(self, wsgi_input):
                wsgi_input.read(4)
                raise RuntimeError('store broke')
        self.build(Broken(), user_storage_quota='1GB')
        self.assertRaises(RuntimeError, self.send, b'a' * 60)
        self.assertEqual([], self.reservation_rows())

    def test_held_until_the_server_closes_a_response_of_an_unread_body(self):
        class Partial(ImageApp):
            def _read_all(self, wsgi_input):
                self.received = wsgi_input.read(4)
        self.build(Partial(), user_storage_quota='1GB')
        req = fakes.upload_request(body=b'a' * 10,
                                   path='/v2/images/%s/file' % IMAGE_ID)
        req.environ[keys.SIZE] = 10
        req.environ[keys.CONTEXT] = oslo_context.RequestContext(
            project_id='p1')
        app_iter = self.middleware(req.environ, lambda *args: None)
        self.assertEqual([10], [row['size'] for row in
                                self.reservation_rows()])
        app_iter.close()
        self.assertEqual([], self.reservation_rows())
        app_iter.close()

    def test_app_that_catches_everything_still_answers_413(self):
        self.build(ImageApp(catch=True), user_storage_quota='5',
                   stream_errors='ioerror')
        self.assertRefused(self.send(b'a' * 6), row13(6, 5))
        self.assertIsInstance(self.app.failed, IOError)

    def test_an_expired_reservation_is_taken_again_when_it_fits(self):
        def expire():
            with self.engine.begin() as connection:
                connection.execute(schema.reservations.delete())
        self.build(ImageApp(during=expire, chunk_size=10),
                   user_storage_quota='100')
        self.middleware.enforcement.refresh = 0
        self.assertEqual(204, self.send(b'a' * 60).status_int)
        self.assertEqual([], self.reservation_rows())

    def test_an_expired_reservation_that_no_longer_fits_is_413(self):
        def expire_and_take():
            with self.engine.begin() as connection:
                connection.execute(schema.reservations.delete())
            self.add_reservation(size=50)
        self.build(ImageApp(during=expire_and_take, chunk_size=10),
                   user_storage_quota='100')
        self.middleware.enforcement.refresh = 0
        self.assertRefused(self.send(b'a' * 60), row13(60, 50))

    def test_database_unreachable_is_503(self):
        self.build(user_storage_quota='1GB',
                   quota_connection='postgresql+psycopg2://nobody@'
                   '127.0.0.1:1/none')
        self.assertRefused(self.send(b'a'), 'Image registry is unavailable.',
                           503)


class TestUploadCountAndStage(FilterTest):

    def test_count_limit_of_n_allows_n(self):
        answers = []
        third = lambda: answers.append(self.send(b'c'))  # noqa: E731
        second_app = ImageApp(during=third)
        self.build(second_app, user_uploading_quota='2')
        inner = self.middleware
        second = lambda: answers.append(  # noqa: E731
            self.send(b'b', middleware=inner))
        self.build(ImageApp(during=second), user_uploading_quota='2')
        self.assertEqual(204, self.send(b'a').status_int)
        # The third ended (refused) while the second was reading.
        self.assertEqual([413, 204], [resp.status_int for resp in answers])
        self.assertEqual(count_refusal('p1', 2, 3), message(answers[0]))

    def test_importing_images_count_as_uploads(self):
        self.add_image(status='importing', size=5)
        self.build(user_uploading_quota='1')
        self.assertRefused(self.send(b'a'), count_refusal('p1', 1, 2))

    def test_stage_checks_image_stage_total(self):
        self.add_image(status='uploading', size=60)
        self.add_image(status='active', size=10 ** 6)
        self.build(user_stage_quota='100', user_storage_quota='1')
        self.assertEqual(204, self.send(b's' * 40, route='stage').status_int)
        self.assertRefused(self.send(b's' * 41, route='stage'),
                           row13(41, 40))

    def test_stage_in_progress_counts_in_stage_total_only(self):
        answers = []
        inner = self.build(user_stage_quota='100', user_storage_quota='100')

        def during():
            answers.append(self.send(b'f' * 90, middleware=inner))
            answers.append(self.send(b's' * 41, route='stage',
                                     middleware=inner))
        self.build(ImageApp(during=during), user_stage_quota='100',
                   user_storage_quota='100')
        self.assertEqual(204, self.send(b's' * 60, route='stage').status_int)
        self.assertEqual(204, answers[0].status_int)
        self.assertRefused(answers[1], row13(41, 40))

    def test_other_methods_and_paths_pass_through(self):
        self.build(user_storage_quota='1')
        for method, path in (('GET', '/v2/images/%s/file' % IMAGE_ID),
                             ('POST', '/v2/images'),
                             ('GET', '/nowhere')):
            req = webob.Request.blank(path, method=method)
            self.assertEqual(204, req.get_response(self.middleware).status_int)
        self.assertEqual([], self.reservation_rows())


class TestStandingAlone(FilterTest):
    """Behind Glance's context filter alone, no size filter."""

    def send_bare(self, body=b'', chunked=False, headers=None,
                  context=None):
        """An upload as Glance's context filter hands it on."""
        req = fakes.upload_request(
            path='/v2/images/%s/file' % IMAGE_ID, body=body,
            chunked=chunked, headers=dict(
                {'Accept': 'application/json'}, **(headers or {})))
        if context is not None:
            # What Glance's ContextMiddleware does: req.context = ...
            req.context = context
        return req.get_response(self.middleware)

    def identity(self, project='p1', status='Confirmed'):
        return {'X-Identity-Status': status, 'X-Project-Id': project,
                'X-Roles': 'member'}

    def test_content_length_is_the_declared_size(self):
        self.build(ImageApp(owner=None), user_storage_quota='10')
        resp = self.send_bare(b'x' * 11, headers=self.identity())
        self.assertRefused(resp, row13(11, 10))
        self.assertEqual(b'', self.app.received)
        self.assertEqual(204, self.send_bare(
            b'x' * 10, headers=self.identity()).status_int)

    def test_the_image_size_header_is_the_declared_size(self):
        self.build(ImageApp(owner=None), user_storage_quota='10')
        headers = dict(self.identity(), **{'x-openstack-image-size': '11'})
        resp = self.send_bare(b'x' * 3, chunked=True, headers=headers)
        self.assertRefused(resp, row13(11, 10))
        self.assertEqual(b'', self.app.received)

    def test_a_body_beyond_its_declared_size_is_still_limited(self):
        self.build(ImageApp(owner=None, chunk_size=1),
                   user_storage_quota='10', reservation_increment='1')
        headers = dict(self.identity(), **{'x-openstack-image-size': '4'})
        resp = self.send_bare(b'x' * 12, chunked=True, headers=headers)
        self.assertRefused(resp, row13(11, 10))
        self.assertEqual(b'x' * 10, self.app.received)

    def test_an_unknown_size_is_reserved_as_it_arrives(self):
        self.build(ImageApp(owner=None, chunk_size=1),
                   user_storage_quota='10', reservation_increment='1')
        resp = self.send_bare(b'x' * 12, chunked=True,
                              headers=self.identity())
        self.assertRefused(resp, row13(11, 10))
        self.assertEqual(b'x' * 10, self.app.received)
        self.assertEqual([], self.reservation_rows())

    def test_the_project_of_glance_context_is_charged(self):
        self.build(ImageApp(owner=None), user_storage_quota='1GB',
                   project_storage_quota='p9:5')
        resp = self.send_bare(b'z' * 6, context=oslo_context.RequestContext(
            project_id='p9'))
        self.assertRefused(resp, row13(6, 5))

    def test_the_identity_headers_project_is_charged(self):
        self.build(ImageApp(owner=None), user_storage_quota='1GB',
                   project_storage_quota='p9:5')
        resp = self.send_bare(b'z' * 6, headers=self.identity('p9'))
        self.assertRefused(resp, row13(6, 5))

    def test_tenant_id_when_no_project_id(self):
        self.build(ImageApp(owner=None), user_storage_quota='1GB',
                   project_storage_quota='p9:5')
        resp = self.send_bare(b'z' * 6, headers={
            'X-Identity-Status': 'Confirmed', 'X-Tenant-Id': 'p9'})
        self.assertRefused(resp, row13(6, 5))

    def test_unconfirmed_identity_is_not_charged(self):
        self.build(ImageApp(owner=None), user_storage_quota='5')
        resp = self.send_bare(b'z' * 6, headers=self.identity(
            'p1', status='Invalid'))
        self.assertEqual(204, resp.status_int)
        self.assertEqual([], self.reservation_rows())

    def test_imgmw_context_wins_over_the_headers(self):
        self.build(ImageApp(owner=None), user_storage_quota='1GB',
                   project_storage_quota='p9:5')
        req = fakes.upload_request(
            path='/v2/images/%s/file' % IMAGE_ID, body=b'z' * 6,
            headers=dict(self.identity('p1'), Accept='application/json'))
        req.environ[keys.CONTEXT] = oslo_context.RequestContext(
            project_id='p9')
        self.assertRefused(req.get_response(self.middleware), row13(6, 5))

    def test_no_context_filter_at_all_is_a_500_naming_it(self):
        self.build()
        resp = self.send_bare(b'z')
        self.assertEqual(500, resp.status_int)
        self.assertIn('context', resp.text)
        self.assertFalse(self.app.called)


class TestImport(FilterTest):
    """The storage quota of an import (contract 3.13)."""

    def reserve(self, size, project='p1'):
        req = webob.Request.blank('/v2/images/%s/import' % IMAGE_ID,
                                  method='POST')
        req.get_response(self.middleware)
        reserve = self.app.calls[-1][keys.QUOTA_IMPORT]
        return reserve(project, IMAGE_ID, size)

    def test_an_import_over_the_storage_quota_is_413(self):
        self.add_image(size=60)
        self.build(user_storage_quota='100')
        err = self.assertRaises(webob.exc.HTTPRequestEntityTooLarge,
                                self.reserve, 41)
        self.assertIn(row13(41, 40), str(err))
        self.assertEqual([], self.reservation_rows())

    def test_an_import_that_fits_is_held_until_released(self):
        self.add_image(size=60)
        self.build(user_storage_quota='100')
        release = self.reserve(40)
        self.assertEqual([40], [row['size']
                                for row in self.reservation_rows()])
        self.assertRefused(self.send(b'z'), row13(1, 0))
        release()
        self.assertEqual([], self.reservation_rows())

    def test_images_being_imported_count_as_stored(self):
        self.add_image(size=60, status='importing')
        self.build(user_storage_quota='100')
        self.assertRefused(self.send(b'z' * 41), row13(41, 40))


class TestOneUploadPerImage(FilterTest):
    """one_upload_per_image: contract 3.12 before the app."""

    def test_a_second_upload_to_the_image_is_409_before_the_app(self):
        answers = []

        def second():
            if not answers:
                answers.append(self.send(b'b' * 8))
        self.build(ImageApp(during=second, chunk_size=4),
                   one_upload_per_image='true', user_storage_quota='1GB')
        self.assertEqual(204, self.send(b'a' * 12).status_int)
        self.assertRefused(answers[0], 'Image status transition from '
                           'saving to saving is not allowed', status=409)
        self.assertEqual(1, len(self.app.calls))
        self.assertEqual([], self.reservation_rows())
        # Once the first is over, the next one passes.
        self.assertEqual(204, self.send(b'c' * 8).status_int)

    def test_the_claim_counts_as_the_upload_reservation(self):
        seen = []
        self.build(ImageApp(during=lambda: seen.extend(
            self.reservation_rows())), one_upload_per_image='true',
            user_storage_quota='1GB')
        self.assertEqual(204, self.send(b'a' * 60).status_int)
        self.assertEqual([(reservations.claim_id(IMAGE_ID), 60)],
                         [(row['id'], row['size']) for row in seen])

    def test_the_claim_is_released_when_the_app_reads_nothing(self):
        self.build(ImageApp(refuse=webob.exc.HTTPNotFound()),
                   one_upload_per_image='true')
        resp = self.send(b'a')
        self.assertEqual(404, resp.status_int)
        self.assertEqual(1, len(self.reservation_rows()))
        resp.body  # The server reads the answer and closes it.
        self.assertEqual([], self.reservation_rows())

    def test_an_expired_claim_does_not_block(self):
        self.build(one_upload_per_image='true', user_storage_quota='1GB')
        now = reservations.utcnow()
        with self.engine.begin() as connection:
            connection.execute(schema.reservations.insert().values(
                id=reservations.claim_id(IMAGE_ID), project_id='p1',
                image_id=IMAGE_ID, kind=schema.UPLOAD, size=0,
                holder='dead:1:1', created_at=now,
                expires_at=now - datetime.timedelta(seconds=1)))
        self.assertEqual(204, self.send(b'a').status_int)

    def test_off_by_default_the_app_decides(self):
        answers = []

        def second():
            if not answers:
                answers.append(None)
                answers.append(self.send(b'b' * 8))
        self.build(ImageApp(during=second, chunk_size=4),
                   user_storage_quota='1GB')
        self.assertEqual(204, self.send(b'a' * 12).status_int)
        self.assertEqual(204, answers[1].status_int)


class TestUsageInfo(FilterTest):
    """GET /v2/info/usage: the app answers, the filter lends its figures.

    Contract section 8.
    """

    def usage(self, method='GET', project='p1'):
        req = webob.Request.blank('/v2/info/usage', method=method)
        req.environ[keys.CONTEXT] = oslo_context.RequestContext(
            project_id=project)
        resp = req.get_response(self.middleware)
        self.assertEqual(204, resp.status_int)
        self.assertTrue(self.app.called)
        return self.app.calls[-1][keys.QUOTA_USAGE]

    def test_static_limits_and_usage_in_glance_units(self):
        self.add_image(size=3 * MiB + 5)
        self.add_image(status='uploading', size=2 * MiB)
        self.add_reservation(size=MiB)
        self.add_reservation(size=MiB, kind=schema.STAGE)
        self.build(user_storage_quota='10GB', user_stage_quota='1GB',
                   project_uploading_quota='p1:4')
        self.assertEqual({
            'image_size_total': {'usage': 4, 'limit': 10240},
            'image_count_uploading': {'usage': 2, 'limit': 4},
            'image_stage_total': {'usage': 3, 'limit': 1024}},
            self.usage()('p1'))

    def test_unlimited_is_minus_one(self):
        self.build()
        self.assertEqual(
            {resource: {'usage': 0, 'limit': -1}
             for resource in resources.RESOURCES},
            self.usage()('p1'))

    def test_registry_unreachable_is_503(self):
        self.build()
        report = self.usage()
        self.middleware.store.url = (
            'postgresql+psycopg2://nobody@127.0.0.1:9/none')
        self.middleware.store._engine = None
        err = self.assertRaises(webob.exc.HTTPServiceUnavailable, report,
                                'p1')
        self.assertIn('Image registry is unavailable.', str(err))

    def test_only_published_on_its_path(self):
        self.build()
        self.send(b'a')
        self.assertNotIn(keys.QUOTA_USAGE, self.app.calls[-1])


class TestKeystoneLimits(FilterTest):
    """limit_source = keystone, with oslo.limit's own LimitFixture."""

    def setUp(self):
        super().setUp()
        self.useFixture(
            fixtures.MockPatchObject(keystone_limits, '_applied', {}))
        self.addCleanup(self.clear_oslo_limit)
        self.tempdir = self.useFixture(fixtures.TempDir()).path

    def clear_oslo_limit(self):
        for name in keystone_limits._applied:
            keystone_limits.oslo_limit.CONF.clear_override(
                name, group=limits.GROUP)

    def paste_file(self, section='[oslo_limit]\nendpoint_id = e1\n'):
        path = os.path.join(self.tempdir, 'api-paste.ini')
        with open(path, 'w') as out:
            out.write('[DEFAULT]\ndatabase_connection = %s\n\n%s'
                      % (self.database.url, section))
        return path

    def build_keystone(self, reglimits, projlimits=None, app=None, **conf):
        self.useFixture(limit_fixture.LimitFixture(reglimits,
                                                   projlimits or {}))
        return self.build(app, {'__file__': self.paste_file(),
                                'here': self.tempdir},
                          limit_source='keystone', **conf)

    def test_limits_in_mib_with_usage_plus_delta_equal_passing(self):
        self.add_image(size=MiB)
        self.build_keystone({'image_size_total': 2,
                             'image_count_uploading': -1,
                             'image_stage_total': -1})
        self.assertEqual(204, self.send(b'k' * MiB).status_int)
        self.assertRefused(self.send(b'k' * (MiB + 1)),
                           row13(MiB + 1, MiB))

    def test_project_limit_overrides_the_registered_one(self):
        self.build_keystone({'image_size_total': 0,
                             'image_count_uploading': -1},
                            {'p1': {'image_size_total': 1}})
        self.assertEqual(204, self.send(b'k' * MiB).status_int)

    def test_a_resource_without_registered_limit_allows_nothing(self):
        self.build_keystone({'image_size_total': -1})
        self.assertRefused(self.send(b'k'), count_refusal('p1', 0, 1))

    def test_count_limit_of_zero_blocks_uploads(self):
        self.build_keystone({'image_size_total': -1,
                             'image_count_uploading': 0})
        self.assertRefused(self.send(b'k'), count_refusal('p1', 0, 1))

    def test_usage_info_reports_keystone_limits(self):
        self.build_keystone({'image_size_total': 100,
                             'image_count_uploading': 3},
                            {'p1': {'image_stage_total': 7}})
        req = webob.Request.blank('/v2/info/usage')
        req.get_response(self.middleware)
        report = self.app.calls[-1][keys.QUOTA_USAGE]
        self.assertEqual({
            'image_size_total': {'usage': 0, 'limit': 100},
            'image_count_uploading': {'usage': 0, 'limit': 3},
            'image_stage_total': {'usage': 0, 'limit': 7}}, report('p1'))

    def test_oslo_limit_settings_reach_oslo_limit(self):
        self.build_keystone({'image_size_total': -1})
        self.assertEqual(
            'e1', keystone_limits.oslo_limit.CONF.oslo_limit.endpoint_id)

    def test_settings_from_an_oslo_config_file(self):
        with open(os.path.join(self.tempdir, 'glance-api.conf'), 'w') as f:
            f.write('[oslo_limit]\nendpoint_id = e2\nauth_type = password\n'
                    'username = glance\n')
        conf, opts = keystone_limits.oslo_limit_conf(
            config_file=os.path.join(self.tempdir, 'glance-api.conf'))
        self.assertEqual('e2', conf.oslo_limit.endpoint_id)
        self.assertEqual('glance', conf.oslo_limit.username)

    def test_unknown_oslo_limit_key_stops_start_up(self):
        err = self.assertRaises(
            config.ConfigError, quota_filter.filter_factory,
            {'__file__': self.paste_file('[oslo_limit]\nendpiont_id = x\n')},
            limit_source='keystone')
        self.assertIn('endpiont_id', str(err))

    def test_keystone_without_oslo_limit_settings_stops_start_up(self):
        err = self.assertRaises(
            config.ConfigError, quota_filter.filter_factory,
            {'__file__': self.paste_file('')}, limit_source='keystone')
        self.assertIn('[oslo_limit]', str(err))

    def test_keystone_unreachable_is_503(self):
        def unreachable():
            raise limit_exceptions.SessionInitError('no keystone')
        self.build(limit_source='static')
        self.middleware.limits = keystone_limits.KeystoneLimits(
            enforcer_factory=unreachable)
        self.assertRefused(self.send(b'k'), 'Quota limits are unavailable.',
                           503)
        self.assertEqual([], self.reservation_rows())

    def test_enforcer_is_renewed_after_the_cache_time(self):
        made = []
        now = [0.0]

        class Enforcer:
            def get_project_limits(self, project_id, names):
                return [(name, len(made)) for name in names]
        source = keystone_limits.KeystoneLimits(
            cache_time=60, clock=lambda: now[0],
            enforcer_factory=lambda: made.append(1) or Enforcer())
        self.assertEqual(MiB, source.for_project('p').image_size_total)
        now[0] = 59
        self.assertEqual(MiB, source.for_project('p').image_size_total)
        now[0] = 60
        self.assertEqual(2, source.for_project('p').image_count_uploading)


class TestConfiguration(testtools.TestCase):

    def test_project_overrides(self):
        parse = limits.project_limits(config.byte_size)
        self.assertEqual({'a': 10 << 30, 'b:c': 0},
                         parse('x', 'a:10GB, b:c:0'))
        for bad in ('a', ':5', 'a:5, a:6', 'a:5XB'):
            self.assertRaises(config.ConfigError, parse, 'x', bad)

    def test_unknown_option_stops_start_up(self):
        err = self.assertRaises(config.ConfigError,
                                quota_filter.filter_factory, {},
                                user_storage_qouta='1GB')
        self.assertIn('user_storage_qouta', str(err))

    def test_static_limits(self):
        source = limits.StaticLimits(
            {resources.IMAGE_SIZE_TOTAL: 100, resources.IMAGE_STAGE_TOTAL: 0},
            {resources.IMAGE_SIZE_TOTAL: {'p2': 0, 'p3': 5}})
        self.assertEqual(limits.ProjectLimits(100, None, None),
                         source.for_project('p1'))
        self.assertEqual(limits.ProjectLimits(None, None, None),
                         source.for_project('p2'))
        self.assertEqual(5, source.for_project('p3').image_size_total)

    def test_default_database_is_the_registry_in_state_dir(self):
        tempdir = self.useFixture(fixtures.TempDir()).path
        self.assertEqual(
            'sqlite:///%s/state/imgmw.sqlite' % tempdir,
            quota_filter.database_url({'state_dir': tempdir + '/state'}))
        self.assertEqual('postgresql://q', quota_filter.database_url(
            {'database_connection': 'postgresql://d',
             'quota_connection': 'postgresql://q'}))

    def test_paste_deploy_loads_the_entry_point(self):
        tempdir = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tempdir, 'paste.ini')
        with open(path, 'w') as out:
            out.write('[DEFAULT]\nstate_dir = %s\n\n[filter:quota]\n'
                      'use = egg:imgmw#quota\nuser_storage_quota = 1GB\n'
                      'project_storage_quota = p2:2MB\n' % tempdir)
        make_filter = paste.deploy.loadfilter('config:' + path, name='quota')
        middleware = make_filter(fakes.RecordingApp())
        self.assertIsInstance(middleware, quota_filter.QuotaMiddleware)
        self.assertEqual(limits.ProjectLimits(2 * MiB, None, None),
                         middleware.limits.for_project('p2'))


class StoreConcurrency:
    """Parallel reservations on one project never exceed its limit."""

    def test_parallel_reservations_never_exceed_the_limit(self):
        stores = [reservations.ReservationStore(self.database.url)
                  for _ in range(2)]
        for store in stores:
            self.addCleanup(store.dispose)
        project_limits = limits.ProjectLimits(image_size_total=10)
        granted = []
        refused = []
        barrier = threading.Barrier(8)

        def upload(index):
            res = reservations.Reservation('p1', str(uuid.uuid4()))
            barrier.wait()
            try:
                stores[index % 2].reserve(res, 3, 3, project_limits)
                granted.append(res)
            except reservations.OverLimit:
                refused.append(index)
        threads = [threading.Thread(target=upload, args=(index,))
                   for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(3, len(granted))
        self.assertEqual(5, len(refused))
        self.assertEqual(9, stores[0].usage('p1').image_size_total)
        for res in granted:
            stores[0].release(res)
        self.assertEqual(0, stores[1].usage('p1').image_size_total)

    def test_steps_ahead_only_far_from_the_limit(self):
        store = reservations.ReservationStore(self.database.url)
        self.addCleanup(store.dispose)
        project_limits = limits.ProjectLimits(image_size_total=40)
        res = reservations.Reservation('p1', IMAGE_ID)
        # 40 bytes left: room for this step and one of another upload.
        self.assertEqual(8, store.reserve(res, 0, 8, project_limits))
        self.assertEqual(17, store.reserve(res, 9, 17, project_limits))
        # 10 left past 30: no room for two steps of 8 more; exactly what
        # is needed, never what is left.
        self.assertEqual(30, store.reserve(res, 30, 38, project_limits))
        self.assertEqual(40, store.reserve(res, 40, 48, project_limits))
        over = self.assertRaises(reservations.OverLimit, store.reserve,
                                 res, 41, 49, project_limits)
        self.assertEqual((40, 0, 41), (over.limit, over.usage,
                                       over.requested))
        # Refused: its upload fails, its bytes are free at once.
        self.assertFalse(res.held)
        self.assertEqual(0, store.usage('p1').image_size_total)

    def test_a_refused_upload_frees_its_bytes_for_the_others(self):
        store = reservations.ReservationStore(self.database.url)
        self.addCleanup(store.dispose)
        project_limits = limits.ProjectLimits(image_size_total=10)
        first = reservations.Reservation('p1', 'first')
        second = reservations.Reservation('p1', 'second')
        self.assertEqual(6, store.reserve(first, 6, 6, project_limits))
        self.assertEqual(4, store.reserve(second, 4, 4, project_limits))
        self.assertRaises(reservations.OverLimit, store.reserve, first, 7,
                          7, project_limits)
        self.assertEqual(9, store.reserve(second, 9, 9, project_limits))
        self.assertEqual(9, store.usage('p1').image_size_total)

    def test_other_uploads_in_progress_leave_no_room_for_steps(self):
        store = reservations.ReservationStore(self.database.url)
        self.addCleanup(store.dispose)
        project_limits = limits.ProjectLimits(image_size_total=40)
        other = reservations.Reservation('p1', 'other')
        self.assertEqual(0, store.reserve(other, 0, 0, project_limits))
        res = reservations.Reservation('p1', IMAGE_ID)
        # 40 left: alone, room for this step of 14 and another (28); with
        # another upload in progress, room needed for three (42).
        self.assertEqual(0, store.reserve(res, 0, 14, project_limits))
        self.assertEqual(15, store.reserve(res, 15, 29, project_limits))
        store.release(other)
        self.assertEqual(24, store.reserve(res, 16, 24, project_limits))


class TestStoreConcurrency(StoreConcurrency, DatabaseTest):
    pass


class TestStoreHolder(DatabaseTest):
    """The holder a reservation names, which recovery declares dead."""

    def holders_of_rows(self):
        return [row['holder'] for row in self.reservation_rows()]

    def test_the_holder_is_the_process_that_writes(self):
        # A server that builds the filter before it forks its workers
        # (uWSGI without lazy-apps, Glance's own): each worker writes its
        # own holder, the one the data app records.
        store = reservations.ReservationStore(self.database.url)
        self.addCleanup(store.dispose)
        self.useFixture(fixtures.MockPatch(
            'imgmw.holders.holder_id', return_value='worker:2:3.00'))
        store.reserve(reservations.Reservation('p1', IMAGE_ID), 5, 5,
                      limits.ProjectLimits())
        self.assertEqual(['worker:2:3.00'], self.holders_of_rows())

    def test_the_app_and_the_store_name_one_holder(self):
        # Recovery declares one holder dead for both its images and its
        # reservations.
        image_id = self.add_image(status='queued')
        saving = self.registry.transition(image_id, 'queued', 'saving')
        store = reservations.ReservationStore(self.database.url)
        self.addCleanup(store.dispose)
        store.reserve(reservations.Reservation('p1', image_id), 5, 5,
                      limits.ProjectLimits())
        self.assertEqual([saving['holder']], self.holders_of_rows())

    def test_an_injected_holder_names_the_rows_recovery_releases(self):
        store = reservations.ReservationStore(
            self.database.url, holder=lambda: 'node:7:1.00')
        self.addCleanup(store.dispose)
        store.reserve(reservations.Reservation('p1', IMAGE_ID), 5, 5,
                      limits.ProjectLimits())
        self.assertEqual(['node:7:1.00'], self.holders_of_rows())
        with self.engine.begin() as connection:
            self.assertEqual({'node:7:1.00'},
                             reservations.holders(connection))
            reservations.release_held(connection, 'node:7:1.00')
        self.assertEqual([], self.holders_of_rows())
