"""imgmw-manage: the registry's schema, recovery, sweeps and backfills.

::

    imgmw-manage [--config-file FILE] [-o KEY=VALUE ...] db sync
    imgmw-manage [--config-file FILE] [-o KEY=VALUE ...] db version
    imgmw-manage [--config-file FILE] [-o KEY=VALUE ...] recover \\
        [--older-than SECONDS]
    imgmw-manage [--config-file FILE] [-o KEY=VALUE ...] sweep \\
        [--older-than SECONDS] [--apply]
    imgmw-manage [--config-file FILE] [-o KEY=VALUE ...] backfill-blocks \\
        [--apply] [--limit N]

``db sync`` upgrades the registry schema to the newest migration; run it
after every upgrade of imgmw, before starting the API (the API does it by
itself for SQLite only). It is idempotent. ``db version`` prints the
schema's migration and the newest one this code ships; it exits 1 when the
database needs a ``db sync``.

``recover`` returns to ``queued`` the images left in ``saving``,
``uploading`` or ``importing`` by a crashed API process: those whose holder
is a dead process of this host, and those whose heartbeat is older than
``--older-than`` seconds (default 300; API processes heartbeat every
``heartbeat_interval``, 30 s). Each change is compare-and-set, so an upload
that proves alive meanwhile is left alone. The quota reservation of each
upload it resets, and every reservation of a holder it declares dead, is
released with it, so a retry is not refused for the crashed upload's
bytes. The partial data of each image it resets is then removed from the
data app's stores. It prints one line per image.

``recover`` also releases the import lock (``os_glance_import_task``) of
each ``copy-image`` whose holder is a dead process of this host, or whose
task has not been refreshed for ``--older-than`` seconds
(:func:`imgmw.app.copier.recover_copies`): it first removes what the copy
left unfinished in its target stores (never in a store that holds the
image), then, compare-and-set, releases the lock, moves the copy's
unfinished stores from ``os_glance_importing_to_stores`` to
``os_glance_failed_import`` and ends its task in ``failure``. The image
stays ``active``, and a new copy is accepted at once. A copy whose holder
still runs is left alone. It prints one line per lock released.

``sweep`` finds the orphans of the data app's stores and of this node's
staging area: image data that no image refers to any more (an image deleted
while its store was unreachable, a crash between writing and recording),
temporary files, unfinished multipart uploads and staged files of images
no longer staged. Data written in the last ``--older-than`` seconds
(default 3600) is never an orphan, nor is the data of an image whose
upload, stage or import is in progress, nor, whatever its age, the data
of an image in a store its ``copy-image`` is writing to (named in
``os_glance_importing_to_stores`` while the copy's lock is live, as
``recover`` judges it): each candidate is checked against the registry
again just before it is removed. Without ``--apply`` it only
prints what it would remove (one line each); with it, it removes them. Run
``recover`` first: the data of a crashed upload is an orphan only once its
image is back to ``queued``, and that of a crashed copy once its lock is
released. Each store's directory or bucket must be
dedicated to it. Run it on each API node (each has its own staging area).

``backfill-blocks`` computes the block digests (:mod:`imgmw.app.blocks`)
of the locations of ``active`` and ``deactivated`` images recorded
without them, so that their downloads are verified block by block. It
reads each location's data once, checks it against the image's size,
``checksum`` and ``os_hash_value`` in the same pass, and records the
digests only when all match (a location whose data does not is reported,
never blessed). Without ``--apply`` it only lists the locations and the
bytes it would read; with it, each location is recorded as soon as it is
read, so an interrupted backfill resumes where it stopped when run again.
``--limit`` stops after that many locations. Run it from any node that
reaches every store; downloads keep being served meanwhile.

The registry URL is ``database_connection`` of the paste file's
``[DEFAULT]``; without one, SQLite in ``state_dir`` (default ``./state``).
The paste file is ``--config-file``, else the first of
``./etc/api-paste.ini``, ``<prefix>/etc/imgmw/api-paste.ini`` and
``/etc/imgmw/api-paste.ini`` that exists, as for ``imgmw-api``. ``-o``
overrides a ``[DEFAULT]`` value.

Exit status: 0 on success, 1 when ``db version`` finds the schema behind,
2 on a usage or configuration error, 3 when the database is unreachable,
4 when ``sweep`` could not list a store or remove an orphan, or
``backfill-blocks`` could not read a location or found its data not
matching the image (each goes on with the others and says which).
"""

