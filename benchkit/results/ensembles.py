"""Ensembles as leaderboard rows, built from the members' saved predictions (no retraining).

``evaluation.ensembles`` lists ``seeds`` (for every configuration with two or more finished seeds,
the mean of its seeds) and named ensembles ``{name, members}`` (the runs of the listed model
names, configuration labels or run ids). Each ensemble is formed per split strategy and fold, since
only runs scored on the same images can be averaged. Its estimate is the mean of the members'
estimates read back from their ``predictions_<split>.csv`` (scores and probabilities); it is decoded
by the members' head when they share one (calibrated decodings fitted again on the ensemble's
validation estimate), otherwise by the most probable level (or the rounded score). Metrics,
bootstrap intervals and decodings are those of any run (:func:`~benchkit.evaluation.scoring.score_estimates`);
members' files are read through :mod:`benchkit.results.run_folder`;
``DIR/ensembles/<id>/`` holds its predictions and ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchkit.config.schema import EVALUATED_SPLITS
from benchkit.errors import DataError
from benchkit.evaluation.prediction_files import estimate_of, prediction_frame
from benchkit.evaluation.scoring import SCORES_VERSION, score_estimates
from benchkit.io import atomic_path, read_json, write_json
from benchkit.models.head import Head, mean_estimate
from benchkit.results import results_folder, run_folder


@dataclass
class EnsemblePlan:
    """One ensemble row to build: its id, its name (``seeds`` or the configured one) and its members' rows."""

    run_id: str
    name: str
    members: pd.DataFrame
    shared: list[str]


def plan_ensembles(frame: pd.DataFrame, ensembles: list, config_columns: list[str], labels: pd.Series
                   ) -> list[EnsemblePlan]:
    """The ensembles of ``evaluation.ensembles`` over the finished runs of a leaderboard ``frame``.

    ``config_columns``/``labels``: the configuration of every row (as the aggregated view groups them).
    """
    ok = frame[frame.get("status", pd.Series(dtype=str)) == "ok"].sort_values("run_id", kind="stable")
    shared = [c for c in config_columns if c not in ("model", "backbone", "head")] + [
        "split", "fold", "input_size", "num_classes", "tta"]
    plans = []
    for item in ensembles:
        if item == "seeds":
            for _, group in ok.groupby(config_columns + ["fold"], dropna=False, sort=False):
                if group["seed"].nunique() >= 2:
                    plans.append(EnsemblePlan(_seeds_id(group.iloc[0]["run_id"]), "seeds", group, shared))
            continue
        chosen = ok[ok["model"].isin(item.members) | labels.loc[ok.index].isin(item.members)
                    | ok["run_id"].isin(item.members)]
        for (split, fold), group in chosen.groupby(["split", "fold"], dropna=False, sort=False):
            plans.append(EnsemblePlan(_named_id(item.name, split, fold), item.name, group, shared))
    return plans


def build_ensemble(out_dir: Path, plan: EnsemblePlan, bootstrap) -> dict:
    """Average, decode and score one ensemble; write ``ensembles/<id>/``; return its leaderboard row.

    A row already written for the same members (same prediction files) and bootstrap is reused.
    """
    folder = results_folder.ensemble_dir(out_dir, plan.run_id)
    files = {split: [run_folder.predictions_file(results_folder.run_dir(out_dir, run_id), split)
                     for run_id in plan.members["run_id"]]
             for split in EVALUATED_SPLITS}
    files = {split: paths for split, paths in files.items() if all(p.is_file() for p in paths)}
    signature = _signature(files, bootstrap)
    previous = folder / "metrics.json"
    if previous.is_file():
        stored = read_json(previous)
        if stored.get("signature") == signature:
            return stored["row"]
    frames = {split: [run_folder.read_table(p) for p in paths] for split, paths in files.items()}
    for split, members in frames.items():
        _check_same_images(members, split, plan)
    num_classes = int(plan.members["num_classes"].iloc[0])
    head = _decoder(results_folder.runs_dir(out_dir), plan.members["run_id"], num_classes)
    estimates = {split: mean_estimate([estimate_of(f) for f in members]) for split, members in frames.items()}
    targets = {split: members[0]["target"].to_numpy() for split, members in frames.items()}
    scores = score_estimates(head, estimates, targets, num_classes, bootstrap)
    folder.mkdir(parents=True, exist_ok=True)
    for split, estimate in estimates.items():
        with atomic_path(folder / f"predictions_{split}.csv") as tmp:
            prediction_frame(frames[split][0]["image"], targets[split], scores.predictions[split],
                             estimate).to_csv(tmp, index=False)
    row = {**_identity(plan, head), **scores.row, "num_classes": num_classes, "status": "ok", "error": ""}
    write_json(previous, {"row": row, "signature": signature, "calibration": scores.calibration,
                          "bootstrap": scores.details})
    return row


