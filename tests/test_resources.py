"""GPU shares and JAX memory: the settings Ray workers get, and a driver kept off accelerators."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metaopt.distributed.resources import SHARED_GPU_MEMORY, jax_memory_env, ray_options


def test_fractional_gpus_preallocate_only_their_share():
    assert jax_memory_env(0) == {} and jax_memory_env(1) == {} and jax_memory_env(2) == {}
    env = jax_memory_env(0.25)
    assert float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == pytest.approx(0.25 * SHARED_GPU_MEMORY)
    # Four quarter-GPU workers together stay under the whole GPU.
    assert 4 * float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) < 1.0
    assert ray_options(1, 0.5)["runtime_env"]["env_vars"] == jax_memory_env(0.5)
    assert "runtime_env" not in ray_options(2, 1) and ray_options(2, 1)["num_gpus"] == 1


def test_driver_stays_on_cpu_and_says_so_when_too_late():
    code = ("from metaopt.distributed.resources import keep_driver_on_cpu as k; first = k(); import jax; "
            "print(first, jax.default_backend(), k())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "cpu", "False"]
