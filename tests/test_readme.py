"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import PROJECT


def readme_block(marker: str) -> str:
    text = (PROJECT / "README.md").read_text()
    match = re.search(rf"<!-- example: {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README example {marker!r} not found"
    return match.group(1)


def test_learned_optimizer_in_plain_optax_loop():
    proc = subprocess.run([sys.executable, "-c", readme_block("learned-optax")], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = [float(x) for x in re.findall(r"loss ([0-9.]+)", proc.stdout)]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0], proc.stdout
