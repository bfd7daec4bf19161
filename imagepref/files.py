"""Writing output folders so that nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from imagepref.errors import BadInputError

FOLDER_MODES = ("new", "replace", "merge")


def check_output(
    path: str | Path,
    option: str = "--out",
    inputs: Iterable[str | Path | None] = (),
    folder: bool = True,
    may_hold_files: bool = False,
) -> Path:
    """Refuse an output path before any work starts, with one line naming ``option`` and the fix:
    the path is, or lies inside, one of the ``inputs`` (folders a command reads); a folder output
    is an existing file, or an existing folder with files in it unless ``may_hold_files`` (a
    command that resumes or reuses what is there); a file output is an existing folder; the path
    lies below a regular file; or the nearest existing folder cannot be written (probed by
    creating and removing a folder, which also holds for root and read-only mounts)."""
    path = Path(path)
    resolved = path.resolve()
    for source in inputs:
        if source is None:
            continue
        source = Path(source).resolve()
        if resolved == source or source in resolved.parents:
            raise BadInputError(
                f"{option} {path} is inside the input {source}; write the output to a folder outside it"
            )
    if path.exists():
        if folder and not path.is_dir():
            raise BadInputError(f"{option} {path} is a file; pass the path of a new or empty folder")
        if not folder and path.is_dir():
            raise BadInputError(f"{option} {path} is a folder; pass a file path")
        if folder and not may_hold_files and any(path.iterdir()):
            raise BadInputError(f"{option} {path} exists and is not empty; choose another {option}")
    nearest = resolved if path.is_dir() else resolved.parent
    while not nearest.exists():
        nearest = nearest.parent
    if not nearest.is_dir():
        raise BadInputError(f"{option} {path} lies below {nearest}, which is a file; choose a path in a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".imagepref-write-check-", dir=nearest))
    except OSError as error:
        raise BadInputError(
            f"cannot write {option} {path}: {nearest} is not writable ({error.strerror}); choose another {option}"
        ) from None
    return path


@contextlib.contextmanager
def staged_folder(out: str | Path, existing: str = "new") -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to write into; on success it becomes ``out``.

    ``existing`` says what happens to a folder already at ``out``:

    * ``new``: ``out`` may not exist or must be empty (an output folder the user names);
    * ``replace``: the old folder is moved aside, the new one renamed in, then the old one removed,
      so one of them is whole at every moment (a re-pull, a training checkpoint);
    * ``merge``: each file or folder written replaces the one of the same name in ``out``; other
      entries of ``out`` stay (a model saved into a folder that also holds its checkpoints).

    On any error the temporary folder is removed and ``out`` is left as it was.
    """
    if existing not in FOLDER_MODES:
        raise ValueError(f"existing must be one of {FOLDER_MODES}, not {existing!r}")
    out = Path(out)
    if existing == "new" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out} exists and is not empty; choose another output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if existing == "merge" and out.is_dir():
            for item in staging.iterdir():
                target = out / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(item, target)
            staging.rmdir()
        elif existing == "replace" and out.exists():
            previous = out.with_name(f".{out.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            out.rename(previous)
            staging.rename(out)
            shutil.rmtree(previous, ignore_errors=True)
        else:
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


def write_json_atomically(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Write ``data`` as JSON (``default=str`` for paths, dates and the like) through
    ``replaced_on_success``."""
    write_text_atomically(path, json.dumps(data, indent=indent, default=str))
