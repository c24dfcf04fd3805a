"""The environ contract: how imgmw's filters and data app talk to each other.

Filters never call each other. Each publishes what it learned in one key of
the WSGI environ, and whoever needs that fact reads the key. This module is
the one place those keys are defined; import the constants, never spell the
strings. A reader that finds a key missing raises
:class:`imgmw.errors.MissingFilter`, naming the filter that should have set
it, so a mis-assembled pipeline fails loudly at the first request instead of
guessing. No key is ever filled from a client header that carries the same
meaning.

====================  ========  ================  =============================
key                   set by    read by           holds
====================  ========  ================  =============================
``imgmw.context``     context   quota, the data   the caller's
                                app               ``RequestContext``
                                                  (oslo.context)
``imgmw.authorize``   context   the data app      ``authorize(action,
                                                  target)``: returns, or raises
                                                  ``HTTPForbidden``
``imgmw.store``       stores    the data app      the store id chosen for this
                                                  upload or import, or ``None``
                                                  when multi-store is off
``imgmw.size``        size      quota, checksum,  the declared body size in
                                inspect           bytes
                                                  (``x-openstack-image-size``,
                                                  else ``Content-Length``), or
                                                  ``None`` when unknown;
                                                  checksum and inspect bound
                                                  their proxies by it
                                                  (``streams.body_length``)
``imgmw.digests``     checksum  the data app      a ``hashing.Digests``:
                                                  ``os_hash_algo``, and ``md5``
                                                  and ``os_hash_value`` (hex)
                                                  once the body has been read
                                                  to its end (earlier they
                                                  raise ``DigestsNotReady``),
                                                  and ``blocks``, the block
                                                  digests; the app records
                                                  them
``imgmw.image``       the data  quota, inspect    the image record the app is
                      app                         about to fill, as a dict
                                                  (``id``, ``owner``,
                                                  ``disk_format``,
                                                  ``container_format``,
                                                  ``status``), handed over by
                                                  ``streams.announce_image``
                                                  before the app's first read
                                                  of the body; the readers'
                                                  proxies receive it in
                                                  ``image_announced`` and
                                                  never look the key up
``imgmw.verified``    the data  checksum          ``True`` when the app
                      app                         verifies the body of this
                                                  download block by block as
                                                  it streams, cutting it at a
                                                  bad block (set before the
                                                  app returns its response):
                                                  checksum then does not hash
                                                  the body again
``imgmw.range``       download  download, the     the byte range of a download
                                data app          the filter validated (it
                                                  drops one a client set):
                                                  ``(first, last)``,
                                                  inclusive, within the image;
                                                  absent for the whole image
                                                  (the app ignores the
                                                  ``Range`` header)
``imgmw.inspection``  inspect   the data app      an ``Inspection`` of the
                                                  inspect filter: ``format``
                                                  and ``virtual_size`` (bytes,
                                                  or ``None``), final once
                                                  ``done`` (at end of stream,
                                                  before the app sees it)
``imgmw.framing``     chunked   chunked           the client's
                                                  ``Transfer-Encoding``, moved
                                                  out of
                                                  ``HTTP_TRANSFER_ENCODING``
                                                  by ``chunked.server_input``
                                                  when it put a body read
                                                  through uWSGI's API into
                                                  ``wsgi.input``; size, quota,
                                                  checksum, inspect and the
                                                  app read it through
                                                  ``chunked.
                                                  transfer_encoding``
``imgmw.usage``       quota     the data app      ``usage(project_id)``: the
                                                  project's figures of ``GET
                                                  /v2/info/usage``,
                                                  ``{resource: {"usage": U,
                                                  "limit": L}}`` in Glance's
                                                  units, or raises
                                                  ``HTTPServiceUnavailable``;
                                                  set on that path only; the
                                                  app answers it
``imgmw.reserve``     quota     the data app      ``reserve(project_id,
                                                  image_id, size)``: the
                                                  storage quota of an import
                                                  of ``size`` staged bytes;
                                                  returns ``release()``, to
                                                  call once the image is
                                                  ``importing`` (its bytes
                                                  then count as stored), or
                                                  raises the contract's 413
                                                  or 503; set on ``POST
                                                  .../import`` only
``imgmw.inspector``   inspect   the data app      ``scan(image)``: a ``Scan``
                                                  of the inspect filter, with
                                                  its options, that the app
                                                  feeds the staged data of
                                                  an import
                                                  (``eat(chunk)``) and asks
                                                  for the verdict
                                                  (``finish()``: an
                                                  ``Inspection``, or raises
                                                  ``StreamError`` with the
                                                  contract's 415); set on
                                                  ``POST .../import`` only
====================  ========  ================  =============================

:data:`PUBLISHER` and :data:`READERS` hold the same table for code, and a
unit test checks it against the uses of the constants in every module.

The body of an upload is only ever read by the data app (or the app behind
the filters). Filters that check it wrap ``environ['wsgi.input']`` with a
:class:`imgmw.streams.InputProxy` (see that module), after
:func:`imgmw.chunked.server_input` made it hold the whole body. Where that
moved a chunked body read through uWSGI's API into ``wsgi.input``, the
client's ``Transfer-Encoding`` is in ``imgmw.framing`` instead of
``HTTP_TRANSFER_ENCODING``: whoever needs the body's framing reads
:func:`imgmw.chunked.transfer_encoding`.
"""

