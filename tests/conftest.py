"""Shared, session-scoped fixtures: compiled trainings are expensive, so tests share them.

JAX's persistent compilation cache is on for the suite (and, through the environment, for
the subprocesses, Ray workers and Tune trials it starts): many tests compile the same tiny
programs in separate processes, and a cache hit replaces a compile. A cache entry is keyed
by the program, the flags and the JAX version, so it never changes a result.

XLA's backend (LLVM) optimisation level is 0 for the suite unless XLA_FLAGS already sets it:
the tests' budgets are tiny, so compiling dominates their time, and level 0 compiles the same
programs faster (benchmarks/README.md, "Test suite wall time"). No test asserts a number that
depends on it: they compare runs made under the same flags, or bounds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")  # the small programs repeat most
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
# The two below are assigned, not set by default: pytest-xdist's workers inherit the environment
# of the controller, which imports this file first, so a default would give every worker the
# controller's folder (stop 47's CI: a worker's actors found both cores claimed by another
# worker's tests).
# Core claims (metaopt.distributed.cores) in a folder of this test process, its subprocesses
# and its Ray workers: a test that pins never finds its cores held by another test file's
# process (pytest-xdist) or by the user's own jobs on the machine.
os.environ["METAOPT_CORE_CLAIMS"] = tempfile.mkdtemp(prefix=f"metaopt-cores-of-{os.getpid()}-")
# `train` and `compare` record their runs: into a store of this test process (and its
# subprocesses), never the user's default store. Tests of tracking name their own stores.
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='metaopt-tests-')}/mlruns.db"

import pytest  # noqa: E402

from metaopt.config import load_train_config  # noqa: E402
from tests.helpers import TINY  # noqa: E402


@pytest.fixture(scope="session")
def tiny_breakout_cfg():
    return load_train_config(env="breakout", overrides=TINY)


# The longest files first (measured in CI). `--dist loadfile` gives each file to one worker as
# a unit, in collection order: started first, the long files run side by side while the many
# short ones fill in around them, instead of one long file running alone at the end.
LONGEST_FIRST = ("test_distributed.py", "test_distributed_failures.py", "test_ray_job.py", "test_tune.py", "test_plan.py",
                 "test_plan_interrupts.py",
                 "test_tune_sensitivity.py",
                 "test_demo.py", "test_envs.py", "test_registry.py", "test_study_configs.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for the module's tests (the distributed meta-training tests)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A folder for the module's sqlite MLflow store."""
    return tmp_path_factory.mktemp("mlflow")
