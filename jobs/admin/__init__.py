"""Django admin for jobs: the job list and detail, actions, dead letters and the dashboard."""

from __future__ import annotations

from jobs.admin.jobs import JobAdmin

__all__ = ["JobAdmin"]
