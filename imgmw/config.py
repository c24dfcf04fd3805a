"""Typed options for filters and the app, parsed once at start-up.

Every filter and the data app declares its options as a tuple of
:class:`Opt` and turns the paste configuration into typed values with
:func:`parse`, in its factory. A malformed value, or an option in a
filter's own section that nobody declared, raises :class:`ConfigError`
naming the option, which stops start-up: an operator's typo never silently
falls back to a default. Settings that several filters share
(``enabled_backends``, ``image_size_cap``, ...) live in ``[DEFAULT]`` of
``api-paste.ini``.

``[DEFAULT]`` and ``imgmw-api -o`` take only the keys that some part of
imgmw declares (:func:`known_keys`), so a misspelt key stops start-up
too (:func:`check_global_keys`). Keys meant for other programs that read
the same file are named in ``foreign_options``, as names or shell-style
patterns::

    [DEFAULT]
    foreign_options = debug, glance_*

The same declarations generate the configuration reference of the docs.
"""

import dataclasses
import difflib
import fnmatch
import importlib
import re
import typing


class ConfigError(ValueError):
    """A bad option; the message names it and its value."""


@dataclasses.dataclass(frozen=True)
class Opt:
    """One option: its name, parser, default and a line of help.

    ``written`` is the default as an operator writes it, when
    :func:`written_default` cannot tell it from the typed default (a set of
    route kinds, say); it must parse to ``default``.
    """

    name: str
    parser: typing.Callable[[str, str], typing.Any]
    default: typing.Any = None
    help: str = ''
    written: typing.Optional[str] = None


#: Keys paste.deploy adds to every section; never an operator's option.
PASTE_KEYS = frozenset(('here', '__file__'))


def parse(opts: typing.Sequence[Opt], global_conf: typing.Mapping,
          local_conf: typing.Mapping, owner: str) -> typing.Dict[str, object]:
    """Return ``{name: typed value}`` for ``opts``.

    ``local_conf`` (the filter's own section) wins over ``global_conf``
    (``[DEFAULT]``). Values that are not strings (passed by tests or code)
    are taken as they are.

    :param owner: the filter or app, for messages ("size filter").
    :raises ConfigError: on an unknown key in ``local_conf``, or a bad value.
    """
    known = {opt.name for opt in opts}
    unknown = sorted(set(local_conf) - known - PASTE_KEYS)
    if unknown:
        raise ConfigError('%s: unknown option(s) %s' % (
            owner, ', '.join(unknown)))
    values = {}
    for opt in opts:
        raw = local_conf.get(opt.name, global_conf.get(opt.name))
        if raw is None:
            values[opt.name] = opt.default
        elif isinstance(raw, str):
            try:
                values[opt.name] = opt.parser(opt.name, raw.strip())
            except ConfigError as err:
                raise ConfigError('%s: %s' % (owner, err)) from None
        else:
            values[opt.name] = raw
    return values


#: The modules that declare options; their union is :func:`known_keys` (a
#: unit test checks that no other module of imgmw declares one).
DECLARING_MODULES = (
    'imgmw.app',
    'imgmw.app.stores.filesystem',
    'imgmw.backends',
    'imgmw.config',
    'imgmw.filters.checksum',
    'imgmw.filters.context',
    'imgmw.filters.download',
    'imgmw.filters.inspect',
    'imgmw.filters.quota',
    'imgmw.filters.request_id',
    'imgmw.filters.size',
    'imgmw.filters.stores',
    'imgmw.hashing',
    'imgmw.streams',
)


