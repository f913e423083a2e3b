"""Claims between processes of a machine: an exclusive `flock` on a file, held through an open
descriptor. The kernel drops a claim when its descriptor closes or its process ends, however it
ends (killed, crashed), so a claim never outlives its holder and needs no cleaning up.

Used for the cores a worker keeps to (`metaopt.distributed.cores`) and for the cells a
`metaopt evaluate` runs (`metaopt.evaluation.plan_run`). Linux and macOS; the files are never
removed (removing one while it is held would let a second holder claim a new file of the same name).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_claim(path: Path) -> int | None:
    """Claim `path` (created with its folder if missing) unless another open descriptor holds it,
    in this process or another.

    Args:
      path: the claim file.

    Returns:
      The descriptor that holds the claim (close it to release), or None when it is held elsewhere.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
