"""An OpenAI-compatible server: ``POST /v1/chat/completions``, streamed (SSE) or not."""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import FakeHTTPServer, RecordedRequest


def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class FakeOpenAI(FakeHTTPServer):
    """Answers chat completions with ``reply`` split into ``chunks`` streamed pieces."""

    def __init__(self, *, api_key: str, reply: str = "", chunk_size: int = 7) -> None:
        super().__init__(api_key=api_key)
        self.reply = reply or (
            "Lesson: Photosynthesis. Objectives: explain how plants make food from light. "
            "Activity: grow cress in the dark and in the light. Quiz: what gas do plants release?"
        )
        self.chunk_size = chunk_size

    def chunks(self) -> list[str]:
        return [
            self.reply[i : i + self.chunk_size] for i in range(0, len(self.reply), self.chunk_size)
        ]

    def handle(self, handler: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
        if request.path.rstrip("/") != "/v1/chat/completions":
            self.send_json(handler, 404, openai_error("Unknown path.", "invalid_request_error"))
            return
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            self.send_json(
                handler,
                401,
                openai_error(
                    "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                ),
            )
            return
        body = request.json()
        model = body.get("model", "fake-model")
        prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
        completion_tokens = len(self.chunks())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        if not body.get("stream"):
            self.send_json(
                handler,
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()

        def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **(extra or {}),
            }
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            handler.wfile.flush()

        event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in self.chunks():
            event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            event([], {"usage": usage})
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()
        handler.close_connection = True
