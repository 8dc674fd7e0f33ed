"""Entry module for the ``dramatiq`` CLI: sets Django up, which builds the broker and actors.

``manage.py rundramatiq`` passes this module to ``dramatiq``; do not import it elsewhere.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
django.setup()
