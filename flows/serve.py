"""Run the schedules of `prefect.yaml` on this machine, with no Prefect Cloud and no internet.

    parcours serve --warehouse warehouse          # Ctrl-C (or SIGTERM) stops everything it started
    python -m parcours.flows.serve --warehouse warehouse

`prefect.yaml` (repo root) is the one place the deployments and their schedules are declared;
`prefect deploy` reads it for a shared Prefect server with a work pool. This module reads the
same file and serves every deployment in it (ingestion every minute, compaction nightly; or
only those named) from one local process:

* the Prefect API: PREFECT_API_URL if it is set, otherwise `prefect server start` on 127.0.0.1
  in a child process (its SQLite database under PREFECT_HOME, by default `<warehouse>/_prefect`),
  stopped on exit. Prefect's in-process "ephemeral" API is not enough: it runs no scheduler
  service, so scheduled runs would never be created;
* a Prefect runner (`prefect.serve`) that polls that API and starts each scheduled run as a
  subprocess. Runs may overlap, of one deployment or of two; the flows' warehouse lock turns
  an overlapping run into a quick "Skipped" one.

Parameters given here (the warehouse, and the CLI's --workers / --config) go to the deployments
whose flow takes them: the compaction has no use for the journey configuration.

Prefect is told not to phone home (DO_NOT_TRACK, no server analytics), and the entry points
load from the checkout, so serving needs no network beyond 127.0.0.1 and the Kafka broker.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
DEFAULT_PORT = 4200  # Prefect's usual port; `--port 0` picks a free one
SERVER_START_TIMEOUT_S = 120.0  # migrations of a fresh database take ~10 s on 2 busy cores
# Set whatever the caller's environment says: serving must never reach beyond this machine.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "1",  # the SDK's usage events (Amplitude)
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # the server's heartbeat to prefect.io
}


class ServeError(RuntimeError):
    """prefect.yaml or the local Prefect server is not usable; the message says why."""


class ScheduleSpec(BaseModel):
    """One schedule of a deployment, as `prefect deploy` reads it (interval in seconds)."""

    model_config = ConfigDict(extra="forbid")

    interval: timedelta | None = None  # a number is read as seconds
    cron: str | None = None
    rrule: str | None = None
    timezone: str | None = None
    anchor_date: datetime | None = None
    day_or: bool = True
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    slug: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        kinds = [kind for kind in ("interval", "cron", "rrule") if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of interval, cron, rrule (got {kinds or 'none'})")
        if self.interval is not None and self.interval <= timedelta(0):
            raise ValueError(f"interval must be positive, got {self.interval.total_seconds()} s")
        return self


class DeploymentSpec(BaseModel):
    """One deployment of prefect.yaml. Keys only `prefect deploy` uses (work_pool, pull...) are kept aside."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    entrypoint: str = Field(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")  # path/to/file.py:flow_function
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleSpec] = Field(default_factory=list)


class PrefectYaml(BaseModel):
    model_config = ConfigDict(extra="allow")

    deployments: list[DeploymentSpec] = Field(min_length=1)


def read_deployments(path: Path) -> list[DeploymentSpec]:
    """The deployments of a prefect.yaml, checked; errors name the file and the bad key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServeError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ServeError(f"{path}: not valid YAML ({exc})") from None
    try:
        return PrefectYaml.model_validate(raw).deployments
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise ServeError(f"{path}: {problems}") from None


def offline_environment(prefect_home: Path, *, ui: bool) -> dict[str, str]:
    """The variables to set before Prefect is imported (it reads its settings at import)."""
    return {**OFFLINE_ENV, "PREFECT_HOME": str(prefect_home), "PREFECT_UI_ENABLED": "true" if ui else "false"}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_prefect_server(port: int, env: dict[str, str], log_path: Path) -> Iterator[tuple[str, int]]:
    """`prefect server start` on 127.0.0.1:port in a child process; yields its API URL and pid.

    The child leads its own process group, so stopping it (SIGTERM, then SIGKILL after 30 s)
    also stops the uvicorn workers it may have spawned, and nothing else.
    """
    import httpx

    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/api"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ServeError(f"prefect server exited with code {server.returncode}; {log_path}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise ServeError(f"prefect server did not answer at {url} within {SERVER_START_TIMEOUT_S:.0f} s")
            time.sleep(0.5)  # polling a child's HTTP port: there is no event to wait on
        yield url, server.pid
    finally:
        _stop_group(server)


def _die_with_parent() -> None:
    """In the server's child before exec (Linux): SIGTERM it when this process dies, so a `serve`
    killed with SIGKILL (no `finally` runs) leaves no server behind in its own session."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def select_deployments(specs: list[DeploymentSpec], names: list[str] | None, path: Path) -> list[DeploymentSpec]:
    """The specs named in `names` (all of them when None), in the file's order; an unknown name is an error."""
    if names is None:
        return specs
    known = [spec.name for spec in specs]
    unknown = [name for name in names if name not in known]
    if unknown:
        named = ", ".join(map(repr, unknown))
        raise ServeError(f"{path}: no deployment named {named} (deployments: {', '.join(known)})")
    return [spec for spec in specs if spec.name in names]


