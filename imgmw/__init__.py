"""imgmw: WSGI filters and a data app for the OpenStack Image API v2 data path."""
