"""Cron expressions, evaluated in UTC.

Parsing is periodiq's (:meth:`periodiq.CronSpec.parse`: ``m h dom mon dow``,
ranges, lists, steps, ``sun`` to ``sat`` and ``@daily``-style names). Matching
and the next/previous tick are ours, because periodiq 0.14 gets them wrong:

- its ``validate()`` compares the day of week against ``isoweekday()``
  (Monday=1 … Sunday=7) while the parsed field uses cron's Sunday=0, so a
  day-of-week of ``0`` or ``sun`` never matches, and Sunday schedules never fire;
- its ``next_valid_date()`` keeps the minute and hour it reached when it
  moves on to a later hour or day, so ``*/5 2 * * *`` asked at 01:07 answers
  02:10 instead of 02:00.

Here day-of-week ``7`` is folded onto ``0`` (a range ending on ``sun``, such
as ``fri-sun``, ends on 7) and compared with
``(weekday() + 1) % 7`` (cron's numbering), and the next/previous tick are
found field by field, resetting the smaller fields at each carry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from periodiq import CronSpec

from jobs.errors import InvalidSchedule

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
#: Longest span searched for a matching minute (a leap day on a given weekday can take 28 years).
_SEARCH_YEARS = 30


class CronExpression:
    """A five-field cron expression (``m h dom mon dow``), always evaluated in UTC.

    Parameters:
      expression: e.g. ``0 2 * * *`` (daily at 02:00 UTC), ``*/30 * * * *``,
        ``0 9 * * sun`` or ``@weekly``. Day of week: 0 or 7 is Sunday.
    """

    def __init__(self, expression: str) -> None:
        self.expression = " ".join(expression.split())
        spec = _parse(self.expression)
        self.minutes = frozenset(spec.minute)
        self.hours = frozenset(spec.hour)
        self.days = frozenset(spec.dom)
        self.months = frozenset(spec.month)
        self.weekdays = frozenset(0 if d == 7 else d for d in spec.dow)
        # Vixie cron: when both day fields are restricted, a day matching either one fires.
        self._dom_restricted = len(self.days) < 31
        self._dow_restricted = len(self.weekdays) < 7

    def __str__(self) -> str:
        return self.expression

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronExpression) and self.expression == other.expression

    def __hash__(self) -> int:
        return hash(self.expression)

    def matches(self, when: datetime) -> bool:
        """Whether the minute of ``when`` (converted to UTC) is a tick."""
        when = _utc(when)
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and when.month in self.months
            and self._day_matches(when)
        )

    def next_after(self, when: datetime) -> datetime:
        """The first tick strictly after ``when``, in UTC."""
        candidate = _utc(when).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = candidate + timedelta(days=366 * _SEARCH_YEARS)
        while candidate < limit:
            if candidate.month not in self.months:
                year, month = divmod(candidate.year * 12 + candidate.month, 12)
                candidate = candidate.replace(year=year, month=month + 1, day=1, hour=0, minute=0)
            elif not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
            elif candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
            else:
                return candidate
        raise InvalidSchedule(f"Cron expression {self.expression!r} never fires.")

    def latest_at_or_before(self, when: datetime) -> datetime:
        """The last tick at or before ``when``, in UTC (the tick ``when`` belongs to)."""
        candidate = _utc(when).replace(second=0, microsecond=0)
        limit = candidate - timedelta(days=366 * _SEARCH_YEARS)
        while candidate > limit:
            if candidate.month not in self.months:
                candidate = candidate.replace(day=1, hour=0, minute=0) - timedelta(minutes=1)
            elif not self._day_matches(candidate):
                candidate = candidate.replace(hour=0, minute=0) - timedelta(minutes=1)
            elif candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0) - timedelta(minutes=1)
            elif candidate.minute not in self.minutes:
                candidate -= timedelta(minutes=1)
            else:
                return candidate
        raise InvalidSchedule(f"Cron expression {self.expression!r} never fires.")

    def _day_matches(self, when: datetime) -> bool:
        in_dom = when.day in self.days
        in_dow = (when.weekday() + 1) % 7 in self.weekdays  # cron: Sunday=0 … Saturday=6
        if self._dom_restricted and self._dow_restricted:
            return in_dom or in_dow
        return in_dom and in_dow


def _parse(expression: str) -> CronSpec:
    fields = expression.split()
    if not expression.startswith("@") and len(fields) != 5:
        raise InvalidSchedule(
            f"Cron expression {expression!r} has {len(fields)} fields; use five: "
            "minute hour day-of-month month day-of-week (e.g. '0 2 * * *')."
        )
    if len(fields) == 5:
        # periodiq maps sun to 0, so "sat-sun" would be the empty range 6-0: end on 7 instead.
        fields[4] = fields[4].lower().replace("-sun", "-7")
        expression = " ".join(fields)
    try:
        spec = CronSpec.parse(expression)
    except (KeyError, ValueError, IndexError) as exc:
        raise InvalidSchedule(
            f"Cron expression {expression!r} cannot be parsed ({exc!r}); use five fields "
            "such as '0 2 * * *', '*/30 * * * *' or '0 9 * * sun'."
        ) from None
    values = (spec.minute, spec.hour, spec.dom, spec.month, spec.dow)
    for (name, low, high), field_values in zip(_FIELDS, values, strict=True):
        if not field_values or min(field_values) < low or max(field_values) > high:
            raise InvalidSchedule(
                f"Cron expression {expression!r}: the {name} field must stay within "
                f"{low}-{high}, got {sorted(field_values)}."
            )
    return spec


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise InvalidSchedule(f"{when!r} has no time zone; schedules work on aware UTC times.")
    return when.astimezone(UTC)
