"""docker/run.sh ray-head / ray-worker: a Ray node in the saltseg image (docs/ray.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_docker import Harness, _split


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_run_starts_ray_nodes_on_the_host_network(harness: Harness) -> None:
    path = harness.settings({})
    env = {"SALTSEG_SETTINGS": str(path), "SALTSEG_GPUS": "none"}
    assert harness.run("run.sh", "ray-head", "--num-gpus=2", **env).returncode == 0
    assert harness.run("run.sh", "ray-worker", "10.0.0.1:6379", **env).returncode == 0
    (head_opts, head), (worker_opts, worker) = (_split(c["argv"]) for c in harness.calls())
    for opts in (head_opts, worker_opts):
        assert "--network" in opts and opts[opts.index("--network") + 1] == "host"
    assert head[:5] == ["ray", "start", "--head", "--block", "--port=6379"]
    assert head[-1] == "--num-gpus=2"  # extra arguments go to ray start
    assert worker[:4] == ["ray", "start", "--block", "--address=10.0.0.1:6379"]
    assert "--min-worker-port=10002" in worker and "--node-manager-port=6380" in worker
    res = harness.run("run.sh", "ray-worker", **env)
    assert res.returncode != 0 and "needs the head's address" in res.stderr
