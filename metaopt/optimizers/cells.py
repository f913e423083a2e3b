"""Feature-major building blocks for per-parameter networks: arrays are (features, N),
N = every parameter of the agent, so each layer is one matrix product over all of them.
Parameter trees use flax's names and layouts (kernels (in, out)), so published weights and
flax modules agree with these functions (tests check that against flax itself)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

GATES_IN = ("ir", "iz", "in")
GATES_HIDDEN = ("hr", "hz", "hn")


def is_shape(x) -> bool:
    """Leaves of a shape tree are tuples.

    Args:
      x: a node of a shape tree.

    Returns:
      True for a leaf (a tuple).
    """
    return isinstance(x, tuple)


def gru_shapes(in_features: int, hidden: int) -> dict:
    """flax GRUCell's parameter tree, leaf -> shape.

    Args:
      in_features: F, the inputs per step.
      hidden: H, the hidden size.

    Returns:
      A dict gate -> {"kernel": shape, "bias": shape} (the h* gates have no bias but hn).
    """
    tree = {g: {"bias": (hidden,), "kernel": (in_features, hidden)} for g in GATES_IN}
    tree.update({g: {"kernel": (hidden, hidden)} for g in GATES_HIDDEN})
    tree["hn"]["bias"] = (hidden,)
    return tree


def gru_matrices(gru: dict):
    """(w_in (3H, F), b_in (3H,), w_h (3H, H)), gates stacked r, z, n, the r and z rows
    halved (see gru_step).

    Args:
      gru: a flax GRUCell parameter tree.

    Returns:
      (w_in, b_in, w_h) as above.
    """
    h = gru["hn"]["bias"].shape[-1]
    half = jnp.concatenate([jnp.full((2 * h,), 0.5, jnp.float32), jnp.ones((h,), jnp.float32)])
    w_in = jnp.concatenate([gru[k]["kernel"] for k in GATES_IN], 1).T * half[:, None]
    b_in = jnp.concatenate([gru[k]["bias"] for k in GATES_IN]) * half
    w_h = jnp.concatenate([gru[k]["kernel"] for k in GATES_HIDDEN], 1).T * half[:, None]
    return w_in, b_in, w_h


def gru_step(gru: dict, carry: jax.Array, x: jax.Array, rank_one: tuple[int, ...] = ()) -> jax.Array:
    """flax GRUCell (tanh): carry (H, N), x (F, N) -> new carry (H, N).
    r = s(Wir x + bir + Whr h); z = s(Wiz x + biz + Whz h);
    n = tanh(Win x + bin + r (Whn h + bhn)); h' = (1 - z) n + z h.
    The logistic s(a) is 0.5 tanh(a / 2) + 0.5 (cheaper than XLA:CPU's own logistic),
    with the halving folded into the r and z weights (exact: a power of two), and
    h' = h + (1 - z)(n - h): fewer operations in the one elementwise pass, which is bound
    by its three tanh per element.
    The inputs listed in `rank_one` (all of them for one input) enter as outer products,
    which fuse into that pass: a matrix product over them would write a (3H, N) array,
    and would make XLA materialise x whole even where those rows are broadcast scalars.
    Rows that are loop-invariant (N,) vectors belong in the product, not in `rank_one`:
    inside a training loop XLA hoists their (3H, N) outer product out of the loop, and
    the gate pass then reads 3H rows back instead of one.

    Args:
      gru: a flax GRUCell parameter tree.
      carry: (H, N) hidden states.
      x: (F, N) inputs.
      rank_one: indices of input rows taken as outer products (see above); ignored for F = 1.

    Returns:
      The new carry (H, N).
    """
    h = carry.shape[0]
    w_in, b_in, w_h = gru_matrices(gru)
    b_in = b_in[:, None]
    rank_one = range(x.shape[0]) if x.shape[0] == 1 else rank_one
    dense = [k for k in range(x.shape[0]) if k not in rank_one]
    xi = b_in + sum(w_in[:, k : k + 1] * x[k] for k in rank_one)
    if dense:
        xi = xi + w_in[:, dense] @ jnp.concatenate([x[k : k + 1] for k in dense])  # static rows, no gather
    hh = w_h @ carry
    r = 0.5 * jnp.tanh(xi[:h] + hh[:h]) + 0.5
    t_z = jnp.tanh(xi[h : 2 * h] + hh[h : 2 * h])
    n = jnp.tanh(xi[2 * h :] + r * (hh[2 * h :] + gru["hn"]["bias"][:, None]))
    return carry + (0.5 - 0.5 * t_z) * (n - carry)


def dense_rows(layer: dict, rows: list) -> list:
    """flax Dense over the feature axis, one (N,) row per feature in and out: each output
    row is a sum of scaled input rows. A chain of these is elementwise over N, so XLA
    fuses it into one pass that keeps every intermediate in registers; as matrix products
    each layer writes its (K, N) output out and the next pass reads it back, which on
    XLA:CPU costs more than the arithmetic at these widths (K = 3..16).

    Args:
      layer: a flax Dense tree (kernel (in, out), bias (out,)).
      rows: `in` arrays of shape (N,), one per input feature.

    Returns:
      `out` arrays of shape (N,).
    """
    kernel, bias = layer["kernel"], layer["bias"]
    return [sum(kernel[i, k] * row for i, row in enumerate(rows)) + bias[k] for k in range(kernel.shape[1])]


def centred(layer: dict) -> dict:
    """A dense layer whose outputs have zero mean over features (LayerNorm's centring).

    Args:
      layer: a flax Dense tree (kernel (in, out), bias (out,)).

    Returns:
      The same tree with each kernel row and the bias minus their means over outputs.
    """
    return {"kernel": layer["kernel"] - layer["kernel"].mean(1, keepdims=True), "bias": layer["bias"] - layer["bias"].mean()}


def dense_layer_norm_rows(layer: dict, norm: dict, rows: list, eps: float = 1e-6) -> list:
    """flax LayerNorm(Dense(x)) over the feature axis, row by row as `dense_rows`. The mean
    over features of a dense layer's output is linear in its input, so centring is folded
    into the weights (W - row means, b - mean(b)): the layer gives centred rows directly.

    Args:
      layer: a flax Dense tree (kernel (in, out), bias (out,)).
      norm: a flax LayerNorm tree (scale, bias), each (out,).
      rows: `in` arrays of shape (N,).
      eps: LayerNorm's epsilon.

    Returns:
      `out` arrays of shape (N,).
    """
    y = dense_rows(centred(layer), rows)
    inv = jax.lax.rsqrt(sum(r * r for r in y) / len(y) + eps)
    return [r * inv * norm["scale"][k] + norm["bias"][k] for k, r in enumerate(y)]


def init_like_flax(rng: jax.Array, shapes: dict) -> dict:
    """flax's default initialisers by leaf name: lecun-normal kernels (orthogonal for a
    GRU's recurrent h* kernels), zero biases, unit LayerNorm scales.

    Args:
      rng: a PRNG key.
      shapes: a tree leaf -> shape with flax's leaf names (kernel, bias, scale).

    Returns:
      A tree of float32 arrays of those shapes.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=is_shape)
    lecun, ortho = jax.nn.initializers.lecun_normal(), jax.nn.initializers.orthogonal()
    leaves = []
    for key, (path, shape) in zip(jax.random.split(rng, len(flat)), flat):
        owner, name = str(path[-2].key), str(path[-1].key)
        if name == "kernel":
            leaves.append((ortho if owner in GATES_HIDDEN else lecun)(key, shape, jnp.float32))
        elif name == "scale":
            leaves.append(jnp.ones(shape, jnp.float32))
        else:
            leaves.append(jnp.zeros(shape, jnp.float32))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def zeros_like_shapes(shapes: dict) -> dict:
    """A tree of float32 zeros with the given shapes.

    Args:
      shapes: a tree leaf -> shape.

    Returns:
      The tree of zeros.
    """
    return jax.tree.map(lambda s: jnp.zeros(s, jnp.float32), shapes, is_leaf=is_shape)


def count(shapes: dict) -> int:
    """The number of elements in a shape tree.

    Args:
      shapes: a tree leaf -> shape.

    Returns:
      The total element count.
    """
    return sum(math.prod(s) for s in jax.tree.leaves(shapes, is_leaf=is_shape))
