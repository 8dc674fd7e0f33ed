"""The main process of ``manage.py rundramatiq``: Dramatiq's, plus replacing retired workers.

Dramatiq's own main process (``dramatiq.cli.main``) shuts every worker down
as soon as one exits. That is right for a crash, but a worker process that
retires at JOBS_WORKER_MAX_JOBS or JOBS_WORKER_MAX_RSS_MB
(:class:`jobs.middleware.recycling.WorkerRecycling`) exits on purpose, with
code 0, and needs a successor. This module is that main process: it parses
Dramatiq's command line with Dramatiq's parser and runs Dramatiq's own worker
and fork process functions, and differs only in what happens when a worker
exits:

- code 0 while running (a retired worker, or one an operator stopped with
  SIGTERM): a fresh worker process starts in its place;
- any other code (a crash, ``kill -9``, a failed boot): every process is
  stopped and the main process exits with that code, as Dramatiq's does.

It imports neither Django nor the project's modules: worker processes are
forked from it and set Django up themselves (``jobs.worker``). Run as
``python -m jobs.management.supervisor <dramatiq arguments>``;
:func:`command_line` builds that command from ``rundramatiq``'s options.
Checked against Dramatiq 2.2.1's ``cli.main``; re-check on an upgrade.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
import threading
from argparse import Namespace
from itertools import chain
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from dramatiq import __version__ as dramatiq_version
from dramatiq import cli
from dramatiq.canteen import Canteen, canteen_get
from dramatiq.compat import StreamablePipe, file_or_stderr


def command_line(options: dict[str, Any], modules: list[str]) -> list[str]:
    """``python -m jobs.management.supervisor …`` for ``rundramatiq``'s parsed options."""
    argv = [sys.executable, "-m", __name__, "--path", *options["path"]]
    argv += ["--processes", str(options["processes"]), "--threads", str(options["threads"])]
    argv += ["--worker-shutdown-timeout", str(options["worker_shutdown_timeout"])]
    if options.get("watch_dir"):
        argv += ["--watch", options["watch_dir"]]
        if options.get("use_polling_watcher"):
            argv.append("--watch-use-polling")
    for function in options.get("forks") or []:
        argv += ["--fork-function", function]
    argv += ["-v"] * (int(options.get("verbosity", 1)) - 1)
    argv += modules
    if options.get("queues"):
        argv += ["--queues", *options["queues"]]
    for flag in ("pid_file", "log_file"):
        if options.get(flag):
            argv += ["--" + flag.replace("_", "-"), options[flag]]
    if options.get("skip_logging"):
        argv.append("--skip-logging")
    if options.get("use_spawn"):
        argv.append("--use-spawn")
    return argv


def _worker_main(*args: Any) -> None:
    # A worker forked after the main process set its logging up inherits those
    # handlers, and Dramatiq's logging.basicConfig would then leave them in place.
    logging.root.handlers.clear()
    cli.worker_process(*args)


