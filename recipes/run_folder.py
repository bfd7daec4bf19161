"""A run folder: the resolved recipe, the manifest of stages, the run log, and the stages' outputs.

```
runs/<name>/
  recipe.yaml      the resolved recipe (the record of the run; rerun it with `imagepref run`)
  manifest.json    per stage: status, input hash, times, outputs
  run.log          one line per step or batch of work, per stage
  stages/<key>/    each stage's outputs (also the folder Label Studio may serve images from)
  label-studio/    the managed server's state (0600 secrets; never inside stages/)
```

Files are replaced through a temporary name and a rename, so a killed run never leaves a torn
manifest. A lock file keeps two runners out of one folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from imagepref.errors import BadInputError
from imagepref.files import write_text_atomically
from imagepref.processes import pid_alive

MANIFEST_FORMAT = "imagepref-run/1"


class RunFolder:
    """One run's folder: manifest, log, lock and stage folders."""

    def __init__(self, root: Path, console_every: int = 10, echo=print) -> None:
        self.root = Path(root)
        self.console_every = console_every
        self.echo = echo
        self.manifest: dict[str, Any] = {}

    # ----- files -------------------------------------------------------------------------
    @property
    def manifest_file(self) -> Path:
        return self.root / "manifest.json"

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def continue_file(self) -> Path:
        """Touched by `imagepref run ... --continue` while another runner waits for labels."""
        return self.root / "continue"

    @property
    def files_root(self) -> Path:
        """The folder a managed Label Studio may serve images from: every stage's outputs."""
        return self.root / "stages"

    @property
    def label_studio_dir(self) -> Path:
        return self.root / "label-studio"

    def stage_dir(self, key: str) -> Path:
        """The output folder of stage ``key`` (for example ``r1/generate``)."""
        return self.files_root / key

    # ----- manifest ----------------------------------------------------------------------
    def open(self, recipe_name: str, force: bool) -> None:
        """Read the manifest (or start one); refuse a folder made by another recipe unless ``force``."""
        if self.manifest_file.is_file():
            try:
                self.manifest = json.loads(self.manifest_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                raise BadInputError(
                    f"{self.manifest_file} is damaged; delete the run folder {self.root} or pass --force"
                ) from None
            owner = self.manifest.get("recipe")
            if owner != recipe_name and not force:
                raise BadInputError(
                    f"run folder {self.root} was made by recipe {owner!r}, not {recipe_name!r}; "
                    "choose another run_dir=... or pass --force to take it over"
                )
            if owner != recipe_name:
                self.manifest = {}
        elif self.root.exists() and any(p.name != "label-studio" for p in self.root.iterdir()) and not force:
            # A prepared Label Studio state alone is welcome (a copied, migrated one starts in seconds).
            raise BadInputError(
                f"{self.root} exists and is not a run folder; choose another run_dir=... or pass --force"
            )
        self.manifest.setdefault("format", MANIFEST_FORMAT)
        self.manifest["recipe"] = recipe_name
        self.manifest.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.manifest.setdefault("stages", {})
        self.root.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        """Write the manifest atomically."""
        write_text_atomically(self.manifest_file, json.dumps(self.manifest, indent=1, default=str))

    def write_recipe(self, resolved: dict[str, Any]) -> None:
        """Write the resolved recipe, the record of what this run does."""
        write_text_atomically(self.root / "recipe.yaml", yaml.safe_dump(resolved, sort_keys=False))

    def stage(self, key: str) -> dict[str, Any]:
        """The manifest entry of stage ``key`` (empty when it never ran)."""
        return self.manifest["stages"].get(key, {})

    def set_stage(self, key: str, **fields: Any) -> None:
        """Update the manifest entry of ``key`` and save."""
        self.manifest["stages"].setdefault(key, {}).update(fields)
        self.save()

    # ----- log ---------------------------------------------------------------------------
    def log(self, stage: str, message: str, console: bool = True, summary: str | None = None) -> None:
        """Append one line to the run log (and echo it to the console when ``console``; ``summary``,
        when given, is what the console shows instead, e.g. a few of a training step's metrics)."""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{stage}] {message}"
        with open(self.log_file, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if console:
            self.echo(f"[{stage}] {summary if summary is not None else message}")

    def step_logger(self, stage: str):
        """A callback ``(done, total, info)`` writing one line per step; every Nth goes to the console."""

        def log_step(done: int | None, total: int | None, info: dict | None = None) -> None:
            details = " ".join(f"{k}={v}" for k, v in (info or {}).items())
            show = done is not None and (done == total or done % self.console_every == 0)
            self.log(stage, f"step {done}/{total} {details}".rstrip(), console=show)

        return log_step

    # ----- lock --------------------------------------------------------------------------
    def holder(self) -> int | None:
        """The pid of a live runner holding this folder, or None."""
        if not self.lock_file.is_file():
            return None
        try:
            pid = int(self.lock_file.read_text().strip() or 0)
        except ValueError:
            return None
        return pid if pid and pid != os.getpid() and pid_alive(pid) else None

    def acquire(self) -> None:
        """Take the folder's lock; another live runner is an error."""
        pid = self.holder()
        if pid is not None:
            raise BadInputError(
                f"run folder {self.root} is in use by another `imagepref run` (pid {pid}); wait for it or stop it"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.lock_file, str(os.getpid()))
        self.continue_file.unlink(missing_ok=True)

    def release(self) -> None:
        """Drop the lock (only when this process holds it)."""
        try:
            if int(self.lock_file.read_text().strip() or 0) == os.getpid():
                self.lock_file.unlink()
        except (OSError, ValueError):
            pass
