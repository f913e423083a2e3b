"""A non-editable install works: the wheel carries the configs, the published weights and the
kernels' sources, and loads a config from outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import PROJECT


@pytest.mark.slow
def test_wheel_installs_and_loads_configs_outside_the_source_tree(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path / "wheel"), str(PROJECT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    assert "pyproject" not in build.stderr and "deprecated" not in build.stderr.lower(), build.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("metaopt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("metaopt/configs/ppo/breakout.yaml", "metaopt/configs/meta/open_breakout_cpu.yaml",
                    "metaopt/configs/eval/minatar_1e7.yaml", "metaopt/configs/tuned/breakout_cpu.yaml",
                    "metaopt/published/breakout_OPEN.npy", "metaopt/optimizers/kernels/open.cc",
                    "metaopt/configs/a2c/catch.yaml", "metaopt/configs/a2c/big_dense_long.yaml"):
        assert shipped in names, shipped
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import metaopt.config as c; from metaopt.evaluation.plan import load_plan, resolve_cells; "
            "cfg = c.load_train_config(env='breakout', optimizer='adam:tuned'); "
            "meta = c.load_meta_config(c.CONFIG_DIR / 'meta' / 'open_breakout_cpu.yaml'); "
            "cells = resolve_cells(load_plan(c.CONFIG_DIR / 'eval' / 'tiny.yaml')); "
            "print(c.__file__, cfg.ppo.total_timesteps, meta.es.population_size, len(cells))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    where, steps, population, cells = run.stdout.split()
    assert where.startswith(str(target)) and int(steps) == 10_000_000 and int(population) == 16 and int(cells) == 6


def test_cluster_only_dependencies_are_an_extra():
    """A plain install pulls no PostgreSQL driver or S3 client: only a cluster's MLflow server
    needs them (the `cluster` extra, which the images, compose and CI install through make)."""
    import tomllib

    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "psycopg2" not in core and "boto3" not in core
    assert {d.split(">")[0] for d in project["optional-dependencies"]["cluster"]} == {"psycopg2-binary", "boto3"}
    assert project["license"] == "Apache-2.0"  # an SPDX string: no setuptools deprecation warning
    assert "'.[dev,cluster]'" in (PROJECT / "Makefile").read_text()