CONTEXT = 'imgmw.context'
AUTHORIZE = 'imgmw.authorize'
STORE = 'imgmw.store'
SIZE = 'imgmw.size'
DIGESTS = 'imgmw.digests'
IMAGE = 'imgmw.image'
INSPECTION = 'imgmw.inspection'
TRANSFER_ENCODING = 'imgmw.framing'
BLOCKS_VERIFIED = 'imgmw.verified'
RANGE = 'imgmw.range'
QUOTA_USAGE = 'imgmw.usage'
QUOTA_IMPORT = 'imgmw.reserve'
IMPORT_INSPECT = 'imgmw.inspector'

#: Which filter publishes each key, for the messages of MissingFilter.
PUBLISHER = {
    CONTEXT: 'context',
    AUTHORIZE: 'context',
    STORE: 'stores',
    SIZE: 'size',
    DIGESTS: 'checksum',
    IMAGE: 'the data app',
    INSPECTION: 'inspect',
    TRANSFER_ENCODING: 'chunked',
    BLOCKS_VERIFIED: 'the data app',
    RANGE: 'download',
    QUOTA_USAGE: 'quota',
    QUOTA_IMPORT: 'quota',
    IMPORT_INSPECT: 'inspect',
}

#: Who reads each key (the table above); "the data app" is :mod:`imgmw.app`.
READERS = {
    CONTEXT: ('quota', 'the data app'),
    AUTHORIZE: ('the data app',),
    STORE: ('the data app',),
    SIZE: ('quota', 'checksum', 'inspect'),
    DIGESTS: ('the data app',),
    IMAGE: ('quota', 'inspect'),
    INSPECTION: ('the data app',),
    TRANSFER_ENCODING: ('chunked',),
    BLOCKS_VERIFIED: ('checksum',),
    RANGE: ('download', 'the data app'),
    QUOTA_USAGE: ('the data app',),
    QUOTA_IMPORT: ('the data app',),
    IMPORT_INSPECT: ('the data app',),
}


def require(environ: dict, key: str, reader: str):
    """Return ``environ[key]``, or raise MissingFilter naming its publisher.

    :param reader: who needs the key, for the message ("data app", "quota").
    """
    try:
        return environ[key]
    except KeyError:
        from imgmw import errors
        raise errors.MissingFilter(key, PUBLISHER.get(key, '?'), reader)
