"""Entry module of the ``dramatiq`` CLI: sets Django up, which builds the broker and actors.

``manage.py rundramatiq`` passes this module to ``dramatiq`` (and
``jobs.worker:serve_metrics`` as a fork function); do not import it elsewhere.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
django.setup()


def serve_metrics() -> int:
    """The metrics exporter's fork process (:func:`jobs.exporter.serve`).

    Imported here rather than at the top so that worker processes, which never serve
    metrics, do not load the exporter's HTTP server and collectors.
    """
    from jobs.exporter import serve

    return serve()


__all__ = ["serve_metrics"]
