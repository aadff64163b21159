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


def saelens_repo(cache: Path, sae, repo_id: str, path_in_repo: str, work: Path) -> str:
    """``sae`` saved by dictionaries.io (a SAELens 6 folder) at ``path_in_repo`` of ``repo_id``."""
    from dictionaries.io import CFG_FILE, WEIGHTS_FILE, save_dictionary

    folder = save_dictionary(sae, Path(work) / "saelens-folder")
    return write_hub_repo(cache, repo_id, {f"{path_in_repo}/{CFG_FILE}": folder / CFG_FILE,
                                           f"{path_in_repo}/{WEIGHTS_FILE}": folder / WEIGHTS_FILE})


def gemma_scope_repo(cache: Path, arrays: dict, repo_id: str, path_in_repo: str, work: Path
                     ) -> str:
    """``arrays`` (W_enc, W_dec, b_enc, b_dec, threshold) as ``path_in_repo/params.npz``."""
    import numpy as np

    file = Path(work) / "params.npz"
    np.savez(file, **arrays)
    return write_hub_repo(cache, repo_id, {f"{path_in_repo}/params.npz": file})


def random_gemma_arrays(d_in: int, d_sae: int, seed: int = 0) -> dict:
    """Float32 JumpReLU weights in Gemma Scope's layout, decoder rows of different norms."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32),
            "W_dec": (rng.normal(size=(d_sae, d_in)) * rng.uniform(0.5, 3, (d_sae, 1))
                      ).astype(np.float32),
            "b_enc": rng.normal(0, 0.1, d_sae).astype(np.float32),
            "b_dec": rng.normal(size=d_in).astype(np.float32),
            "threshold": rng.uniform(0.1, 0.5, d_sae).astype(np.float32)}
