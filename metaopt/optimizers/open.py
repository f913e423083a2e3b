"""OPEN (Goldie et al., NeurIPS 2024): a learned per-parameter GRU optimizer for RL.

The network is the published one (flax GRUCell -> Dense -> LayerNorm -> relu -> Dense ->
LayerNorm -> relu -> Dense(3)) and its parameters use the published tree, so `ravel_pytree`
of ours is the published flat vector and the published `.npy` files load as they are.

The published code runs one small network per parameter leaf. Here each network of the
agent (actor, critic) is one flat vector (see flat.py) and OPEN runs feature-major,
(features, N): every layer is one matrix product over all N parameters of that network,
LayerNorm normalises over the feature axis, and the per-tensor input normalisation is a
reduction per leaf. Only the zero-mean shift joins the two networks. This JAX network is the
reference: GPUs and gradients run it. On CPU, by default, each network's step (momenta to
step, `network_step`) runs as one compiled kernel instead (kernels/open.cc, the same function
to float32 rounding; tests/test_kernels.py holds it to this one).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

from metaopt.optimizers import cells, kernels
from metaopt.optimizers.flat import FlatLayout

NUM_FEATURES = 19
NUM_OUTPUTS = 3
NUM_NORMALISED = 15  # features 0-14; 15-18 (progress, layer proportion, dormancy) go in raw
BETAS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
SIZES = {False: (8, 16), True: (16, 32)}  # larger -> (gru, mlp hidden)
STEP_SCALE = 0.001
LOG_EPS = 1e-13
NORM_EPS = 1e-5
LN_EPS = 1e-6
DORMANCY_EPS = 1e-11


# ------------------------------------------------------------------ parameters


def param_shapes(larger: bool = False) -> dict:
    """The published tree, names as flax gives them, leaf -> shape.

    Args:
      larger: the larger network (GRU 16, MLP 32); False: the small one (8, 16).

    Returns:
      A nested dict of shape tuples.
    """
    gru, hidden = SIZES[larger]
    mlp = {
        "layers_0": {"bias": (hidden,), "kernel": (gru, hidden)},
        "layers_1": {"bias": (hidden,), "scale": (hidden,)},
        "layers_3": {"bias": (hidden,), "kernel": (hidden, hidden)},
        "layers_4": {"bias": (hidden,), "scale": (hidden,)},
        "layers_6": {"bias": (NUM_OUTPUTS,), "kernel": (hidden, NUM_OUTPUTS)},
    }
    return {"gru_params": cells.gru_shapes(NUM_FEATURES, gru), "params": mlp}


def num_meta_params(larger: bool = False) -> int:
    """The number of OPEN meta-parameters.

    Args:
      larger: the larger network; False: the small one.

    Returns:
      The count.
    """
    return cells.count(param_shapes(larger))


def init_meta_params(rng: jax.Array, larger: bool = False) -> dict:
    """flax's default initialisers (ES starts from all zeros instead: `zeros_meta_params`).

    Args:
      rng: a PRNG key.
      larger: the larger network; False: the small one.

    Returns:
      The meta-parameter tree (float32 arrays).
    """
    return cells.init_like_flax(rng, param_shapes(larger))


def zeros_meta_params(larger: bool = False) -> dict:
    """OPEN meta-parameters, all zero.

    Args:
      larger: the larger network; False: the small one.

    Returns:
      The meta-parameter tree (float32 zeros).
    """
    return cells.zeros_like_shapes(param_shapes(larger))


def unravel(flat: jax.Array | np.ndarray, larger: bool) -> dict:
    """A flat vector in `ravel_pytree` order -> the parameter tree (traceable: ES uses it).

    Args:
      flat: (D,) meta-parameters, D = `num_meta_params(larger)`.
      larger: the network size `flat` is for.

    Returns:
      The meta-parameter tree (float32).
    """
    _, unravel_fn = jax.flatten_util.ravel_pytree(zeros_meta_params(larger))
    return unravel_fn(jnp.asarray(flat, jnp.float32))


def ravel(meta_params: dict) -> jax.Array:
    """The meta-parameter tree -> its flat vector in `ravel_pytree` order (the published layout).

    Args:
      meta_params: OPEN meta-parameters.

    Returns:
      A (D,) array.
    """
    return jax.flatten_util.ravel_pytree(meta_params)[0]


def is_larger(meta_params: dict) -> bool:
    """Whether `meta_params` is the larger OPEN network (GRU size 16).

    Args:
      meta_params: OPEN meta-parameters.

    Returns:
      True for the larger network.
    """
    return meta_params["gru_params"]["hn"]["bias"].shape[-1] == SIZES[True][0]


def load_published(path: str | Path) -> dict:
    """A published OPEN `.npy` (flat float32, `ravel_pytree` order) -> parameter tree.
    The network size follows from the length; anything else is refused.

    Args:
      path: a `.npy` file.

    Returns:
      The meta-parameter tree.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OPEN weights {path} do not exist; pass a published .npy file")
    try:
        flat = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a plain .npy array ({exc}); published OPEN weights are flat float32") from None
    if flat.dtype != np.float32 or flat.ndim != 1:
        raise ValueError(f"{path}: expected a 1-D float32 vector, got {flat.dtype} of shape {flat.shape}")
    sizes = {num_meta_params(large): large for large in (False, True)}
    if flat.size not in sizes:
        raise ValueError(
            f"{path}: {flat.size} values match no OPEN network; "
            f"small has {num_meta_params(False)}, larger {num_meta_params(True)}"
        )
    if not np.isfinite(flat).all():
        raise ValueError(f"{path}: holds NaN or inf values")
    return unravel(flat, sizes[flat.size])


