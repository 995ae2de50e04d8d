"""``fluidv run FILE``: run the data operations of a YAML file on the local cluster."""

from __future__ import annotations

import json
import signal
from typing import Any

import click

from fluid_core.cli.errors import CommandError, reported
from fluid_core.display import operations_table


class Stopped(CommandError):
    """The run got SIGTERM or SIGHUP: its steps were stopped; exit code 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}: every running step was "
                         "stopped and its operation marked Failed")
        self.exit_code = 128 + signum  # type: ignore[misc]  # click reads it from the instance


def _stopped(signum: int, _frame: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def _stop(local: Any, console: Any) -> None:
    """Stop the cluster this run started (the last run out), saying so."""
    console.print(f"stopping the cluster this run started: {local.describe()} ...")
    local.stop()


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print each operation's final status as JSON.")
@click.option("--workdir", help="Working directory of the local cluster [$FLUIDV_HOME or ./.fluidv].")
@click.option("--nodes", type=int, default=3, show_default=True, help="Nodes, when a cluster has to be started.")
@click.option("--size", default="1Gi", show_default=True, help="Memory per node (1Gi, 512MiB, 2GB), when a cluster has to be started.")
@click.option("--run-id", help="Label of the objects this run writes (default: a fresh id).")
@click.option("--until", type=float, help="Seconds to keep Cron and OnEvent operations firing.")
@click.option("--timeout", type=float, help="Fail what still runs after this many seconds.")
def run(path: str, as_json: bool, workdir: str | None, nodes: int, size: str, run_id: str | None,
        until: float | None, timeout: float | None) -> None:
    """Run the Dataset and Data* resources of PATH on the local cluster (started if none runs)."""
    from rich.live import Live  # noqa: PLC0415

    from fluid_core.cli import tables  # noqa: PLC0415

    from fluid_core.documents import load_documents, parse_all  # noqa: PLC0415
    from fluid_core.flow import LocalRunner  # noqa: PLC0415
    from fluid_core.flow.validate import FlowInvalid  # noqa: PLC0415
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415
    from vineyard_runtime.local.cluster import is_running  # noqa: PLC0415
    from vineyard_runtime.local.layout import default_workdir  # noqa: PLC0415
    from vineyard_runtime.local.users import ClusterUsers  # noqa: PLC0415

    with reported():
        resources, invalid = parse_all(load_documents(path))
    if invalid:
        for problem in invalid:
            for field, message in problem.problems:
                click.echo(f"{problem.kind}/{problem.name}: {field}: {message}", err=True)
        raise CommandError(f"{len(invalid)} invalid resource(s) in {path}; nothing was run")
    console = tables.console(stderr=as_json)
    users = ClusterUsers(workdir or default_workdir())
    joined, stopped = False, None
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with users.deciding():  # one command at a time starts a cluster or finds it running
            started_here = not is_running(workdir)
            with reported():
                local = (LocalCluster(nodes=nodes, size=size, workdir=workdir) if started_here
                         else LocalCluster.attach(workdir))
            try:  # checked before a cluster is started for it
                runner = LocalRunner(local, resources, run_id=run_id)
            except FlowInvalid as exc:
                for where, message in exc.problems:
                    click.echo(f"{where}: {message}", err=True)
                raise CommandError("the flow was rejected before anything ran") from None
            users.join(started=started_here)
            joined = True
            if started_here:
                console.print(f"starting a {nodes}-node local cluster ({size} per node) ...")
                with reported():
                    local.start(detach=True)  # it may outlive this run: another may join it
        with Live(console=console, auto_refresh=False, transient=as_json) as live:
            runner.on_change = lambda runs: live.update(operations_table(runs), refresh=True)
            try:
                runs = runner.run(until=until, timeout=timeout)
            except Stopped as exc:  # the steps are stopped and marked: report them, then exit
                stopped, runs = exc, runner.operations
        if not console.is_terminal and not as_json:  # rich ends the last frame with a newline on terminals only
            console.line()
    finally:
        if joined:  # the last run out stops a cluster a run started, never one under another run
            users.leave(lambda: _stop(local, console))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if as_json:
        click.echo(json.dumps([r.summary() for r in runs], indent=2))
    if stopped is not None:
        raise stopped
    failed = [r for r in runs if r.phase == "Failed"]
    if failed:
        raise CommandError(f"{len(failed)} operation(s) failed: " + ", ".join(f"{r.kind}/{r.name}" for r in failed))
