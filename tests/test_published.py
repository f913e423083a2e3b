"""The published OPEN weights ship with the package, intact, and are usable by name."""

from __future__ import annotations

import hashlib
import re

import pytest

from metaopt.config import ConfigError, load_train_config
from metaopt.optimizers import open as open_opt
from metaopt.published import FILES, published_path, resolve


def test_shipped_files_match_the_notice():
    notice = (published_path("breakout").parent / "NOTICE.md").read_text()
    rows = dict(re.findall(r"\| (\w+_OPEN\.npy) \| \d+ \| [^|]+ \| ([0-9a-f]{8}) \|", notice))
    assert set(rows) == set(FILES.values())
    for name, file in FILES.items():
        path = published_path(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:8] == rows[file], file
        params = open_opt.load_published(path)
        assert open_opt.is_larger(params) == (name == "multitask")
    assert "Apache License 2.0" in notice and "AlexGoldie/rl-learned-optimization" in notice


def test_names_resolve_in_configs_and_unknown_ones_are_one_line():
    cfg = load_train_config(env="breakout", optimizer="open", overrides={"optimizer.meta_params": "published:freeway"})
    assert cfg.optimizer.meta_params == str(published_path("freeway"))
    assert resolve("some/file.npy") == "some/file.npy"
    with pytest.raises(ConfigError, match="optimizer.meta_params: no published OPEN optimizer 'published:pong'; choose one of"):
        load_train_config(env="breakout", optimizer="open", overrides={"optimizer.meta_params": "published:pong"})
