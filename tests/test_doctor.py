"""`metaopt doctor` on this machine: a readable store passes; an unreachable server and a
missing GPU that was asked for fail with exit code 1, each named on its line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import PROJECT, free_port

ENV = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}


def _doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metaopt.cli", "doctor", *args], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300, env=ENV)


@pytest.mark.slow
def test_doctor_passes_here_and_names_what_fails(tmp_path):
    ok = _doctor("--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = {line.split()[1]: line.split()[0] for line in ok.stdout.splitlines() if len(line.split()) > 1}
    assert lines["jax"] == lines["mlflow"] == lines["registry"] == lines["python"] == "ok"
    assert lines["gpu"] == "--"  # not needed unless asked for
    assert ok.stdout.rstrip().endswith("everything needed is usable")

    bad = _doctor("--tracking-uri", f"http://127.0.0.1:{free_port()}", "--require-gpu")
    assert bad.returncode == 1
    assert bad.stdout.rstrip().endswith("needed and unusable: gpu, mlflow")
