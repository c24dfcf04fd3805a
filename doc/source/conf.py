# Sphinx configuration of the imgmw operator's guide.

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join('..', '..')))
# Local extensions: the options tables (imgmw-options).
sys.path.insert(0, os.path.abspath('_ext'))

project = 'imgmw'
copyright = 'imgmw developers'
author = 'imgmw developers'

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.viewcode',
    'imgmw_opts',
]

# The module docstrings are the pages: show them, not every member.
autodoc_typehints = 'description'

# No intersphinx: the build must not depend on the network (-W would turn
# a failed inventory fetch into an error).

exclude_patterns = []
source_suffix = {'.rst': 'restructuredtext'}
master_doc = 'index'

html_theme = 'alabaster'
html_title = 'imgmw'
