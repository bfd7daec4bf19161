"""Writing output folders so that nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from imagepref.errors import BadInputError


@contextlib.contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to write into; on success rename it to ``out``.

    ``out`` may not exist or be an empty folder. On any error the temporary folder is removed, so
    a failed or interrupted write leaves nothing that looks finished.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out} exists and is not empty; choose another output folder")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def replaced_on_success(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; when the block ends without error it
    replaces ``path`` in one rename, otherwise it is removed. Readers never see half a file, and a
    crash or a failed write leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``replaced_on_success``."""
    with replaced_on_success(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
