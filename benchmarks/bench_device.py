"""The device figures of ``benchmarks/run.py --device DEV`` (issue 12), in priority order under a time budget.

The order puts the figures the targets need first, so a budget (``--budget``) or a killed job still leaves
them measured: augmentation cost, eager throughput, compiled lite0, the engine against a hand-written step,
the packed grid and its quality, compiled MaxViT-T (the longest compile), then the largest batches and the rest.

Expected on an H200 with ``--quick`` (from the figures measured there before; compile times are guesses):
augmentation ~5 s, eager figures ~25 s, compiled lite0 ~60 s, engine vs hand ~10 s, grid ~110 s (six
10-epoch runs one after another ~80 s, packed ~30 s), compiled quality run ~45 s, compiled MaxViT-T ~120 s:
about 6 minutes; ``--budget 290`` starts nothing after 290 s.
On a CPU (``--device cpu``) the same code runs at small sizes, as a check that nothing crashes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from _bench import Figure, hair_loss_root, skipped

LITE0, RESNET, MAXVIT = "tf_efficientnet_lite0", "resnet18", "maxvit_t"
TARGETS = {LITE0: 2500.0, MAXVIT: 750.0}  # images/s at batch 32, 224 px, reference augmentation (H200)

FULL = {"size": 224, "steps": 50, "aug_images": 2048, "aug_chunks": [256, 1024], "models": [LITE0, RESNET, MAXVIT],
        "largest": [2048, 1024, 512, 256, 128, 64], "compiled": [LITE0, MAXVIT, RESNET], "mode": "reduce-overhead",
        "grid_heads": 6, "grid_epochs": 20, "jobs": 6, "hand_repeats": 3, "chunk": 8, "grid_data": "real"}
QUICK = {**FULL, "steps": 30, "aug_images": 1024, "largest": [1024, 512, 256], "compiled": [LITE0, MAXVIT],
         "grid_epochs": 10, "hand_repeats": 1}
ON_CPU = {**QUICK, "size": 64, "steps": 3, "aug_images": 128, "aug_chunks": [64], "largest": [64, 32],
          "compiled": [], "mode": "default", "grid_heads": 2, "grid_epochs": 1, "jobs": 2, "chunk": 2,
          "grid_data": "synthetic"}


def sizes_for(device: torch.device, quick: bool, compile_on_cpu: bool = False) -> dict:
    if device.type != "cuda":
        return {**ON_CPU, "compiled": [LITE0] if compile_on_cpu else []}
    return QUICK if quick else FULL


def device_figures(device: torch.device, sizes: dict, work: Path, budget: float | None) -> Iterator[Figure]:
    """Each figure as it is measured; the ones left when ``budget`` seconds have passed are skipped, named."""
    from bench_gpu import (Setting, augmentation_figures, engine_vs_hand_figure, largest_batch_figure,
                           throughput_figure)
    from bench_grid import HEADS, compiled_quality_figure, grid_figures

    size, steps, batch, mode = sizes["size"], sizes["steps"], 32, sizes["mode"]
    on_cuda = device.type == "cuda"
    target = (lambda model: TARGETS.get(model)) if on_cuda and size == 224 else (lambda model: None)
    root = hair_loss_root() if sizes["grid_data"] == "real" else None
    grid: dict = {}

    def eager(model: str, **kw) -> Callable[[], list[Figure]]:
        return lambda: [throughput_figure(Setting(model, batch, size=size, **kw), steps, device, target(model))]

    def compiled(model: str) -> Callable[[], list[Figure]]:
        return lambda: [throughput_figure(Setting(model, batch, compile=mode, size=size), steps, device,
                                          target(model))]

    def run_grid() -> list[Figure]:
        figures, grid["sequential"] = grid_figures(work / "grid", root, HEADS[:sizes["grid_heads"]],
                                                   sizes["grid_epochs"], size, sizes["jobs"], device.type)
        return figures

    def quality() -> list[Figure]:
        if "sequential" not in grid:
            return [skipped("compiled_vs_eager_valid_score_mae_abs_diff", "<= 0.02", "the grid did not run")]
        if LITE0 not in sizes["compiled"]:
            return [skipped("compiled_vs_eager_valid_score_mae_abs_diff", "<= 0.02", "compile not measured here")]
        return [compiled_quality_figure(work / "grid", root, sizes["grid_epochs"], size, device.type, mode,
                                        grid["sequential"])]

    def hand(compile_mode: str | None) -> Callable[[], list[Figure]]:
        setting = Setting(LITE0, batch, compile=compile_mode, size=size)
        return lambda: [engine_vs_hand_figure(setting, steps, sizes["chunk"], device, sizes["hand_repeats"])]

    plan: list[tuple[str, Callable[[], list[Figure]]]] = [
        ("augmentation cost", lambda: augmentation_figures(device, size, sizes["aug_images"], sizes["aug_chunks"])),
        *[(f"eager {m}", eager(m)) for m in sizes["models"]],
        ("eager lite0 float16", eager(LITE0, amp_dtype="float16")),
        ("eager lite0 channels_last", eager(LITE0, channels_last=True)),
        *[(f"compiled {m}", compiled(m)) for m in sizes["compiled"] if m == LITE0],
        ("engine vs hand, eager", hand(None)),
        ("grid", run_grid),
        ("compiled quality", quality),
        *[(f"compiled {m}", compiled(m)) for m in sizes["compiled"] if m == MAXVIT],
        *[(f"largest batch {m}", (lambda m=m: [largest_batch_figure(Setting(m, batch, size=size), sizes["largest"],
                                                                   max(2, steps // 3), device)]))
          for m in sizes["models"]],
        *[(f"compiled {m}", compiled(m)) for m in sizes["compiled"] if m not in (LITE0, MAXVIT)],
        *([("engine vs hand, compiled", hand(mode))] if LITE0 in sizes["compiled"] else []),
    ]
    started = time.perf_counter()
    for name, measure in plan:
        used = time.perf_counter() - started
        if budget is not None and used > budget:
            yield skipped(name.replace(" ", "_"), "-", f"time budget: {used:.0f} s of {budget:.0f} s used")
            continue
        try:
            yield from measure()
        except Exception as exc:  # one broken figure must not hide the others
            yield Figure(name.replace(" ", "_"), None, "-", False, note=f"failed: {type(exc).__name__}: {exc}")
