"""``manage.py rundramatiq``: run Dramatiq workers for every job type.

Built on django-dramatiq's command (flags, autoreload), it execs
``jobs.management.supervisor`` (Dramatiq's main process, plus a fresh worker
process for each that retires at JOBS_WORKER_MAX_JOBS or JOBS_WORKER_MAX_RSS_MB),
with our defaults: processes and threads from JOBS_WORKER_*, every queue's
priority bands, the broker built by ``jobs.apps`` rather than at import, the
Prometheus exporter on PROMETHEUS_PORT (``jobs.exporter``), and the jobs of this
host's dead workers recovered before it starts (``jobs.services.restart_recovery``).
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django_dramatiq.management.commands.rundramatiq import Command as DjangoDramatiqCommand

from jobs.conf import jobs_settings
from jobs.exporter import prepare_metrics_dir
from jobs.management.supervisor import command_line
from jobs.metrics_access import exporter_exposure_problem
from jobs.queues import CONSUMED_QUEUES, all_redis_queue_names
from jobs.services.restart_recovery import host_dead_workers_recover_at_start


class Command(DjangoDramatiqCommand):
    help = "Run Dramatiq workers for every job type (all queues and priority bands by default)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(
            processes=jobs_settings.worker_processes,
            threads=jobs_settings.worker_threads,
            worker_shutdown_timeout=jobs_settings.worker_shutdown_timeout_ms,
        )
        parser.add_argument(
            "--worker-fork-timeout",
            type=int,
            default=30_000,
            help="How long (ms) to wait for worker processes to come online before starting "
            "fork processes such as the metrics exporter. Dramatiq waits this long whenever "
            "a worker dies while booting, so keep it short where jobs may crash workers.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._fork_timeout = int(options.pop("worker_fork_timeout"))
        if not 10 <= self._fork_timeout <= 1_800_000:
            raise CommandError("--worker-fork-timeout must be from 10 to 1800000 ms.")
        queues = options.get("queues")
        if queues:
            unknown = sorted(set(queues) - set(CONSUMED_QUEUES))
            if unknown:
                raise CommandError(
                    f"Unknown queue(s): {', '.join(unknown)}. "
                    f"Choose from: {', '.join(CONSUMED_QUEUES)}."
                )
            options["queues"] = all_redis_queue_names(list(queues))
        if options["processes"] < 1 or options["threads"] < 1:
            raise CommandError("--processes and --threads must be at least 1.")
        # Dramatiq reads its consumer poll ceiling from the environment at import.
        os.environ.setdefault("dramatiq_worker_timeout", str(jobs_settings.worker_poll_ms))
        if problem := exporter_exposure_problem():
            raise CommandError(problem)
        if jobs_settings.prometheus_port:
            # Every worker process writes its metrics here; one fork process serves their sum.
            metrics_dir = jobs_settings.metrics_dir
            prepare_metrics_dir(metrics_dir)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            options["forks"] = [*(options.get("forks") or []), "jobs.worker:serve_metrics"]
        host_dead_workers_recover_at_start()
        if options.get("use_gevent"):
            raise CommandError("--use-gevent is not supported: workers run threads.")
        # Not super().handle(): it would exec Dramatiq's main process, which stops every
        # worker when one exits; ours replaces a worker that retired (worker recycling).
        argv = command_line(options, self.discover_tasks_modules())
        self.stdout.write(f" * Running dramatiq: {' '.join(argv)}\n\n")
        self.stdout.flush()
        os.execv(argv[0], argv)  # noqa: S606 (the interpreter itself, fixed arguments)

    def discover_tasks_modules(self) -> list[str]:
        # jobs.worker sets Django up; JobsConfig.ready() then discovers and binds every actor.
        # django-dramatiq's command has no flag for the fork timeout; the dramatiq CLI
        # accepts options after its module arguments, so it travels with them.
        return ["jobs.worker", "--worker-fork-timeout", str(self._fork_timeout)]
