"""Chat completions through the official ``openai`` client (any OpenAI-compatible server)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dramatiq import Retry

from jobs.conf import jobs_settings
from jobs.errors import PermanentJobError
from jobs.integrations import ProviderUnavailable, redact, retry_after_ms

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are an educational content creator for ToolBoxAI. Write clear, engaging, "
    "age-appropriate lessons with objectives, an explanation, an activity and a short quiz."
)

#: Client errors that retrying cannot fix.
_PERMANENT_STATUSES = {400, 401, 403, 404, 422}


def chat_completion_stream(
    *, messages: list[ChatCompletionMessageParam], on_delta: Callable[[str], None]
) -> dict[str, Any]:
    """Stream one chat completion, calling ``on_delta`` with each piece of text.

    Returns ``{"content", "model", "finish_reason", "usage"}``. Uses OPENAI_API_KEY,
    OPENAI_MODEL, OPENAI_BASE_URL and OPENAI_TIMEOUT_MS; the client's own retries are
    off, because Dramatiq retries the job (honouring a 429's Retry-After).
    """
    api_key = jobs_settings.openai_api_key
    if not api_key:
        raise PermanentJobError(
            "OPENAI_API_KEY is not set, so no lesson can be generated. Set it in the "
            "environment of the workers (and OPENAI_BASE_URL for a self-hosted server), "
            "then retry the job."
        )
    # Imported on first use: the SDK costs about a second of CPU to import, which every
    # worker, web and management process would otherwise pay at start.
    import openai

    client = openai.OpenAI(
        api_key=api_key,
        base_url=jobs_settings.openai_base_url,
        timeout=jobs_settings.openai_timeout_ms / 1000,
        max_retries=0,
    )
    model = jobs_settings.openai_model
    parts: list[str] = []
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    response_model = model
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            response_model = chunk.model or response_model
            if chunk.usage is not None:
                usage = {
                    "prompt_tokens": chunk.usage.prompt_tokens,
                    "completion_tokens": chunk.usage.completion_tokens,
                    "total_tokens": chunk.usage.total_tokens,
                }
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                    on_delta(choice.delta.content)
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
    except openai.RateLimitError as exc:
        delay = retry_after_ms(exc.response.headers)
        raise Retry(
            f"OpenAI rate limit (429): {redact(exc.message, api_key)}", delay=delay
        ) from None
    except openai.APIStatusError as exc:
        text = redact(exc.message, api_key)
        if exc.status_code in _PERMANENT_STATUSES:
            raise PermanentJobError(
                f"OpenAI refused the request ({exc.status_code}): {text}. Retrying cannot help; "
                "check OPENAI_MODEL, OPENAI_API_KEY and the payload."
            ) from None
        raise ProviderUnavailable(f"OpenAI answered {exc.status_code}: {text}") from None
    except openai.APIConnectionError as exc:
        raise ProviderUnavailable(
            f"OpenAI at {jobs_settings.openai_base_url} is unreachable: {redact(str(exc), api_key)}"
        ) from None
    return {
        "content": "".join(parts),
        "model": response_model,
        "finish_reason": finish_reason,
        "usage": usage,
    }


def lesson_messages(*, topic: str, grade_level: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Create a lesson about {topic} for {grade_level}."},
    ]
