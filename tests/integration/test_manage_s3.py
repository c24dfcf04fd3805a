"""imgmw-manage's sweep of an S3 store, against a moto server."""

import datetime
import uuid

from imgmw.app import api
from imgmw.app.stores import s3
from imgmw.cmd import manage
from tests import s3fixture
from tests.unit.cmd import test_manage


class TestSweepS3(test_manage.ManageTestCase):
    """The sweep of an s3 store: objects and unfinished multipart uploads."""

    def setUp(self):
        super().setUp()
        self.moto = self.useFixture(s3fixture.MotoServer())
        self.bucket = self.moto.make_bucket()
        self.store = s3.S3Store('cheap', self.moto.store_options(self.bucket))
        self.image_registry = self.registry()

    def put(self, key):
        self.moto.client.put_object(Bucket=self.bucket, Key=key, Body=b'x')

    def test_orphan_objects_and_uploads_are_removed(self):
        active = self.image_registry.create({})['id']
        self.put(active)
        self.image_registry.transition(active, 'queued', 'saving')
        self.image_registry.transition(active, 'saving', 'active', {
            'locations': [{'store': 'cheap',
                           'url': 's3://%s/%s' % (self.bucket, active)}]})
        orphan = str(uuid.uuid4())
        self.put(orphan)
        unfinished = str(uuid.uuid4())
        self.moto.client.create_multipart_upload(Bucket=self.bucket,
                                                 Key=unfinished)
        saving = self.image_registry.create({})['id']
        self.image_registry.transition(saving, 'queued', 'saving')
        self.moto.client.create_multipart_upload(Bucket=self.bucket,
                                                 Key=saving)
        store_set = api.StoreSet({'cheap': self.store}, 'cheap', True)
        lines = []
        dry = manage.sweep(self.image_registry, store_set,
                           datetime.timedelta(0), say=lines.append)
        self.assertEqual(
            sorted([(orphan, False), (unfinished, True)]),
            sorted((listed.image_id, listed.partial)
                   for _, listed in dry.orphans))
        self.assertEqual(sorted([active, orphan]),
                         self.moto.keys(self.bucket))
        result = manage.sweep(self.image_registry, store_set,
                              datetime.timedelta(0), apply=True,
                              say=lines.append)
        self.assertEqual((2, 0), (result.removed, result.failures))
        self.assertEqual([active], self.moto.keys(self.bucket))
        self.assertEqual([saving], self.moto.unfinished_uploads(self.bucket))
        self.assertIn('removed cheap s3://%s/%s (unfinished upload'
                      % (self.bucket, unfinished), '\n'.join(lines))

    def test_grace_period_uses_the_object_times(self):
        self.put(str(uuid.uuid4()))
        store_set = api.StoreSet({'cheap': self.store}, 'cheap', True)
        result = manage.sweep(self.image_registry, store_set,
                              datetime.timedelta(hours=1), apply=True,
                              say=lambda line: None)
        self.assertEqual([], result.orphans)
        self.assertEqual(1, len(self.moto.keys(self.bucket)))
