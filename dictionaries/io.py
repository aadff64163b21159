"""Save and load dictionaries as SAELens-compatible folders; never unpickles.

A dictionary folder holds ``cfg.json`` and ``sae_weights.safetensors`` exactly as SAELens 6
writes them (``SAE.save_model``): weights ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in],
``b_enc``, ``b_dec`` (and ``threshold`` for JumpReLU); cfg keys ``d_in``, ``d_sae``, ``dtype``,
``device``, ``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``,
``architecture`` (``standard`` | ``topk`` | ``jumprelu``), ``k`` for TopK, and a ``metadata``
object with ``model_name``, ``hook_name``, ``context_size``, ``prepend_bos``, ... So
``sae_lens.SAE.load_from_disk(folder)`` loads ours, and :func:`load_folder` loads SAELens's
(also the pre-6.0 flat layout with top-level ``model_name`` / ``hook_name`` / ``hook_point``).

Our weights are stored in true activation units (the training input scale is folded in, so
``normalize_activations`` is ``none``); the scale is recorded as ``metadata.activation_scale``.
BatchTopK dictionaries are saved as SAELens does, as ``jumprelu`` with their learned threshold
(``metadata.trained_as = "batchtopk"``). Our own configs and training summary go beside, in
``truthsteer.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dictionaries.config import DictionaryConfig, DictionaryConfigError, from_dict, to_dict
from dictionaries.saes import Dictionary
from evals.io import atomic_dir

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
EXTRA_FILE = "truthsteer.json"
SAELENS_FORMAT_VERSION = "6.0.0"  # the cfg.json layout we write (SAELens >= 6.0)

_TO_SAELENS = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}


def dictionary_name(cfg: DictionaryConfig) -> str:
    """A folder name such as ``relu-2x`` or ``topk-4x``."""
    exp = cfg.expansion
    return f"{cfg.architecture}-{int(exp) if exp == int(exp) else round(exp, 3)}x"


def saelens_cfg(sae: Dictionary, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SAELens 6 ``cfg.json`` content for ``sae``."""
    cfg = sae.cfg
    hook = cfg.hook_name
    meta = {"sae_lens_version": SAELENS_FORMAT_VERSION, "sae_lens_training_version": None,
            "model_name": cfg.model_name or None, "hook_name": hook or None,
            "prepend_bos": True, "activation_scale": sae.activation_scale,
            "trained_as": cfg.architecture, "truthsteer_config": to_dict(cfg),
            **(metadata or {})}
    out: dict[str, Any] = {
        "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": "none",
        "reshape_activations": "hook_z" if hook.endswith("hook_z") else "none",
        "metadata": meta,
    }
    if sae.architecture == "topk":
        out["k"] = cfg.k
        out["rescale_acts_by_decoder_norm"] = sae.rescale_acts_by_decoder_norm
    out["architecture"] = _TO_SAELENS[sae.architecture]
    return out