def ensemble_rows(out_dir: Path, frame: pd.DataFrame, evaluation, config_columns: list[str],
                  labels: pd.Series) -> pd.DataFrame:
    """Every ensemble of ``evaluation.ensembles`` as leaderboard rows (built or reused)."""
    if not evaluation.ensembles or frame.empty:
        return pd.DataFrame()
    plans = plan_ensembles(frame, evaluation.ensembles, config_columns, labels)
    return pd.DataFrame([_built_or_failed(out_dir, plan, evaluation.bootstrap) for plan in plans])


def _built_or_failed(out_dir: Path, plan: EnsemblePlan, bootstrap) -> dict:
    """The ensemble's row; a failed row naming the file when a member's predictions cannot be trusted."""
    try:
        return build_ensemble(out_dir, plan, bootstrap)
    except DataError as exc:
        return {"run_id": plan.run_id, "ensemble": plan.name, "status": "failed", "error": str(exc)}


def predictions_path(out_dir: Path, row: pd.Series, split: str) -> Path:
    """Where a leaderboard row's predictions of ``split`` are: its run folder or its ensemble folder."""
    folder = (results_folder.ensemble_dir if is_ensemble(row) else results_folder.run_dir)(out_dir, row["run_id"])
    return run_folder.predictions_file(folder, split)


def is_ensemble(row: pd.Series) -> bool:
    value = row.get("ensemble")
    return isinstance(value, str) and value != ""


def _decoder(runs: Path, run_ids, num_classes: int) -> Head:
    """The members' head (built without weights) when they share one, else the generic decoding."""
    from benchkit.models.grader import create_head
    heads = {json.dumps(_head_config(runs / run_id), sort_keys=True) for run_id in run_ids}
    if len(heads) != 1:
        return Head(1, num_classes)
    config = json.loads(heads.pop())
    return create_head(config.pop("name"), 1, num_classes, config)


def _head_config(run_dir: Path) -> dict:
    return run_folder.read_config(run_dir)["model"]["head"]


def _identity(plan: EnsemblePlan, head: Head) -> dict:
    members = plan.members
    first = members.iloc[0]
    shared = {c: first[c] for c in dict.fromkeys(plan.shared) if c in members and members[c].nunique(dropna=False) == 1}
    return {**shared, "run_id": plan.run_id,
            "model": first["model"] if plan.name == "seeds" else plan.name,
            "backbone": "+".join(dict.fromkeys(members["backbone"].astype(str))),
            "head": "+".join(dict.fromkeys(members["head"].astype(str))) if type(head) is Head else first["head"],
            "seed": None, "ensemble": plan.name, "members": len(members),
            "member_runs": ";".join(members["run_id"].astype(str))}


def _check_same_images(members: list[pd.DataFrame], split: str, plan: EnsemblePlan) -> None:
    first = members[0]
    for frame, run_id in zip(members[1:], plan.members["run_id"].iloc[1:]):
        if not (frame["image"].equals(first["image"]) and frame["target"].equals(first["target"])):
            raise ValueError(f"ensemble {plan.run_id!r}: run {run_id!r} predicted other {split} images than "
                             f"{plan.members['run_id'].iloc[0]!r}; only runs on the same split can be averaged")


def _signature(files: dict[str, list[Path]], bootstrap) -> str:
    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps({**bootstrap.model_dump(), "scores_version": SCORES_VERSION}, sort_keys=True).encode())
    for split, paths in sorted(files.items()):
        for path in paths:
            name, mtime, size = run_folder.file_version(path)
            digest.update(f"{split}|{name}|{size}|{mtime}".encode())
    return digest.hexdigest()


def _seeds_id(run_id: str) -> str:
    base = run_id.rsplit("__s", 1)[0]
    return f"{base}__seeds"


def _named_id(name: str, split, fold) -> str:
    if fold is not None and not (isinstance(fold, float) and math.isnan(fold)):
        return f"{name}__fold{int(fold)}"
    return name if split in (None, "official") or (isinstance(split, float) and np.isnan(split)) else f"{name}__{split}"
