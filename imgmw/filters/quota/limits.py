"""The limits in force for a project: static, or Keystone unified limits.

Two sources, chosen by the quota filter's ``limit_source``:

``static`` (:class:`StaticLimits`)
    from the filter's options: one limit for every project, with
    per-project overrides. Sizes are in bytes, in Glance's format
    (``10GB``); 0 means unlimited, as Glance's ``user_storage_quota``.
``keystone`` (:class:`imgmw.filters.quota.keystone.KeystoneLimits`)
    Keystone unified limits, read with oslo.limit from the ``[oslo_limit]``
    settings Glance uses (endpoint and service credentials). Sizes are
    registered in MiB, as for Glance; a limit of ``-1`` is unlimited, and a
    resource with no registered limit has a limit of 0, as oslo.limit
    decides. Limits are cached for ``cache_time`` seconds.

Either way a source answers :class:`ProjectLimits`: bytes for the sizes, a
count for uploads in progress, ``None`` for unlimited.

The Keystone source lives in :mod:`imgmw.filters.quota.keystone`, imported only
when it is configured: oslo.limit brings keystoneauth1 and openstacksdk,
about 15 MiB of every worker's memory that static limits do not need.
"""

import dataclasses
import typing

from imgmw import config
from imgmw.filters.quota import resources


GROUP = 'oslo_limit'
DEFAULT_CACHE_TIME = 60


class LimitsUnavailable(Exception):
    """The limits could not be read (Keystone unreachable or misconfigured).

    The filter answers 503; the cause is logged.
    """


@dataclasses.dataclass(frozen=True)
class ProjectLimits:
    """One project's limits: bytes, bytes, a count; ``None`` is unlimited."""

    image_size_total: typing.Optional[int] = None
    image_count_uploading: typing.Optional[int] = None
    image_stage_total: typing.Optional[int] = None

    def get(self, resource: str) -> typing.Optional[int]:
        return getattr(self, resource)


# Static limits.

def project_limits(parse_value: typing.Callable[[str, str], int]):
    """A parser of per-project overrides: ``<project>:<value>, ...``."""
    def parse_projects(name: str, value: str) -> typing.Dict[str, int]:
        result = {}
        for item in config.string_list(name, value):
            project, sep, amount = item.rpartition(':')
            if not sep or not project or project in result:
                raise config.ConfigError(
                    'invalid value %r for option %s: expected '
                    '<project>:<limit>, ... with each project once'
                    % (value, name))
            result[project] = parse_value(name, amount)
        return result
    return parse_projects


class StaticLimits:
    """Limits from the paste file; 0 is unlimited.

    :param defaults: ``{resource: limit}`` for every project.
    :param overrides: ``{resource: {project_id: limit}}``.
    """

    name = 'static'

    def __init__(self, defaults: typing.Mapping[str, int],
                 overrides: typing.Mapping[str, typing.Mapping[str, int]]):
        self.defaults = dict(defaults)
        self.overrides = {resource: dict(projects)
                          for resource, projects in overrides.items()}

    def for_project(self, project_id: str) -> ProjectLimits:
        values = {}
        for resource in resources.RESOURCES:
            amount = self.overrides.get(resource, {}).get(
                project_id, self.defaults.get(resource, 0))
            values[resource] = amount or None
        return ProjectLimits(**values)
