"""Storage figures: the bytes a finished run keeps against its model's parameter bytes (float32), with EMA on and
off, and the share of a run's wall time spent writing checkpoints (the resume state after every epoch, the best
weights once). Models are built without pretrained weights (nothing downloads) and trained on synthetic images;
``weights_table`` gives the stored weights of every curated backbone.

    python benchmarks/bench_storage.py [--quick]   # or: python benchmarks/run.py --only storage
    python benchmarks/bench_storage.py --half      # only the half-precision change (real data, CPU)
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _bench import Figure

CURATED = ("maxvit_t", "resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "tf_efficientnet_lite0",
           "mobilenetv3_large_100", "vit_small_patch16_224")
"""The backbones of ``experiments/backbones_comparison.yaml``."""


def _experiment(folder: Path, backbone: str, ema: bool, images: int, epochs: int, size: int | None) -> Path:
    data = {"format": "synthetic", "image_size": size,
            "synthetic": {"num_classes": 6, "train": images, "valid": 8, "test": 8, "image_size": 64}}
    raw = {"name": "storage", "data": data,
           "models": [{"backbone": {"name": backbone, "pretrained": False}, "head": "regression"}],
           "seeds": [0],
           "train": {"epochs": epochs, "batch_size": 4, "device": "cpu", "augmentation": "none",
                     "ema": {"enabled": ema, "update_after_step": 0}, "early_stopping": {"patience": None}},
           "evaluation": {"plots": False, "bootstrap": {"n_resamples": 100, "seed": 0}}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{backbone}-{'ema' if ema else 'no_ema'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@contextlib.contextmanager
def _timed_writes(record: dict):
    """Time every checkpoint write (the engine's resume state, the run folder's best weights), keep its size."""
    from benchkit.results import run_folder
    from benchkit.training import engine
    originals = engine.save_torch, run_folder.save_tensors

    def timed(write, kind):
        def call(path, *args, **kwargs):
            start = time.perf_counter()
            write(path, *args, **kwargs)
            record["seconds"] += time.perf_counter() - start
            record[kind] = max(record.get(kind, 0), Path(path).stat().st_size)
        return call

    engine.save_torch, run_folder.save_tensors = timed(originals[0], "resume_bytes"), timed(originals[1], "best_bytes")
    try:
        yield
    finally:
        engine.save_torch, run_folder.save_tensors = originals


def run_storage(work: Path, backbone: str, ema: bool, images: int, epochs: int,
                size: int | None = None) -> list[Figure]:
    """One run: its folder's bytes over its parameter bytes, and the share of its wall time spent writing."""
    from benchkit.cli import main
    from benchkit.results import run_folder
    experiment = _experiment(work, backbone, ema, images, epochs, size)
    out = work / experiment.stem
    record = {"seconds": 0.0}
    with _timed_writes(record), contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        code = main(["run", str(experiment), "--out", str(out), "--quiet"])
        wall = time.perf_counter() - start
    run_dir = next((out / "runs").iterdir())
    row = run_folder.read_row(run_dir)
    if code != 0:
        raise RuntimeError(f"{backbone}: the run failed: {row.get('error')}")
    parameter_bytes = 4 * row["params_total"]
    folder_bytes = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    label = f"{backbone}_{'ema' if ema else 'no_ema'}"
    details = {"folder_bytes": folder_bytes, "parameter_bytes": parameter_bytes, "params": row["params_total"],
               "resume_state_bytes": record.get("resume_bytes"), "best_weights_bytes": record.get("best_bytes"),
               "previous_layout_vs_parameter_bytes": round((folder_bytes + record.get("resume_bytes", 0))
                                                           / parameter_bytes, 2),
               "write_seconds": round(record["seconds"], 2), "wall_seconds": round(wall, 2),
               "epochs": epochs, "train_images": images, "input_size": row["input_size"]}
    ratio = folder_bytes / parameter_bytes
    share = record["seconds"] / wall
    return [Figure(f"storage_{label}_finished_run_vs_parameter_bytes", ratio, "<= 1.1", ratio <= 1.1, "x", details,
                   note=f"the previous layout kept {details['previous_layout_vs_parameter_bytes']}x"),
            Figure(f"storage_{label}_checkpoint_writes_share_of_wall_time", share, "report", None, "", details,
                   note=f"{record['seconds']:.2f} s of {wall:.1f} s; {epochs} epochs of {images} images on the CPU")]


