"""Cursor pagination of the job list, refusing cursors whose position is not of its field's type."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

from jobs.conf import jobs_settings
from jobs.models import Job


class JobPagination(CursorPagination):
    """Newest first, stable while jobs are added; ``?page_size=`` up to API_MAX_PAGE_SIZE.

    A cursor's position goes into the query as a value of the first ordering
    field. DRF checks only that the cursor decodes, so a crafted one
    (``p=garbage``) failed in the query, a 500; it now gets the 404
    "Invalid cursor" that any malformed cursor gets.
    """

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int:
        self.page_size = jobs_settings.api_page_size
        self.max_page_size = jobs_settings.api_max_page_size
        return int(super().get_page_size(request) or self.page_size)

    def decode_cursor(self, request: Request) -> Cursor | None:
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            field = Job._meta.get_field(str(self.ordering[0]).lstrip("-"))
            if not _parses_as(field, str(cursor.position)):
                raise NotFound(self.invalid_cursor_message)
        return cursor


def _parses_as(field: Any, position: str) -> bool:
    """Whether ``position`` is a value of ``field`` that the query can use as it is."""
    if isinstance(field, models.DateTimeField):
        # An aware date and time, as DRF writes it; to_python() would also take a
        # bare date or a naive time, which the query warns about and reads as local.
        try:
            parsed = parse_datetime(position)
        except ValueError:  # well formed but not a date, e.g. month 13
            return False
        return parsed is not None and timezone.is_aware(parsed)
    try:
        field.to_python(position)
    except (ValidationError, ValueError, TypeError):
        return False
    return True
