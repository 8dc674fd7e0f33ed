"""Serializer fields of the API that are stricter than DRF's."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictFloatField(serializers.FloatField):
    """A number; ``true`` and ``false`` are refused (DRF's ``FloatField`` reads them as 1.0 and 0.0)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)