import argparse
import datetime
import os
import sys
import time
import typing

from paste import deploy

from imgmw import app as data_app
from imgmw.app import api
from imgmw.app import copier
from imgmw.app import registry
from imgmw.app import stores
from imgmw import config
from imgmw import hashing
from imgmw import wsgi

#: The data app's section of the paste file (``[app:imgmw]``).
DATA_APP = 'imgmw'

DEFAULT_OLDER_THAN = int(registry.DEFAULT_STALE_AFTER.total_seconds())
#: The grace period of ``sweep``: younger data is never an orphan.
DEFAULT_SWEEP_GRACE = 3600

#: The place name ``sweep`` gives this node's staging area.
STAGING = 'staging'

EXIT_BEHIND = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_INCOMPLETE = 4

Printer = typing.Callable[[str], None]


def _override(text: str) -> typing.Tuple[str, str]:
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError('expected key=value, got %r' % text)
    return key.strip(), value.strip()


def _seconds(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(
            'expected a number of seconds, got %r' % text)
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            'expected a positive number, got %r' % text)
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='imgmw-manage',
        description='Manage the imgmw image registry.')
    parser.add_argument(
        '--config-file', default=None,
        help='the paste configuration (default: the first of %s that '
             'exists)' % ', '.join(wsgi.CONFIG_FILE_CANDIDATES))
    parser.add_argument(
        '-o', '--option', dest='options', action='append', default=[],
        type=_override, metavar='KEY=VALUE',
        help='override a [DEFAULT] value of the paste file; repeatable')
    commands = parser.add_subparsers(dest='command', required=True)
    db = commands.add_parser('db', help='the registry schema')
    db_commands = db.add_subparsers(dest='db_command', required=True)
    db_commands.add_parser('sync', help='upgrade to the newest migration')
    db_commands.add_parser('version', help='print the migration in place')
    recover_parser = commands.add_parser(
        'recover', help='return stale uploads to queued, release the '
                        'locks of dead copies')
    recover_parser.add_argument(
        '--older-than', type=_seconds, default=DEFAULT_OLDER_THAN,
        metavar='SECONDS',
        help='heartbeat age that marks an upload or a copy as abandoned '
             '(default: %(default)s)')
    sweep_parser = commands.add_parser(
        'sweep', help='find (and with --apply remove) orphaned data')
    sweep_parser.add_argument(
        '--older-than', type=_seconds, default=DEFAULT_SWEEP_GRACE,
        metavar='SECONDS',
        help='grace period: data written more recently is kept '
             '(default: %(default)s)')
    sweep_parser.add_argument(
        '--apply', action='store_true',
        help='remove the orphans (default: only list them)')
    backfill_parser = commands.add_parser(
        'backfill-blocks',
        help='compute the block digests of images recorded without them')
    backfill_parser.add_argument(
        '--apply', action='store_true',
        help='read the data and record the digests (default: only list '
             'what would be read)')
    backfill_parser.add_argument(
        '--limit', type=_count, default=None, metavar='N',
        help='stop after N locations (default: all)')
    return parser


# Configuration.

def config_file(given: typing.Optional[str]) -> typing.Optional[str]:
    """The paste file to read, or None when none exists (defaults only).

    :raises config.ConfigError: ``given`` cannot be read.
    """
    if given is not None:
        if not os.path.isfile(given):
            raise config.ConfigError('cannot read the paste configuration %s'
                                     % given)
        return os.path.abspath(given)
    found = wsgi.default_config_file()
    return found if os.path.isfile(found) else None


