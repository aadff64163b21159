"""A local Hugging Face hub cache, laid out as huggingface_hub lays it out (no network).

``<cache>/models--OWNER--REPO/blobs/<sha256>`` holds each file's bytes,
``refs/<branch>`` the commit hash, and ``snapshots/<commit>/<path>`` a relative symlink to the
blob (a copy where symlinks are not available, as huggingface_hub does on such systems).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_hub_repo(cache: Path, repo_id: str, files: dict[str, bytes | Path], *,
                   branch: str = "main", commit: str | None = None,
                   repo_type: str = "model") -> str:
    """Put ``files`` (path in repo -> bytes or a local file) in ``cache`` at ``branch``;
    returns the commit hash (40 hex digits, derived from the contents unless given)."""
    owner_repo = repo_id.replace("/", "--")
    root = Path(cache) / f"{repo_type}s--{owner_repo}"
    contents = {p: (v.read_bytes() if isinstance(v, Path) else v) for p, v in files.items()}
    if commit is None:
        digest = hashlib.sha1()
        for p in sorted(contents):
            digest.update(p.encode() + b"\0" + contents[p])
        commit = digest.hexdigest()
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / branch).write_text(commit)
    (root / "blobs").mkdir(exist_ok=True)
    for path_in_repo, data in contents.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = root / "snapshots" / commit / path_in_repo
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:
            link.write_bytes(data)
    return commit
