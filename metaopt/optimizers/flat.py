"""Flat vectors of an agent's parameters, so per-parameter networks run as a few large
matrix products instead of one small network per leaf.

`FlatLayout.networks()` gives one vector per network (actor, critic); OPEN runs on those
(its per-tensor statistics and layer proportions are per network), Optim4RL on one
agent-wide vector. Each vector is zero-padded to a multiple of LANES, the block the CPU
kernels (optimizers/kernels/) process at a time.

The layout is static (shapes and tree paths only), so it is built at trace time from the
params (or their shapes) and costs nothing at run time. It knows, for every element, which
network ("actor", "critic") and which layer it belongs to: what OPEN's layer proportion,
dormancy and actor-only noise need.

A tree whose top level holds "actor" and/or "critic" (and optionally "torso") is an agent:
each of those is a network and the first key under it is a layer (sorted order = depth order,
see agents/networks.py); a network whose leaves all sit right under its name (A2C's heads,
{"kernel", "bias"}) is one layer of that name. A "torso" is shared (A2C's, agents/a2c.py): it
lies on both the actor's and the critic's path from input to output, so the actor's mask covers
it and a layer's proportion is its depth along that path (torso layers first, the heads last).
Any other tree is one network called "actor" whose top-level keys are its layers.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

AGENT_NETWORKS = ("actor", "critic")
SHARED_TORSO = "torso"
LANES = 16


def standard_normal(key: jax.Array, n: int, offset: int = 0) -> jax.Array:
    """Draws `offset` to `offset + n` of `jax.random.normal(key, (offset + n,))`: element i's
    draw depends on i alone, so every network of an agent draws its own part of one
    agent-wide draw.

    Args:
      key: a PRNG key.
      n: number of draws.
      offset: index of the first draw in the whole sequence.

    Returns:
      (n,) float32 standard normals.
    """
    return jax.random.normal(key, (offset + n,), jnp.float32)[offset:]


def padded(size: int) -> int:
    """`size` rounded up to a multiple of LANES.

    Args:
      size: number of elements.

    Returns:
      The padded length.
    """
    return -(-size // LANES) * LANES


def is_agent_top(top: set[str]) -> bool:
    """Whether a tree with these top-level keys is an agent: "actor" and/or "critic", and
    optionally a shared "torso", nothing else."""
    return bool(top & set(AGENT_NETWORKS)) and top <= {*AGENT_NETWORKS, SHARED_TORSO}


def _levels(size: int, count: int = 3) -> tuple[int, ...]:
    """`size` as a product of `count` factors, each the largest divisor of what is left
    up to its count-th root (rounded): the block lengths of a nested sum."""
    if count == 1:
        return (size,)
    block = max(d for d in range(1, int(round(size ** (1 / count))) + 1) if size % d == 0)
    return _levels(size // block, count - 1) + (block,)


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


@dataclass(frozen=True)
class Leaf:
    """One leaf of a layout: its network, layer, shape and offset in the layout's vector."""

    network: str
    layer: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        """The number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))


class FlatLayout:
    """Static description of a params tree laid out as one float32 vector."""

    def __init__(self, params):
        paths_leaves, self.treedef = jax.tree_util.tree_flatten_with_path(params)
        top = {_key_name(p[0]) for p, _ in paths_leaves if p}
        is_agent = is_agent_top(top)
        paths = [[_key_name(p) for p in path] for path, _ in paths_leaves]
        # A network whose leaves all sit right under its name (A2C's heads) is one layer of that name;
        # otherwise the key under the network names the layer (a PPO actor's "log_std" is its own).
        one_layer = {names[0] for names in paths if names} - {names[0] for names in paths if len(names) > 2}
        leaves, offset = [], 0
        for names, (_, leaf) in zip(paths, paths_leaves):
            if is_agent:
                network = names[0]
                layer = network if network in one_layer else (names[1] if len(names) > 1 else network)
            else:
                network, layer = "actor", (names[0] if names else "")
            leaves.append(Leaf(network, layer, tuple(int(d) for d in jnp.shape(leaf)), offset))
            offset += leaves[-1].size
        self.is_agent = is_agent
        self.leaves: tuple[Leaf, ...] = tuple(leaves)
        # the shared torso's depth, kept by every `networks()` part (a head's proportion needs it)
        self.torso_depth = len({leaf.layer for leaf in leaves if is_agent and leaf.network == SHARED_TORSO})
        self.size = offset
        self.width = padded(offset)  # the length of this layout's vectors
        self.dtypes = tuple(jnp.result_type(leaf) for _, leaf in paths_leaves)
        self.start = 0  # where this layout's elements begin in the whole tree's flat order
        self.leaf_range = (0, len(leaves))

    def networks(self) -> tuple[FlatLayout, ...]:
        """One layout per network, in flat order (a non-agent tree is one network).

        Returns:
          A tuple of FlatLayout parts, one per network; each is indexed into the whole tree.
        """
        parts, lo = [], 0
        for _, run in itertools.groupby(self.leaves, key=lambda leaf: leaf.network):
            hi = lo + len(list(run))
            parts.append(self._part(lo, hi))
            lo = hi
        return tuple(parts)

    def _part(self, lo: int, hi: int) -> FlatLayout:
        part = copy.copy(self)
        base = self.leaves[lo].offset
        part.leaves = tuple(replace(leaf, offset=leaf.offset - base) for leaf in self.leaves[lo:hi])
        part.dtypes = self.dtypes[lo:hi]
        part.size = sum(leaf.size for leaf in part.leaves)
        part.width = padded(part.size)
        part.start = self.start + base
        part.leaf_range = (self.leaf_range[0] + lo, self.leaf_range[0] + hi)
        return part

    # ---------------------------------------------------------------- static per-element data

    def layers(self, network: str) -> list[str]:
        """The layer names of `network`, sorted (depth order).

        Args:
          network: "actor" or "critic" (or "actor" for a non-agent tree).

        Returns:
          Sorted layer names; empty when the layout has no such network.
        """
        return sorted({leaf.layer for leaf in self.leaves if leaf.network == network})

    def per_element(self, value_of_leaf) -> np.ndarray:
        """A float32 (width,) constant with `value_of_leaf(leaf)` repeated over each leaf
        (0 in the padding).

        Args:
          value_of_leaf: Leaf -> float, the value for all of that leaf's elements.

        Returns:
          A numpy float32 array of shape (width,).
        """
        parts = [np.full(leaf.size, value_of_leaf(leaf), np.float32) for leaf in self.leaves]
        return np.concatenate(parts + [np.zeros(self.width - self.size, np.float32)])

    def layer_proportion(self) -> np.ndarray:
        """layer index / (layers - 1) along the leaf's path from input to output: within its
        network, after a shared torso's layers where there is one (a torso layer's index is its
        depth; a head is last). A one-layer network without a torso gives 0.

        Returns:
          A numpy float32 array of shape (width,), values in [0, 1].
        """
        depth = self.torso_depth
        props = {(SHARED_TORSO, name): i / depth for i, name in enumerate(self.layers(SHARED_TORSO) if depth else [])}
        for network in {leaf.network for leaf in self.leaves} - {SHARED_TORSO}:
            names = self.layers(network)
            for i, name in enumerate(names):
                props[network, name] = (depth + i) / max(depth + len(names) - 1, 1)
        return self.per_element(lambda leaf: props[leaf.network, leaf.layer])

    def on_path(self, leaf: Leaf, network: str) -> bool:
        """Whether `leaf` lies on `network`'s path from input to output: its own leaves and a
        shared torso's."""
        return leaf.network == network or (self.is_agent and leaf.network == SHARED_TORSO)

    def mask(self, network: str) -> np.ndarray:
        """1 on the elements on `network`'s path (its own and a shared torso's), 0 elsewhere
        (the padding included).

        Args:
          network: "actor" or "critic".

        Returns:
          A numpy float32 array of shape (width,).
        """
        return self.per_element(lambda leaf: float(self.on_path(leaf, network)))

    def noise(self, key: jax.Array, network: str) -> jax.Array | None:
        """(width,) standard normal noise on `network`'s elements, 0 elsewhere; None when
        no element is `network`'s. Element i of the whole tree always gets the same draw.

        Args:
          key: the agent-wide noise key (the same for every network part).
          network: the network that gets noise ("actor" in OPEN).

        Returns:
          A (width,) float32 array, or None.
        """
        mask = self.mask(network)
        if not mask.any():
            return None
        draw = standard_normal(key, self.width, self.start)
        return draw if mask[: self.size].all() else draw * jnp.asarray(mask)

    # ---------------------------------------------------------------- traced operations

    def ravel(self, tree) -> jax.Array:
        """This layout's leaves of `tree` (the whole tree) -> (width,) float32, zero-padded.

        Args:
          tree: the whole params tree (every network), with the structure the layout was built from.

        Returns:
          A (width,) float32 vector, zero in the padding.
        """
        lo, hi = self.leaf_range
        leaves = self.treedef.flatten_up_to(tree)[lo:hi]
        pad = [jnp.zeros((self.width - self.size,), jnp.float32)] if self.width > self.size else []
        return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves] + pad)

    def leaves_of(self, flat: jax.Array) -> list[jax.Array]:
        """A (width,) vector -> this layout's leaves, reshaped and cast back to their dtypes.

        Args:
          flat: a (width,) vector of this layout.

        Returns:
          The leaves in flat order.
        """
        return [
            flat[leaf.offset : leaf.offset + leaf.size].reshape(leaf.shape).astype(dtype)
            for leaf, dtype in zip(self.leaves, self.dtypes)
        ]

    def unravel(self, flat: jax.Array):
        """(width,) of a whole layout -> the tree.

        Args:
          flat: a (width,) vector of the whole layout (not of a `networks()` part).

        Returns:
          The params tree.
        """
        return self.treedef.unflatten(self.leaves_of(flat))

    def unravel_networks(self, flats) -> object:
        """One (width,) vector per `networks()` part, in order -> the whole tree.

        Args:
          flats: one (width,) vector per `networks()` part, each of that part's width.

        Returns:
          The params tree.
        """
        return self.treedef.unflatten([x for part, flat in zip(self.networks(), flats) for x in part.leaves_of(flat)])

    def total(self, x: jax.Array) -> jax.Array:
        """Sum of x (width,) over this layout's elements (the padding left out).

        Args:
          x: a (width,) array.

        Returns:
          A scalar.
        """
        return x[: self.size].sum()

    def segment_mean_square(self, x: jax.Array) -> jax.Array:
        """(F, width) -> (F, L): mean of x^2 over each leaf's elements, per row.

        XLA:CPU hands a plain sum (or a row-wise dot product) to its YNNPACK path, which
        needs each leaf's slice copied out first and the producer of x written out whole.
        A reduction of two operands at once (the first and the last ceil(F/2) rows, one
        row shared when F is odd) stays in XLA's own emitter, fused with the slice, the
        square and whatever computes x. That emitter adds sequentially, so each leaf is
        summed in three levels (blocks of about cbrt(size), then blocks of those sums...),
        which keeps the rounding error near that of a pairwise sum.

        Args:
          x: an (F, width) array.

        Returns:
          An (F, L) array, L the number of leaves, in leaf order.
        """
        f = x.shape[0]
        half = (f + 1) // 2
        zero = np.float32(0)

        def pair_sum(a, b, axis):
            return jax.lax.reduce((a, b), (zero, zero), lambda u, v: (u[0] + v[0], u[1] + v[1]), (axis,))

        out = []
        for leaf in self.leaves:
            sq = jnp.square(x[:, leaf.offset : leaf.offset + leaf.size]).reshape((f,) + _levels(leaf.size))
            first, last = sq[:half], sq[f - half :]
            while first.ndim > 1:
                first, last = pair_sum(first, last, first.ndim - 1)
            out.append(jnp.concatenate([first, last[2 * half - f :]]) / leaf.size)
        return jnp.stack(out, 1)

    def scale_segments(self, x: jax.Array, per_leaf: jax.Array) -> jax.Array:
        """(F, width) * (F, L): each leaf's columns times its own column of `per_leaf`, in one
        elementwise pass that picks the scale by column index (a concatenation of per-leaf
        products, a gather or a repeat of the scales each cost an extra pass or more).

        Args:
          x: an (F, width) array.
          per_leaf: an (F, L) array of scales, one column per leaf in leaf order.

        Returns:
          The (F, width) product; the padding takes the last leaf's scale.
        """
        column = jax.lax.broadcasted_iota(jnp.int32, (1, self.width), 1)
        scale = per_leaf[:, :1]
        for i, leaf in enumerate(self.leaves[1:], 1):
            scale = jnp.where(column >= leaf.offset, per_leaf[:, i : i + 1], scale)
        return x * scale

    def _stats_for(self, activations, leaf: Leaf):
        if activations is None:
            return None
        tree = activations.get(leaf.network) if self.is_agent else activations
        return None if tree is None else tree.get(leaf.layer)

    def unit_scores(self, activations, score_fn) -> jax.Array:
        """(width,) per-element score of the output unit each element feeds (kernel (in, out)
        and bias (out,) entries share unit j's score). Leaves with no matching activation
        statistics, or whose last axis is not the unit axis, get 1.

        Args:
          activations: activation statistics per layer, {network: {layer: (..., units)}} for an agent or
            {layer: ...} otherwise; None: no statistics.
          score_fn: statistics of one layer -> per-unit scores (e.g. `open.dormancy_score`).

        Returns:
          A (width,) float32 array, 1 in the padding.
        """
        parts = []
        for leaf in self.leaves:
            stats = self._stats_for(activations, leaf)
            if stats is not None and leaf.shape and stats.shape[-1:] == leaf.shape[-1:]:
                parts.append(jnp.broadcast_to(score_fn(stats), leaf.shape).ravel())
            else:
                parts.append(jnp.ones((leaf.size,), jnp.float32))
        return jnp.concatenate(parts + [jnp.ones((self.width - self.size,), jnp.float32)])
