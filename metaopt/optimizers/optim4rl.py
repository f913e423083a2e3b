"""Optim4RL (Lan et al., RLC 2024): two per-parameter GRUs that produce Adam-like m and v.

    m = sign(g) exp(o1)     o1 = Dense(GRU_m(g))
    v = exp(o2)             o2 = Dense(GRU_v(g^2))
    update = -lr m / sqrt(v + 1e-8)

So a step always goes against the gradient's sign; the networks learn its size.

Inputs: "raw" feeds g and g^2 as above (the RLC 2024 code). "log" is the gradient processing of
the reference's 2023 code (commit ab902e3): RNN 1 reads [sign(g), log(|g| + 1e-18)] and RNN 2
reads 2 log(|g| + 1e-18), so the GRUs see the gradient's scale as O(1) numbers from the start;
everything else (no straight-through sign, Dense heads, eps 1e-8) stays as in the RLC version. The
gradient enters as data (stop_gradient), the hidden states carry the meta-gradient through
time, so `jax.grad` of a loss after many inner steps reaches the meta-parameters (pipeline
training needs exactly that). Runs feature-major over one flat vector of the whole agent
(not per-network vectors as OPEN uses; benchmarks/README.md compares the two). The JAX
network below is the reference: GPUs and gradients run it. On CPU the step runs as a
compiled kernel (kernels/optim4rl.cc) by default, which matches it to float32 rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metaopt.optimizers import cells, kernels
from metaopt.optimizers.flat import FlatLayout

HIDDEN = 8
V_EPS = 1e-8
LOG_EPS = 1e-18  # inside log|g| for the "log" inputs, as the 2023 code
RNNS = ("rnn_m", "rnn_v")
INPUTS = ("raw", "log")


def param_shapes(hidden: int = HIDDEN, inputs: str = "raw") -> dict:
    """The meta-parameter tree, leaf -> shape: per RNN (rnn_m, rnn_v) a GRU and a Dense(1) head.

    Args:
      hidden: the GRUs' hidden size.
      inputs: "raw" (each GRU reads one feature) or "log" (rnn_m reads two: sign and log|g|).

    Returns:
      A nested dict of shape tuples.
    """
    rnn = lambda n_in: {"gru": cells.gru_shapes(n_in, hidden), "out": {"bias": (1,), "kernel": (hidden, 1)}}  # noqa: E731
    return {"rnn_m": rnn(2 if inputs == "log" else 1), "rnn_v": rnn(1)}


def inputs_of(meta_params: dict) -> str:
    """Which inputs meta-parameters were made for: "log" where rnn_m's GRU reads two features."""
    return "log" if meta_params["rnn_m"]["gru"]["ir"]["kernel"].shape[0] == 2 else "raw"


def num_meta_params(hidden: int = HIDDEN, inputs: str = "raw") -> int:
    """Number of meta-parameters for GRUs of size `hidden`.

    Args:
      hidden: the GRUs' hidden size.
      inputs: "raw" or "log".

    Returns:
      The count.
    """
    return cells.count(param_shapes(hidden, inputs))


def init_meta_params(rng: jax.Array, hidden: int = HIDDEN, inputs: str = "raw") -> dict:
    """flax's default initialisers, as the reference code's modules start.

    Args:
      rng: a PRNG key.
      hidden: the GRUs' hidden size.
      inputs: "raw" or "log".

    Returns:
      The meta-parameter tree (float32 arrays).
    """
    return cells.init_like_flax(rng, param_shapes(hidden, inputs))


class Optim4RLState(NamedTuple):
    """Optim4RL's optimizer state: the GRUs' hidden states for every parameter."""

    carry: jax.Array  # (2, H, width): hidden states of rnn_m and rnn_v per parameter


def _stacked(meta_params: dict):
    return jax.tree.map(lambda a, b: jnp.stack([a, b]), meta_params["rnn_m"], meta_params["rnn_v"])


