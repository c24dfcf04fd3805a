"""Quota filter: per-project storage limits that are never exceeded.

The filter enforces, for ``PUT /v2/images/{id}/file`` (upload) and ``PUT
/v2/images/{id}/stage`` (stage), Glance's per-project quotas
(contract section 8, rows 13 and 17 of section 3):

=========================  ======================================  ========
resource                   usage                                   applies
=========================  ======================================  ========
``image_size_total``       bytes of the project's images that      upload,
                           hold data (``active``,                  import
                           ``deactivated``) or are being
                           imported, plus the uploads in
                           progress
``image_stage_total``      bytes staged (images ``uploading`` or   stage
                           ``importing``), plus the stages in
                           progress
``image_count_uploading``  uploads and stages in progress, plus    both
                           images ``importing``; the request's
                           own counts, so a limit of N allows N
=========================  ======================================  ========

A limit is breached only when ``usage + delta > limit``: an upload that
fills the quota exactly passes. The project charged is the image's owner
(as Glance) when the app announces the image, else the caller's project
(see below); a request with neither is not limited.

Unlike Glance, whose enforcement is best effort, the limits hold under
parallel uploads, on one API node or many, and for bodies of unknown size.
Every upload in progress holds a *reservation* in the registry's SQL
database, which every API node shares; reservations are checked and taken
in one transaction that locks a per-project row (see
:mod:`imgmw.filters.quota.reservations`):

* a declared size (``x-openstack-image-size``, else ``Content-Length``, as
  the size filter publishes it) is reserved whole before the first byte is
  stored; above the remaining quota the upload gets 413 (row 13);
* a body of unknown size (chunked) is reserved as its bytes arrive, a step
  of ``reservation_increment`` bytes ahead while the project is far from
  its limit (room for a step of every upload in progress and one more),
  and nearer the limit by exactly what came: no upload ever holds the
  quota it has not used yet, so uploads that fit together all pass. The
  first chunk that would take the project over the limit is refused with
  413 (row 17, naming the bytes received) and never reaches the store;
* one more upload than ``image_count_uploading`` allows is refused with 413
  ``Project <p> is over a limit for [Resource image_count_uploading is over
  limit of <L> due to current usage <U> and delta 0]`` (as Glance).

Reservations end with their request, whatever its outcome; one whose
process died expires after ``reservation_ttl`` seconds (refreshed while
bytes arrive) and no longer counts. A failed upload leaves nothing behind:
the data app restores the image to ``queued`` and removes its data.

No decision is taken before the app opens the body. The app reads the body
only after the image lookup, the policy and the status checks passed
(contract 3.8 to 3.12), so no 413 ever tells a caller that may not upload
to an image anything of its owner's quota.

The filter stands alone. It needs a context filter before it, imgmw's or
Glance's, and nothing else:

* the project charged is the image's owner when the app hands the image
  record over before its first read of the body (imgmw's app does, with
  :func:`imgmw.streams.announce_image`), else the caller's project (as
  Glance charges it): from imgmw's context (``imgmw.context``), else from
  Glance's RequestContext, else from the identity headers
  keystonemiddleware sets (``X-Project-Id``, else ``X-Tenant-Id``, when
  ``X-Identity-Status`` is ``Confirmed``); a caller without a project is
  not limited. In front of Glance, which announces nothing, the caller's
  project is charged. The filter never looks the record up in the environ:
  an app that reads without announcing, or announces after its first read,
  is charged as the caller's project, and a late record that names another
  owner is logged at WARNING;
* the declared size is the size filter's (``imgmw.size``) when it stands
  before, else ``x-openstack-image-size`` (a plain decimal integer), else
  ``Content-Length``; bytes beyond it are reserved as they arrive.

An import (``POST .../import``) is checked by imgmw's app against
``image_size_total`` with the staged size, through the function the filter
publishes (``environ['imgmw.reserve']``), before the image becomes
``importing``; over the limit it gets the 413 of row 13 and stays staged.
The stage itself is checked against ``image_stage_total`` as it streams.

``GET /v2/info/usage`` belongs to the app. The filter lends imgmw's app its
figures (``environ['imgmw.usage']``); the app answers the caller's
project, in Glance's units (MiB for sizes, rounded down; a count of
uploads), with the limits in force from either source (``-1`` is
unlimited)::

    {"usage": {"image_size_total": {"usage": 1024, "limit": 10240},
               "image_count_uploading": {"usage": 1, "limit": -1},
               "image_stage_total": {"usage": 0, "limit": 2048}}}

In front of Glance, Glance answers that path itself, from its own quota
settings.

In imgmw's pipeline, place it after ``context`` and ``size``, before
``checksum``::

    [DEFAULT]
    database_connection = postgresql+psycopg2://imgmw@db.example/imgmw

    [pipeline:keystone-api]
    pipeline = request_id authtoken context size stores quota checksum
               inspect imgmw

    [filter:quota]
    use = egg:imgmw#quota
    limit_source = static
    user_storage_quota = 100GB
    project_storage_quota = 5f3c0e7d8a4e4a8b9a3c3e0f1b2a4c6d:1TB

In Glance's, after Glance's ``context``; Glance's database is read, never
written, and the reservations live in a database of their own::

    [pipeline:api-keystone]
    pipeline = cors http_proxy_to_wsgi versionnegotiation osprofiler
        authtoken context imgmw_quota rootapp

    [filter:imgmw_quota]
    use = egg:imgmw#quota
    # Glance cleans up a failed upload only on "except Exception".
    stream_errors = ioerror
    usage_source = glance
    one_upload_per_image = true
    glance_connection = mysql+pymysql://glance-ro@db.example/glance
    quota_connection = mysql+pymysql://imgmw@db.example/imgmw_quota
    user_storage_quota = 100GB

Limits from Keystone unified limits (registered limits ``image_size_total``
and ``image_stage_total`` in MiB and ``image_count_uploading`` as a count,
for the image service's endpoint, as Glance registers them); oslo.limit's
settings go in an ``[oslo_limit]`` section of the same file, or in the
oslo.config file named by ``oslo_config_file`` (``glance-api.conf``
works)::

    [filter:quota]
    use = egg:imgmw#quota
    limit_source = keystone

    [oslo_limit]
    auth_url = https://keystone.example/identity
    auth_type = password
    username = imgmw
    password = ...
    user_domain_id = default
    system_scope = all
    endpoint_id = 0e3cf7a6c2f94b1f8a49d1f3a1f4c8b7

As oslo.limit decides, a resource without a registered limit has a limit
of 0 (no upload passes), and ``-1`` is unlimited. Limits are read again
every ``limits_cache_time`` seconds. When Keystone cannot be reached the
upload gets 503 ``Quota limits are unavailable.``; when the database
cannot, 503 ``Image registry is unavailable.``.

Options, in the filter's section (``database_connection`` and
``state_dir`` also in ``[DEFAULT]``):

=========================== ===============  ================================
option                      default          meaning
=========================== ===============  ================================
``limit_source``            ``static``       ``static`` or ``keystone``
``user_storage_quota``      ``0``            static: ``image_size_total`` of
                                             every project, in Glance's
                                             format (``10GB``; binary
                                             units); 0 is unlimited
``project_storage_quota``   (none)           static: per-project overrides,
                                             ``<project>:<size>, ...``
                                             (``0`` is unlimited)
``user_stage_quota``        ``0``            static: ``image_stage_total``
``project_stage_quota``     (none)           static: its overrides
``user_uploading_quota``    ``0``            static: ``image_count_uploading``
                                             (0 is unlimited)
``project_uploading_quota`` (none)           static: its overrides,
                                             ``<project>:<count>, ...``
``oslo_config_file``        (none)           keystone: an oslo.config file
                                             with ``[oslo_limit]``, instead
                                             of the section of this file
``limits_cache_time``       ``60``           keystone: seconds limits are
                                             cached
``usage_source``            ``imgmw``        where stored and staged bytes
                                             are read: imgmw's registry,
                                             or ``glance``: Glance's
                                             tables (see
                                             :mod:`imgmw.filters.quota.glance`)
``glance_connection``       (none)           ``usage_source = glance``:
                                             SQLAlchemy URL of Glance's
                                             database (read only)
``quota_connection``        (the registry)   SQLAlchemy URL of the database
                                             holding the registry and the
                                             reservations; default
                                             ``database_connection``, else
                                             SQLite in ``state_dir``. With
                                             ``usage_source = glance`` a
                                             database of its own, whose
                                             tables the filter migrates
``reservation_increment``   ``64MB``         bytes reserved ahead at a time
                                             for a body of unknown size,
                                             far from the limit
``reservation_ttl``         ``300``          seconds before the reservation
                                             of a dead process expires
``one_upload_per_image``    ``false``        refuse with 409 ``Image status
                                             transition from saving to
                                             saving is not allowed``, before
                                             the app, an upload or stage to
                                             an image that has one in
                                             progress (in front of Glance,
                                             which lets two run)
``stream_errors``           ``base``         ``base`` or ``ioerror``
                                             (:ref:`stream-errors`)
=========================== ===============  ================================

Headers read, when no imgmw filter publishes the fact (see above):
``X-Identity-Status``, ``X-Project-Id``, ``X-Tenant-Id``,
``x-openstack-image-size``, ``Content-Length``. Logged: each refusal at
INFO, naming the project, the resource, the limit and the usage; an image
announced after the first read whose owner is not the project charged at
WARNING; database and Keystone failures at ERROR.

With ``one_upload_per_image`` each upload or stage holds, from its
arrival, a claim on its image: a reservation whose id is derived from the
image id, which the upload's reservation then grows. A second one while
the first is in progress is answered 409 before the app sees it; the claim
ends with its request, or expires after ``reservation_ttl`` if its process
died. Unlike the rest, this answer comes before the app's checks: it tells
a caller that an upload to that image id is in progress, which is why it
is off for imgmw's own app (whose compare-and-set answers the same 409 in
its place, contract 3.12).

What it cannot do: it cannot refuse over a limit before the app opens the
body (by design, see above); staged bytes count in ``image_stage_total``
only, not in ``image_size_total`` until imported, as in Glance. The
reservation tables have their own migrations (``imgmw-manage db sync``;
see :mod:`imgmw.filters.quota.migrations`).
"""

