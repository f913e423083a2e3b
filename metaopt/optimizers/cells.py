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
    """(w_in (3H, F), b_in (3H,), w_h (3H, H)): the gates' weights stacked in the order r, z, n.

    Args:
      gru: a flax GRUCell parameter tree.

    Returns:
      (w_in, b_in, w_h) as above.
    """
    w_in = jnp.concatenate([gru[k]["kernel"] for k in GATES_IN], 1).T
    b_in = jnp.concatenate([gru[k]["bias"] for k in GATES_IN])
    w_h = jnp.concatenate([gru[k]["kernel"] for k in GATES_HIDDEN], 1).T
    return w_in, b_in, w_h


def gru_step(gru: dict, carry: jax.Array, x: jax.Array) -> jax.Array:
    """flax GRUCell (tanh), feature-major: carry (H, N), x (F, N) -> new carry (H, N).

        r = sigmoid(W_ir x + b_ir + W_hr h)
        z = sigmoid(W_iz x + b_iz + W_hz h)
        n = tanh(W_in x + b_in + r (W_hn h + b_hn))
        h' = (1 - z) n + z h

    Args:
      gru: a flax GRUCell parameter tree.
      carry: (H, N) hidden states.
      x: (F, N) inputs.

    Returns:
      The new carry (H, N).
    """
    h = carry.shape[0]
    w_in, b_in, w_h = gru_matrices(gru)
    xi = w_in @ x + b_in[:, None]
    hh = w_h @ carry
    r = jax.nn.sigmoid(xi[:h] + hh[:h])
    z = jax.nn.sigmoid(xi[h : 2 * h] + hh[h : 2 * h])
    n = jnp.tanh(xi[2 * h :] + r * (hh[2 * h :] + gru["hn"]["bias"][:, None]))
    return (1.0 - z) * n + z * carry


def dense(layer: dict, x: jax.Array) -> jax.Array:
    """flax Dense over the feature axis: x (in, N) -> (out, N).

    Args:
      layer: a flax Dense tree (kernel (in, out), bias (out,)).
      x: (in, N) inputs.

    Returns:
      (out, N) outputs.
    """
    return layer["kernel"].T @ x + layer["bias"][:, None]


def layer_norm(norm: dict, x: jax.Array, eps: float) -> jax.Array:
    """flax LayerNorm over the feature axis: x (K, N) -> (K, N).

    Args:
      norm: a flax LayerNorm tree (scale, bias), each (K,).
      x: (K, N) inputs.
      eps: LayerNorm's epsilon.

    Returns:
      Each column normalised to zero mean and unit variance, then scaled and shifted.
    """
    mean = jnp.full((1, x.shape[0]), 1.0 / x.shape[0], x.dtype)  # x's mean over features is mean @ x
    centred = x - mean @ x
    inv = jax.lax.rsqrt(mean @ (centred * centred) + eps)
    return centred * inv * norm["scale"][:, None] + norm["bias"][:, None]


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
