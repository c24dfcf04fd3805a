"""imgmw's tests.

With ``OS_LOG_CAPTURE`` set (tox sets it), a test run shows results, not
logs: the root logger gets a handler of its own as soon as this package is
imported, so neither logging's last resort (warnings and errors of faults
the tests cause on purpose) nor a ``logging.basicConfig()`` of the code
under test (``imgmw-api``'s ``main``) prints records between the results.
Tests that assert on logs use ``fixtures.FakeLogger``, which still sees
every record; a failing test is reported with its traceback as always.
Deprecation warnings of other packages are silenced the same way; imgmw's
own are still shown. Unset ``OS_LOG_CAPTURE`` (or set it to 0) to see
everything.
"""

import logging
import os
import warnings


def _quiet() -> None:
    logging.getLogger().addHandler(logging.NullHandler())
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings('ignore', category=category)
        warnings.filterwarnings('default', category=category,
                                module=r'(imgmw|tests)(\.|$)')


if os.environ.get('OS_LOG_CAPTURE', '').lower() in ('1', 'true', 'yes'):
    _quiet()
