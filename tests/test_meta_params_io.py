"""Saving and loading meta-parameters: safetensors with metadata, clear errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metaopt.optimizers import open as op
from metaopt.optimizers import optim4rl as o4
from metaopt.optimizers.learned import load_meta_params, save_meta_params
from metaopt.serialization import load_tree, save_tree


@pytest.mark.parametrize(
    "method, tree",
    [
        ("open", op.init_meta_params(jax.random.key(0))),
        ("open", op.init_meta_params(jax.random.key(0), larger=True)),
        ("optim4rl", o4.init_meta_params(jax.random.key(0))),
        ("optim4rl", o4.init_meta_params(jax.random.key(0), hidden=4)),
    ],
)
def test_round_trip(tmp_path, method, tree):
    path = save_meta_params(tmp_path / "m.safetensors", method, tree, source="test")
    found, loaded = load_meta_params(path)
    assert found == method
    jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, tree))
    _, meta = load_tree(path)
    assert meta["source"] == "test" and meta["format"].startswith("metaopt-meta-params/")


def test_wrong_method_is_refused(tmp_path):
    path = save_meta_params(tmp_path / "o.safetensors", "optim4rl", o4.init_meta_params(jax.random.key(0)))
    with pytest.raises(ValueError, match="holds optim4rl meta-parameters, not open"):
        load_meta_params(path, "open")


def test_corrupt_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_meta_params(junk)
    foreign = save_tree(tmp_path / "foreign.safetensors", {"w": np.zeros(3, np.float32)}, {"owner": "someone"})
    with pytest.raises(ValueError, match="not metaopt meta-parameters"):
        load_meta_params(foreign)


def test_wrong_shapes_are_refused(tmp_path):
    tree = jax.tree.map(np.asarray, op.init_meta_params(jax.random.key(0)))
    tree["params"]["layers_6"]["kernel"] = np.zeros((16, 4), np.float32)
    path = save_tree(tmp_path / "w.safetensors", tree, {"format": "metaopt-meta-params/1", "method": "open", "size": "small"})
    with pytest.raises(ValueError, match=r"layers_6/kernel is float32\[16, 4\], expected float32\[16, 3\]"):
        load_meta_params(path)
    del tree["params"]["layers_6"]
    path = save_tree(tmp_path / "m.safetensors", tree, {"format": "metaopt-meta-params/1", "method": "open", "size": "small"})
    with pytest.raises(ValueError, match="missing"):
        load_meta_params(path)
