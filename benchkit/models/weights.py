"""Reading weight files and loading them into backbones, with reports instead of stack traces.

Every backbone factory uses these for ``weights: PATH`` (a local state dict, optionally renamed by a
``weights_map`` of key prefixes) and for pretrained downloads through the torch hub cache. Problems
become :class:`~benchkit.errors.WeightsError` messages that name the file, the keys at fault and what
to do next.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import nn

from benchkit.errors import ConfigError, WeightsError, format_listing
from benchkit.io import read_tensors_file, read_torch_file

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "params")
_LISTED = 5


@dataclass
class LoadReport:
    """What happened when a state dict was loaded into a module."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def mismatch_lines(self) -> list[str]:
        return [f"{k}: file {list(a)} vs model {list(b)}" for k, a, b in self.mismatched]

    def as_dict(self) -> dict:
        """What a run records of a partial load: counts and the keys skipped."""
        return {"source": self.source, "loaded": len(self.loaded), "ignored_classifier": len(self.ignored),
                "missing": self.missing, "unexpected": self.unexpected, "mismatched": self.mismatch_lines()}

    def summary(self) -> str:
        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        if self.ignored:
            lines[0] += f", ignored {len(self.ignored)} (removed classifier)"
        for title, keys in (("missing from the file", self.missing),
                            ("in the file but not in the model", self.unexpected)):
            if keys:
                lines.append(f"{len(keys)} {title}:\n{format_listing(keys, _LISTED)}")
        if self.mismatched:
            shapes = self.mismatch_lines()
            lines.append(f"{len(shapes)} with a different shape:\n{format_listing(shapes, _LISTED)}")
        return "\n".join(lines)


def check_weights_options(pretrained: bool, weights: str | os.PathLike | None) -> None:
    """``pretrained: true`` and ``weights: PATH`` are two ways to initialise; accept only one."""
    if pretrained and weights is not None:
        raise ConfigError("give either 'pretrained: true' or 'weights: PATH', not both")


def load_state_dict_file(path: str | os.PathLike, weights_map: dict[str, str] | None = None
                         ) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from common containers and renamed by prefix.

    Accepts a plain state dict, ``{"state_dict": ...}``/``{"model": ...}``-style containers, keys
    prefixed ``module.`` (DataParallel) and ``.safetensors`` files. ``weights_map`` renames keys:
    ``{"old_prefix": "new_prefix"}``, longest prefix first; a prefix matching no key is an error.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        obj = read_tensors_file(path, "weights")
    else:
        obj = read_torch_file(path, "weights")
    state_dict = _unwrap(obj, path)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    if weights_map:
        state_dict = _rename_prefixes(state_dict, weights_map, path)
    return state_dict


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"weights file {path} holds no tensors; its top-level keys are:\n"
                           f"{format_listing([str(k) for k in obj], _LISTED)}")
    return tensors


def _rename_prefixes(state_dict: dict, weights_map: dict[str, str], path: Path) -> dict:
    prefixes = sorted(weights_map, key=len, reverse=True)
    unused = [p for p in prefixes if not any(k.startswith(p) for k in state_dict)]
    if unused:
        raise WeightsError(f"weights_map prefix(es) {unused} match no key of {path}; its keys begin:\n"
                           f"{format_listing(list(state_dict), _LISTED)}")
    renamed = {}
    for key, value in state_dict.items():
        old = next((p for p in prefixes if key.startswith(p)), None)
        renamed[key if old is None else weights_map[old] + key[len(old):]] = value
    return renamed


