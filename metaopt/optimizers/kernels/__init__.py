"""Compiled CPU kernels for the per-parameter networks (XLA FFI custom calls).

Why: XLA:CPU runs OPEN's and Optim4RL's networks as a chain of passes over (rows, N)
arrays, writing every intermediate (the GRU's (3H, N) gate inputs, the MLP's rows) out to
memory and reading it back. A kernel that keeps a block of 16 parameters in registers
through the whole network does the same arithmetic at a fraction of the memory traffic
(benchmarks/README.md has the measured ratios). The pure-JAX networks stay the reference:
they run on every other platform, when no kernel can be built, under `cpu_kernel=False`,
and for gradients (`dispatch` differentiates the JAX function), and tests hold each kernel
to them.

The C++ sources next to this file are compiled on first use with the system's C++
compiler for the machine at hand (-march=native) into a cache directory
(METAOPT_KERNEL_CACHE, default ~/.cache/metaopt/kernels), keyed by the sources, the
compiler, jaxlib and the CPU, so a shared home directory serves different machines. A
machine where that fails (no compiler, not x86-64) gets one warning and the JAX path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
import jaxlib

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).parent
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
HANDLERS = ("metaopt_optim4rl_h8", "metaopt_optim4rl_h16", "metaopt_open_h8_m16", "metaopt_open_h16_m32")


def _cpu_signature() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return flags


def cache_dir() -> Path:
    """Where compiled kernels are kept: $METAOPT_KERNEL_CACHE, else ~/.cache/metaopt/kernels.

    Returns:
      The folder (it may not exist yet).
    """
    return Path(os.environ.get("METAOPT_KERNEL_CACHE", Path.home() / ".cache" / "metaopt" / "kernels"))


def build(compiler: str | None = None) -> Path:
    """The compiled library, built now if this machine has none yet. Raises on failure.

    Args:
      compiler: the C++ compiler; None: $CXX, else g++ or c++ on PATH.

    Returns:
      The shared library's path in `cache_dir()`.
    """
    compiler = compiler or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise RuntimeError(f"the kernels are written for x86-64, this is {platform.machine()}")
    sources = sorted(SOURCE_DIR.glob("*.cc"))
    # The compiler enters the key by its resolved path, size and time stamp: asking it for
    # its version would start a process from a process that already runs JAX's threads.
    compiler_file = Path(shutil.which(compiler) or compiler).resolve()
    info = compiler_file.stat()
    key = hashlib.sha256()
    for part in [*(p.read_bytes() for p in sorted(SOURCE_DIR.glob("*.[ch]*"))),
                 f"{compiler_file}:{info.st_size}:{info.st_mtime_ns}".encode(),
                 jaxlib.__version__.encode(), " ".join(FLAGS).encode(), _cpu_signature().encode()]:
        key.update(part)
    target = cache_dir() / f"metaopt_kernels_{key.hexdigest()[:20]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", *map(str, sources), "-o", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
        os.replace(out, target)  # atomic: processes building at once all end with one whole file
    return target


@functools.cache
def available() -> bool:
    """Builds (once per machine) and registers the kernels; False, with one warning, where
    that is impossible.

    Returns:
      True when the kernels are registered with XLA.
    """
    try:
        lib = ctypes.cdll.LoadLibrary(str(build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("metaopt CPU kernels unavailable, learned optimizers run as pure JAX: %s", exc)
        return False
    for name in HANDLERS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return True


def wanted() -> bool:
    """Whether to use the kernels: this process computes on CPU and they build here (a
    GPU machine never compiles them).

    Returns:
      True when the kernels should be used.
    """
    return jax.default_backend() == "cpu" and available()


def dispatch(kernel_fn: Callable, jax_fn: Callable) -> Callable:
    """f(*args): kernel_fn where the computation runs on CPU, jax_fn on other platforms.
    The two must compute the same function; gradients are always jax_fn's.

    Args:
      kernel_fn: the FFI call (CPU only).
      jax_fn: the same function in JAX (other platforms and all gradients).

    Returns:
      A function of the same arguments, differentiable through `jax_fn`.
    """

    def on_cpu(*args):
        if not available():
            raise RuntimeError("metaopt's CPU kernels are unavailable here (see the warning above)")
        return kernel_fn(*args)

    @jax.custom_vjp
    def f(*args):
        return jax.lax.platform_dependent(*args, cpu=on_cpu, default=jax_fn)

    def fwd(*args):
        return f(*args), args

    def bwd(args, cotangent):
        return jax.vjp(jax_fn, *args)[1](cotangent)

    f.defvjp(fwd, bwd)
    return f