def defaults(path: typing.Optional[str],
             overrides: typing.Mapping[str, str]) -> typing.Dict[str, str]:
    """``[DEFAULT]`` of ``path`` with ``overrides``; ``state_dir`` absolute.

    Values are interpolated as paste.deploy does (``%(here)s``), so they
    mean what they mean to ``imgmw-api``.
    """
    conf = wsgi.file_defaults(path) if path else {}
    conf.update(overrides)
    conf['state_dir'] = os.path.abspath(conf.get('state_dir')
                                        or wsgi.DEFAULT_STATE_DIR)
    return conf


def load_store_set(path: typing.Optional[str],
                   conf: typing.Mapping[str, str]) -> api.StoreSet:
    """The data app's stores and staging area (``[app:imgmw]``).

    Configured exactly as ``imgmw-api`` configures them.
    """
    global_conf, local_conf = dict(conf), {}
    if path is not None:
        section = deploy.appconfig('config:%s' % path, name=DATA_APP,
                                   global_conf=dict(conf))
        global_conf = dict(section.global_conf)
        global_conf.update(conf)
        local_conf = dict(section.local_conf)
    options = config.parse(data_app.OPTS, global_conf, local_conf, 'data app')
    return data_app.load_stores(global_conf, options)


# Commands.

def db_sync(image_registry: registry.Registry, say: Printer) -> int:
    image_registry.sync()
    say('Registry schema at %s' % image_registry.version())
    return 0


def db_version(image_registry: registry.Registry, say: Printer) -> int:
    current, head = image_registry.version(), image_registry.head()
    say('current: %s' % (current or 'none (empty database)'))
    say('newest: %s' % head)
    if current != head:
        say('Run imgmw-manage db sync.')
        return EXIT_BEHIND
    return 0


def _when(moment: typing.Optional[datetime.datetime]) -> str:
    return moment.isoformat() if moment else 'never'


def recover(image_registry: registry.Registry,
            older_than: datetime.timedelta,
            remove_partial: typing.Optional[
                typing.Callable[[str], None]] = None,
            say: Printer = print,
            store_set: typing.Optional[api.StoreSet] = None,
            holder_alive: typing.Optional[
                typing.Callable[[str], bool]] = registry.holder_is_alive
            ) -> typing.List[dict]:
    """Return stale uploads to ``queued`` and remove their partial data.

    Then release the locks of dead copies
    (:func:`imgmw.app.copier.recover_copies`), removing their unfinished
    writes from ``store_set`` (none: left to ``sweep``).

    :returns: the records as they were, one for each image reset.
    """
    recovered = image_registry.recover_stale(older_than=older_than,
                                             holder_alive=holder_alive)
    for record in recovered:
        if remove_partial is not None:
            remove_partial(record['id'])
        say('%s: %s -> queued (holder %s, last heartbeat %s)' % (
            record['id'], record['status'], record['holder'],
            _when(record['heartbeat_at'])))
    say('%d stale upload(s) recovered' % len(recovered))
    copies = copier.recover_copies(image_registry, store_set, older_than,
                                   holder_alive)
    for copy in copies:
        say('%s: copy %s released, failed in %s (holder %s, last '
            'heartbeat %s)' % (copy.image_id, copy.task_id,
                               ','.join(copy.failed) or 'no store',
                               copy.holder, _when(copy.heartbeat_at)))
    say('%d stale copy lock(s) released' % len(copies))
    return recovered


class SweepResult(typing.NamedTuple):
    """What :func:`sweep` found: ``(place, listed)`` pairs and failures."""

    orphans: typing.List[typing.Tuple[str, stores.Listed]]
    removed: int
    failures: int


def _places(store_set: api.StoreSet) -> typing.List[typing.Tuple[str, object]]:
    """``(name, place)`` of every store, then of the staging area."""
    places = sorted(store_set.by_id.items())
    if store_set.staging is not None:
        places.append((STAGING, store_set.staging))
    return places


def _in_use(place: str, listed: stores.Listed,
            record: typing.Optional[dict]) -> bool:
    """Whether ``listed`` belongs to ``record``, as the registry has it now.

    Data of an image whose upload, stage or import is in progress belongs
    to it (it may be recorded any moment); so does a location's data, and
    the staged file of a staged image.
    """
    if record is None:
        return False  # unknown or deleted
    if record['status'] in registry.IN_PROGRESS:
        return place != STAGING or record['status'] != 'saving'
    return not listed.partial and place != STAGING and listed.url in {
        location['url'] for location in record['locations']}