def declared_opts(value: typing.Any) -> typing.Iterator[Opt]:
    """Every :class:`Opt` in ``value``: one, or nested in tuples and dicts."""
    if isinstance(value, Opt):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from declared_opts(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from declared_opts(item)


def module_opts(module) -> typing.Set[str]:
    """The names of the options a module declares at its top level."""
    return {opt.name for value in vars(module).values()
            for opt in declared_opts(value)}


def known_keys() -> typing.FrozenSet[str]:
    """The union of the options of :data:`DECLARING_MODULES`."""
    names = set()
    for name in DECLARING_MODULES:
        names |= module_opts(importlib.import_module(name))
    return frozenset(names)


def check_global_keys(conf: typing.Mapping) -> None:
    """Refuse a ``[DEFAULT]`` (or ``-o``) key that nothing declares.

    Keys that ``foreign_options`` names or matches are left alone, as are
    paste's own ``here`` and ``__file__``.

    :raises ConfigError: naming every unknown key, with a close known one
        when there is one.
    """
    patterns = FOREIGN_OPTIONS_OPT.parser(
        FOREIGN_OPTIONS_OPT.name, str(conf.get(FOREIGN_OPTIONS_OPT.name, '')))
    known = known_keys()
    unknown = sorted(
        key for key in conf
        if key not in known and key not in PASTE_KEYS
        and not any(fnmatch.fnmatchcase(key, pattern)
                    for pattern in patterns))
    if not unknown:
        return
    described = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        described.append('%s (did you mean %s?)' % (key, close[0])
                         if close else key)
    raise ConfigError(
        '[DEFAULT]: unknown option(s) %s; name keys meant for other '
        'programs in foreign_options' % ', '.join(described))


def written_default(opt: Opt) -> str:
    """``opt``'s default as an operator writes it; ``''`` for none.

    Booleans as ``true``/``false``, sizes with the largest binary unit that
    divides them (``64MB``), lists as comma-separated words.
    """
    value = opt.default
    if opt.written is not None:
        return opt.written
    if value is None or (isinstance(value, (dict, list, tuple))
                         and not value):
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if opt.parser is byte_size and isinstance(value, int):
        for unit in ('TB', 'GB', 'MB', 'KB'):
            if value and value % _UNITS[unit] == 0:
                return '%d%s' % (value // _UNITS[unit], unit)
        return str(value)
    if isinstance(value, (list, tuple)):
        return ', '.join(str(item) for item in value)
    return str(value)


def _bad(name: str, value: str, expected: str) -> ConfigError:
    return ConfigError('invalid value %r for option %s: expected %s'
                       % (value, name, expected))


_TRUE = frozenset(('true', '1', 'yes', 'on'))
_FALSE = frozenset(('false', '0', 'no', 'off'))


def boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad(name, value, 'true or false')


def integer(minimum: typing.Optional[int] = None,
            maximum: typing.Optional[int] = None):
    """A parser of decimal integers within ``[minimum, maximum]``."""
    def parse_integer(name: str, value: str) -> int:
        if not re.fullmatch(r'-?[0-9]+', value):
            raise _bad(name, value, 'an integer')
        number = int(value)
        if minimum is not None and number < minimum:
            raise _bad(name, value, 'at least %d' % minimum)
        if maximum is not None and number > maximum:
            raise _bad(name, value, 'at most %d' % maximum)
        return number
    return parse_integer


_UNITS = {'': 1, 'B': 1, 'KB': 1 << 10, 'MB': 1 << 20, 'GB': 1 << 30,
          'TB': 1 << 40}


def byte_size(name: str, value: str) -> int:
    """Bytes, as Glance writes them: ``1099511627776``, ``10GB``, ``512MB``.

    Units are binary (``1KB`` is 1024 bytes), as in Glance's
    ``user_storage_quota``.
    """
    match = re.fullmatch(r'([0-9]+)\s*([KMGT]?B)?', value, re.IGNORECASE)
    if not match:
        raise _bad(name, value, 'a size such as 1073741824, 512MB or 10GB')
    unit = (match.group(2) or '').upper()
    return int(match.group(1)) * _UNITS[unit]


def validated(validate: typing.Callable[[str], typing.Any]):
    """A parser from ``validate(value)``.

    Its ``ValueError`` becomes a :class:`ConfigError` naming the option.
    """
    def parse_validated(name: str, value: str):
        try:
            return validate(value)
        except ValueError as err:
            raise _bad(name, value, str(err)) from None
    return parse_validated


def string(name: str, value: str) -> str:
    return value


def string_list(name: str, value: str) -> typing.List[str]:
    """Comma- or blank-separated words."""
    return [word for word in re.split(r'[\s,]+', value) if word]


def choice(*choices: str):
    """A parser accepting one of ``choices``."""
    def parse_choice(name: str, value: str) -> str:
        if value not in choices:
            raise _bad(name, value, 'one of %s' % ', '.join(choices))
        return value
    return parse_choice


_STORE_ID = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]*')


def backends(name: str, value: str) -> typing.Dict[str, str]:
    """``enabled_backends``: ``id:type, id:type`` as Glance writes it.

    Returns ``{id: type}`` in the configured order.
    """
    result = {}
    for item in string_list(name, value):
        store_id, sep, store_type = item.partition(':')
        if not sep or not _STORE_ID.fullmatch(store_id) or not store_type:
            raise _bad(name, value, 'a list of id:type, e.g. fast:file')
        if store_id in result:
            raise _bad(name, value, 'each store id once')
        result[store_id] = store_type
    return result


#: ``[DEFAULT]`` keys meant for other programs (see the module doc).
FOREIGN_OPTIONS_OPT = Opt(
    'foreign_options', string_list, [],
    '[DEFAULT] keys meant for other programs: names or patterns such as '
    'glance_*; imgmw refuses any other key it does not know.')

#: The options only ``[DEFAULT]`` holds, for the configuration reference.
DEFAULT_ONLY_OPTS = (FOREIGN_OPTIONS_OPT,)
