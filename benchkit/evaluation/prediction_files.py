"""The columns of a predictions file: one row per image, enough to rebuild the head's estimate.

``image, target, pred, score`` (0-based levels, the continuous score on the level scale), then
``prob_k`` for heads with class probabilities and ``exceed_k`` (``P(y > k)``) for heads that decode
exceedance probabilities. Reading a file back gives the estimate it was decoded from, so an
ensemble can average its members' files and decode the mean as each member would have.
Floats are written with the shortest text that reads back to the same float32.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from benchkit.models.head import Estimate, Prediction

_PREFIX = {"probs": "prob", "exceedance": "exceed"}


def prediction_frame(ids: Sequence[str], targets: Sequence[int], pred: Prediction,
                     estimate: Estimate | None = None) -> pd.DataFrame:
    """The predictions table of one split: the decoded ``pred`` and the ``estimate`` it came from."""
    frame = pd.DataFrame({"image": list(ids), "target": np.asarray(targets),
                          "pred": pred.level.cpu().numpy(), "score": pred.score.cpu().numpy()})
    columns = {} if pred.probs is None else _columns("probs", pred.probs)
    for key, value in (estimate or {}).items():
        if key != "score" and value.dim() == 2:
            columns.update(_columns(key, value))
        elif key != "score":
            columns[key] = value.cpu().numpy()
    for name, values in columns.items():
        frame[name] = values
    return frame


def estimate_of(frame: pd.DataFrame) -> Estimate:
    """The estimate a predictions table holds: ``score`` and every ``prob_k`` / ``exceed_k`` group (float32)."""
    estimate = {"score": torch.as_tensor(frame["score"].to_numpy(np.float32))}
    for key, prefix in _PREFIX.items():
        columns = sorted((c for c in frame if re.fullmatch(rf"{prefix}_\d+", str(c))), key=lambda c: int(c.rsplit("_", 1)[1]))
        if columns:
            estimate[key] = torch.as_tensor(frame[columns].to_numpy(np.float32))
    return estimate


def _columns(key: str, value: torch.Tensor) -> dict[str, np.ndarray]:
    array = value.detach().cpu().numpy()
    prefix = _PREFIX.get(key, key)
    return {f"{prefix}_{k}": array[:, k] for k in range(array.shape[1])}