# ------------------------------------------------------------------ the network


def apply_feature_major(meta_params: dict, carry: jax.Array, features: jax.Array):
    """carry (H, N), features (19, N) -> (new carry (H, N), outputs (3, N)).

    Args:
      meta_params: OPEN meta-parameters.
      carry: (H, N) GRU hidden states.
      features: (19, N) input features.

    Returns:
      (new carry (H, N), outputs (3, N)).
    """
    new_carry = cells.gru_step(meta_params["gru_params"], carry, features)
    mlp = meta_params["params"]
    x = jax.nn.relu(cells.layer_norm(mlp["layers_1"], cells.dense(mlp["layers_0"], new_carry), LN_EPS))
    x = jax.nn.relu(cells.layer_norm(mlp["layers_4"], cells.dense(mlp["layers_3"], x), LN_EPS))
    return new_carry, cells.dense(mlp["layers_6"], x)


def network_apply(meta_params: dict, carry: jax.Array, features: jax.Array):
    """The raw network, feature-last as in the published code: carry (..., H), features
    (..., 19) -> (new carry (..., H), outputs (..., 3)).

    Args:
      meta_params: OPEN meta-parameters.
      carry: (..., H) GRU hidden states.
      features: (..., 19) input features.

    Returns:
      (new carry (..., H), outputs (..., 3)).
    """
    lead = features.shape[:-1]
    new_carry, out = apply_feature_major(
        meta_params, carry.reshape(-1, carry.shape[-1]).T, features.reshape(-1, NUM_FEATURES).T
    )
    return new_carry.T.reshape(lead + (-1,)), out.T.reshape(lead + (NUM_OUTPUTS,))


# ------------------------------------------------------------------ the optimizer


class OpenState(NamedTuple):
    """Per network of the agent (`FlatLayout.networks()`), in flat order."""

    momenta: tuple[jax.Array, ...]  # (6, width) momenta of the clipped gradient, betas as BETAS
    carry: tuple[jax.Array, ...]  # (H, width) GRU hidden state per parameter
    count: jax.Array  # optimizer steps taken (key fallback when no key is passed)


def dormancy_score(unit_mean_abs: jax.Array) -> jax.Array:
    """s_i = a_i / mean_j a_j (ReDo), 1e-11 added to the mean as published.

    Args:
      unit_mean_abs: the mean absolute activation of each unit of one layer.

    Returns:
      The scores, same shape.
    """
    return unit_mean_abs / (unit_mean_abs.mean() + DORMANCY_EPS)


