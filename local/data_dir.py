"""The local stack's data folder: what survives a restart of `make run`.

    <data dir>/.kefu-local-data   marks the folder as ours (reset deletes only such folders)
    <data dir>/token-secret       the token secret (tokens stay valid across restarts)
    <data dir>/dynamodb/          the tables (dynalite's LevelDB)
    <data dir>/oss/               the OSS stand-in's objects

The default is local-data/ in the checkout (git-ignored); `python -m local --data-dir DIR` picks
another. `make reset` (``python -m local.data_dir reset [DIR]``) deletes it to start fresh.
"""
from __future__ import annotations

import pathlib
import shutil
import sys
from typing import List, Optional

DEFAULT_DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "local-data"
MARKER = ".kefu-local-data"
TOKEN_SECRET = "token-secret"
DYNAMODB = "dynamodb"
OSS = "oss"


class NotADataDir(RuntimeError):
    """A folder with other things in it: never deleted."""


def open_data_dir(path: pathlib.Path) -> bool:
    """Make the folder ready; True when it already held data (the stack goes on from it)."""
    existing = path.is_dir() and any((path / name).exists() for name in (TOKEN_SECRET, DYNAMODB, OSS))
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()
    return existing


def reset_data_dir(path: pathlib.Path) -> bool:
    """Delete the folder and everything in it; False when there was nothing to delete. Refuses a
    folder that is not empty and was never a data folder (a mistyped --data-dir must not cost
    anyone their files)."""
    if not path.exists():
        return False
    if not (path / MARKER).exists() and any(path.iterdir()):
        raise NotADataDir(f"{path} is not a Kefu data folder (it has no {MARKER}): not deleting it")
    shutil.rmtree(path)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "reset" or len(args) > 2:
        print("usage: python -m local.data_dir reset [DIR]", file=sys.stderr)
        return 2
    path = pathlib.Path(args[1]) if len(args) > 1 else DEFAULT_DATA_DIR
    try:
        deleted = reset_data_dir(path)
    except NotADataDir as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"deleted {path}: the next `make run` starts fresh" if deleted else f"{path} is already empty")
    return 0


if __name__ == "__main__":
    sys.exit(main())
