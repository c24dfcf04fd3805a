"""The environ contract: how imgmw's filters and data app talk to each other.

Filters never call each other. Each publishes what it learned in one key of
the WSGI environ, and whoever needs that fact reads the key. This module is
the one place those keys are defined; import the constants, never spell the
strings. A reader that finds a key missing raises
:class:`imgmw.errors.MissingFilter`, naming the filter that should have set
it, so a mis-assembled pipeline fails loudly at the first request instead of
guessing. No key is ever filled from a client header that carries the same
meaning.

====================  ========  ================  ======================
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
}

#: Who reads each key (the table above); "the data app" is :mod:`imgmw.app`.
READERS = {
    CONTEXT: ('quota', 'the data app'),
    AUTHORIZE: ('stores', 'the data app'),
    STORE: ('the data app',),
    SIZE: ('quota', 'checksum', 'inspect'),
    DIGESTS: ('the data app',),
    IMAGE: ('quota', 'inspect'),
    INSPECTION: ('the data app',),
    TRANSFER_ENCODING: ('chunked',),
    BLOCKS_VERIFIED: ('checksum',),
    RANGE: ('the data app',),
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
