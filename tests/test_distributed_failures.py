"""Meta-training on a real local Ray cluster when things fail: a killed worker, a hung worker and a
killed driver change no number (helpers in tests/distributed_helpers.py; a file apart from
tests/test_distributed.py so that the parallel suite runs the two side by side)."""

from __future__ import annotations

import os
import signal

import pytest

ray = pytest.importorskip("ray")

from metaopt.distributed.job import run_meta_job  # noqa: E402
from metaopt.distributed.ray_meta import ray_engine  # noqa: E402
from metaopt.meta.run import meta_train  # noqa: E402
from tests.distributed_helpers import ITERATIONS, SignalDuringSecondIteration, method_setup_for, sharing  # noqa: E402
from tests.helpers import assert_same_run, assert_same_state, metrics_only  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module", params=["open"])  # each failure path is method-independent; ES is cheaper
def method_setup(request, ray_cluster, mlflow_store, tmp_path_factory):
    yield from method_setup_for(request.param, mlflow_store, tmp_path_factory)


def test_killed_worker_changes_nothing(method_setup, tmp_path):
    method, cfg, reference, pool = method_setup
    if method != "open":
        pytest.skip("the retry path (WorkerPool.run) is method-independent; ES is cheaper")
    victim = pool.pids()[0]
    result = meta_train(cfg, tmp_path, engine=ray_engine(cfg, pool), hooks=[SignalDuringSecondIteration(victim, signal.SIGKILL)])
    assert result.history[-1]["worker_restarts"] >= 1
    assert victim not in pool.pids()
    assert_same_run(reference, result)


def test_hung_worker_is_replaced_after_the_timeout(method_setup, tmp_path):
    method, cfg, reference, pool = method_setup
    if method != "open":
        pytest.skip("one method is enough for the timeout path")
    hung, shared = sharing(cfg, pool, piece_timeout_s=8.0)
    victim = shared.pids()[1]
    try:
        result = meta_train(hung, tmp_path, engine=ray_engine(hung, shared),
                            hooks=[SignalDuringSecondIteration(victim, signal.SIGSTOP, delay=0.1)])
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:  # killed and replaced, as it should be
            pass
    assert result.history[-1]["worker_restarts"] >= 1
    assert_same_run(reference, result)
    pool.actors = shared.actors  # keep the fixture's pool usable


def test_killed_driver_resumes_from_mlflow(method_setup, tmp_path):
    method, cfg, reference, _ = method_setup
    if method != "open":
        pytest.skip("the resume path is method-independent; ES is cheaper")
    # Each job starts (and compiles in) its own pool: one worker is enough, as the results
    # do not depend on the worker count (test_ray_equals_single_process).
    cfg = cfg.model_copy(update={"distributed": cfg.distributed.model_copy(update={"workers": 1})})
    first = run_meta_job(cfg, tmp_path / "first", stop_after=2, evaluate=False)  # the driver "dies" here
    from mlflow import MlflowClient

    client = MlflowClient(cfg.tracking.uri)
    stopped = client.get_run(first.run_id)
    assert stopped.info.status == "KILLED" and stopped.data.tags["metaopt.stopped_after"] == "2"
    resumed = run_meta_job(cfg, tmp_path / "second", resume_run_id=first.run_id, evaluate=False)
    assert resumed.run_id == first.run_id and resumed.run.resumed_from == 2
    assert_same_state(reference, resumed.run)  # a fresh --out: its metrics.csv starts at the checkpoint
    assert metrics_only(resumed.run.history) == metrics_only(reference.history[2:])
    assert client.get_run(first.run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(first.run_id, "fitness_mean")]
    assert sorted(steps) == list(range(1, ITERATIONS + 1))  # every iteration logged once
    version = client.get_model_version(cfg.model_name, resumed.version)
    assert version.tags["method"] == "open" and version.tags["config_hash"]


def test_lost_work_runs_again_and_an_error_of_the_work_does_not(ray_cluster, tmp_path):
    """The project's one retry policy (`distributed.retry`), on real Ray workers that die."""
    from metaopt.distributed.retry import RetriesExhausted, get_with_retries

    @ray.remote(max_retries=0)
    def dies_on_first_run(path: str) -> int:
        with open(path, "a") as f:
            f.write("run\n")
        if open(path).read().count("run") == 1:
            os._exit(1)  # the worker process dies: WorkerCrashedError
        return 7

    runs = tmp_path / "runs.txt"
    assert get_with_retries(lambda: dies_on_first_run.remote(str(runs)), 1, "once") == 7
    assert runs.read_text().count("run") == 2

    @ray.remote(max_retries=0)
    def raises(path: str) -> None:
        with open(path, "a") as f:
            f.write("run\n")
        raise ValueError("a bug in the work")

    bug = tmp_path / "bug.txt"
    with pytest.raises(ValueError, match="a bug in the work"):
        get_with_retries(lambda: raises.remote(str(bug)), 3, "bug")
    assert bug.read_text().count("run") == 1  # never retried

    @ray.remote(max_retries=0)
    def always_dies() -> None:
        os._exit(1)

    with pytest.raises(RetriesExhausted, match="always: lost 2 times .*1 retries allowed"):
        get_with_retries(lambda: always_dies.remote(), 1, "always")
