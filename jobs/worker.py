"""Entry module of the ``dramatiq`` CLI: sets Django up, which builds the broker and actors.

``manage.py rundramatiq`` passes this module to ``dramatiq`` (and
``jobs.worker:serve_metrics`` as a fork function); do not import it elsewhere.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
django.setup()

# Django must be set up before the exporter's modules (models) are imported.
from jobs.exporter import serve as serve_metrics  # noqa: E402

__all__ = ["serve_metrics"]