def weights_table(names=CURATED, num_classes: int = 6) -> list[dict]:
    """Per backbone (regression head, no pretrained weights): parameters, and the bytes of ``best.safetensors``
    in float32 and float16."""
    from safetensors.torch import save

    from benchkit.config.schema import ModelConfig
    from benchkit.models.grader import build_model
    from benchkit.results.run_folder import stored_weights
    rows = []
    for name in names:
        model = build_model(ModelConfig(backbone={"name": name, "pretrained": False}, head={"name": "regression"}),
                            num_classes, None)
        rows.append({"backbone": name, "params": sum(p.numel() for p in model.parameters()),
                     "float32_bytes": len(save(stored_weights(model))),
                     "float16_bytes": len(save(stored_weights(model, "float16")))})
    return rows


def half_precision_change(work: Path, root: Path, epochs: int = 30, dtypes=("float16", "bfloat16")) -> list[Figure]:
    """How far storing half-precision weights moves the test metrics: the real data, ImageNet-pretrained
    tf_efficientnet_lite0 (the ``lite`` extra's offline weights) frozen, the regression head trained on cached
    features; the same run stored in float32 and in each of ``dtypes`` (the training is identical; only the
    stored, and evaluated, weights differ)."""
    from benchkit.cli import main
    raw = {"name": "half", "data": {"format": "roboflow_csv", "root": str(root), "image_size": 224},
           "models": [{"backbone": {"name": "tf_efficientnet_lite0", "pretrained": True, "freeze": "all"},
                       "head": "regression"}],
           "seeds": [27],
           "train": {"epochs": epochs, "batch_size": 32, "device": "cpu", "augmentation": "none",
                     "optimizer": {"lr": 1e-3}, "early_stopping": {"patience": None}},
           "evaluation": {"plots": False, "bootstrap": {"n_resamples": 200, "seed": 0}}}
    work.mkdir(parents=True, exist_ok=True)
    experiment = work / "half.yaml"
    experiment.write_text(yaml.safe_dump(raw, sort_keys=False))
    boards = {}
    for dtype in ("float32", *dtypes):
        out = work / f"half-{dtype}"
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["run", str(experiment), "--out", str(out), "--quiet", "--set",
                         f"train.weights_dtype={dtype}"]) == 0
        import pandas as pd
        boards[dtype] = pd.read_csv(out / "leaderboard.csv").iloc[0]
    metrics = ("test_mae", "test_score_mae", "test_acc", "test_qwk", "valid_score_mae")
    figures = []
    for dtype in dtypes:
        change = {m: float(boards[dtype][m] - boards["float32"][m]) for m in metrics}
        details = {"float32": {m: float(boards["float32"][m]) for m in metrics},
                   dtype: {m: float(boards[dtype][m]) for m in metrics}, "change": change, "epochs": epochs}
        figures.append(Figure(f"storage_{dtype}_weights_test_score_mae_change", change["test_score_mae"], "report",
                              None, "", details, note=f"test MAE {change['test_mae']:+.4f}, "
                                                      f"QWK {change['test_qwk']:+.4f}, acc {change['test_acc']:+.4f}"))
    return figures


def storage_figures(work: Path, quick: bool = False) -> list[Figure]:
    figures = []
    for backbone, size in (("resnet18", 64 if quick else None), ("maxvit_t", None)):
        for ema in (True, False):
            figures += run_storage(work, backbone, ema, images=8 if quick else 16, epochs=2, size=size)
    return figures


if __name__ == "__main__":
    from _bench import hair_loss_root
    quick, only_half = "--quick" in sys.argv[1:], "--half" in sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="benchkit-bench-storage-") as folder:
        figures = [] if only_half else storage_figures(Path(folder), quick)
        if hair_loss_root() is not None and not quick:
            figures += half_precision_change(Path(folder) / "half", hair_loss_root())
        for figure in figures:
            print(figure.line(), figure.details if "_weights_test_" in figure.name else "", flush=True)
    print("backbone | parameters | best.safetensors float32 MB | float16 MB")
    for row in weights_table():
        print(f"{row['backbone']} | {row['params'] / 1e6:.1f} M | {row['float32_bytes'] / 1e6:.1f} | "
              f"{row['float16_bytes'] / 1e6:.1f}")
