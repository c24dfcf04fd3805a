"""The environ contract: how imgmw's filters and data app talk to each other.

Filters never call each other. Each publishes what it learned in one key of
the WSGI environ, and whoever needs that fact reads the key. This module is
the one place those keys are defined; import the constants, never spell the
strings. A reader that finds a key missing raises
:class:`imgmw.errors.MissingFilter`, naming the filter that should have set
it, so a mis-assembled pipeline fails loudly at the first request instead of
guessing. No key is ever filled from a client header that carries the same
meaning.

=========================  ==============  ===================================
key                        set by          holds; read by
=========================  ==============  ===================================
``imgmw.context``          context         the caller's
                                           :class:`oslo_context.context.
                                           RequestContext`; read by stores,
                                           quota and the data app
``imgmw.authorize``        context         ``authorize(action, target)``:
                                           returns, or raises
                                           ``webob.exc.HTTPForbidden``; read
                                           by stores (``stores_info_detail``)
                                           and the data app
``imgmw.store``            stores          the store id chosen for this
                                           upload or import, or ``None`` when
                                           multi-store is off; read by the
                                           data app
``imgmw.size``             size            the declared body size in bytes
                                           (``x-openstack-image-size``, else
                                           ``Content-Length``), or ``None``
                                           when unknown; read by quota,
                                           checksum and the data app
``imgmw.digests``          checksum        a :class:`imgmw.hashing.Digests`:
                                           ``os_hash_algo``, and ``md5`` and
                                           ``os_hash_value`` (hex) once the
                                           body has been read to its end
                                           (earlier they raise
                                           ``DigestsNotReady``); read by the
                                           data app, which records them
``imgmw.image``            data app        the image record the app is about
                                           to fill, as a dict (``id``,
                                           ``owner``, ``disk_format``,
                                           ``container_format``), set before
                                           the app reads the first byte; read
                                           by quota and inspect
``imgmw.inspection``       inspect         an ``Inspection`` of
                                           :mod:`imgmw.filters.inspect`:
                                           ``format`` and
                                           ``virtual_size`` (bytes, or
                                           ``None``), final once ``done``
                                           (at end of stream, before the
                                           app sees it); read by the data
                                           app
``imgmw.quota_usage``      quota           ``usage(project_id)``: the
                                           project's figures of ``GET
                                           /v2/info/usage``, ``{resource:
                                           {"usage": U, "limit": L}}`` in
                                           Glance's units, or raises
                                           ``webob.exc.HTTPServiceUnavailable``;
                                           set on that path only; read by the
                                           data app, which answers it
``imgmw.quota_import``     quota           ``reserve(project_id, image_id,
                                           size)``: the storage quota of an
                                           import of ``size`` staged bytes;
                                           returns ``release()``, to call
                                           once the image is ``importing``
                                           (its bytes then count as
                                           stored), or raises the
                                           contract's 413 or 503; set on
                                           ``POST .../import`` only; read by
                                           the data app
=========================  ==============  ===================================

The body of an upload is only ever read by the data app (or the app behind
the filters). Filters that check it wrap ``environ['wsgi.input']`` with a
:class:`imgmw.streams.InputProxy` (see that module).
"""

CONTEXT = 'imgmw.context'
AUTHORIZE = 'imgmw.authorize'
STORE = 'imgmw.store'
SIZE = 'imgmw.size'
DIGESTS = 'imgmw.digests'
IMAGE = 'imgmw.image'
INSPECTION = 'imgmw.inspection'
QUOTA_USAGE = 'imgmw.quota_usage'
QUOTA_IMPORT = 'imgmw.quota_import'

#: Which filter publishes each key, for the messages of MissingFilter.
PUBLISHER = {
    CONTEXT: 'context',
    AUTHORIZE: 'context',
    STORE: 'stores',
    SIZE: 'size',
    DIGESTS: 'checksum',
    IMAGE: 'the data app',
    INSPECTION: 'inspect',
    QUOTA_USAGE: 'quota',
    QUOTA_IMPORT: 'quota',
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