def _copying_into(image_registry: registry.Registry, place: str,
                  record: typing.Optional[dict]) -> bool:
    """Whether a live copy-image of ``record`` writes into the store ``place``.

    The store is in ``os_glance_importing_to_stores`` and the image's
    lock is held by a copy that is not dead
    (:func:`imgmw.app.copier.copy_is_dead`, as ``recover`` judges it): all
    the image's data there, finished or not, is the copy's.
    """
    if record is None or place == STAGING or place not in (
            record['properties'].get(registry.IMPORTING_PROPERTY)
            or '').split(','):
        return False
    held, task = copier.lock_holder(image_registry, record)
    return held is not None and not copier.copy_is_dead(record, task)


def _describe(place: str, listed: stores.Listed) -> str:
    kind = 'unfinished upload' if listed.partial else 'data'
    modified = datetime.datetime.fromtimestamp(
        listed.modified, datetime.timezone.utc).isoformat(timespec='seconds')
    return '%s %s (%s of image %s, written %s)' % (
        place, listed.url, kind, listed.image_id, modified)


def sweep(image_registry: registry.Registry, store_set: api.StoreSet,
          older_than: datetime.timedelta, apply: bool = False,
          say: Printer = print) -> SweepResult:
    """Find the orphans of every store and of the staging area.

    The listing comes first, the registry after it: data recorded while
    the stores are listed is seen as referenced. Each candidate older than
    ``older_than`` is then checked against its image's record again, just
    before it is removed (``apply``) or reported: data of an upload in
    progress, a location's, and any data of the image in a store a live
    copy-image writes to (:func:`_copying_into`) are kept.
    """
    cutoff = time.time() - older_than.total_seconds()
    listings, failures = [], 0
    for name, place in _places(store_set):
        try:
            listings.append((name, place, list(place.iter_listing())))
        except stores.StoreError as err:
            say('cannot list %s: %s' % (name, err))
            failures += 1
    referenced = {url for _store, url in image_registry.all_locations()}
    orphans, removed = [], 0
    for name, place, listing in listings:
        for listed in listing:
            if listed.modified > cutoff or (
                    not listed.partial and listed.url in referenced):
                continue
            record = image_registry.get(listed.image_id)
            if _in_use(name, listed, record) or _copying_into(
                    image_registry, name, record):
                continue
            orphans.append((name, listed))
            if not apply:
                say('would remove %s' % _describe(name, listed))
                continue
            try:
                place.remove_listed(listed)
            except (stores.StoreError, ValueError) as err:
                say('cannot remove %s: %s' % (_describe(name, listed), err))
                failures += 1
                continue
            say('removed %s' % _describe(name, listed))
            removed += 1
    if apply:
        say('%d orphan(s) found, %d removed' % (len(orphans), removed))
    else:
        say('%d orphan(s) found; nothing removed (dry run: --apply removes '
            'them)' % len(orphans))
    return SweepResult(orphans, removed, failures)


class BackfillResult(typing.NamedTuple):
    """What :func:`backfill_blocks` did: locations seen, recorded, failed."""

    found: int
    recorded: int
    failures: int


#: Locations asked of the registry at a time by the backfill.
BACKFILL_PAGE = 100


