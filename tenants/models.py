from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class Organization(models.Model):
    """A tenant of the platform: every non-system job belongs to one.

    Parameters:
      slug: unique, URL-safe name used by the API and the CLI.
      max_submissions_per_minute: submission rate limit, in jobs per minute.
      max_concurrent_jobs: how many of its jobs may run at once across all workers.
      monthly_job_quota: jobs per calendar month (UTC); null means unlimited.
    """

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    max_submissions_per_minute = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1)]
    )
    max_concurrent_jobs = models.PositiveIntegerField(default=20, validators=[MinValueValidator(1)])
    monthly_job_quota = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug
