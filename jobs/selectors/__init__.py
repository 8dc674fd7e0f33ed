"""Reads of the ledger and of the broker's live state, for the edges (API, admin, CLI, metrics).

Every read for a tenant takes its organization (or the organizations the
caller may see) explicitly. One module per subject: ``jobs``, ``dashboard``,
``queues`` (depths and workers), ``operations`` (what operators inspect),
``dead_letters``, ``recovery`` (the recovery loop's queries) and ``usage``.
"""

from __future__ import annotations

from jobs.selectors.jobs import job_get, jobs_for_organization

__all__ = ["job_get", "jobs_for_organization"]
