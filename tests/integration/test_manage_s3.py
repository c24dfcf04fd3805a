"""imgmw-manage's sweep and recovery of an S3 store, against a moto server."""

import datetime
import json
import uuid

from imgmw.app import api
from imgmw.app import registry
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

    def copying(self, holder):
        """An active image in ``fast``, its copy into ``cheap`` half-way.

        The copy's multipart upload is unfinished in the bucket; its
        task's id is the image's, reversed.
        """
        image_id = self.image_registry.create({})['id']
        self.image_registry.transition(image_id, 'queued', 'saving')
        self.image_registry.transition(image_id, 'saving', 'active', {
            'locations': [{'store': 'fast',
                           'url': 'file:///nowhere/%s' % image_id}]})
        self.image_registry.lock_for_copy(image_id, image_id[::-1],
                                          ['cheap'])
        self.image_registry.create_task({
            'id': image_id[::-1], 'image_id': image_id,
            'type': 'api_image_import', 'status': 'processing',
            'holder': holder, 'input': json.dumps({'backend': ['cheap']})})
        self.moto.client.create_multipart_upload(Bucket=self.bucket,
                                                 Key=image_id)
        return image_id

    def test_the_multipart_upload_of_a_live_copy_is_never_swept(self):
        live = self.copying(registry.holder_id())
        dead = self.copying(test_manage.DEAD_HOLDER)
        store_set = api.StoreSet({'cheap': self.store}, 'cheap', True)
        result = manage.sweep(self.image_registry, store_set,
                              datetime.timedelta(0), apply=True,
                              say=lambda line: None)
        self.assertEqual([dead], [listed.image_id
                                  for _, listed in result.orphans])
        self.assertEqual([live], self.moto.unfinished_uploads(self.bucket))

    def test_recover_aborts_the_multipart_upload_of_a_dead_copy(self):
        live = self.copying(registry.holder_id())
        dead = self.copying(test_manage.DEAD_HOLDER)
        store_set = api.StoreSet({'cheap': self.store}, 'cheap', True)
        lines = []
        manage.recover(self.image_registry, datetime.timedelta(hours=1),
                       store_set.remove_partial, lines.append, store_set)
        self.assertEqual([live], self.moto.unfinished_uploads(self.bucket))
        self.assertIn('%s: copy %s released, failed in cheap'
                      % (dead, dead[::-1]), '\n'.join(lines))
        self.assertEqual('cheap', self.image_registry.get(dead)[
            'properties'][registry.FAILED_PROPERTY])
