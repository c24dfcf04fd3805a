"""imgmw's own service under uWSGI: chunked uploads through every filter.

uWSGI (from the Glance virtualenv of :mod:`tests.glancefixture`, which holds
imgmw and what its service needs) serves ``imgmw.wsgi:application`` with
the ``noauth`` pipeline of ``etc/api-paste.ini``, configured as devstack
configures uWSGI for an OpenStack API (the server settings of
:mod:`tests.glancefixture`). A chunked body is not in
``wsgi.input`` there; :mod:`imgmw.chunked` moves it in before the pipeline,
and the size, quota, checksum and inspect filters and the data app read it
through there. Without the virtualenv (``tox -e py3``) the class is
skipped, saying so.
"""

import hashlib
import os

from tests import dbfixture
from tests.functional import base
from tests import glancefixture

UWSGI_INI = glancefixture.UWSGI_SERVER + """\
module = imgmw.wsgi:application
virtualenv = %(venv)s
env = IMGMW_CONFIG_FILE=%(config_file)s
env = IMGMW_PIPELINE=%(pipeline)s
env = IMGMW_STATE_DIR=%(state_dir)s
"""


class UwsgiApiServer(base.ApiServer):
    """:class:`tests.functional.base.ApiServer`, served by uWSGI.

    The registry is named in the paste file's ``[DEFAULT]``, as
    ``imgmw.wsgi`` takes no override.
    """

    def command(self):
        with open(self.config_file) as paste:
            text = paste.read()
        text = text.replace('[DEFAULT]\n', '[DEFAULT]\ndatabase_connection = '
                            '%s\n' % self.database_url, 1)
        with open(self.config_file, 'w') as paste:
            paste.write(text)
        venv = glancefixture.glance_venv()
        ini = os.path.join(self.tempdir, 'uwsgi.ini')
        with open(ini, 'w') as conf:
            conf.write(UWSGI_INI % {
                'venv': venv, 'config_file': self.config_file,
                'pipeline': self.pipeline, 'state_dir': self.state_dir,
                'port': self.port})
        return [os.path.join(venv, 'bin', 'uwsgi'), '--ini', ini]


@glancefixture.needs_glance
class UwsgiImgmwTest(base.FunctionalTest):
    """Chunked and Content-Length uploads to imgmw under uWSGI."""

    @classmethod
    def setUpClass(cls) -> None:
        super(base.FunctionalTest, cls).setUpClass()
        cls.database = dbfixture.Database()
        cls.database.setUp()
        try:
            base.sync_database(cls.database.url)
            cls.server = UwsgiApiServer(cls.database.url)
            cls.server.setUp()
        except BaseException:
            cls.database.cleanUp()
            raise
        cls.registry = base.sa.create_engine(
            cls.database.url, poolclass=base.sa.pool.NullPool)

    def test_chunked_upload_in_1_mib_chunks_is_stored(self):
        data = os.urandom(3 * base.MiB + 5)
        for chunked in (False, True):
            image_id = self.create_image()['id']
            body = ([data[start:start + base.MiB]
                     for start in range(0, len(data), base.MiB)]
                    if chunked else data)
            resp = self.upload(image_id, body, chunked=chunked)
            self.assertEqual(204, resp.status_code, resp.text)
            self.assert_active_with(image_id, len(data),
                                    hashlib.md5(data).hexdigest(),
                                    hashlib.sha512(data).hexdigest())
            self.assertEqual(data, self.download(image_id).content)

    def test_chunked_body_longer_than_declared_refused(self):
        """Contract 3.14."""
        image_id = self.create_image()['id']
        resp = self.upload(image_id, [b'x' * 600, b'x' * 600], chunked=True,
                           headers={'x-openstack-image-size': '1000'})
        self.assert_error(resp, 400, 'Size exceeds')
        self.assert_failed_upload_left_nothing(image_id)

    def test_chunked_body_shorter_than_declared_refused(self):
        """Contract 3.15."""
        image_id = self.create_image()['id']
        resp = self.upload(image_id, [b'x' * 500, b'x' * 400], chunked=True,
                           headers={'x-openstack-image-size': '1000'})
        self.assert_error(resp, 400, 'expected 1000 bytes, got 900')
        self.assert_failed_upload_left_nothing(image_id)

    def test_empty_chunked_body_refused(self):
        """Contract 3.18."""
        image_id = self.create_image()['id']
        resp = self.upload(image_id, [], chunked=True)
        self.assertEqual(400, resp.status_code, resp.text)
        self.assert_failed_upload_left_nothing(image_id)

    def test_chunked_digest_mismatch_refused(self):
        """Contract 3.19."""
        image_id = self.create_image()['id']
        resp = self.upload(image_id, [b'abc', b'def'], chunked=True,
                           headers={'Content-MD5':
                                    hashlib.md5(b'other').hexdigest()})
        self.assert_error(resp, 400, 'md5 mismatch')
        self.assert_failed_upload_left_nothing(image_id)
