"""Sphinx directive ``imgmw-options``: a module's options as a table.

::

    .. imgmw-options:: imgmw.filters.size

renders the module's ``OPTS`` (a tuple of :class:`imgmw.config.Opt`) as a
table of name, default and help, so the reference always says what the code
parses. Defaults are shown as an operator writes them
(:func:`imgmw.config.written_default`: ``true``, ``64MB``, ``file, stage``).
"""

import importlib

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.parsers.rst import directives

from imgmw import config


def _default(opt: config.Opt) -> str:
    """The default as an operator writes it (see config.written_default)."""
    return config.written_default(opt) or '(none)'


def _row(*texts: str, literal_first: bool = True) -> nodes.row:
    row = nodes.row()
    for index, text in enumerate(texts):
        entry = nodes.entry()
        paragraph = nodes.paragraph()
        if index < 2 and literal_first:
            paragraph += nodes.literal(text=text)
        else:
            paragraph += nodes.Text(text)
        entry += paragraph
        row += entry
    return row


class OptionsDirective(Directive):
    required_arguments = 1
    option_spec = {'attribute': directives.unchanged}

    def run(self):
        module = importlib.import_module(self.arguments[0])
        opts = getattr(module, self.options.get('attribute', 'OPTS'))
        table = nodes.table()
        group = nodes.tgroup(cols=3)
        table += group
        for width in (25, 20, 55):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row('option', 'default', 'meaning', literal_first=False)
        group += head
        body = nodes.tbody()
        for opt in opts:
            body += _row(opt.name, _default(opt), opt.help)
        group += body
        return [table]


def setup(app):
    app.add_directive('imgmw-options', OptionsDirective)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
