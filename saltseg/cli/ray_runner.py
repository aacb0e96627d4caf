"""The job graph on a Ray cluster: one Ray task per job, dependent jobs when their inputs exist.

Only ``saltseg run --ray`` (``./train.sh --ray``) imports this module, and only it imports
Ray. Each job is a task running its ``saltseg`` command in a child process on some node
(``num_gpus``: 1 per training/prediction job when the cluster has GPUs), its output in
``PREDICTIONS_DIR/logs/ray/<job>.log``. A task whose worker dies (or whose command is
killed by a signal) is retried up to ``max_retries`` times; the commands resume from their
last finished epoch or chunk. Before anything runs, one probe task per node checks that
the node reads ``DATA_DIR`` and can write the weights and predictions folders (every node
must see them at the same paths: a shared file system).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from saltseg.cli.jobs import Graph, Job, job_score
from saltseg.core.atomic import atomic_write_text
from saltseg.core.errors import SaltsegError

PASSED_ENV = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "SALTSEG")


class ClusterError(SaltsegError):
    """The Ray cluster cannot be reached or a node cannot see the settings' folders."""


class JobKilledError(Exception):
    """A job's command died of a signal (e.g. the OOM killer): Ray retries the task."""


@dataclass(frozen=True)
class RayOptions:
    address: str
    gpus_per_job: float | None = None  # None: 1 when the cluster has GPUs, else 0
    cpus_per_job: float = 1.0
    max_retries: int = 3


# --------------------------------------------------------------------------- connection


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once when HOST:PORT does not accept a connection (Ray would keep retrying)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address}: expected auto or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"--ray {address}: no Ray cluster answers there ({exc})") from None


def connect(address: str) -> str:
    """Join the cluster at ``address`` (auto: the running one, else start a local one)."""
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
            return "the running cluster"
        except ConnectionError:
            ray.init(include_dashboard=False, **quiet)
            return "a local Ray instance"
    _reachable(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise ClusterError(f"--ray {address}: cannot join the Ray cluster: {exc}") from None
    return address


# --------------------------------------------------------------------------- storage probe


def _writable(folder: Path) -> str | None:
    """Why ``folder`` cannot be written (a temporary file is created and removed; a folder
    still missing is checked at its nearest existing parent, nothing is created)."""
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a folder"
    probe = target / f".saltseg-probe-{socket.gethostname()}-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot write in {target} ({exc.strerror or exc})"
    return None


def _probe_node(data_dir: str, outputs: dict[str, str]) -> tuple[str, list[str]]:
    """On one node: ``(node, problems)`` with the folders it cannot read or write."""
    node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    problems = []
    data = Path(data_dir)
    if not data.is_dir():
        problems.append(f"DATA_DIR {data}: no such folder on this node")
    else:
        try:
            next(iter(os.scandir(data)), None)
            if (data / "train.csv").is_file():
                (data / "train.csv").open("rb").close()
        except OSError as exc:
            problems.append(f"DATA_DIR {data}: cannot read ({exc.strerror or exc})")
    for key, path in outputs.items():
        why = _writable(Path(path))
        if why:
            problems.append(f"{key} {path}: {why}")
    return node, problems


def probe_storage(graph: Graph) -> int:
    """One probe per alive node; a :class:`ClusterError` lists every node and path that fails."""
    s = graph.settings
    outputs = {
        "BES_WEIGHTS_DIR": str(s.bes_weights_dir),
        "PHALANX_WEIGHTS_DIR": str(s.phalanx_weights_dir),
        "PREDICTIONS_DIR": str(s.predictions_dir),
    }
    task = ray.remote(num_cpus=0, max_retries=0)(_probe_node)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(
            str(s.data_dir), outputs
        )
        for n in nodes
    ]
    results = ray.get(refs, timeout=300)
    bad = [f"  node {node}: {p}" for node, problems in results for p in problems]
    if bad:
        raise ClusterError(
            "storage check failed, nothing was run (every node must see the settings' "
            "folders at the same paths):\n" + "\n".join(bad)
        )
    return len(nodes)


# --------------------------------------------------------------------------- the job task


@ray.remote(num_cpus=0)
class Events:
    """Where tasks report that they started (the driver prints it, counts retries)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, int, float]] = []

    def started(self, job: str, node: str, pid: int, at: float) -> None:
        self.items.append((job, node, pid, at))

    def drain(self) -> list[tuple[str, str, int, float]]:
        out, self.items = self.items, []
        return out


def _die_with_parent() -> None:
    """In the job's child process: SIGKILL when the Ray worker dies (Linux), so that a
    killed worker never leaves its command training on."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_job(
    name: str, argv: list[str], log: str, env: dict[str, str], events: Any
) -> dict[str, Any]:
    """Run one job's command on this node; raise when it fails."""
    node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    events.started.remote(name, node, os.getpid(), time.time())
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"== {name} on {node}, pid {os.getpid()}: {' '.join(argv)}\n")
        fh.flush()
        rc = subprocess.run(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            preexec_fn=_die_with_parent,
            check=False,
        ).returncode
    if rc < 0:
        raise JobKilledError(f"{name}: killed by signal {-rc} on {node}")
    if rc:
        raise RuntimeError(f"{name}: exit code {rc} on {node} (log: {log})")
    return {"node": node, "start": t0, "end": time.time()}


# --------------------------------------------------------------------------- the driver


@dataclass
class _State:
    """What the driver knows of one job."""

    job: Job
    status: str = "waiting"
    node: str = ""
    submitted: float = 0.0
    starts: list[float] = field(default_factory=list)
    end: float = 0.0
    score: float | None = None


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {text}", flush=True)