def build_deployments(
    specs: list[DeploymentSpec],
    root: Path,
    *,
    parameters: dict[str, Any] | None = None,
    interval: float | None = None,
) -> list[Any]:
    """Prefect RunnerDeployments for the specs; entry points are relative to `root`.

    `parameters` override the file's (e.g. an absolute warehouse path), for each deployment
    whose flow takes them; one that no flow takes is an error, as is a parameter of the file
    that its flow does not take (Prefect would only say so when the first run fails, maybe at
    night). `interval` replaces every schedule with one of that many seconds (a deployment with
    none stays on demand), for benchmarks and tests only.
    """
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Schedule

    overrides = parameters or {}
    used: set[str] = set()
    deployments = []
    for spec in specs:
        path, function = spec.entrypoint.rsplit(":", 1)
        flow = load_flow_from_entrypoint(f"{(root / path).resolve()}:{function}")
        accepted = set(inspect.signature(flow.fn).parameters)
        unknown = sorted(set(spec.parameters) - accepted)
        if unknown:
            raise ServeError(
                f"deployment {spec.name}: {spec.entrypoint} takes no parameter {', '.join(map(repr, unknown))} "
                f"(it takes {', '.join(sorted(accepted))})"
            )
        taken = {name: value for name, value in overrides.items() if name in accepted}
        used |= set(taken)
        if interval is not None and spec.schedules:  # an on-demand deployment stays on demand
            schedules = [Schedule(interval=timedelta(seconds=interval))]
        else:
            schedules = [Schedule(**schedule.model_dump(exclude_none=True)) for schedule in spec.schedules]
        deployments.append(
            flow.to_deployment(
                name=spec.name,
                description=spec.description,
                tags=spec.tags,
                parameters={**spec.parameters, **taken},
                schedules=schedules,
            )
        )
    unused = sorted(set(overrides) - used)
    if unused:
        served = ", ".join(spec.name for spec in specs)
        raise ServeError(f"no deployment served ({served}) takes the parameter {', '.join(map(repr, unused))}")
    return deployments


def serve(
    warehouse: Path,
    *,
    prefect_yaml: Path = DEFAULT_PREFECT_YAML,
    deployments: list[str] | None = None,
    port: int = DEFAULT_PORT,
    ui: bool = False,
    interval: float | None = None,
    parameters: dict[str, Any] | None = None,
) -> None:
    """Serve the deployments of `prefect_yaml` (all, or those named) until interrupted, against `warehouse`."""
    specs = select_deployments(read_deployments(prefect_yaml), deployments, prefect_yaml)
    warehouse = warehouse.expanduser().resolve()
    prefect_home = Path(os.environ.get("PREFECT_HOME") or warehouse / "_prefect").resolve()
    os.environ.update(offline_environment(prefect_home, ui=ui))
    server_env = dict(os.environ)
    local = not os.environ.get("PREFECT_API_URL")
    if local:
        port = port or free_port()
        # Known before the server answers, and set before Prefect is imported, which reads it.
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    import prefect

    # Flows loaded and parameters checked before a server is started: a mistake is named at once.
    overrides = {"warehouse": str(warehouse), **(parameters or {})}
    served = build_deployments(specs, prefect_yaml.parent, parameters=overrides, interval=interval)
    with contextlib.ExitStack() as stack:
        if local:
            url, pid = stack.enter_context(local_prefect_server(port, server_env, prefect_home / "server.log"))
            print(f"Prefect API at {url} (pid {pid}, UI {'on' if ui else 'off'}), data in {prefect_home}", flush=True)
        ignore_prefect_sigterm_warning()
        prefect.serve(*served)


def ignore_prefect_sigterm_warning() -> None:
    """Silence the one RuntimeWarning Prefect 3.8.8's runner prints when it is stopped by SIGTERM.

    `Runner.handle_sigterm` (prefect/runner/runner.py) is a signal handler that calls
    `self.stop()` and then `sys.exit(0)`. `stop` is dispatched by `async_dispatch`: called while
    an event loop runs (it always is, the runner lives in `asyncio.run`), it returns the coroutine
    `astop()` instead of running it, and the handler drops it: "coroutine 'Runner.astop' was
    never awaited". Nothing of ours is left unawaited, and the shutdown goes on: SystemExit
    unwinds the runner, the local server is stopped by `local_prefect_server`. Ctrl-C (SIGINT)
    takes Prefect's other path and prints nothing. Matched on the exact message, so any other
    unawaited coroutine still warns; once Prefect awaits it, the filter matches nothing.

    Left as it is: the asyncio "Exception in callback StreamReaderProtocol..." traceback logged
    on the same SIGTERM (the runner's control channel task, cancelled by the exit; Python 3.11's
    asyncio streams read the exception of a cancelled task), and the effect of `astop` not
    running: deployments are not all paused on the way out, which matters only with a shared
    PREFECT_API_URL. No upstream issue was found for it, and a recent PrefectHQ/prefect source still
    has this handler. Stop `parcours serve` with SIGINT where a clean exit matters.
    """
    warnings.filterwarnings("ignore", message=r"coroutine 'Runner\.astop' was never awaited", category=RuntimeWarning)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parcours.flows.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--warehouse", type=Path, default=Path("warehouse"))
    parser.add_argument("--prefect-yaml", type=Path, default=DEFAULT_PREFECT_YAML)
    parser.add_argument(
        "--deployment", action="append", dest="deployments", help="serve only this one (repeatable; default: all)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="local Prefect server port (0: a free one)")
    parser.add_argument("--ui", action="store_true", help="also serve the Prefect UI on that port")
    parser.add_argument("--interval", type=float, help="override every schedule (seconds): benchmarks only")
    args = parser.parse_args(argv)
    try:
        serve(
            args.warehouse,
            prefect_yaml=args.prefect_yaml,
            deployments=args.deployments,
            port=args.port,
            ui=args.ui,
            interval=args.interval,
        )
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