import configparser
import logging
import os
import threading
import time
import typing

import webob
import webob.exc

from imgmw import chunked
from imgmw import config
from imgmw import db
from imgmw import environ as keys
from imgmw import errors
from imgmw.filters.quota import limits as limits_mod
from imgmw.filters.quota import reservations
from imgmw.filters.quota import resources
from imgmw.filters.quota import schema
from imgmw.filters.quota import usage as usage_mod
from imgmw import paths
from imgmw import streams


LOG = logging.getLogger(__name__)

OWNER = 'quota filter'
STATIC = 'static'
KEYSTONE = 'keystone'
DEFAULT_INCREMENT = 64 << 20
DEFAULT_TTL = 300

_KINDS = {paths.IMAGE_DATA: schema.UPLOAD, paths.STAGE: schema.STAGE}

#: Static options: ``{resource: (default option, overrides option)}``.
STATIC_OPTIONS = {
    resources.IMAGE_SIZE_TOTAL: ('user_storage_quota',
                                 'project_storage_quota'),
    resources.IMAGE_STAGE_TOTAL: ('user_stage_quota', 'project_stage_quota'),
    resources.IMAGE_COUNT_UPLOADING: ('user_uploading_quota',
                                      'project_uploading_quota'),
}

_count = config.integer(minimum=0)

