"""What the repository itself holds: no large files, which every clone pays for forever."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import PROJECT

MAX_TRACKED_BYTES = 2 * 1024 * 1024
# Tracked files allowed above MAX_TRACKED_BYTES, each with its reason. Empty: none is needed.
LARGE_FILES_ALLOWED: dict[str, str] = {}


def test_no_tracked_file_over_2_mb_unless_listed():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    large = {}
    for name in filter(None, listed.stdout.decode().split("\0")):
        path = PROJECT / name
        if path.is_file() and not path.is_symlink() and path.stat().st_size > MAX_TRACKED_BYTES:
            large[name] = path.stat().st_size
    unexpected = {n: s for n, s in large.items() if n not in LARGE_FILES_ALLOWED}
    assert not unexpected, (f"tracked files over 2 MB: {unexpected}; keep agent states and partial runs out of git "
                            "(git rm --cached; .gitignore), or list the file with its reason in LARGE_FILES_ALLOWED")
