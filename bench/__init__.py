"""``make bench``: this system against raw Dramatiq and Celery on the same machine."""