OPTS = (
    config.Opt('limit_source', config.choice(STATIC, KEYSTONE), STATIC,
               'Where limits come from: static or keystone.'),
    config.Opt('user_storage_quota', config.byte_size, 0,
               'static: image_size_total of every project; 0 unlimited.'),
    config.Opt('project_storage_quota',
               limits_mod.project_limits(config.byte_size), {},
               'static: per-project image_size_total, project:size, ...'),
    config.Opt('user_stage_quota', config.byte_size, 0,
               'static: image_stage_total of every project; 0 unlimited.'),
    config.Opt('project_stage_quota',
               limits_mod.project_limits(config.byte_size), {},
               'static: per-project image_stage_total.'),
    config.Opt('user_uploading_quota', _count, 0,
               'static: image_count_uploading of every project; 0 '
               'unlimited.'),
    config.Opt('project_uploading_quota', limits_mod.project_limits(_count),
               {}, 'static: per-project image_count_uploading.'),
    config.Opt('oslo_config_file', config.string, None,
               'keystone: oslo.config file holding [oslo_limit].'),
    config.Opt('limits_cache_time', config.integer(minimum=0),
               limits_mod.DEFAULT_CACHE_TIME,
               'keystone: seconds limits are cached.'),
    config.Opt('usage_source',
               config.choice(*sorted(usage_mod.PROVIDERS)), 'imgmw',
               'Where stored and staged bytes are read.'),
    config.Opt('quota_connection', config.string, None,
               'Database of the registry and the reservations.'),
    config.Opt('glance_connection', config.string, None,
               'usage_source = glance: URL of Glance\'s database.'),
    config.Opt('database_connection', config.string, None,
               'The registry database ([DEFAULT]).'),
    config.Opt('state_dir', config.string, 'state',
               'Directory of the default SQLite database ([DEFAULT]).'),
    config.Opt('reservation_increment', config.byte_size, DEFAULT_INCREMENT,
               'Bytes reserved at a time for a body of unknown size.'),
    config.Opt('reservation_ttl', config.integer(minimum=10), DEFAULT_TTL,
               'Seconds before a dead process\'s reservation expires.'),
    config.Opt('one_upload_per_image', config.boolean, False,
               'Refuse with 409, before the app, an upload or stage to an '
               'image that has one in progress (in front of Glance).'),
    streams.STREAM_ERRORS_OPT,
)