def raw_features(momenta: jax.Array, p: jax.Array, g: jax.Array) -> jax.Array:
    """(15, width): features 0-14 before the per-tensor normalisation.

    Args:
      momenta: (6, width) momenta, betas as BETAS.
      p: (width,) parameters.
      g: (width,) clipped gradient.

    Returns:
      (15, width): p, sign and log|.| of each momentum, sign g, log|g|.
    """
    return jnp.concatenate(
        [p[None], jnp.sign(momenta), jnp.log(jnp.abs(momenta) + LOG_EPS), jnp.sign(g)[None], jnp.log(jnp.abs(g) + LOG_EPS)[None]]
    )


def feature_scale(layout: FlatLayout, raw: jax.Array) -> jax.Array:
    """(15, leaves): each leaf's normalisation factor per feature, 1 / sqrt(eps + mean x^2).

    Args:
      layout: the network's FlatLayout.
      raw: (15, width) from `raw_features`.

    Returns:
      A (15, leaves) array.
    """
    return jax.lax.rsqrt(NORM_EPS + layout.segment_mean_square(raw))


def _features(layout: FlatLayout, raw, scale, dormancy, progress) -> jax.Array:
    n = layout.width
    return jnp.concatenate(
        [
            layout.scale_segments(raw, scale),
            jnp.full((1, n), progress[0], jnp.float32),
            jnp.asarray(layout.layer_proportion())[None],
            jnp.full((1, n), progress[1], jnp.float32),
            dormancy[None],
        ]
    )


def compute_features(layout: FlatLayout, momenta, p, g, training_progress, epoch_progress, activations):
    """(19, width) input features of one layout in the published order, 0-14 normalised
    per tensor.

    Args:
      layout: the network's FlatLayout.
      momenta: (6, width) momenta after this step's update.
      p: (width,) parameters.
      g: (width,) clipped gradient.
      training_progress: fraction of training done, in [0, 1].
      epoch_progress: fraction of the current update's epochs done, in [0, 1].
      activations: activation statistics for the dormancy feature (see `FlatLayout.unit_scores`); None:
        1 everywhere.

    Returns:
      A (19, width) float32 array.
    """
    raw = raw_features(momenta, p, g)
    progress = jnp.asarray([training_progress, epoch_progress], jnp.float32)
    return _features(layout, raw, feature_scale(layout, raw), layout.unit_scores(activations, dormancy_score), progress)


def network_step(layout: FlatLayout):
    """step(meta_params, carry, momenta, p, g, dormancy, noise, progress) -> (new carry, new
    momenta, step before the zero-mean shift) for one network laid out as `layout`; `g` the
    clipped gradient, `noise` (width,) or (0,) for none, `progress` (training, epoch). On CPU
    the compiled kernel (kernels/open.cc) computes the same (see `_kernel_step`).

    Args:
      layout: the network's FlatLayout (static).

    Returns:
      The pure step function described above.
    """
    betas = jnp.asarray(BETAS, jnp.float32)[:, None]

    def step(meta_params, carry, momenta, p, g, dormancy, noise, progress):
        momenta = betas * momenta + (1.0 - betas) * g[None]
        raw = raw_features(momenta, p, g)
        features = _features(layout, raw, feature_scale(layout, raw), dormancy, progress)
        new_carry, out = apply_feature_major(meta_params, carry, features)
        step = out[0] * STEP_SCALE * jnp.exp(STEP_SCALE * out[1])
        return new_carry, momenta, (step + STEP_SCALE * out[2] * noise) if noise.shape[-1] else step

    return step


def _packed(meta_params: dict) -> jax.Array:
    """The network as one vector in kernels/open.cc's order: the GRU as `kernels.kernel_gru`
    gives it, then each dense layer as (out, in), LayerNorm's centring folded in
    (`kernels.centred`)."""
    w_in, b_in, w_h = kernels.kernel_gru(meta_params["gru_params"])
    mlp = meta_params["params"]
    l0, l3 = kernels.centred(mlp["layers_0"]), kernels.centred(mlp["layers_3"])
    parts = [w_in, b_in, w_h, meta_params["gru_params"]["hn"]["bias"]]
    parts += [l0["kernel"].T, l0["bias"], mlp["layers_1"]["scale"], mlp["layers_1"]["bias"]]
    parts += [l3["kernel"].T, l3["bias"], mlp["layers_4"]["scale"], mlp["layers_4"]["bias"]]
    parts += [mlp["layers_6"]["kernel"].T, mlp["layers_6"]["bias"]]
    return jnp.concatenate([x.ravel() for x in parts])


