"""The deployment files, checked statically (no Docker engine here): hadolint on both images,
their Python against the package's, the GPU lock against the CPU lock, compose's topology and
its exposure (every port on 127.0.0.1, Ray token auth, no secret in the file)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.helpers import PROJECT

DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.gpu"]
HADOLINT = Path(sys.executable).parent / "hadolint"


def _lock(path: str) -> dict[str, str]:
    pins = {}
    for line in (PROJECT / path).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile):
    proc = subprocess.run([str(HADOLINT), dockerfile], cwd=PROJECT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_has_the_python_the_package_needs_and_runs_as_non_root(dockerfile):
    text = (PROJECT / dockerfile).read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert match, f"{dockerfile}: base {base} is not a pinned python:X.Y.Z-slim-RELEASE"
    requires = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = re.fullmatch(r">=(\d+\.\d+),<(\d+\.\d+)", requires).groups()
    version = tuple(int(v) for v in match.groups()[:2])
    assert tuple(map(int, low.split("."))) <= version < tuple(map(int, high.split(".")))
    assert re.search(r"^USER 1000:1000$", text, re.M)
    assert "requirements.lock" in text  # the locked set, through make install / install-gpu


def test_gpu_lock_matches_the_cpu_lock():
    cpu, gpu = _lock("requirements.lock"), _lock("requirements-cuda12.lock")
    assert not set(cpu) & set(gpu)  # additions only: nothing pinned twice
    assert gpu["jax-cuda12-plugin"] == gpu["jax-cuda12-pjrt"] == cpu["jaxlib"] == cpu["jax"]
    assert any(name.startswith("nvidia-cudnn") for name in gpu)


def test_compose_binds_every_port_to_loopback_and_authenticates_ray():
    text = (PROJECT / "docker/compose.yaml").read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "ray-head", "ray-worker"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    mlflow_cmd = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri" in mlflow_cmd and "postgresql+psycopg2://" in mlflow_cmd and "--serve-artifacts" in mlflow_cmd
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("ray-head", "ray-worker"):
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token"
        assert "ray_auth_token" in services[name]["secrets"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    gpu = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert all("file" in s for s in compose["secrets"].values())
    assert "POSTGRES_PASSWORD:" not in text  # the password comes from a secret file
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        secrets = PROJECT / "docker" / "secrets"
        made = not secrets.exists()
        secrets.mkdir(exist_ok=True)
        for name in ("postgres_password", "ray_auth_token"):
            (secrets / name).touch()
        try:
            proc = subprocess.run(["docker", "compose", "-f", "docker/compose.yaml", "config", "--quiet"], cwd=PROJECT,
                                  capture_output=True, text=True)
        finally:
            if made:
                shutil.rmtree(secrets)
        assert proc.returncode == 0, proc.stderr


def test_cluster_file_is_what_rays_launcher_accepts_and_needs_no_shared_disk():
    """docker/cluster.yaml through the launcher's own config preparation and schema; the image
    comes from a registry, secrets from git-ignored files, storage from the object store."""
    import copy

    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((PROJECT / "docker/cluster.yaml").read_text())
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    assert prepared["available_node_types"]["local.cluster.node"]["max_workers"] == len(raw["provider"]["worker_ips"])
    image = raw["docker"]["image"]
    registry = image.split("/")[0]
    assert "/" in image and ("." in registry or ":" in registry), f"{image} is a local tag; name a registry"
    assert raw["docker"]["pull_before_run"] is True
    assert "docker/secrets/" in (PROJECT / ".gitignore").read_text().splitlines()
    assert all(src.startswith("./docker/secrets/") for src in raw["file_mounts"].values())
    commands = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in commands and "--host 127.0.0.1" in commands
    assert "--artifacts-destination \"$MLFLOW_ARTIFACTS_DESTINATION\"" in commands
    # Every variable the commands read is in the documented env file (and no secret is filled in).
    documented = dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=(.*)$", (PROJECT / "docker/metaopt.env.example").read_text(),
                                 re.M))  # commented out: optional
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", commands)) - {"RAY_HEAD_IP", "HOME"}
    assert used <= set(documented), used - set(documented)
    assert documented["AWS_SECRET_ACCESS_KEY"] == "" and documented["RAY_AUTH_MODE"] == "token"
    # Every command that starts Ray or MLflow reads the env file in its own shell; the head
    # offers no GPU; the head's autoscaler reaches the workers with a key.
    starts = [c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"] if "start" in c or "server" in c]
    assert all(c.startswith("set -a && . ~/metaopt.env && set +a && ") for c in starts if c != "ray stop")
    assert "--num-gpus=0" in commands and "--gpus all" in raw["docker"]["worker_run_options"]
    assert "--gpus all" not in raw["docker"]["run_options"] and raw["auth"].get("ssh_private_key")
    # file_mounts land under the container's HOME, which Ray reads from the image, and the
    # launcher's login shells keep the venv on PATH.
    gpu_image = (PROJECT / "docker/Dockerfile.gpu").read_text()
    assert "HOME=/home/metaopt" in gpu_image and "/etc/profile.d/" in gpu_image
    assert all(dest.startswith("~/") for dest in raw["file_mounts"])