def save_dictionary(sae: Dictionary, path: str | Path, *, metadata: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` as a SAELens-style folder (complete or not at all) and return its path."""
    path = Path(path)
    with atomic_dir(path) as tmp:  # replaces an existing folder once the new one is complete
        weights = {"W_enc": sae.W_enc, "W_dec": sae.W_dec, "b_enc": sae.b_enc,
                   "b_dec": sae.b_dec}
        if sae.threshold is not None:
            weights["threshold"] = sae.threshold
        save_file({k: v.detach().float().contiguous().cpu() for k, v in weights.items()},
                  str(tmp / WEIGHTS_FILE))
        (tmp / CFG_FILE).write_text(json.dumps(saelens_cfg(sae, metadata), indent=2))
        if extra is not None:
            (tmp / EXTRA_FILE).write_text(json.dumps(extra, indent=2, default=str))
        if path.exists():
            for child in path.iterdir():  # keep logs written while training
                if not (tmp / child.name).exists():
                    shutil.move(str(child), tmp / child.name)
    return path


def read_cfg(path: str | Path) -> dict[str, Any]:
    """A dictionary folder's cfg.json as a dict (FileNotFoundError / DictionaryConfigError)."""
    file = Path(path) / CFG_FILE
    if not Path(path).is_dir():
        raise FileNotFoundError(2, "no such dictionary folder", str(path))
    if not file.is_file():
        raise DictionaryConfigError(f"{path}: not a dictionary folder (no {CFG_FILE})")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise DictionaryConfigError(f"{file}: not valid JSON ({err.msg})") from None


def _architecture(cfg: dict[str, Any], meta: dict[str, Any]) -> str:
    arch = cfg.get("architecture")
    if arch is None:  # pre-6.0 layout: the activation function says it
        arch = "topk" if cfg.get("activation_fn_str", cfg.get("activation_fn")) == "topk" \
            else "standard"
    mapping = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
    if arch not in mapping:
        raise DictionaryConfigError(f"architecture {arch!r} is not supported "
                                    f"(supported: {', '.join(mapping)})")
    if arch == "jumprelu" and meta.get("trained_as") == "batchtopk":
        return "batchtopk"
    return mapping[arch]


def load_folder(path: str | Path, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> Dictionary:
    """Read a dictionary folder written by us or by SAELens (true units; float32 by default).

    Callers load dictionaries through :func:`dictionaries.hub.load_dictionary`, the one loader,
    which takes a folder or a hub REF (``hf://...``, ``saelens://...``) and calls this for
    folders.
    """
    path = Path(path)
    cfg = read_cfg(path)
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise DictionaryConfigError(f"{path}: no {WEIGHTS_FILE}")
    meta = cfg.get("metadata") or cfg.get("meta") or {}
    norm = cfg.get("normalize_activations", "none")
    if norm is False or norm is None:
        norm = "none"
    if norm != "none":
        raise DictionaryConfigError(
            f"{path}: normalize_activations={norm!r} is not supported (its weights are not in "
            "true activation units; fold the scaling factor into them first)")
    arch = _architecture(cfg, meta)
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k") or 32
    try:
        state = load_file(str(weights_file), device="cpu")
    except Exception as err:  # noqa: BLE001 - any read failure means a bad input file
        raise DictionaryConfigError(f"{weights_file}: not a readable safetensors file ({err})"
                                    ) from None
    try:
        d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    except (KeyError, TypeError, ValueError):
        raise DictionaryConfigError(f"{path / CFG_FILE}: needs integer d_in and d_sae") from None
    ours = meta.get("truthsteer_config")
    dcfg = from_dict(DictionaryConfig, ours) if isinstance(ours, dict) else DictionaryConfig(
        d_in=d_in, d_sae=d_sae, architecture=arch,
        k=max(1, min(d_sae, round(float(k)))),
        model_name=str(meta.get("model_name") or cfg.get("model_name") or ""),
        hook_name=str(meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
                      or ""))
    if (dcfg.d_in, dcfg.d_sae) != (d_in, d_sae):
        raise DictionaryConfigError(f"{path / CFG_FILE}: truthsteer_config disagrees with "
                                    "d_in/d_sae")
    sae = Dictionary(dcfg, architecture=arch,
                     apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
                     rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm",
                                                               False)),
                     activation_scale=float(meta.get("activation_scale") or 1.0), device=device,
                     dtype=dtype)
    return fill_weights(sae, state, weights_file)


def fill_weights(sae: Dictionary, state: dict[str, torch.Tensor], source: str | Path
                 ) -> Dictionary:
    """Copy ``W_enc``, ``W_dec``, ``b_enc``, ``b_dec`` (and ``threshold``) from ``state`` into
    ``sae`` after checking every name and shape; ``source`` names the file in errors."""
    d_in, d_sae = sae.d_in, sae.d_sae
    expected = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,),
                "b_dec": (d_in,)}
    if sae.threshold is not None:
        expected["threshold"] = (d_sae,)
    for name, shape in expected.items():
        if name not in state:
            raise DictionaryConfigError(f"{source}: missing tensor {name!r}")
        if tuple(state[name].shape) != shape:
            raise DictionaryConfigError(f"{source}: {name} has shape "
                                        f"{list(state[name].shape)}, expected {list(shape)}")
        with torch.no_grad():
            getattr(sae, name).copy_(state[name].float())
    return sae.eval()


def read_extra(path: str | Path) -> dict[str, Any]:
    """Our configs and training summary saved beside the weights (empty for SAELens folders)."""
    file = Path(path) / EXTRA_FILE
    return json.loads(file.read_text()) if file.is_file() else {}
