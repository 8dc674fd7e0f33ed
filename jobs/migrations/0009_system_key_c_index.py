"""An index of the system jobs' idempotency keys, compared byte by byte (collation "C").

The scheduler finds a schedule's latest run (``jobs.scheduler.runner.last_run``, on
every tick and on the admin dashboard) as the last key with the prefix
``periodic:<schedule>:``. With this index that prefix is a range of it; without it the
query walked the system jobs' keys one by one, more of them as the ledger grows.

Built with ``CREATE INDEX CONCURRENTLY`` (the migration is not atomic), so on a
populated database submissions and workers keep writing ``jobs_job`` meanwhile.
"""

import django.db.models.functions.comparison
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0008_provider_deliveries_plural"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                django.db.models.functions.comparison.Collate("idempotency_key", "C"),
                condition=models.Q(
                    ("idempotency_key__isnull", False), ("organization__isnull", True)
                ),
                name="jobs_system_key_c",
            ),
        ),
    ]
