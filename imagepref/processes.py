"""Process liveness, shared by the Label Studio server manager and the recipe run folder."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """Whether a process with id ``pid`` exists (one owned by another user counts as alive)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