class Supervisor:
    """Dramatiq's worker and fork processes, with a fresh worker for each that exits cleanly.

    Parameters:
      args: Dramatiq's parsed command line (``dramatiq.cli.make_argument_parser``).
    """

    def __init__(self, args: Namespace) -> None:
        self.args = args
        self.canteen: Any = multiprocessing.Value(Canteen)
        self.workers: list[BaseProcess] = []
        self.forks: list[BaseProcess] = []
        self.running = True
        self.reload = False
        self.log_stop = threading.Event()
        self.log_threads: list[threading.Thread] = []
        self.logger: logging.Logger = logging.getLogger("dramatiq.MainProcess")

    def start_worker(self, worker_id: int) -> tuple[BaseProcess, Any]:
        read_pipe, write_pipe = multiprocessing.Pipe(duplex=False)
        booted = multiprocessing.Event()
        process = multiprocessing.Process(
            target=_worker_main,
            args=(self.args, worker_id, StreamablePipe(write_pipe), self.canteen, booted),
            daemon=False,
        )
        process.start()
        write_pipe.close()
        self.watch_logs([read_pipe])
        return process, booted

    def watch_logs(self, pipes: list[Connection]) -> None:
        """Copy these pipes to the log file (or stderr) until they close (Dramatiq's ``watch_logs``)."""
        thread = threading.Thread(
            target=cli.watch_logs, args=(self.args.log_file, pipes, self.log_stop), daemon=False
        )
        thread.start()
        self.log_threads.append(thread)

    def start(self) -> Any:
        """Start the workers, then the fork processes; the file watcher with ``--watch``."""
        # Children, and the watcher thread, inherit blocked signals; children unblock
        # them once their own handlers are set.
        cli.try_block_signals()
        booting = [self.start_worker(worker_id) for worker_id in range(self.args.processes)]
        self.workers = [process for process, _ in booting]
        # As Dramatiq does: fork processes start once the workers are up (dramatiq#297, #701).
        for process, booted in booting:
            if process.is_alive() and not booted.wait(timeout=self.args.worker_fork_timeout / 1000):
                break
        fork_pipes = []
        for fork_id, fork_path in enumerate(chain(self.args.forks, canteen_get(self.canteen))):
            read_pipe, write_pipe = multiprocessing.Pipe(duplex=False)
            process = multiprocessing.Process(
                target=cli.fork_process,
                args=(self.args, fork_id, fork_path, StreamablePipe(write_pipe)),
                daemon=True,
            )
            process.start()
            write_pipe.close()
            fork_pipes.append(read_pipe)
            self.forks.append(process)
        parent_read, parent_write = multiprocessing.Pipe(duplex=False)
        self.logger = cli.setup_parent_logging(self.args, stream=StreamablePipe(parent_write))
        self.logger.info("Dramatiq %r is booting up (worker recycling on).", dramatiq_version)
        if self.args.pid_file:
            atexit.register(cli.remove_pidfile, self.args.pid_file, self.logger)
        self.watch_logs([parent_read, *fork_pipes])
        watcher = None
        if self.args.watch:
            watcher = cli.setup_file_watcher(
                self.args.watch,
                self.args.watch_use_polling,
                self.args.include_patterns,
                self.args.exclude_patterns,
            )
        for sig in cli.HANDLED_SIGNALS:
            signal.signal(sig, self.on_signal)
        cli.try_unblock_signals()
        return watcher

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        self.reload = sig == getattr(signal, "SIGHUP", None)
        if sig == signal.SIGINT:
            sig = signal.SIGTERM
        self.logger.info("Sending signal %r to subprocesses...", sig.name)
        self.stop_all(sig)

    def stop_all(self, sig: signal.Signals) -> None:
        self.running = False
        for process in chain(self.workers, self.forks):
            if process.pid is not None and process.exitcode is None:
                try:
                    os.kill(process.pid, sig.value)
                except OSError:
                    self.logger.warning("Failed to send %r to PID %d.", sig.name, process.pid)

    def replace(self, slot: int, exited: BaseProcess) -> None:
        # Signals wait while the successor starts, so a stop cannot miss it.
        cli.try_block_signals()
        try:
            if self.running:
                self.workers[slot], _ = self.start_worker(slot)
                self.logger.info(
                    "Worker process %d exited cleanly; started %d in its place.",
                    exited.pid,
                    self.workers[slot].pid,
                )
        finally:
            cli.try_unblock_signals()

    def wait(self) -> int:
        """Wait for every worker to exit, replacing those that retire; the exit code."""
        retcode = cli.RET_OK
        while any(process.exitcode is None for process in self.workers):
            for slot, process in enumerate(list(self.workers)):
                process.join(timeout=1 / len(self.workers))
                if process.exitcode is None:
                    continue
                if self.running and process.exitcode == cli.RET_OK:
                    self.replace(slot, process)
                elif self.running:
                    self.logger.critical(
                        "Worker with PID %r exited unexpectedly (code %r). Shutting down...",
                        process.pid,
                        process.exitcode,
                    )
                    self.stop_all(signal.SIGTERM)
                    retcode = process.exitcode
                else:
                    retcode = retcode or process.exitcode
        self.log_stop.set()
        for thread in self.log_threads:
            thread.join()
        return cli.RET_KILLED if retcode < 0 else retcode


def main(argv: list[str] | None = None) -> int:
    """Dramatiq's ``main``, with a successor for every worker that exits cleanly."""
    args = cli.make_argument_parser().parse_args(argv)
    for path in args.path:
        sys.path.insert(0, path)
    if args.use_spawn:
        multiprocessing.set_start_method("spawn")
    problem, code = None, cli.RET_OK
    try:
        if args.pid_file:
            cli.setup_pidfile(args.pid_file)
    except RuntimeError as exc:
        problem, code = exc, cli.RET_PIDFILE
    if args.watch and not cli.HAS_WATCHDOG:
        problem = RuntimeError("Watching for source changes requires the watchdog package.")
        code = cli.RET_IMPORT
    if problem is not None:
        with file_or_stderr(args.log_file) as stream:
            cli.setup_parent_logging(args, stream=stream).critical(problem)
        return code
    supervisor = Supervisor(args)
    watcher = supervisor.start()
    retcode = supervisor.wait()
    if watcher is not None:
        watcher.stop()
        watcher.join()
    if supervisor.reload:
        os.execv(sys.executable, [sys.executable, "-m", __name__, *sys.argv[1:]])  # noqa: S606
    return retcode


if __name__ == "__main__":
    sys.exit(main())
