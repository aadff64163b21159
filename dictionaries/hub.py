"""Published dictionaries from the Hugging Face Hub: cached, and offline once cached.

A dictionary REF is one of::

    hf://OWNER/REPO[@REVISION][/PATH]   a SAELens folder (cfg.json + sae_weights.safetensors)
                                        at PATH in the repo, a folder holding a Gemma Scope
                                        params.npz, or that params.npz file itself
    saelens://RELEASE/SAE_ID            a name in SAELens' pretrained-SAE registry (needs
                                        sae_lens importable; it resolves to repo + path)
    anything else                       a local dictionary folder (``dictionaries.io``)

``hf://`` follows huggingface_hub's own URI grammar (``hf://[datasets/]ID[@REVISION][/PATH]``);
a REF contains no ``:`` after its scheme, so ``feature:REF:ID`` still splits at the last colon.
Files go through ``hf_hub_download`` into the standard cache (``HF_HUB_CACHE`` / ``HF_HOME``,
read when called). With ``HF_HUB_OFFLINE=1``, or when the hub cannot be reached (a TCP probe
of the endpoint, or a failed download), only the cache is read (``local_files_only=True``).
Loading never unpickles (``np.load(..., allow_pickle=False)``, safetensors).

Gemma Scope (``params.npz``: ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc``,
``b_dec``, ``threshold``) is JumpReLU without the pre-encoder bias, as SAELens loads it. Its hook
is the ``hook_name`` given, else inferred like SAELens' ``gemma_2`` loader: ``layer_N`` in the
path and the repo name's ``res`` / ``mlp`` / ``att`` give ``blocks.N.hook_resid_post`` /
``blocks.N.hook_mlp_out`` / ``blocks.N.attn.hook_z`` (else none is recorded: give it where the
dictionary is used). Embedding SAEs are refused (their input scale depends on the hook).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dictionaries.config import DictionaryConfig, DictionaryConfigError
from dictionaries.io import CFG_FILE, WEIGHTS_FILE, fill_weights, read_cfg
from dictionaries.io import load_folder
from dictionaries.saes import Dictionary

HF_SCHEME = "hf://"
SAELENS_SCHEME = "saelens://"
NPZ_FILE = "params.npz"
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HubRef:
    """Where a dictionary lives on the hub; ``fmt`` is ``auto`` | ``saelens`` | ``npz``."""

    ref: str
    repo_id: str
    path: str = ""
    revision: str | None = None
    repo_type: str = "model"
    fmt: str = "auto"
    overrides: tuple[tuple[str, str], ...] = ()


def is_dictionary_ref(s: str) -> bool:
    """True for hub REFs (``hf://...``, ``saelens://...``); local folders are not REFs."""
    return isinstance(s, str) and s.startswith((HF_SCHEME, SAELENS_SCHEME))


def _ref_error(ref: str, problem: str) -> DictionaryConfigError:
    return DictionaryConfigError(
        f"dictionary {ref}: {problem} (use hf://OWNER/REPO[@REVISION]/PATH or "
        "saelens://RELEASE/SAE_ID)")


def parse_ref(ref: str) -> HubRef:
    """Split a REF into repo, path and revision (``saelens://`` goes through the registry)."""
    if ref.startswith(SAELENS_SCHEME):
        return _saelens_ref(ref)
    if not ref.startswith(HF_SCHEME):
        raise _ref_error(ref, "not a hub reference")
    body = ref[len(HF_SCHEME):].strip("/")
    repo_type = "model"
    for prefix, kind in (("datasets/", "dataset"), ("models/", "model")):
        if body.startswith(prefix):
            body, repo_type = body[len(prefix):], kind
    parts = body.split("/")
    if len(parts) < 2:
        raise _ref_error(ref, "needs OWNER/REPO")
    owner, name, path = parts[0], parts[1], "/".join(parts[2:])
    name, at, revision = name.partition("@")
    if not (_REPO_PART.match(owner) and _REPO_PART.match(name)) or ":" in path:
        raise _ref_error(ref, f"{owner}/{name} is not a valid repo id")
    if at and not revision:
        raise _ref_error(ref, "empty @REVISION (put it right after the repo: OWNER/REPO@REV/PATH)")
    fmt = "npz" if path.endswith(".npz") else "auto"
    if path.endswith((f"/{CFG_FILE}", f"/{WEIGHTS_FILE}")) or path in (CFG_FILE, WEIGHTS_FILE):
        path, fmt = path.rpartition("/")[0], "saelens"
    return HubRef(ref, f"{owner}/{name}", path, revision or None, repo_type, fmt)


def _saelens_ref(ref: str) -> HubRef:
    release, _, sae_id = ref[len(SAELENS_SCHEME):].partition("/")
    if not release or not sae_id:
        raise _ref_error(ref, "needs saelens://RELEASE/SAE_ID")
    directory = None
    for module in ("sae_lens.loading.pretrained_saes_directory",  # SAELens >= 6
                   "sae_lens.toolkit.pretrained_saes_directory"):  # older releases
        try:
            directory = __import__(module, fromlist=["x"]).get_pretrained_saes_directory()
            break
        except ImportError:
            continue
    if directory is None:
        raise DictionaryConfigError(
            f"dictionary {ref}: sae_lens is not importable here, so SAELens release names "
            "cannot be resolved; give the repo and path instead: hf://REPO_ID/PATH (the "
            "release's repo_id and the SAE's path in SAELens' pretrained_saes.yaml)")
    info = directory.get(release)
    if info is None:
        raise DictionaryConfigError(f"dictionary {ref}: SAELens has no release {release!r} "
                                    "(see its pretrained_saes.yaml, or use hf://REPO/PATH)")
    if sae_id not in info.saes_map:
        some = ", ".join(list(info.saes_map)[:3])
        raise DictionaryConfigError(f"dictionary {ref}: release {release!r} has no SAE id "
                                    f"{sae_id!r} (e.g. {some})")
    conversion = info.conversion_func or "sae_lens"
    formats = {"sae_lens": "saelens", "gemma_2": "npz"}
    if conversion not in formats:
        raise DictionaryConfigError(
            f"dictionary {ref}: release {release!r} needs SAELens' {conversion!r} converter, "
            "which truthsteer does not implement (supported: SAELens folders, Gemma Scope)")
    raw = info.config_overrides if isinstance(info.config_overrides, dict) else {}
    overrides = tuple((k, str(raw[k])) for k in ("hook_name", "model_name")
                      if isinstance(raw.get(k), str))
    path = info.saes_map[sae_id].strip("/")
    if formats[conversion] == "npz" and not path.endswith(".npz"):
        path = f"{path}/{NPZ_FILE}" if path else NPZ_FILE
    return HubRef(ref, info.repo_id, path, None, "model", formats[conversion], overrides)


def hub_offline() -> bool:
    """Whether to read only the cache: ``HF_HUB_OFFLINE`` now, or as huggingface_hub read it."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    now = value is not None and value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return now or bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path | None:
    """The hub cache as the environment names it now (None: huggingface_hub's default)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if cache:
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME")
    return Path(home).expanduser() / "hub" if home else None


_REACHABLE: dict[str, bool] = {}


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens (asked once per process; assumed
    reachable behind a proxy). When it does not, the cache is read without the hub client's
    retries (seconds per file)."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlsplit(hub_endpoint())
    if url.hostname is None:
        return True
    key = f"{url.hostname}:{url.port}"
    if key not in _REACHABLE:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            _REACHABLE[key] = True
        except OSError:
            _REACHABLE[key] = False
    return _REACHABLE[key]


class _Fetcher:
    """``hf_hub_download`` with the cache fallback; remembers whether the hub was reached."""

    def __init__(self, hub: HubRef, cache_dir: str | Path | None) -> None:
        self.hub = hub
        self.cache_dir = cache_dir if cache_dir is not None else hub_cache_dir()
        self.offline = hub_offline() or not hub_reachable()

    def get(self, filename: str, revision: str | None = None) -> Path | None:
        """The local path of ``filename`` in the repo, or None when it does not exist there
        (or, offline, is not cached)."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError,
                                            LocalEntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)

        hub = self.hub
        kw: dict[str, Any] = {"repo_id": hub.repo_id, "filename": filename,
                              "repo_type": hub.repo_type, "revision": revision or hub.revision,
                              "cache_dir": self.cache_dir, "endpoint": hub_endpoint()}
        if not self.offline:
            try:
                return Path(hf_hub_download(**kw))
            except GatedRepoError:
                raise DictionaryConfigError(
                    f"dictionary {hub.ref}: {hub.repo_id} is gated; accept its terms on the hub "
                    "and set HF_TOKEN") from None
            except RevisionNotFoundError:
                raise DictionaryConfigError(f"dictionary {hub.ref}: revision {hub.revision!r} "
                                            f"not found in {hub.repo_id}") from None
            except RepositoryNotFoundError:
                raise DictionaryConfigError(f"dictionary {hub.ref}: no repo {hub.repo_id} on the "
                                            "hub (check OWNER/REPO; private repos need HF_TOKEN)"
                                            ) from None
            except EntryNotFoundError as err:
                if not isinstance(err, LocalEntryNotFoundError):
                    return None  # the hub answered: no such file
                self.offline = True  # hub unreachable: read the cache from now on
            except Exception:  # noqa: BLE001 - network trouble of any kind: use the cache
                self.offline = True
        try:
            return Path(hf_hub_download(**kw, local_files_only=True))
        except (EntryNotFoundError, FileNotFoundError, OSError, ValueError):
            return None

    def missing(self, what: str) -> DictionaryConfigError:
        hub = self.hub
        where = f"{hub.repo_id}/{hub.path}".rstrip("/")
        if self.offline:
            cache = self.cache_dir or "the default Hugging Face cache"
            include = f"{hub.path}/*" if hub.path and hub.fmt == "auto" else (hub.path or "*")
            return DictionaryConfigError(
                f"dictionary {hub.ref}: {what} is not in the hub cache ({cache}) and the hub is "
                f"offline; download it once with network access (hf download {hub.repo_id} "
                f"--include '{include}') or point HF_HUB_CACHE at a cache that holds it")
        return DictionaryConfigError(f"dictionary {hub.ref}: {where} has no {what}; give the "
                                     "path of a SAELens folder or of a Gemma Scope params.npz")


def _snapshot_commit(file: Path, path_in_repo: str) -> str | None:
    """The commit folder a cached file sits in (``.../snapshots/<commit>/<path_in_repo>``)."""
    commit_dir = file.parents[len(Path(path_in_repo).parts) - 1]
    return commit_dir.name if commit_dir.parent.name == "snapshots" else None


def infer_hook(repo_id: str, path: str) -> str:
    """Gemma Scope's hook from ``layer_N`` in ``path`` and res/mlp/att in the repo name ("" if
    not inferable)."""
    layer = re.search(r"(?:^|/)layer_(\d+)(?:/|$)", path)
    words = set(re.split(r"[-_]", repo_id.rpartition("/")[2].lower()))
    if layer is None:
        return ""
    n = int(layer.group(1))
    for word, hook in (("res", f"blocks.{n}.hook_resid_post"), ("mlp", f"blocks.{n}.hook_mlp_out"),
                       ("att", f"blocks.{n}.attn.hook_z")):
        if word in words:
            return hook
    return ""


def infer_model(repo_id: str) -> str:
    """``google/gemma-scope-2b-pt-res`` -> ``google/gemma-2-2b`` (``-it`` kept); else ""."""
    m = re.search(r"gemma-scope-(\d+b)-(pt|it)\b", repo_id)
    return f"google/gemma-2-{m.group(1)}{'-it' if m.group(2) == 'it' else ''}" if m else ""


def load_npz(file: str | Path, *, hook_name: str = "", model_name: str = "",
             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             source: str | None = None) -> Dictionary:
    """A Gemma Scope ``params.npz`` as a JumpReLU dictionary (arrays only: never unpickles)."""
    source = source or str(file)
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {("W_" + k[2:] if k.startswith("w_") else k): np.asarray(data[k])
                      for k in data.files}
    except Exception as err:  # noqa: BLE001 - pickled objects, bad zip, ...: a bad input file
        raise DictionaryConfigError(f"{source}: not a readable params.npz of plain arrays "
                                    f"({type(err).__name__}: {err})") from None
    for key in ("W_enc", "threshold"):
        if key not in arrays:
            raise DictionaryConfigError(f"{source}: missing array {key!r} (a Gemma Scope "
                                        f"params.npz holds W_enc, W_dec, b_enc, b_dec, threshold)")
    if arrays["W_enc"].ndim != 2:
        raise DictionaryConfigError(f"{source}: W_enc has shape {list(arrays['W_enc'].shape)}, "
                                    "expected [d_in, d_sae]")
    bad = [k for k, v in arrays.items() if not np.issubdtype(v.dtype, np.floating)]
    if bad:
        raise DictionaryConfigError(f"{source}: arrays {bad} are not floating point")
    d_in, d_sae = (int(n) for n in arrays["W_enc"].shape)
    cfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, architecture="jumprelu",
                           model_name=model_name, hook_name=hook_name)
    sae = Dictionary(cfg, apply_b_dec_to_input=False, device=device, dtype=dtype)
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
             for k, v in arrays.items()}
    return fill_weights(sae, state, source)


def load_dictionary(ref: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32, *, hook_name: str | None = None,
                    cache_dir: str | Path | None = None) -> Dictionary:
    """The dictionary a REF names (hub or local folder), as ``dictionaries.io`` loads folders.

    ``hook_name`` overrides the recorded or inferred hook.
    """
    if not is_dictionary_ref(str(ref)):
        sae = load_folder(ref, device=device, dtype=dtype)
        return _with(sae, hook_name=hook_name) if hook_name else sae
    hub = parse_ref(str(ref))
    fetch = _Fetcher(hub, cache_dir)
    overrides = dict(hub.overrides)
    if hub.fmt in ("auto", "saelens"):
        folder = f"{hub.path}/" if hub.path else ""
        cfg_file = fetch.get(folder + CFG_FILE)
        if cfg_file is not None:
            commit = _snapshot_commit(cfg_file, folder + CFG_FILE)  # both from one commit
            weights = fetch.get(folder + WEIGHTS_FILE, commit)
            if weights is None:
                raise fetch.missing(f"{folder}{WEIGHTS_FILE} (beside its {CFG_FILE})")
            sae = load_folder(cfg_file.parent, device=device, dtype=dtype)
            return _with(sae, hook_name=hook_name or overrides.get("hook_name"),
                         model_name=overrides.get("model_name"))
        if hub.fmt == "saelens":
            raise fetch.missing(folder + CFG_FILE)
    npz_path = hub.path if hub.fmt == "npz" else f"{hub.path}/{NPZ_FILE}".lstrip("/")
    npz = fetch.get(npz_path)
    if npz is None:
        raise fetch.missing(f"{npz_path}" if hub.fmt == "npz" else
                            f"{CFG_FILE} + {WEIGHTS_FILE} or {NPZ_FILE} at '{hub.path or '/'}'")
    if re.search(r"(?:^|/)embedding(?:/|$)", hub.path):
        raise DictionaryConfigError(f"dictionary {hub.ref}: embedding SAEs are not supported "
                                    "(their input scale depends on the hook); use a layer_N one")
    hook = hook_name or overrides.get("hook_name") or infer_hook(hub.repo_id, hub.path)
    model = overrides.get("model_name") or infer_model(hub.repo_id)
    return load_npz(npz, hook_name=hook, model_name=model, device=device, dtype=dtype,
                    source=hub.ref)


def _with(sae: Dictionary, hook_name: str | None = None, model_name: str | None = None
          ) -> Dictionary:
    """``sae`` with its config's hook / model replaced (when given)."""
    from dataclasses import replace

    changes = {k: v for k, v in (("hook_name", hook_name), ("model_name", model_name)) if v}
    if changes:
        sae.cfg = replace(sae.cfg, **changes)
    return sae


def dictionary_hook(ref: str | Path, *, cache_dir: str | Path | None = None) -> str:
    """The hook a dictionary REF or folder records (or, for Gemma Scope, implies); "" if none."""
    if not is_dictionary_ref(str(ref)):
        return _cfg_hook(read_cfg(ref))
    hub = parse_ref(str(ref))
    overrides = dict(hub.overrides)
    if "hook_name" in overrides:
        return overrides["hook_name"]
    if hub.fmt in ("auto", "saelens"):  # only cfg.json is read, not the weights
        cfg_file = _Fetcher(hub, cache_dir).get(f"{hub.path}/{CFG_FILE}" if hub.path else CFG_FILE)
        if cfg_file is not None:
            return _cfg_hook(read_cfg(cfg_file.parent))
    return load_dictionary(ref, cache_dir=cache_dir).cfg.hook_name


def _cfg_hook(cfg: dict[str, Any]) -> str:
    meta = cfg.get("metadata") or cfg.get("meta") or {}
    return str(meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point") or "")


def feature_direction(ref: str | Path, feature_id: int, *,
                      cache_dir: str | Path | None = None) -> torch.Tensor:
    """Unit-norm decoder row ``feature_id`` [d_in] of the dictionary REF or folder (true units)."""
    sae = load_dictionary(ref, cache_dir=cache_dir)
    if not 0 <= int(feature_id) < sae.d_sae:
        raise DictionaryConfigError(f"feature {feature_id} is out of range for {ref} "
                                    f"(d_sae={sae.d_sae}: use 0..{sae.d_sae - 1})")
    return sae.feature_directions()[int(feature_id)].clone()