def network_apply(meta_params: dict, carry: jax.Array, g: jax.Array):
    """carry (2, H, N), g (N,) -> (new carry, o (2, N)): o1 and o2 for every parameter.

    Args:
      meta_params: Optim4RL meta-parameters.
      carry: (2, H, N) hidden states of rnn_m and rnn_v.
      g: (N,) gradient.

    Returns:
      (new carry (2, H, N), o (2, N)).
    """
    def one_rnn(rnn, h, inp):
        h = cells.gru_step(rnn["gru"], h, inp)
        return h, cells.dense(rnn["out"], h)[0]

    if inputs_of(meta_params) == "log":  # the 2023 code's gradient processing; the RNNs' inputs differ in size
        log_g = jnp.log(jnp.abs(g) + LOG_EPS)
        h_m, o1 = one_rnn(meta_params["rnn_m"], carry[0], jnp.stack([jnp.sign(g), log_g]))
        h_v, o2 = one_rnn(meta_params["rnn_v"], carry[1], 2.0 * log_g[None])
        return jnp.stack([h_m, h_v]), jnp.stack([o1, o2])
    x = jnp.stack([g, g * g])[:, None]  # (2, 1, N)
    return jax.vmap(one_rnn)(_stacked(meta_params), carry, x)


def direction(meta_params: dict, carry: jax.Array, g: jax.Array):
    """carry (2, H, N), g (N,) -> (new carry, m / sqrt(v + 1e-8)): the step before -lr.

    Args:
      meta_params: Optim4RL meta-parameters.
      carry: (2, H, N) hidden states.
      g: (N,) gradient.

    Returns:
      (new carry (2, H, N), direction (N,)); the update is -lr times the direction.
    """
    carry, o = network_apply(meta_params, carry, g)
    return carry, jnp.sign(g) * jnp.exp(o[0]) / jnp.sqrt(jnp.exp(o[1]) + V_EPS)


def _packed(meta_params: dict) -> jax.Array:
    """Both RNNs as one vector in kernels/optim4rl.cc's order, the GRUs as `kernels.kernel_gru`
    gives them: per RNN w_in, b_in (3H each), w_h (3H, H), b_hn, head kernel (H), head bias."""
    parts = []
    for name in RNNS:
        gru, out = meta_params[name]["gru"], meta_params[name]["out"]
        w_in, b_in, w_h = kernels.kernel_gru(gru)
        parts += [w_in[:, 0], b_in, w_h.ravel(), gru["hn"]["bias"], out["kernel"][:, 0], out["bias"]]
    return jnp.concatenate(parts)


def _kernel_direction(meta_params: dict, carry: jax.Array, g: jax.Array):
    hidden = carry.shape[-2]
    call = jax.ffi.ffi_call(
        kernels.handler("optim4rl", (hidden,)),
        (jax.ShapeDtypeStruct(carry.shape, jnp.float32), jax.ShapeDtypeStruct(g.shape, jnp.float32)),
        vmap_method="broadcast_all",
        input_output_aliases={1: 0},  # the hidden states are updated in place
    )
    return tuple(call(_packed(meta_params), carry, g, v_eps=np.float32(V_EPS)))


_fast_direction = kernels.dispatch(_kernel_direction, direction)


def optim4rl_optimizer(meta_params: dict, learning_rate: float, cpu_kernel: bool = True) -> optax.GradientTransformationExtraArgs:
    """Optim4RL as an optax transformation. Clip gradients before it (element-wise at 1 as
    published for Brax: `optax.clip(1.0)`); extra args are accepted and ignored.

    Args:
      meta_params: Optim4RL meta-parameters; the hidden size and inputs are read from them.
      learning_rate: the step size that multiplies m / sqrt(v).
      cpu_kernel: on CPU, run the step as the compiled kernel where one is available.

    Returns:
      An optax transformation whose state is an Optim4RLState.
    """
    hidden = meta_params["rnn_m"]["gru"]["hn"]["bias"].shape[-1]
    use_kernel = (cpu_kernel and inputs_of(meta_params) == "raw" and kernels.handler("optim4rl", (hidden,)) is not None
                  and kernels.wanted())
    step = _fast_direction if use_kernel else direction

    def init_fn(params):
        return Optim4RLState(jnp.zeros((2, hidden, FlatLayout(params).width), jnp.float32))

    def update_fn(updates, state: Optim4RLState, params=None, **_):
        del params
        layout = FlatLayout(updates)
        g = jax.lax.stop_gradient(layout.ravel(updates))
        carry, d = step(meta_params, state.carry, g)
        return layout.unravel(-learning_rate * d), Optim4RLState(carry)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