def database_url(values: typing.Mapping) -> str:
    """The reservations' database: the registry's, as the app finds it."""
    return db.default_url(values, 'quota_connection', 'database_connection')


def static_limits(values: typing.Mapping) -> limits_mod.StaticLimits:
    return limits_mod.StaticLimits(
        {resource: values[names[0]]
         for resource, names in STATIC_OPTIONS.items()},
        {resource: values[names[1]]
         for resource, names in STATIC_OPTIONS.items()})


def oslo_limit_section(paste_file: typing.Optional[str]
                       ) -> typing.Optional[typing.Dict[str, str]]:
    """The ``[oslo_limit]`` section of the paste file, as written."""
    if not paste_file:
        return None
    # [DEFAULT] is a section like any other here: its keys are no
    # oslo.limit settings.
    parser = configparser.RawConfigParser(default_section='\0')
    parser.read(paste_file)
    if not parser.has_section(limits_mod.GROUP):
        return None
    return dict(parser.items(limits_mod.GROUP))


def keystone_limits(values: typing.Mapping, paste_file: typing.Optional[str],
                    here: typing.Optional[str]):
    """Configure oslo.limit and return the keystone limit source.

    :mod:`imgmw.filters.quota.keystone` (and with it oslo.limit,
    keystoneauth1 and openstacksdk) is imported only here, when it is
    configured.

    :raises config.ConfigError: no or bad ``[oslo_limit]`` settings.
    """
    config_file = values['oslo_config_file']
    section = None
    if config_file:
        config_file = os.path.join(here or os.getcwd(), config_file)
        if not os.path.isfile(config_file):
            raise config.ConfigError('%s: oslo_config_file %s does not exist'
                                     % (OWNER, config_file))
    else:
        section = oslo_limit_section(paste_file)
        if section is None:
            raise config.ConfigError(
                '%s: limit_source = keystone needs an [oslo_limit] section '
                'in %s, or oslo_config_file' % (OWNER, paste_file))
    from imgmw.filters.quota import keystone
    conf, opts = keystone.oslo_limit_conf(section, config_file)
    keystone.apply_oslo_limit(conf, opts)
    return keystone.KeystoneLimits(cache_time=values['limits_cache_time'])


