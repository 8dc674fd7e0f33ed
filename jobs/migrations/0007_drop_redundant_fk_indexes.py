"""Drop the foreign-key indexes that wider indexes already cover.

``jobs_job.organization_id`` leads ``jobs_org_created`` and
``jobs_org_status_created``; ``jobs_jobattempt.job_id`` leads the
``jobs_attempt_job_number`` unique constraint. Each index costs every claim
and finish of a job an index entry (status changes are not HOT updates).

Only the indexes are dropped: Django's own ``AlterField`` would drop and
re-add the foreign keys too, which re-validates every row of a large table
under lock.
"""

import django.db.models.deletion
from django.db import migrations, models

JOB_ORG_INDEX = "jobs_job_organization_id_7d00dcbc"
ATTEMPT_JOB_INDEX = "jobs_jobattempt_job_id_05797094"


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0006_job_outbox"),
        ("tenants", "0003_organization_usage"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{JOB_ORG_INDEX}"',
                    f'CREATE INDEX IF NOT EXISTS "{JOB_ORG_INDEX}" ON "jobs_job" ("organization_id")',
                ),
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{ATTEMPT_JOB_INDEX}"',
                    f'CREATE INDEX IF NOT EXISTS "{ATTEMPT_JOB_INDEX}" ON "jobs_jobattempt" ("job_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="job",
                    name="organization",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="jobs",
                        to="tenants.organization",
                    ),
                ),
                migrations.AlterField(
                    model_name="jobattempt",
                    name="job",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attempt_set",
                        to="jobs.job",
                    ),
                ),
            ],
        ),
    ]