def _kernel_step(layout: FlatLayout):
    starts = np.asarray([leaf.offset for leaf in layout.leaves], np.int64)

    def step(meta_params, carry, momenta, p, g, dormancy, noise, progress):
        gru, hidden = carry.shape[-2], meta_params["params"]["layers_0"]["bias"].shape[-1]
        shapes = (carry, momenta, g)
        call = jax.ffi.ffi_call(
            kernels.handler("open", (gru, hidden)),
            tuple(jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in shapes),
            vmap_method="broadcast_all",
            input_output_aliases={1: 0, 2: 1},  # carry and momenta are updated in place
        )
        layer = jnp.asarray(layout.layer_proportion())
        return tuple(call(_packed(meta_params), carry, momenta, p, g, layer, dormancy, noise, progress,
                          starts=starts, size=np.int64(layout.size), betas=np.asarray(BETAS, np.float32),
                          log_eps=np.float32(LOG_EPS), norm_eps=np.float32(NORM_EPS),
                          layer_norm_eps=np.float32(LN_EPS), step_scale=np.float32(STEP_SCALE)))

    return step


def open_optimizer(meta_params: dict, cpu_kernel: bool = True) -> optax.GradientTransformationExtraArgs:
    """OPEN as an optax transformation: give it clipped gradients (chain it after
    `clip_by_global_norm_per_network(0.5)`, as `build_optimizer` does).

    Extra args (all optional, defaults in brackets): training_progress [0],
    epoch_progress [0], activations [dormancy 1 everywhere], key [derived from the step
    count]. The update has no learning rate and zero mean over all parameters.

    Args:
      meta_params: OPEN meta-parameters (small or larger).
      cpu_kernel: on CPU, run the network as the compiled kernel where one is available.

    Returns:
      An optax transformation whose state is an OpenState.
    """
    gru_size = meta_params["gru_params"]["hn"]["bias"].shape[-1]
    mlp_size = meta_params["params"]["layers_0"]["bias"].shape[-1]
    use_kernel = cpu_kernel and kernels.handler("open", (gru_size, mlp_size)) is not None and kernels.wanted()

    def init_fn(params):
        networks = FlatLayout(params).networks()
        return OpenState(
            tuple(jnp.zeros((len(BETAS), part.width), jnp.float32) for part in networks),
            tuple(jnp.zeros((gru_size, part.width), jnp.float32) for part in networks),
            jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state: OpenState, params=None, *, training_progress=0.0, epoch_progress=0.0,
                  activations=None, key=None, **_):
        if params is None:
            raise ValueError("open_optimizer needs params: call update(grads, state, params)")
        if key is None:
            key = jax.random.fold_in(jax.random.key(0), state.count)
        layout = FlatLayout(updates)
        networks = layout.networks()
        progress = jnp.stack([jnp.asarray(training_progress, jnp.float32), jnp.asarray(epoch_progress, jnp.float32)])
        steps, momenta, carry = [], [], []
        for part, part_momenta, part_carry in zip(networks, state.momenta, state.carry):
            noise = part.noise(key, "actor")
            noise = jnp.zeros((0,), jnp.float32) if noise is None else noise
            step_fn = kernels.dispatch(_kernel_step(part), network_step(part)) if use_kernel else network_step(part)
            new_carry, new_momenta, step = step_fn(meta_params, part_carry, part_momenta, part.ravel(params),
                                                   part.ravel(updates), part.unit_scores(activations, dormancy_score),
                                                   noise, progress)
            carry.append(new_carry)
            momenta.append(new_momenta)
            steps.append(step)
        mean = sum(part.total(step) for part, step in zip(networks, steps)) / layout.size
        return layout.unravel_networks([mean - step for step in steps]), OpenState(tuple(momenta), tuple(carry), state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
