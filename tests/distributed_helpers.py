"""What the distributed meta-training tests share: the smoke configs, a hook that signals a worker,
pools sharing compiled actors, and the per-method setup (a single-process reference run and a
pool of 2 compiled workers)."""

from __future__ import annotations

import os
import threading

from metaopt.config import CONFIG_DIR, load_meta_config
from metaopt.distributed.ray_meta import WorkerPool
from metaopt.meta.run import meta_train

ITERATIONS = 3


def smoke(method: str, tmp, **overrides):
    return load_meta_config(CONFIG_DIR / "meta" / f"{method}_breakout_smoke.yaml", {
        "iterations": ITERATIONS, "checkpoint_every": 1, "tracking.uri": f"sqlite:///{tmp}/mlruns.db",
        # Half a CPU each: the module pool and a job's own pool fit on 2 cores together.
        "distributed.cpus_per_worker": 0.5, **overrides,
    })


class SignalDuringSecondIteration:
    """A hook that sends `sig` to a worker process just after the first iteration, so the
    second iteration's piece on that worker fails (SIGKILL) or hangs (SIGSTOP)."""

    def __init__(self, pid: int, sig: int, delay: float = 0.3):
        self.pid, self.sig, self.delay = pid, sig, delay

    def iteration(self, row):
        if row["iteration"] == 1:  # the second iteration starts right after this
            threading.Timer(self.delay, os.kill, (self.pid, self.sig)).start()

    def checkpoint(self, path, iteration):
        pass


def sharing(cfg, pool: WorkerPool, **distributed):
    """The config with these `distributed` fields, and a pool on the module pool's compiled actors."""
    cfg = cfg.model_copy(update={"distributed": cfg.distributed.model_copy(update=distributed)})
    return cfg, WorkerPool(cfg, cfg.distributed, actors=list(pool.actors))


def method_setup_for(method: str, store, tmp_path_factory):
    """The single-process run, and a pool of 2 compiled workers to reuse, each pinned to its
    own core (so the equality tests also say that pinning changes no number); a generator for a
    module-scoped fixture."""
    cfg = smoke(method, store, **{"distributed.workers": 2, "distributed.pin_cpus": True})
    reference = meta_train(cfg, tmp_path_factory.mktemp(f"{method}_single"))
    pool = WorkerPool(cfg, cfg.distributed)
    yield method, cfg, reference, pool
    pool.shutdown()
