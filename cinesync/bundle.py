"""The serving bundle's layout: what the control plane needs besides Triton, one folder per version.

<serving>/<version>/ holds MANIFEST (which retrievers, with which index kind, at which depth),
ITEMS, USERS, SEEN (each user's history, what exclude_seen leaves out), POPULARITY, DRIFT_REFERENCE
(what the version answered on validation requests, cinesync/drift.py) and retrievers/<member>.npz
with the arrays of that member's index. <serving>/CURRENT names the live version.
"""

from __future__ import annotations

from pathlib import Path

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
ITEMS = "items.json"
USERS = "users.json"
SEEN = "seen.npz"
POPULARITY = "popularity.npy"
DRIFT_REFERENCE = "drift_reference.json"
RETRIEVERS_DIR = "retrievers"


def retriever_file(member: str) -> str:
    return f"{RETRIEVERS_DIR}/{member}.npz"


def current_version(serving_dir: Path) -> int | None:
    """The version CURRENT names, or None before the first publish."""
    try:
        return int((Path(serving_dir) / CURRENT).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
