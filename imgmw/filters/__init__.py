"""The paste filters of imgmw, one module a filter.

Each module's docstring is that filter's manual.
"""
