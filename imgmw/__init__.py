"""imgmw: WSGI filters and a data app for the Image API v2 data path."""
