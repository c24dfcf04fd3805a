"""Keystone unified limits for the quota filter, through oslo.limit.

Imported only when the quota filter's ``limit_source`` is ``keystone``.

oslo.limit reads its settings from oslo.config's process-wide object
(``oslo_config.cfg.CONF``), group ``[oslo_limit]``. :func:`oslo_limit_conf`
parses and checks them in a private ``ConfigOpts`` first (from a section of
the paste file, or from an oslo.config file), and :func:`apply_oslo_limit`
then sets them in that one group of the global object, which nothing else
of imgmw uses; one process holds one set of ``[oslo_limit]`` settings.
"""

import logging
import threading
import time
import typing

from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import loading
from openstack import exceptions as sdk_exceptions
from oslo_config import cfg
from oslo_limit import exception as limit_exceptions
from oslo_limit import limit as oslo_limit
from oslo_limit import opts as limit_opts

from imgmw import config
from imgmw.filters.quota.limits import DEFAULT_CACHE_TIME
from imgmw.filters.quota.limits import GROUP
from imgmw.filters.quota.limits import LimitsUnavailable
from imgmw.filters.quota.limits import ProjectLimits
from imgmw.filters.quota import resources


LOG = logging.getLogger(__name__)

#: What a failure to reach Keystone raises out of oslo.limit.
KEYSTONE_ERRORS = (ksa_exceptions.ClientException,
                   sdk_exceptions.SDKException,
                   limit_exceptions.SessionInitError)


# Keystone unified limits.

def _no_usage(project_id, resource_names):
    raise NotImplementedError(
        'imgmw computes usage itself, under its reservation lock')


class KeystoneLimits:
    """Keystone unified limits through an oslo.limit ``Enforcer``.

    Only the limits are asked of oslo.limit (``get_project_limits``): the
    check itself is made in the reservation transaction, in bytes, with
    oslo.limit's rule (``usage + delta > limit`` is over; ``-1`` is
    unlimited; no registered limit is a limit of 0).

    :param cache_time: seconds an enforcer (and the limits it cached) is
        used before a new one is made.
    :param enforcer_factory: makes an ``Enforcer`` (tests).
    """

    name = 'keystone'

    def __init__(self, cache_time: int = DEFAULT_CACHE_TIME,
                 enforcer_factory: typing.Optional[typing.Callable] = None,
                 clock: typing.Callable[[], float] = time.monotonic):
        self.cache_time = cache_time
        self.enforcer_factory = enforcer_factory or (
            lambda: oslo_limit.Enforcer(_no_usage, cache=True))
        self.clock = clock
        self._lock = threading.Lock()
        self._enforcer = None
        self._made_at = 0.0

    def enforcer(self):
        """The current enforcer; a new one after ``cache_time``."""
        with self._lock:
            now = self.clock()
            if (self._enforcer is None
                    or now - self._made_at >= self.cache_time):
                self._enforcer = self.enforcer_factory()
                self._made_at = now
            return self._enforcer

    def for_project(self, project_id: str) -> ProjectLimits:
        """:raises LimitsUnavailable: Keystone could not be asked."""
        try:
            pairs = self.enforcer().get_project_limits(
                project_id, list(resources.RESOURCES))
        except (KEYSTONE_ERRORS + (ValueError,)) as err:
            LOG.error('Could not read the unified limits of project %s '
                      'from Keystone: %s', project_id, err)
            with self._lock:
                self._enforcer = None
            raise LimitsUnavailable(str(err)) from err
        values = {}
        for resource, amount in pairs:
            if amount < 0:
                values[resource] = None
            elif resource in resources.MIB_RESOURCES:
                values[resource] = amount * resources.MiB
            else:
                values[resource] = amount
        return ProjectLimits(**values)


# oslo.limit's settings.

def _register(conf: cfg.ConfigOpts, opts: typing.Iterable[cfg.Opt]
              ) -> typing.List[cfg.Opt]:
    registered = []
    for opt in opts:
        try:
            conf.register_opt(opt, group=GROUP)
        except cfg.DuplicateOptError:
            continue
        registered.append(opt)
    return registered


def _base_opts() -> typing.List[cfg.Opt]:
    """oslo.limit's options without those of its sample auth plugins."""
    plugin_names = {opt.dest for name in ('password', 'v2password',
                                          'v3password')
                    for opt in loading.get_auth_plugin_conf_options(name)}
    plugin_names -= {opt.dest for opt in (
        loading.get_session_conf_options()
        + loading.get_adapter_conf_options(include_deprecated=False))}
    opts = [opt for _group, group_opts in limit_opts.list_opts()
            for opt in group_opts if opt.dest not in plugin_names]
    return opts + loading.get_auth_common_conf_options()


def _plugin_opts(auth_type: typing.Optional[str]) -> typing.List[cfg.Opt]:
    if not auth_type:
        return []
    try:
        return loading.get_auth_plugin_conf_options(auth_type)
    except ksa_exceptions.NoMatchingPlugin:
        raise config.ConfigError(
            'quota filter: [oslo_limit] auth_type %s is not a known '
            'keystoneauth plugin' % auth_type) from None


def oslo_limit_conf(section: typing.Optional[typing.Mapping[str, str]] = None,
                    config_file: typing.Optional[str] = None
                    ) -> typing.Tuple[cfg.ConfigOpts, typing.List[cfg.Opt]]:
    """oslo.limit's settings, parsed and checked in a private ConfigOpts.

    From ``section`` (the ``[oslo_limit]`` section of the paste file, as
    strings) or from ``config_file`` (an oslo.config file with an
    ``[oslo_limit]`` group, such as ``glance-api.conf``).

    :returns: the ConfigOpts and the options registered on it.
    :raises config.ConfigError: an unknown key or a bad value.
    """
    conf = cfg.ConfigOpts()
    opts = _register(conf, _base_opts())
    try:
        if config_file:
            conf(args=[], default_config_files=[config_file])
            auth_type = conf[GROUP].auth_type
        else:
            conf(args=[], default_config_files=[])
            auth_type = (section or {}).get('auth_type')
        opts += _register(conf, _plugin_opts(auth_type))
        for key, value in (section or {}).items():
            conf.set_override(key.replace('-', '_'), value, group=GROUP)
        for opt in opts:
            conf[GROUP][opt.dest]  # Type errors of the file show here.
    except (cfg.Error, ValueError) as err:
        raise config.ConfigError('quota filter: [oslo_limit]: %s' % err)
    return conf, opts


_applied: typing.Dict[str, typing.Any] = {}


def apply_oslo_limit(conf: cfg.ConfigOpts,
                     opts: typing.Sequence[cfg.Opt]) -> None:
    """Set ``[oslo_limit]`` of ``oslo_config.cfg.CONF`` from ``conf``.

    Only values that differ from the defaults are set.

    :raises config.ConfigError: another quota filter of this process set
        different ones.
    """
    values = {}
    for opt in opts:
        value = conf[GROUP][opt.dest]
        if value != opt.default:
            values[opt.dest] = value
    if _applied and _applied != values:
        raise config.ConfigError(
            'quota filter: a process holds one set of [oslo_limit] '
            'settings, and another quota filter set different ones')
    target = oslo_limit.CONF
    _register(target, opts)
    for name, value in values.items():
        target.set_override(name, value, group=GROUP)
    _applied.clear()
    _applied.update(values)
