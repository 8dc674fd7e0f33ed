"""``content.generate_lesson``: an AI lesson, streamed to the job's event stream."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.integrations.openai import chat_completion_stream, lesson_messages
from jobs.payloads import PayloadSerializer
from jobs.registry import job_type
from jobs.runtime import current_job


class LessonPayload(PayloadSerializer):
    topic = serializers.CharField(max_length=500)
    grade_level = serializers.CharField(max_length=50)


@job_type(
    "content.generate_lesson",
    queue="ai_generation",
    payload=LessonPayload,
    description="Generate a lesson for a topic and grade level with an OpenAI chat completion.",
    max_retries=3,
    min_backoff_ms=5_000,
    max_backoff_ms=120_000,
    time_limit_ms=300_000,
    soft_time_limit_ms=240_000,
)
def generate_lesson(*, topic: str, grade_level: str) -> dict[str, Any]:
    """Stream a lesson from the model; each text chunk is published as a ``partial`` event."""
    job = current_job()

    def on_delta(text: str) -> None:
        if job is not None:
            job.publish_partial(text)

    completion = chat_completion_stream(
        messages=lesson_messages(topic=topic, grade_level=grade_level), on_delta=on_delta
    )
    return {"topic": topic, "grade_level": grade_level, **completion}