#: Where Glance's context filter leaves its RequestContext: WebOb keeps
#: ``req.context = ...`` in this environ key, under ``context``.
WEBOB_ATTRIBUTES = 'webob.adhoc_attrs'


def caller_project(environ: dict) -> typing.Optional[str]:
    """The caller's project, from whichever context filter ran before.

    imgmw's context filter (``imgmw.context``), else Glance's (its
    RequestContext), else the identity headers keystonemiddleware sets
    (``X-Project-Id``, else ``X-Tenant-Id``, when ``X-Identity-Status`` is
    ``Confirmed``). ``None``: an anonymous caller, not limited.

    :raises errors.MissingFilter: no context filter and no identity
        headers: the pipeline lacks a context filter before this one.
    """
    context = environ.get(keys.CONTEXT)
    if context is None:
        context = environ.get(WEBOB_ATTRIBUTES, {}).get('context')
    if context is not None:
        return getattr(context, 'project_id', None) or None
    status = environ.get('HTTP_X_IDENTITY_STATUS')
    if status is None:
        raise errors.MissingFilter(keys.CONTEXT, 'context (imgmw\'s or '
                                   'Glance\'s)', OWNER)
    if status.strip() != 'Confirmed':
        return None
    return (environ.get('HTTP_X_PROJECT_ID')
            or environ.get('HTTP_X_TENANT_ID') or None)


def declared_size(environ: dict) -> typing.Optional[int]:
    """The body's declared size, or ``None`` when unknown.

    The size filter's (``imgmw.size``) when it stands before; else
    ``x-openstack-image-size`` when it is a plain decimal integer, else
    ``Content-Length`` of a body that is not chunked. Without the size
    filter nothing holds the body to that size: bytes beyond it are
    reserved as they arrive.
    """
    if keys.SIZE in environ:
        return environ[keys.SIZE]
    header = environ.get('HTTP_X_OPENSTACK_IMAGE_SIZE')
    if header is not None:
        header = header.strip(' \t')
        if header.isascii() and header.isdigit():
            return int(header)
        return None
    return streams.body_length(environ)


class Enforcement:
    """All an upload's proxy needs of the quota, and nothing of the filter.

    :param limits: the limit source (``for_project(project_id)``).
    :param store: the reservation store.
    :param increment: bytes reserved ahead for a body of unknown size.
    :param refresh: seconds between refreshes of a reservation's expiry.
    :param refuse: ``refuse(over, reported)``: the 413 of a refusal.
    """

    def __init__(self, limits, store: reservations.ReservationStore,
                 increment: int, refresh: float,
                 refuse: typing.Callable[..., webob.exc.HTTPException]):
        self.limits = limits
        self.store = store
        self.increment = increment
        self.refresh = refresh
        self.refuse = refuse


