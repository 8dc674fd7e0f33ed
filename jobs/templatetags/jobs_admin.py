"""Template tags of the jobs admin."""

from __future__ import annotations

import calendar
import datetime
from typing import Any

from django import template
from django.contrib.admin.views.main import ChangeList
from django.db import models
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _

register = template.Library()


@register.inclusion_tag("admin/date_hierarchy.html")
def cheap_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """Django's date drill-down without ``SELECT DISTINCT date_trunc(...)`` over the table.

    Django lists only the years/months/days that have rows, which scans every
    matching row: seconds at a million jobs. This lists every period between
    the first and the last row instead (two index lookups: ``MIN`` and ``MAX``).
    """
    field_name = str(cl.date_hierarchy)
    year_field = f"{field_name}__year"
    month_field = f"{field_name}__month"
    day_field = f"{field_name}__day"
    year_lookup = cl.params.get(year_field)
    month_lookup = cl.params.get(month_field)
    day_lookup = cl.params.get(day_field)
    field = cl.model._meta.get_field(field_name)
    verbose_name = getattr(field, "verbose_name", field_name)

    def link(filters: dict[str, Any]) -> str:
        return str(cl.get_query_string(filters, [f"{field_name}__"]))

    span = cl.queryset.aggregate(first=models.Min(field_name), last=models.Max(field_name))
    first, last = span["first"], span["last"]
    if first is None or last is None:
        return {"show": False}
    if timezone.is_aware(first):
        first, last = timezone.localtime(first), timezone.localtime(last)
    if not (year_lookup or month_lookup or day_lookup) and first.year == last.year:
        year_lookup = str(first.year)
        if first.month == last.month:
            month_lookup = str(first.month)
    base = {"show": True, "field_name": verbose_name}

    if year_lookup and month_lookup and day_lookup:
        day = datetime.date(int(year_lookup), int(month_lookup), int(day_lookup))
        return base | {
            "back": {
                "link": link({year_field: year_lookup, month_field: month_lookup}),
                "title": capfirst(formats.date_format(day, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(day, "MONTH_DAY_FORMAT"))}],
        }
    if year_lookup and month_lookup:
        year, month = int(year_lookup), int(month_lookup)
        last_day = calendar.monthrange(year, month)[1]
        days = range(first.day if (first.year, first.month) == (year, month) else 1, last_day + 1)
        if (last.year, last.month) == (year, month):
            days = range(days.start, last.day + 1)
        return base | {
            "back": {"link": link({year_field: year_lookup}), "title": str(year_lookup)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: d}),
                    "title": capfirst(
                        formats.date_format(datetime.date(year, month, d), "MONTH_DAY_FORMAT")
                    ),
                }
                for d in days
            ],
        }
    if year_lookup:
        year = int(year_lookup)
        months = range(
            first.month if first.year == year else 1, (last.month if last.year == year else 12) + 1
        )
        return base | {
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [
                {
                    "link": link({year_field: year, month_field: m}),
                    "title": capfirst(
                        formats.date_format(datetime.date(year, m, 1), "YEAR_MONTH_FORMAT")
                    ),
                }
                for m in months
            ],
        }
    return base | {
        "back": None,
        "choices": [
            {"link": link({year_field: str(y)}), "title": str(y)}
            for y in range(first.year, last.year + 1)
        ],
    }
