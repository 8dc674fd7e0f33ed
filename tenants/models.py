from __future__ import annotations

from django.conf import settings
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


class Role(models.TextChoices):
    OWNER = "owner", "Owner"  # full control, including members and keys
    ADMIN = "admin", "Admin"  # manages jobs and keys
    MEMBER = "member", "Member"  # submits and follows jobs


class Membership(models.Model):
    """A user's place in an organization."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"], name="tenants_membership_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class ApiScope(models.TextChoices):
    """What an API key may do (docs/api.md, "Scopes"). A key holds any set of them."""

    JOBS_READ = "jobs:read", "Read jobs"  # list, read and stream jobs; job types; dead letters
    JOBS_WRITE = "jobs:write", "Submit, cancel and retry jobs"  # also the Celery-style submit
    DEAD_LETTERS_WRITE = "dead_letters:write", "Replay and purge dead letters"
    OPS = "ops", "Operate"  # every organization's queue totals, and the workers


#: A key's scopes when none are named: what every key could do before scopes existed.
DEFAULT_SCOPES: tuple[str, ...] = (ApiScope.JOBS_READ.value, ApiScope.JOBS_WRITE.value)
#: The read-only key's scopes.
READ_ONLY_SCOPES: tuple[str, ...] = (ApiScope.JOBS_READ.value,)


def default_scopes() -> list[str]:
    return list(DEFAULT_SCOPES)


class ApiKey(models.Model):
    """An API key of one membership. Only a hash of the key is stored.

    Parameters:
      prefix: the key's public, unique first part (``tbx_<prefix>_…``), shown in listings.
      key_hash: SHA-256 of the whole key; the key itself is shown once at creation.
      scopes: what the key may do (:class:`ApiScope` values).
    """

    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    # A JSON list of ApiScope values (written through tenants.services, which checks them).
    scopes = models.JSONField(
        default=default_scopes, blank=True, help_text="What the key may do; see docs/api.md."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (tbx_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class UsageFlag(models.TextChoices):
    NONE = "none", "Under 80 %"  # below 80 % of the monthly quota, or no quota
    WARNING = "80", "80 % of quota"  # at or above 80 % of the monthly quota
    EXCEEDED = "100", "Quota reached"  # at or above 100 % of the monthly quota


class OrganizationUsage(models.Model):
    """An organization's job usage in one UTC calendar month, against its quota.

    Written by the ``tenant.check_usage_limits`` job every 30 minutes.

    Parameters:
      month: the first day of the month.
      jobs_submitted: jobs the organization submitted that month.
      quota: its monthly_job_quota when measured (null: unlimited).
      flag: none, 80 (80 % of quota reached) or 100 (quota reached).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage")
    month = models.DateField()
    jobs_submitted = models.PositiveIntegerField(default=0)
    quota = models.PositiveIntegerField(null=True, blank=True)
    flag = models.CharField(max_length=8, choices=UsageFlag.choices, default=UsageFlag.NONE)
    flagged_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-month", "organization"]
        verbose_name_plural = "organization usage"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "month"], name="tenants_usage_org_month"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.month:%Y-%m}: {self.jobs_submitted}"

    @property
    def percent_of_quota(self) -> float | None:
        if not self.quota:
            return None
        return round(100 * self.jobs_submitted / self.quota, 1)
