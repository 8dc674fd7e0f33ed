"""A small typed client of the toolboxai jobs REST API, over httpx, without Django."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from toolboxai_jobs_client.errors import (
    ApiError,
    ConnectionFailed,
    NotFound,
    WaitTimeout,
    api_error,
)
from toolboxai_jobs_client.models import (
    DeadLetterGroup,
    DeadLetterResult,
    Job,
    JobRequest,
)
from toolboxai_jobs_client.sse import sse_events

logger = logging.getLogger(__name__)

#: Answers of the stream endpoint after which :meth:`Client.wait` polls instead: not found
#: there (a server without it, a proxy), not allowed, over the stream cap, or failing.
_STREAM_FALLBACK_STATUSES = frozenset({404, 405, 406, 429, 500, 501, 502, 503, 504})


class Client:
    """The jobs API of one organization, through one API key.

    Parameters:
      base_url: the server, e.g. ``https://jobs.example.com`` (the API is under ``/api/v1/``).
      api_key: a key from ``manage.py createapikey`` (``tbx_…``).
      stream_base_url: where the event streams are served, when not at ``base_url``
        (a separate events service); :meth:`wait` falls back to polling ``base_url``
        when it fails.
      timeout: seconds for each request (connect, read and write).
      poll_interval: seconds between two reads of a job while :meth:`wait` polls.
      organization: ``X-Organization`` for a staff session's cookie-less use (rare).
      transport: an httpx transport, for tests or custom networking.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        stream_base_url: str | None = None,
        timeout: float = 10.0,
        poll_interval: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._stream = httpx.Client(
            base_url=(stream_base_url or base_url).rstrip("/"),
            headers={**headers, "Accept": "text/event-stream"},
            timeout=httpx.Timeout(timeout, read=max(timeout, 30.0)),
            transport=transport,
        )
        self.poll_interval = poll_interval
        self.dead_letters = DeadLetters(self)

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()
        self._stream.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- jobs --------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        delay_seconds: float | None = None,
    ) -> Job:
        """Submit one job; the same ``idempotency_key`` again returns the first job."""
        body: dict[str, Any] = {"type": type, "payload": dict(payload or {})}
        if priority is not None:
            body["priority"] = priority
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if delay_seconds is not None:
            body["delay_seconds"] = delay_seconds
        return Job.from_api(self._request("POST", "/api/v1/jobs/", json=body))

    def submit_many(self, jobs: Sequence[JobRequest | Mapping[str, Any]]) -> list[Job]:
        """Submit up to 1,000 jobs at once: all are created, or none (an error names the index)."""
        data = self._request("POST", "/api/v1/jobs/batch/", json={"jobs": [dict(j) for j in jobs]})
        return [Job.from_api(item) for item in data["jobs"]]

    def get(self, job_id: str) -> Job:
        """The job now. Raises :class:`NotFound` for an unknown id (or another organization's)."""
        return Job.from_api(self._request("GET", f"/api/v1/jobs/{job_id}/"))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job; a running one stops at its next checkpoint. :class:`Conflict` once finished."""
        return Job.from_api(self._request("POST", f"/api/v1/jobs/{job_id}/cancel/"))

    def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again (costs one submission of the rate limit and quota)."""
        return Job.from_api(self._request("POST", f"/api/v1/jobs/{job_id}/retry/"))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> Job:
        """Wait until the job finishes, and return it (its ``result``, or its ``error``).

        Follows the job's event stream (``on_event`` gets each event's name and data:
        ``status``, ``progress``, ``partial``). When the stream endpoint cannot be
        reached, is not there (404), refuses (405, 429) or fails (5xx), it polls
        :meth:`get` every ``poll_interval`` seconds instead.

        Raises:
          WaitTimeout: ``timeout`` seconds passed first (``.job`` is the job as last seen).
          NotFound: no such job in the key's organization.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self._follow_stream(job_id, deadline, on_event)
        while job is None or not job.finished:
            job = self.get(job_id)
            if job.finished:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"Job {job_id} is still {job.status} after {timeout} s.", job=job)
            time.sleep(self.poll_interval)
        return job

    def _follow_stream(
        self,
        job_id: str,
        deadline: float | None,
        on_event: Callable[[str, dict[str, Any]], None] | None,
    ) -> Job | None:
        """The finished job from its event stream; None to poll instead."""
        job: Job | None = None
        while deadline is None or time.monotonic() < deadline:
            try:
                with self._stream.stream("GET", f"/api/v1/jobs/{job_id}/events/") as response:
                    if response.status_code in _STREAM_FALLBACK_STATUSES:
                        logger.info(
                            "Event stream of job %s answered %d; polling instead.",
                            job_id,
                            response.status_code,
                        )
                        return None
                    if response.status_code != 200:
                        response.read()
                        raise _error(response)
                    if not response.headers.get("content-type", "").startswith("text/event-stream"):
                        return None
                    for event in sse_events(response.iter_lines()):
                        data = json.loads(event.data) if event.data else {}
                        if on_event is not None:
                            on_event(event.event, data)
                        if event.event == "gone":
                            raise NotFound(
                                status=404,
                                code="job_not_found",
                                message=f"Job {job_id} was deleted while it was followed.",
                            )
                        if event.event == "status":
                            job = Job.from_api(data)
                            if job.finished:
                                return job
                        if deadline is not None and time.monotonic() >= deadline:
                            return job
            except httpx.TransportError as exc:
                logger.info("Event stream of job %s failed (%s); polling instead.", job_id, exc)
                return None
            # The stream ended before the job finished (its time limit): follow it again.
        return job

    # --- plumbing ----------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"{method} {path} could not reach {self._http.base_url} ({exc!r})."
            ) from exc
        if response.status_code >= 400:
            raise _error(response)
        return response.json()


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return api_error(response.status_code, body, response.headers.get("Retry-After"))


class DeadLetters:
    """The organization's dead letters: ``client.dead_letters.list()``, ``.jobs()``, ``.replay()``, ``.purge()``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, *, type: str | None = None) -> list[DeadLetterGroup]:
        """The groups, largest first (``type``: of this job type only)."""
        params = {"type": type} if type else None
        data = self._client._request("GET", "/api/v1/dead-letters/", params=params)
        return [DeadLetterGroup.from_api(item) for item in data["results"]]

    def get(self, group_id: str) -> DeadLetterGroup:
        """One group. Raises :class:`NotFound` when the organization has none of it."""
        data = self._client._request("GET", f"/api/v1/dead-letters/{group_id}/")
        return DeadLetterGroup.from_api(data["group"])

    def jobs(self, group_id: str, *, page_size: int | None = None) -> Iterator[Job]:
        """Every job of a group, most recently dead-lettered first, a page at a time."""
        path: str | None = f"/api/v1/dead-letters/{group_id}/"
        params: dict[str, Any] | None = {"page_size": page_size} if page_size else None
        while path:
            data = self._client._request("GET", path, params=params)
            for item in data["results"]:
                yield Job.from_api(item)
            path, params = data.get("next"), None

    def replay(self, group_id: str, job_ids: Sequence[str] | None = None) -> DeadLetterResult:
        """Queue the group's jobs (or ``job_ids`` among them) again; one submission each."""
        return self._act(group_id, "replay", job_ids)

    def purge(self, group_id: str, job_ids: Sequence[str] | None = None) -> DeadLetterResult:
        """Take the group's jobs (or ``job_ids`` among them) off the dead-letter list."""
        return self._act(group_id, "purge", job_ids)

    def _act(self, group_id: str, action: str, job_ids: Sequence[str] | None) -> DeadLetterResult:
        body = {} if job_ids is None else {"job_ids": [str(i) for i in job_ids]}
        data = self._client._request(
            "POST", f"/api/v1/dead-letters/{group_id}/{action}/", json=body
        )
        return DeadLetterResult.from_api(data)