def load_into(module: nn.Module, state_dict: dict[str, torch.Tensor], strict: bool = False, *,
              ignore_prefixes: tuple[str, ...] = (), source: str = "state dict",
              min_fraction: float = 0.5, partial: bool = False) -> LoadReport:
    """Copy matching tensors into ``module`` and report what did not match.

    Keys under ``ignore_prefixes`` (a removed classifier) are dropped from the file silently. Raises
    WeightsError when nothing matched, and
    - with ``strict``: unless every tensor of the module is in the file with its shape and nothing
      else is left over;
    - with ``partial``: never otherwise (what does not fit is skipped and reported);
    - else: when a shape differs or less than ``min_fraction`` of the module's tensors matched (the
      sign of a checkpoint for another architecture); missing/unexpected keys are warned.
    """
    own = module.state_dict()
    report = LoadReport(source=source)
    usable = {}
    for key, tensor in state_dict.items():
        if any(key.startswith(p) for p in ignore_prefixes):
            report.ignored.append(key)
        elif key not in own:
            report.unexpected.append(key)
        elif tuple(tensor.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(tensor.shape), tuple(own[key].shape)))
        else:
            usable[key] = tensor
            report.loaded.append(key)
    report.missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    counted = [k for k in own if not k.endswith("num_batches_tracked")]
    loaded = [k for k in report.loaded if not k.endswith("num_batches_tracked")]
    lenient = not strict and not partial
    if not loaded or (strict and not report.complete) or (lenient and (
            report.mismatched or len(loaded) < min_fraction * len(counted))):
        hint = ("\nto load only the tensors that fit, set backbone.weights_strict: false (the run records "
                "what it skipped)" if strict and loaded else "")
        raise WeightsError(f"{source} does not fit this model ({type(module).__name__}, "
                           f"{len(counted)} tensors); is it for another architecture?\n"
                           f"{report.summary()}\nmodel keys begin:\n{format_listing(counted, _LISTED)}{hint}")
    module.load_state_dict(usable, strict=False)
    if not report.complete:
        warnings.warn(report.summary(), stacklevel=2)
    return report


def load_weights_file(module: nn.Module, path: str | os.PathLike, weights_map: dict[str, str] | None = None,
                      *, ignore_prefixes: tuple[str, ...] = (), strict: bool = True) -> LoadReport:
    """A local weights file (``backbone.weights``) into ``module``.

    ``strict`` (``backbone.weights_strict``, the default): every tensor of the module must be in the
    file with its shape, and the file may hold nothing else but the removed classifier
    (``ignore_prefixes``); else a WeightsError lists the missing, unexpected and mismatched keys.
    ``strict=False`` loads what fits and reports the rest (``LoadReport.as_dict``).
    """
    state_dict = load_state_dict_file(path, weights_map)
    return load_into(module, state_dict, strict=strict, partial=not strict, ignore_prefixes=ignore_prefixes,
                     source=f"weights file {path}")


def local_weights(module: nn.Module, path: str | os.PathLike, weights_map: dict[str, str] | None, *,
                  ignore_prefixes: tuple[str, ...], strict: bool) -> tuple[str, dict]:
    """``backbone.weights`` loaded into ``module``: the backbone's ``weights_source`` and ``weights_report``."""
    report = load_weights_file(module, path, weights_map, ignore_prefixes=ignore_prefixes, strict=strict)
    return f"local file ({path})", report.as_dict()


def rename_by_order(state_dict: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], *,
                    source: str = "state dict") -> dict[str, torch.Tensor]:
    """Give the i-th tensor of ``state_dict`` the i-th key of ``reference``, checking every shape.

    For checkpoints of the same network saved under another library's naming, in the same order.
    """
    if len(state_dict) != len(reference):
        raise WeightsError(f"{source} has {len(state_dict)} tensors, the model {len(reference)}; "
                           f"they cannot be matched by order")
    renamed = {}
    for (key, tensor), (ref_key, ref) in zip(state_dict.items(), reference.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise WeightsError(f"{source}: tensor {key!r} {list(tensor.shape)} does not match the "
                               f"model's {ref_key!r} {list(ref.shape)} at the same position")
        renamed[ref_key] = tensor
    return renamed


def hub_cache_file(url: str) -> Path:
    """Where ``torch.hub`` keeps (and looks for) the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def download_state_dict(url: str, *, what: str) -> dict[str, torch.Tensor]:
    """A state dict through the torch hub cache; offline and uncached, a WeightsError saying how to proceed."""
    target = hub_cache_file(url)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True,
                                                  weights_only=True)
    except (URLError, OSError, RuntimeError) as exc:
        raise WeightsError(
            f"cannot get the pretrained weights of {what} ({type(exc).__name__}: {exc}).\n"
            f"This machine may be offline and the file is not in the torch hub cache. To proceed, either\n"
            f"  - download {url}\n    and place it as {target}\n"
            f"    (the cache folder follows $TORCH_HOME; keep the file name, its hash is checked), or\n"
            f"  - set 'weights: PATH' to a local copy of that file, or\n"
            f"  - set 'pretrained: false' to train from random initialisation."
        ) from None
