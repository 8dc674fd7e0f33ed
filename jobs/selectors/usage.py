"""Reads of an organization's usage of the job system."""

from __future__ import annotations

from datetime import datetime

from jobs.models import Job
from tenants.models import Organization


def jobs_created_since(*, organization: Organization, since: datetime) -> int:
    """How many jobs the organization created at or after ``since`` (its quota's usage)."""
    return Job.objects.filter(organization=organization, created_at__gte=since).count()
