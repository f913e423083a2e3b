"""Meta-training on a real local Ray cluster with a real MLflow store: same numbers as one
process whatever the workers, and a worker lost without a free slot changes nothing (killed or
hung workers and a killed driver: tests/test_distributed_failures.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from metaopt.distributed.claims import try_claim  # noqa: E402
from metaopt.distributed.cores import CAN_PIN, LOCK_DIR_VARIABLE, NODE_CORES  # noqa: E402
from metaopt.distributed.ray_meta import WorkerPool, ray_engine  # noqa: E402
from metaopt.meta.run import meta_train  # noqa: E402
from tests.distributed_helpers import SignalDuringSecondIteration, method_setup_for, sharing  # noqa: E402
from tests.helpers import assert_same_run  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module", params=["open", "optim4rl"])
def method_setup(request, ray_cluster, mlflow_store, tmp_path_factory):
    yield from method_setup_for(request.param, mlflow_store, tmp_path_factory)


@pytest.mark.skipif(not CAN_PIN or len(NODE_CORES) < 2, reason="needs Linux and 2 cores to pin 2 workers")
def test_each_worker_keeps_to_its_core_with_an_xla_thread_pool_that_fits_it(method_setup):
    """`distributed.pin_cpus`: the two workers claim different cores, every thread of each stays
    on its core, and XLA's CPU pool has one thread for it (before, the pool was sized to every
    core and left unpinned). First in the file: a later test kills one of the module's workers."""
    _, _, _, pool = method_setup
    held = pool.cores()
    assert all(cores is not None and len(cores) == 1 for cores in held), held
    assert len({c for cores in held for c in cores}) == 2  # no core shared
    for cores, pid in zip(held, pool.pids(), strict=True):
        threads = {int(t.name): (t / "comm").read_text().strip() for t in Path(f"/proc/{pid}/task").iterdir()}
        assert {tid: os.sched_getaffinity(tid) for tid in threads} == dict.fromkeys(threads, set(cores))
        assert sum("XLAEigen" in name for name in threads.values()) == len(cores), sorted(threads.values())


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_equals_single_process(method_setup, workers, tmp_path):
    _, cfg, reference, pool = method_setup
    shared = WorkerPool(cfg, cfg.distributed, actors=pool.actors[:workers])
    result = meta_train(cfg, tmp_path, engine=ray_engine(cfg, shared))
    assert_same_run(reference, result)
    assert result.history[-1]["worker_restarts"] == 0


def test_lost_worker_without_a_free_slot_leaves_its_pieces_to_the_live_one(method_setup, tmp_path, monkeypatch):
    """A worker dies and the cluster cannot place a replacement (here: it asks for a resource
    no node has, as a lost GPU node would leave it): the run finishes on the live worker with
    the same numbers."""
    method, cfg, reference, pool = method_setup
    if method != "open":
        pytest.skip("the retry path (WorkerPool.run) is method-independent; ES is cheaper")
    short, shared = sharing(cfg, pool, replacement_timeout_s=5.0)
    victim = shared.pids()[0]
    placeable = WorkerPool._actor_options
    monkeypatch.setattr(WorkerPool, "_actor_options",
                        lambda self, index: {**placeable(self, index), "resources": {"node_that_was_lost": 1}})
    result = meta_train(short, tmp_path, engine=ray_engine(short, shared),
                        hooks=[SignalDuringSecondIteration(victim, signal.SIGKILL)])
    assert shared.live() == [1] and result.history[-1]["worker_restarts"] >= 1
    assert_same_run(reference, result)


def test_a_shut_down_pool_has_dropped_its_core_claims(method_setup):
    """Last in the file (it shuts the module's pool down): `shutdown` returns only once its live
    actors have dropped their core claims, so the next pool on the node finds those cores free.
    Before, the claims lasted until the killed processes had exited, which could be after the
    next pool's first actor looked for a free core: it then ran unpinned."""
    _, _, _, pool = method_setup
    held = []
    for actor in pool.actors:  # one may have been killed by an earlier test
        try:
            held += ray.get(actor.cores.remote()) or []
        except ray.exceptions.RayActorError:
            pass
    if not CAN_PIN:
        assert held == []
        return
    assert held
    pool.shutdown()
    claims = [try_claim(Path(os.environ[LOCK_DIR_VARIABLE]) / f"{core}.lock") for core in held]
    try:
        assert None not in claims, dict(zip(held, claims, strict=True))
    finally:
        for fd in claims:
            if fd is not None:
                os.close(fd)