class QuotaInput(streams.InputProxy):
    """Takes and grows an upload's reservation as its body is read.

    The first read (the app opens the body only after authorization)
    takes the reservation: the declared size, or a first increment. A chunk
    that takes the body past what is reserved grows it, or fails the body.
    The project charged is the owner of the image record handed over by
    :meth:`image_announced` before that read, else the caller's.
    """

    def __init__(self, wsgi_input, quota: Enforcement, stream_errors: str,
                 route: paths.Route, declared: typing.Optional[int],
                 caller: typing.Optional[str],
                 claim: typing.Optional[reservations.Reservation] = None):
        super().__init__(wsgi_input, stream_errors=stream_errors)
        self.quota = quota
        self.route = route
        self.declared = declared
        self.caller = caller
        #: The announced image's owner (see :meth:`image_announced`).
        self.owner: typing.Optional[str] = None
        #: The image's claim (``one_upload_per_image``), held from arrival.
        self.claim = claim
        self.reservation: typing.Optional[reservations.Reservation] = None
        self.limits: typing.Optional[limits_mod.ProjectLimits] = None
        self.started = False
        self.refreshed_at = 0.0
        self._release_lock = threading.Lock()

    # Reservation.

    def read(self, size: typing.Optional[int] = -1) -> bytes:
        self.start()
        return super().read(size)

    def readline(self, size: typing.Optional[int] = -1) -> bytes:
        self.start()
        return super().readline(size)

    def start(self) -> None:
        """Take the reservation, once, at the first read."""
        if self.started:
            return
        self.started = True
        project_id = self.charged_project()
        if project_id is None:
            LOG.debug('Upload of image %s has no project to charge',
                      self.route.image_id)
            return
        if self.claim is not None:
            # The claim's row becomes the reservation.
            self.reservation = self.claim
            self.reservation.project_id = project_id
        else:
            self.reservation = reservations.Reservation(
                project_id, self.route.image_id, _KINDS[self.route.kind])
        if self.declared is not None:
            minimum = wanted = self.declared
        else:
            minimum, wanted = 0, self.quota.increment
        self.reserve(minimum, wanted, self.declared)

    def image_announced(self, image: typing.Mapping) -> None:
        """Learn the owner to charge, before the first read.

        An announcement after the first read changes nothing: the
        reservation is taken. It is logged when it names another owner
        than the project charged.
        """
        if not self.started:
            self.owner = image.get('owner') or None
            return
        charged = self.charged_project()
        if image.get('owner') and image['owner'] != charged:
            LOG.warning('Image %s was announced after its first read: '
                        'charged to project %s, not to its owner %s',
                        self.route.image_id, charged or '(none)',
                        image['owner'])

    def charged_project(self) -> typing.Optional[str]:
        """The announced image's owner, else the caller's (as Glance)."""
        return self.owner or self.caller

    def reserve(self, minimum: int, wanted: int,
                reported: typing.Optional[int]) -> None:
        """Reserve, or fail the body with the contract's answer.

        :param reported: the size the 413 names (declared or received).
        """
        try:
            if self.limits is None:
                self.limits = self.quota.limits.for_project(
                    self.reservation.project_id)
            self.quota.store.reserve(self.reservation, minimum, wanted,
                                     self.limits)
        except reservations.OverLimit as over:
            self.fail(self.quota.refuse(over, reported))
        except limits_mod.LimitsUnavailable:
            self.fail(errors.limits_unavailable())
        except reservations.StoreUnavailable:
            self.fail(errors.registry_unavailable())
        self.refreshed_at = time.monotonic()

    def fail(self, http_error: webob.exc.HTTPException) -> typing.NoReturn:
        self.error = streams.StreamError(http_error)
        raise self.raise_as(self.error)

    def chunk_update(self, chunk: bytes, eof: bool) -> bytes:
        if self.reservation is None:
            return chunk
        got = self.bytes_received
        if got > self.reservation.size:
            self.reserve(got, got + self.quota.increment,
                         self.reported())
        elif time.monotonic() - self.refreshed_at > self.quota.refresh:
            self.keep_alive()
        return chunk

    def keep_alive(self) -> None:
        """Push the expiry ahead; reserve again if it had expired."""
        try:
            alive = self.quota.store.refresh(self.reservation)
        except reservations.StoreUnavailable:
            self.fail(errors.registry_unavailable())
        if alive:
            self.refreshed_at = time.monotonic()
            return
        self.reservation.held = False
        size = self.reservation.size
        self.reserve(size, size, self.reported())

    def reported(self) -> int:
        """The size a 413 names: the declared one, else what came.

        Without a size filter before it a body may outgrow its declared
        size: then what came.
        """
        if self.declared is not None:
            return max(self.declared, self.bytes_received)
        return self.bytes_received

    def release(self) -> None:
        """End the reservation (idempotent)."""
        with self._release_lock:
            for held in (self.reservation, self.claim):
                if held is not None and held.held:
                    self.quota.store.release(held)


