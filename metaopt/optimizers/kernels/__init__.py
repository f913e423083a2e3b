"""Compiled CPU kernels for the per-parameter networks (XLA FFI custom calls).

Why: XLA:CPU runs OPEN's and Optim4RL's networks as a chain of passes over (rows, N)
arrays, writing every intermediate (the GRU's (3H, N) gate inputs, the MLP's rows) out to
memory and reading it back. A kernel that keeps a block of 16 parameters in registers
through the whole network does the same arithmetic at a fraction of the memory traffic
(benchmarks/README.md has the measured ratios). The pure-JAX networks stay the reference:
they run on every other platform, when no kernel can be built, under `cpu_kernel=False`,
and for gradients (`dispatch` differentiates the JAX function), and tests hold each kernel
to them.

This module is the one place that names the kernels: `INSTANCES` lists the compiled sizes,
`handler` makes each one's name, and the build passes that same list to the C++ sources as
macros (METAOPT_OPEN_HANDLERS, METAOPT_OPTIM4RL_HANDLERS). The methods' constants (betas,
epsilons, step scale) are attributes of each call, set by open.py and optim4rl.py. It also
packs weights the way the kernels read them (`kernel_gru`, `centred`).

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
import jax.numpy as jnp
import jaxlib

from metaopt.optimizers.cells import gru_matrices

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).parent
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
# kernel -> the sizes it is compiled for: OPEN (GRU, MLP hidden), the published small and
# larger networks; Optim4RL (GRU hidden,).
INSTANCES = {"open": ((8, 16), (16, 32)), "optim4rl": ((8,), (16,))}


def handler(kernel: str, sizes: tuple[int, ...]) -> str | None:
    """The registered name of a compiled kernel.

    Args:
      kernel: "open" or "optim4rl".
      sizes: the network sizes, as in `INSTANCES`.

    Returns:
      The FFI target name, or None when no kernel is compiled for those sizes.
    """
    if tuple(sizes) not in INSTANCES[kernel]:
        return None
    return "_".join(["metaopt", kernel, *map(str, sizes)])


HANDLERS = tuple(handler(kernel, sizes) for kernel, all_sizes in INSTANCES.items() for sizes in all_sizes)


def _defines() -> list[str]:
    """-D flags that give the C++ sources the handler list: NAME(X) expands to X(name, sizes...)."""
    return [f"-DMETAOPT_{kernel.upper()}_HANDLERS(X)="
            + " ".join(f"X({handler(kernel, sizes)}, {', '.join(map(str, sizes))})" for sizes in all_sizes)
            for kernel, all_sizes in INSTANCES.items()]


def kernel_gru(gru: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A flax GRUCell's weights as the kernels read them: (w_in (3H, F), b_in (3H,), w_h (3H, H)),
    gates r, z, n, with the r and z rows halved (the kernels compute the logistic as
    0.5 tanh(a / 2) + 0.5, and halving by a power of two is exact).

    Args:
      gru: a flax GRUCell parameter tree.

    Returns:
      (w_in, b_in, w_h) as above.
    """
    w_in, b_in, w_h = gru_matrices(gru)
    h = b_in.shape[0] // 3
    half = jnp.concatenate([jnp.full((2 * h,), 0.5, jnp.float32), jnp.ones((h,), jnp.float32)])
    return w_in * half[:, None], b_in * half, w_h * half[:, None]


def centred(layer: dict) -> dict:
    """A dense layer whose outputs have zero mean over features, LayerNorm's centring folded
    into the weights as the kernels expect (the mean of a dense layer's outputs is linear in
    its input).

    Args:
      layer: a flax Dense tree (kernel (in, out), bias (out,)).

    Returns:
      The same tree with each kernel row and the bias minus their means over outputs.
    """
    return {"kernel": layer["kernel"] - layer["kernel"].mean(1, keepdims=True), "bias": layer["bias"] - layer["bias"].mean()}


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
    flags = [*FLAGS, *_defines()]
    key = hashlib.sha256()
    for part in [*(p.read_bytes() for p in sorted(SOURCE_DIR.glob("*.[ch]*"))),
                 f"{compiler_file}:{info.st_size}:{info.st_mtime_ns}".encode(),
                 jaxlib.__version__.encode(), " ".join(flags).encode(), _cpu_signature().encode()]:
        key.update(part)
    target = cache_dir() / f"metaopt_kernels_{key.hexdigest()[:20]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, *flags, f"-I{jax.ffi.include_dir()}", *map(str, sources), "-o", str(out)]
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