def backfill_blocks(image_registry: registry.Registry,
                    store_set: api.StoreSet, apply: bool = False,
                    limit: typing.Optional[int] = None,
                    say: Printer = print,
                    chunk_size: int = hashing.BLOCK_SIZE) -> BackfillResult:
    """Compute and record the block digests of locations without them.

    See the module docstring. Each location is recorded on its own, with
    a compare-and-set on the image's status and checksum.
    """
    found = recorded = failures = 0
    after = None
    while limit is None or found < limit:
        page = image_registry.locations_without_blocks(
            BACKFILL_PAGE if limit is None
            else min(BACKFILL_PAGE, limit - found), after)
        if not page:
            break
        for location in page:
            after = (location['image_id'], location['position'])
            found += 1
            what = '%s %s (image %s, %s bytes)' % (
                location['store'], location['url'], location['image_id'],
                location['size'])
            if not apply:
                say('would compute block digests of %s' % what)
                continue
            try:
                blocks = _block_digests_of(store_set, location, chunk_size)
            except (stores.StoreError, _Mismatch) as err:
                say('cannot compute block digests of %s: %s' % (what, err))
                failures += 1
                continue
            if image_registry.set_block_digests(
                    location['image_id'], location['url'],
                    location['checksum'], blocks):
                say('recorded %d block digest(s) of %s'
                    % (len(blocks), what))
                recorded += 1
            else:
                say('skipped %s: the image changed meanwhile' % what)
    if apply:
        say('%d location(s) without block digests, %d recorded, %d failed'
            % (found, recorded, failures))
    else:
        say('%d location(s) without block digests; nothing read (dry run: '
            '--apply computes and records them)' % found)
    return BackfillResult(found, recorded, failures)


class _Mismatch(Exception):
    """A location's data does not match its image's record."""


def _block_digests_of(store_set: api.StoreSet, location: typing.Mapping,
                      chunk_size: int) -> hashing.BlockDigests:
    """Read a location's data once: its block digests, if it matches.

    :raises _Mismatch: size, checksum or multihash differ from the record.
    :raises stores.StoreError: the data cannot be read.
    """
    store = store_set.locate(location)
    if store is None:
        raise stores.DataNotFound('no configured store holds it')
    algorithms = ['md5']
    if location['os_hash_algo'] and location['os_hash_value']:
        algorithms.append(location['os_hash_algo'])
    hasher = hashing.MultiHasher(algorithms, block_size=hashing.BLOCK_SIZE)
    body = store.open(location['url'])
    try:
        for chunk in iter(lambda: body.read(chunk_size), b''):
            hasher.update(chunk)
    finally:
        body.close()
    if hasher.bytes_hashed != (location['size'] or 0):
        raise _Mismatch('the store holds %d bytes, the image %s'
                        % (hasher.bytes_hashed, location['size']))
    if location['checksum'] and (
            hasher.hexdigest('md5') != location['checksum']):
        raise _Mismatch('its MD5 does not match the image\'s checksum')
    if len(algorithms) > 1 and (hasher.hexdigest(algorithms[1])
                                != location['os_hash_value']):
        raise _Mismatch('its %s does not match the image\'s '
                        'os_hash_value' % algorithms[1])
    return hasher.block_digests()


def run(args: argparse.Namespace, say: Printer) -> int:
    path = config_file(args.config_file)
    conf = defaults(path, dict(args.options))
    image_registry = registry.Registry(registry.database_url(conf))
    try:
        if args.command == 'db' and args.db_command == 'sync':
            return db_sync(image_registry, say)
        if args.command == 'db':
            return db_version(image_registry, say)
        if image_registry.version() is None:
            raise config.ConfigError('the registry database has no schema: '
                                     'run imgmw-manage db sync')
        if args.command == 'backfill-blocks':
            result = backfill_blocks(image_registry,
                                     load_store_set(path, conf), args.apply,
                                     args.limit, say)
            return EXIT_INCOMPLETE if result.failures else 0
        older_than = datetime.timedelta(seconds=args.older_than)
        if args.command == 'sweep':
            result = sweep(image_registry, load_store_set(path, conf),
                           older_than, args.apply, say)
            return EXIT_INCOMPLETE if result.failures else 0
        store_set = load_store_set(path, conf)
        recover(image_registry, older_than, store_set.remove_partial, say,
                store_set)
        return 0
    finally:
        image_registry.dispose()


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, print)
    except (config.ConfigError, ValueError) as err:
        print('imgmw-manage: error: %s' % err, file=sys.stderr)
        return EXIT_CONFIG
    except registry.RegistryUnavailable as err:
        print('imgmw-manage: the registry database is unavailable: %s'
              % err, file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == '__main__':
    sys.exit(main())
