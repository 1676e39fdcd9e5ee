"""benchkit speed figures, each measured against its baseline side by side in this process.

    python benchmarks/run.py            # the full run (several minutes on 2 CPU cores)
    python benchmarks/run.py --quick    # shrunken sizes, under two minutes: checks that it runs;
                                        # its ratios are too small to hold the targets
    python benchmarks/run.py --device cuda [--quick] [--budget S]   # the GPU figures (bench_device.py)
    python benchmarks/run.py --device cpu  # the same code at small sizes on the CPU: a check that it runs

Prints one line per figure as ``name: value (target ...)`` ([MISSED] where a target is not met)
and writes ``benchmarks/results.json`` with every figure's details and the sizes used. Figures on
the real data (``../shared/data/hair-loss`` or ``$BENCHKIT_HAIR_LOSS``) are skipped, with the
reason, where it is absent. The image and feature caches go to a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import Figure, hair_loss_root, load_average, skipped  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results.json"

FULL = {"train_images": None, "pipeline_images": 256, "pipeline_repeats": 3,
        "heads": 4, "heads_per_split": 96, "heads_epochs": 2, "heads_size": 224,
        "bootstrap_resamples": 10_000, "engine_steps": 5, "engine_size": 112, "engine_repeats": 5,
        "scaling_counts": [300, 600, 1294],
        "tuning": {"trials": 6, "epochs": 2, "size": 64, "images": 256, "repeats": 3}}
QUICK = {"train_images": 256, "pipeline_images": 32, "pipeline_repeats": 2,
         "heads": 2, "heads_per_split": 6, "heads_epochs": 1, "heads_size": 96,
         "bootstrap_resamples": 1_000, "engine_steps": 4, "engine_size": 32, "engine_repeats": 2,
         "scaling_counts": [32, 64, 128],
         "tuning": {"trials": 3, "epochs": 1, "size": 32, "images": 64, "repeats": 2}}
FIGURES = ("inputs", "heads", "bootstrap", "engine", "scaling", "audit", "formats", "storage", "tuning")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a check in under two minutes")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma list of {', '.join(FIGURES)}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--device", help="measure the device figures (training throughput, engine vs hand step, "
                                         "augmentation, packed grid) on this device instead of the CPU figures")
    parser.add_argument("--budget", type=float, help="device figures: seconds after which the rest are skipped")
    parser.add_argument("--compile-on-cpu", action="store_true", help="device figures on a CPU: compile lite0 too")
    args = parser.parse_args(argv)
    if args.device:
        return _device_main(args, argv)
    sizes = QUICK if args.quick else FULL
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure group(s) {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    print(f"benchkit benchmarks ({'quick' if args.quick else 'full'}): torch {torch.__version__}, "
          f"{os.cpu_count()} CPU(s), {'CUDA' if torch.cuda.is_available() else 'no GPU'}, "
          f"load average {load_average():.1f}", flush=True)
    cache_dir = Path(tempfile.mkdtemp(prefix="benchkit-bench-cache-"))
    os.environ["BENCHKIT_CACHE_DIR"] = str(cache_dir)
    figures: list[Figure] = []
    started = time.perf_counter()
    try:
        for group in FIGURES:
            if group in only:
                group_start, load = time.perf_counter(), load_average()
                for figure in _GROUPS[group](sizes, cache_dir):
                    print(figure.line(), flush=True)
                    figures.append(figure)
                for figure in figures:
                    figure.details.setdefault("group_seconds", round(time.perf_counter() - group_start, 1))
                    figure.details.setdefault("load_average_before", load)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    print(f"total: {time.perf_counter() - started:.0f} s; details in {args.results}")
    _write_results(args, argv, sizes, figures, started)
    return 0


def _device_main(args, argv) -> int:
    """The device figures, each printed and saved (``--results``) as soon as it is measured."""
    from bench_device import device_figures, sizes_for
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: no CUDA device is visible to torch {torch.__version__}", file=sys.stderr)
        return 2
    sizes = sizes_for(device, args.quick, args.compile_on_cpu)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    mode = "check sizes" if device.type != "cuda" else ("quick" if args.quick else "full")
    print(f"benchkit device benchmarks ({mode}) on {device} ({name}): torch "
          f"{torch.__version__}, {os.cpu_count()} CPU(s), budget {args.budget or 'none'} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="benchkit-bench-device-"))
    os.environ["BENCHKIT_CACHE_DIR"] = str(work / "cache")
    figures: list[Figure] = []
    started = time.perf_counter()
    try:
        for figure in device_figures(device, sizes, work, args.budget):
            print(figure.line(), flush=True)
            figures.append(figure)
            _write_results(args, argv, sizes, figures, started, device=str(device), device_name=name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total: {time.perf_counter() - started:.0f} s; details in {args.results}")
    return 0


def _write_results(args, argv, sizes, figures, started, **machine) -> None:
    args.results.write_text(json.dumps({
        "mode": "quick" if args.quick else "full", "sizes": sizes, "seconds": time.perf_counter() - started,
        "command": " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "cuda": torch.cuda.is_available(), "torch": torch.__version__,
                    "python": platform.python_version(), "load_average_end": load_average(), **machine},
        "figures": [f.as_dict() for f in figures]}, indent=2, default=str) + "\n")


def _real_data(targets: dict[str, str]):
    root = hair_loss_root()
    if root is None:
        reason = "real data not found at ../shared/data/hair-loss (set BENCHKIT_HAIR_LOSS)"
        return None, [skipped(name, target, reason) for name, target in targets.items()]
    from benchkit.data.formats.roboflow import read_roboflow_csv
    return read_roboflow_csv(root), []


def _inputs(sizes: dict, cache_dir: Path) -> list[Figure]:
    dataset, skips = _real_data({"cache_build_seconds": "one-off",
                                 "memory_cached_train_split_vs_float32": "<= 0.3x",
                                 "input_pipeline_cached_vs_decode_with_augmentation": ">= 5x"})
    if dataset is None:
        return skips
    from bench_inputs import memory, pipeline
    train = _train_split(dataset, sizes)
    build, cache = _cache_build_once(train, cache_dir)
    return [build, memory(train, cache), *pipeline(train, cache, sizes["pipeline_images"],
                                                   sizes["pipeline_repeats"])]


def _train_split(dataset, sizes: dict):
    """The train split, cut to the first `train_images` images where the sizes set a number."""
    train = dataset.splits["train"]
    if sizes["train_images"]:
        train = train.subset(range(min(sizes["train_images"], len(train))))
    return train


_BUILD: dict = {}  # the cache-build figure and cache, shared by _inputs and _scaling


def _cache_build_once(train, cache_dir: Path):
    """The cache-build figure and the cache, built once per process and shared by inputs and scaling."""
    if "cache" not in _BUILD:
        from bench_inputs import cache_build
        _BUILD["figure"], _BUILD["cache"] = cache_build(train, cache_dir)
    return _BUILD["figure"], _BUILD["cache"]


def _heads(sizes: dict, cache_dir: Path) -> list[Figure]:
    root = hair_loss_root()
    name, target = "heads_comparison_feature_cache_vs_uncached_time", "<= 0.35x, identical metrics"
    if root is None:
        return [skipped(name, target, "real data not found at ../shared/data/hair-loss")]
    from bench_heads import heads_comparison
    return [heads_comparison(root, cache_dir, sizes["heads_per_split"], sizes["heads_epochs"],
                             sizes["heads_size"], sizes["heads"])]


def _bootstrap(sizes: dict, cache_dir: Path) -> list[Figure]:
    from bench_bootstrap import bootstrap_speed
    return [bootstrap_speed(133, sizes["bootstrap_resamples"])]


def _engine(sizes: dict, cache_dir: Path) -> list[Figure]:
    from bench_engine import engine_overhead
    return [engine_overhead(sizes["engine_steps"], 32, sizes["engine_size"], sizes["engine_repeats"])]


def _scaling(sizes: dict, cache_dir: Path) -> list[Figure]:
    dataset, skips = _real_data({"scaling_epoch_seconds_per_image_slope": "linear"})
    if dataset is None:
        return skips
    from bench_scaling import scaling
    train = _train_split(dataset, sizes)
    build, cache = _cache_build_once(train, cache_dir)
    return [scaling(train, dataset.splits["valid"], cache, sizes["scaling_counts"], build.value)]


def _audit(sizes: dict, cache_dir: Path) -> list[Figure]:
    root = hair_loss_root()
    name, target = "audit_vs_decoding_every_image_time", "<= 2.5x"
    if root is None:
        return [skipped(name, target, "real data not found at ../shared/data/hair-loss")]
    from bench_audit import audit_speed
    return [audit_speed(root, repeats=1 if sizes is QUICK else 2)]


def _formats(sizes: dict, cache_dir: Path) -> list[Figure]:
    from bench_formats import npz_memory
    return [npz_memory(cache_dir, 200 if sizes is QUICK else 2000)]


def _storage(sizes: dict, cache_dir: Path) -> list[Figure]:
    from bench_storage import storage_figures
    work = cache_dir / "storage"
    try:
        return storage_figures(work, quick=sizes is QUICK)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tuning(sizes: dict, cache_dir: Path) -> list[Figure]:
    from bench_tuning import tuning_figures
    return tuning_figures(sizes["tuning"])


_GROUPS = {"inputs": _inputs, "heads": _heads, "bootstrap": _bootstrap, "engine": _engine,
           "scaling": _scaling, "audit": _audit, "formats": _formats, "storage": _storage, "tuning": _tuning}

if __name__ == "__main__":
    sys.exit(main())
