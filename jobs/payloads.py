"""Base class for payload serializers: DRF validation that also refuses unknown fields."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class PayloadSerializer(serializers.Serializer[dict[str, Any]]):
    """Validates a job payload. Unknown keys are errors, so typos are not silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field; this job type does not take it."] for name in unknown}
                )
        return super().to_internal_value(data)