class Driver:
    """Submits ready jobs, prints each change of state, ends with a summary table."""

    def __init__(self, graph: Graph, command: list[str], opts: RayOptions) -> None:
        self.graph = graph
        self.command = command
        self.opts = opts
        self.logs = graph.settings.predictions_dir / "logs" / "ray"
        self.env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        if "PYTHONPATH" in self.env:  # the same folders from another working directory
            parts = self.env["PYTHONPATH"].split(os.pathsep)
            self.env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in parts if p)
        self.states = {j.name: _State(j) for j in graph.jobs}
        self.running: dict[Any, str] = {}
        self.events = Events.remote()
        self.t0 = time.time()
        gpus = opts.gpus_per_job
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self.gpus = gpus

    def _ready(self, st: _State) -> bool:
        deps_done = all(self.states[d].status in ("done", "skipped") for d in st.job.deps)
        return st.status == "waiting" and deps_done and all(p.exists() for p in st.job.inputs)

    def _submit(self, st: _State) -> None:
        job = st.job
        task = ray.remote(_run_job).options(
            num_cpus=self.opts.cpus_per_job,
            num_gpus=self.gpus if job.gpu else 0,
            max_retries=self.opts.max_retries,
            retry_exceptions=[JobKilledError],
            name=job.name,
        )
        log = self.logs / f"{job.name.replace(' ', '_')}.log"
        ref = task.remote(job.name, [*self.command, *job.command], str(log), self.env, self.events)
        self.running[ref] = job.name
        st.status, st.submitted = "queued", time.time()
        gpu = f", {self.gpus:g} GPU" if job.gpu and self.gpus else ""
        _say(f"{job.name}: queued ({self.opts.cpus_per_job:g} CPU{gpu})")

    def _events(self) -> None:
        for name, node, pid, at in ray.get(self.events.drain.remote()):
            st = self.states[name]
            if st.starts:
                _say(
                    f"{name}: failed on {st.node} (worker lost), retried: attempt "
                    f"{len(st.starts) + 1} of {self.opts.max_retries + 1}"
                )
            st.starts.append(at)
            st.node, st.status = node, "running"
            _say(f"{name}: running on {node} (pid {pid})")

    def _finish(self, ref: Any) -> bool:
        name = self.running.pop(ref)
        st = self.states[name]
        self._events()
        try:
            res = ray.get(ref)
        except Exception as exc:  # a task error: the job failed (after its retries)
            st.status, st.end = "failed", time.time()
            cause = getattr(exc, "cause", None) or exc
            _say(f"{name}: FAILED: {str(cause).strip().splitlines()[-1]}")
            return False
        st.status, st.end, st.node = "done", res["end"], res["node"]
        st.score = job_score(st.job)
        took = (res["end"] - res["start"]) / 60
        score = f", validation score {st.score:.4f}" if st.score is not None else ""
        _say(f"{name}: done on {st.node} in {took:.1f} min{score}")
        return True

    def run(self) -> int:
        skipped = self.graph.skipped()
        for name, st in self.states.items():
            if skipped[name]:
                st.status = "skipped"
                _say(f"{name}: complete, skipped")
        failed = False
        while True:
            if not failed:
                for st in self.states.values():
                    if self._ready(st):
                        self._submit(st)
            if not self.running:
                break
            done, _ = ray.wait(list(self.running), num_returns=1, timeout=0.5)
            self._events()
            for ref in done:
                failed = not self._finish(ref) or failed
        self.summary()
        self.write_report()
        waiting = [s.job.name for s in self.states.values() if s.status == "waiting"]
        if failed or waiting:
            if waiting and not failed:
                _say(f"not run (inputs missing): {', '.join(waiting)}")
            return 1
        return 0

    def write_report(self) -> None:
        """``logs/ray/summary.json``: each job's times (submitted, task starts, end)."""
        if not any(st.submitted for st in self.states.values()):
            return  # nothing ran: nothing is written
        jobs = {
            name: {
                "status": st.status,
                "node": st.node,
                "deps": list(st.job.deps),
                "submitted": st.submitted,
                "starts": st.starts,
                "end": st.end,
                "score": st.score,
            }
            for name, st in self.states.items()
        }
        report = {"started": self.t0, "ended": time.time(), "jobs": jobs}
        self.logs.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.logs / "summary.json", json.dumps(report, indent=1))

    def summary(self) -> None:
        print(f"\nsummary ({(time.time() - self.t0) / 60:.1f} min):")
        width = max(len(n) for n in self.states)
        print(f"  {'job':<{width}}  {'status':<8} {'node':<28} {'min':>6} {'tries':>5}  score")
        for name, st in self.states.items():
            minutes = f"{(st.end - st.starts[-1]) / 60:6.1f}" if st.starts and st.end else "     -"
            score = f"{st.score:.4f}" if st.score is not None else "-"
            tries = len(st.starts) or "-"
            print(
                f"  {name:<{width}}  {st.status:<8} {st.node or '-':<28} {minutes} "
                f"{tries!s:>5}  {score}"
            )
        sys.stdout.flush()


def run_on_ray(graph: Graph, command: list[str], opts: RayOptions) -> int:
    """Connect, probe every node's storage, run the graph; the exit code."""
    where = connect(opts.address)
    try:
        resources = ray.cluster_resources()
        n_nodes = probe_storage(graph)
        _say(
            f"ray: {where}, {n_nodes} node(s), {resources.get('CPU', 0):g} CPUs, "
            f"{resources.get('GPU', 0):g} GPUs; storage checked on every node"
        )
        return Driver(graph, command, opts).run()
    finally:
        ray.shutdown()
