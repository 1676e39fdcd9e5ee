"""The columns of a predictions file: one row per image, enough to rebuild the head's estimate.

``image, target, pred, score`` (0-based levels, the continuous score on the level scale), then the estimate the
head decoded from, every key of it: a ``(B, n)`` tensor as columns ``<name>_0 .. <name>_{n-1}`` (``prob_k`` for
``probs``, ``exceed_k`` for ``exceedance``: ``P(y > k)``), a ``(B,)`` tensor as a column ``<name>``. Class
probabilities are written for every head that has them. Reading a file back gives the estimate it was decoded
from, so test-time views and ensembles average their members' files and decode the mean as each member would.
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
_KEY = {prefix: key for key, prefix in _PREFIX.items()}
_IDENTIFYING = ("image", "target", "pred")


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
    """The estimate a predictions table holds (float32): ``score`` and every other column but the image, target and
    level; ``<name>_<k>`` columns are gathered into one ``(B, n)`` tensor under the estimate's key."""
    estimate = {"score": torch.as_tensor(frame["score"].to_numpy(np.float32))}
    groups: dict[str, list[tuple[int, str]]] = {}
    for column in frame.columns:
        column = str(column)
        if column in _IDENTIFYING or column == "score":
            continue
        match = re.fullmatch(r"(.+)_(\d+)", column)
        if match:
            groups.setdefault(_KEY.get(match[1], match[1]), []).append((int(match[2]), column))
        else:
            estimate[column] = torch.as_tensor(frame[column].to_numpy(np.float32))
    for key, columns in groups.items():
        estimate[key] = torch.as_tensor(frame[[c for _, c in sorted(columns)]].to_numpy(np.float32, copy=True))
    return estimate


def _columns(key: str, value: torch.Tensor) -> dict[str, np.ndarray]:
    array = value.detach().cpu().numpy()
    prefix = _PREFIX.get(key, key)
    return {f"{prefix}_{k}": array[:, k] for k in range(array.shape[1])}