class ReleasingIterable:
    """The app's response; ``release`` runs when the server closes it."""

    def __init__(self, app_iter, release: typing.Callable[[], None]):
        self.app_iter = app_iter
        self.release = release

    def __iter__(self):
        return iter(self.app_iter)

    def close(self) -> None:
        try:
            streams.close_if_possible(self.app_iter)
        finally:
            self.release()


class QuotaMiddleware:
    """Quota enforcement on uploads and stages, and ``/v2/info/usage``.

    :param conf: options (see the module), typed by :func:`filter_factory`.
    :param limits: the limit source (default: from ``conf``).
    :param store: the reservation store (default: from ``conf``).
    """

    def __init__(self, app, conf: typing.Mapping,
                 logger: typing.Optional[logging.Logger] = None,
                 limits=None,
                 store: typing.Optional[reservations.ReservationStore] = None):
        self.app = app
        self.logger = logger or LOG
        values = config.parse(OPTS, {}, conf, OWNER)
        ttl: int = values['reservation_ttl']
        self.stream_errors: str = values['stream_errors']
        self.one_upload_per_image: bool = values['one_upload_per_image']
        self.enforcement = Enforcement(
            limits if limits is not None else static_limits(values),
            store or reservations.ReservationStore(
                database_url(values),
                usage_mod.load(values['usage_source'], values),
                ttl=ttl, create_schema=values['usage_source'] != 'imgmw'),
            increment=max(values['reservation_increment'], 1),
            # Seconds between refreshes of a reservation's expiry.
            refresh=ttl / 4, refuse=self.refusal)

    @property
    def limits(self):
        return self.enforcement.limits

    @limits.setter
    def limits(self, limits) -> None:
        self.enforcement.limits = limits

    @property
    def store(self) -> reservations.ReservationStore:
        return self.enforcement.store

    def __call__(self, environ: dict, start_response):
        route = paths.route_of(environ)
        if route is None:
            return self.app(environ, start_response)
        if route.kind == paths.USAGE_INFO:
            # The app answers the path; the filter lends it the figures.
            environ[keys.QUOTA_USAGE] = self.usage_report
            return self.app(environ, start_response)
        if route.kind == paths.IMPORT:
            # The app checks the staged bytes against the storage quota.
            environ[keys.QUOTA_IMPORT] = self.reserve_import
            return self.app(environ, start_response)
        if (route.kind not in _KINDS
                or environ.get('REQUEST_METHOD') != 'PUT'):
            return self.app(environ, start_response)
        try:
            caller = caller_project(environ)
        except errors.MissingFilter as err:
            return self.misconfigured(err)(environ, start_response)
        claim = None
        if self.one_upload_per_image:
            claim = reservations.Reservation(
                caller or '', route.image_id, _KINDS[route.kind],
                id=reservations.claim_id(route.image_id))
            try:
                claimed = self.store.claim(claim)
            except reservations.StoreUnavailable:
                return errors.registry_unavailable()(environ, start_response)
            if not claimed:
                self.logger.info('Refused a second upload to image %s',
                                 route.image_id)
                return errors.bad_transition('saving', 'saving')(
                    environ, start_response)
        proxy = streams.install(environ, QuotaInput(
            chunked.server_input(environ), self.enforcement,
            self.stream_errors,
            route, declared_size(environ), caller, claim))
        try:
            app_iter = streams.call_app(self.app, environ, start_response,
                                        proxy)
        except BaseException:
            proxy.release()
            raise
        if proxy.finished or proxy.error is not None:
            # The app is done with the body: its bytes count in the image
            # records now, or never will.
            proxy.release()
            return app_iter
        return ReleasingIterable(app_iter, proxy.release)

    def misconfigured(self, err: errors.MissingFilter):
        self.logger.error('Pipeline misconfigured: %s', err)
        return webob.exc.HTTPInternalServerError(explanation=str(err))

    def refusal(self, over: reservations.OverLimit,
                reported: typing.Optional[int]) -> webob.exc.HTTPException:
        """The 413 of a reservation refused by ``over``."""
        self.logger.info('Refused an upload of project %s: %s over its '
                         'limit of %d (usage %d, delta %d)', over.project_id,
                         over.resource, over.limit, over.usage,
                         over.requested)
        if over.resource == resources.IMAGE_COUNT_UPLOADING:
            # Glance counts the request's own upload in the usage.
            return errors.over_limit(over.project_id, over.resource,
                                     over.limit, over.usage + 1, 0)
        if reported is None:
            # Size unknown and no byte received: the quota is used up.
            return errors.storage_quota_used_up(over.usage, over.limit)
        return errors.storage_quota_exceeded(reported, over.remaining)

    # The storage quota of an import, which the app runs.

    def reserve_import(self, project_id: str, image_id: str,
                       size: int) -> typing.Callable[[], None]:
        """Reserve ``size`` bytes of ``image_size_total`` for an import.

        Published in ``environ['imgmw.reserve']``. The app calls the
        returned ``release()`` once the image is ``importing``, when its
        bytes count as stored.

        :raises webob.exc.HTTPException: 413 over a limit (contract 3.13),
            503 when limits or the database are unavailable.
        """
        reservation = reservations.Reservation(project_id, image_id,
                                               schema.UPLOAD)
        try:
            self.store.reserve(reservation, size, size,
                               self.limits.for_project(project_id))
        except reservations.OverLimit as over:
            raise self.refusal(over, size)
        except limits_mod.LimitsUnavailable:
            raise errors.limits_unavailable()
        except reservations.StoreUnavailable:
            raise errors.registry_unavailable()
        return lambda: self.store.release(reservation)

    # The figures of GET /v2/info/usage, which the app answers.

    def usage_report(self, project_id: str) -> typing.Dict[str, dict]:
        """``{resource: {"usage": U, "limit": L}}`` in Glance's units.

        Published in ``environ['imgmw.usage']`` for the app.

        :raises webob.exc.HTTPServiceUnavailable: limits or usage
            unavailable (the contract's 503).
        """
        try:
            project_limits = self.limits.for_project(project_id)
            usage = self.store.usage(project_id)
        except limits_mod.LimitsUnavailable:
            raise errors.limits_unavailable()
        except reservations.StoreUnavailable:
            raise errors.registry_unavailable()
        return {resource: {'usage': in_units(resource, usage.get(resource)),
                           'limit': limit_in_units(
                               resource, project_limits.get(resource))}
                for resource in resources.RESOURCES}


def in_units(resource: str, amount: int) -> int:
    """Glance's units: MiB (rounded down) for sizes, else as is."""
    if resource in resources.MIB_RESOURCES:
        return amount // resources.MiB
    return amount


def limit_in_units(resource: str, limit: typing.Optional[int]) -> int:
    return -1 if limit is None else in_units(resource, limit)


def filter_factory(global_conf: typing.Mapping, **local_conf):
    """paste.deploy entry point ``egg:imgmw#quota``."""
    conf = config.parse(OPTS, global_conf, local_conf, OWNER)
    limits = None
    if conf['limit_source'] == KEYSTONE:
        limits = keystone_limits(
            conf, local_conf.get('__file__', global_conf.get('__file__')),
            local_conf.get('here', global_conf.get('here')))

    def quota_filter(app):
        return QuotaMiddleware(app, conf, limits=limits)
    return quota_filter
