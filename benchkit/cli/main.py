"""The ``benchkit`` command line: run, list, leaderboard, report, predict, export, cache, clean, schema, data."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchkit._version import __version__
from benchkit.cli.clean import add_clean_command
from benchkit.cli.data import add_data_commands, format_table
from benchkit.cli.export import add_export_command
from benchkit.errors import user_error_message
from benchkit.progress import console

EPILOG = """examples:
  benchkit run experiments/quickstart.yaml --out /tmp/q
  benchkit run experiments/maxvit_regression.yaml --dry-run
  benchkit run experiments/quickstart.yaml --print-config train.epochs=2
  benchkit run experiments/maxvit_regression.yaml --set data.root=../shared/data/hair-loss \\
      --set train.epochs=2 --set data.image_size=64 --set 'models.*.backbone.pretrained=false'
  benchkit list backbones
  benchkit leaderboard results/quickstart --xlsx /tmp/board.xlsx
  benchkit run experiments/quickstart.yaml --executor ray --ray-address auto
  benchkit report results/quickstart
  benchkit predict --run results/quickstart/runs/<run_id> scalp1.jpg scalp2.jpg --json
  benchkit predict --run results/quickstart/runs/<run_id> photos/ --csv grades.csv
  benchkit export results/quickstart/runs/<run_id> --out exported/
  benchkit cache info
  benchkit clean results/quickstart
  benchkit schema > experiment.schema.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchkit", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark deep models against each other on ordinal image-grading tasks.")
    parser.add_argument("--version", action="version", version=f"benchkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an experiment YAML and write its leaderboard",
                         description="Expand an experiment into runs (models x grid x folds x seeds), "
                                     "train and evaluate each, and write the leaderboard. Re-running on "
                                     "the same output folder skips finished runs and resumes "
                                     "interrupted ones.")
    run.add_argument("experiment", type=Path, help="experiment YAML file (KEY=VALUE arguments after it: as --set)")
    run.add_argument("--out", type=Path, help="output folder (default: results/<experiment name>)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a YAML key, e.g. train.epochs=2 or 'models.*.backbone.pretrained=false' "
                          "(repeatable; the value is parsed as YAML)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate, build every model and list the runs with parameter counts; no training")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved experiment (bases merged, overrides applied, defaults filled) as "
                          "YAML and exit")
    run.add_argument("--quiet", action="store_true", help="plain log lines instead of progress bars")
    run.add_argument("--yes", action="store_true", help="start even when the experiment has more runs than its "
                                                        "max_runs (default 1000)")
    run.add_argument("--fresh", action="store_true",
                      help="train these runs again, deleting their earlier results (what a concurrent command "
                           "finishes after this one started is kept)")
    run.add_argument("--refuse-changed", action="store_true",
                     help="stop instead of restarting a run whose config changed since its checkpoint")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="where runs execute: local (this machine) or ray (one Ray task per run, with the "
                          "YAML's resources; the output folder must be on a filesystem the workers share)")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="local: run N runs at once in separate processes; ray: CPUs of a local Ray")
    run.add_argument("--ray-address", metavar="ADDRESS",
                     help="Ray cluster to use (e.g. auto or ray://head:10001); default: start a local Ray")
    run.set_defaults(func=_cmd_run)

    lst = sub.add_parser("list", help="list registered backbones, heads or dataset formats")
    lst.add_argument("what", choices=["backbones", "heads", "formats"])
    lst.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'res*'")
    lst.add_argument("--plugins", nargs="*", default=[], help="plugin files or modules to import first")
    lst.set_defaults(func=_cmd_list)

    board = sub.add_parser("leaderboard", help="rebuild the leaderboard from a results folder")
    board.add_argument("out_dir", type=Path, help="a results folder (with runs/)")
    board.add_argument("--xlsx", type=Path, help="also write the workbook here")
    board.add_argument("--sort-by", default=None, help="metric column to sort by (default: the experiment's)")
    board.set_defaults(func=_cmd_leaderboard)

    report = sub.add_parser("report", help="write a self-contained HTML report of a results folder",
                            description="Write DIR/report.html: leaderboard, plots (inlined), dataset summary, "
                                        "audit results, each run's config and the environment; readable offline.")
    report.add_argument("out_dir", type=Path, help="a results folder (with runs/)")
    report.add_argument("--output", type=Path, help="where to write the HTML (default: DIR/report.html)")
    report.set_defaults(func=_cmd_report)

    predict = sub.add_parser("predict", help="grade images (files or folders) with a finished run",
                             description="Load a run folder (config.yaml + best.pt) and give, per image, the "
                                         "level, the continuous score and, where the head has them, the class "
                                         "probabilities. Folders are searched recursively for image files; "
                                         "images are decoded a batch at a time with the run's own preprocessing.")
    predict.add_argument("--run", dest="run_dir", type=Path, required=True, help="results/<exp>/runs/<run_id>")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument("--csv", type=Path, metavar="FILE",
                         help="write image, level, level_name, score and prob_<class> columns to FILE "
                              "(instead of printing a table)")
    predict.add_argument("--device", default=None, help="torch device (default: CUDA when present)")
    predict.set_defaults(func=_cmd_predict)

    add_export_command(sub)

    cache = sub.add_parser("cache", help="show or clear the decoded-image and feature caches",
                           description="The caches only grow (a changed image or a new backbone adds entries). "
                                       "'info' lists what they hold; 'clear' deletes it, under the writers' locks.")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--cache-dir", type=Path, default=None,
                       help="cache folder (default: $BENCHKIT_CACHE_DIR, else ~/.cache/benchkit)")
    cache.add_argument("--only", choices=["images", "features"], default=None,
                       help="clear: only this cache (default: both)")
    cache.add_argument("--json", action="store_true", help="info: print one JSON document")
    cache.set_defaults(func=_cmd_cache)

    schema = sub.add_parser("schema", help="print the JSON schema of experiment files (for editors)",
                            description="The JSON schema (draft 2020-12) of an experiment YAML, from the same model "
                                        "that validates it; point an editor's YAML language server at it.")
    schema.add_argument("--output", type=Path, help="write it to this file instead of standard output")
    schema.set_defaults(func=_cmd_schema)

    add_data_commands(sub)
    add_clean_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # Hydra-style KEY=VALUE after the experiment: the same as --set KEY=VALUE
        if args.command != "run" or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    args.started = time.time()  # `run --fresh` keeps what concurrent commands finish after this
    return guarded(args.func, args)


def guarded(command, args) -> int:
    """Run a command: a user's mistake becomes one line and exit 2; a bug in benchkit keeps its traceback."""
    try:
        return int(command(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


def _cmd_run(args) -> int:
    from benchkit.execution.executors import make_executor
    from benchkit.execution.experiment import run_experiment
    from benchkit.execution.plan import confirm_run_count, default_out_dir, describe_evaluation, dry_run, plan
    from benchkit.results import results_folder
    config, runs = plan(args.experiment, args.overrides)
    if args.print_config:
        from benchkit.config.schema import dump_yaml
        print(dump_yaml(config.model_dump(mode="json")), end="")
        return 0
    if args.dry_run:
        console.print(dry_run(runs))
        for line in describe_evaluation(config, runs):
            console.print(line, highlight=False)
        return 0
    confirm_run_count(config, runs, args.yes)
    out_dir = args.out or default_out_dir(config)
    executor = make_executor(args.executor, args.jobs, args.ray_address)
    frame = run_experiment(config, runs, out_dir, quiet=args.quiet, fresh=args.fresh,
                           refuse_changed=args.refuse_changed, executor=executor, started=args.started)
    console.print(f"leaderboard: {results_folder.leaderboard_path(out_dir)} and {results_folder.workbook_path(out_dir)}")
    failed = int((frame.get("status") != "ok").sum()) if not frame.empty else 0
    return 1 if failed else 0


def _cmd_schema(args) -> int:
    import json

    from benchkit.config.files import experiment_schema
    text = json.dumps(experiment_schema(), indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        console.print(f"schema: {args.output}")
    else:
        print(text, end="")
    return 0


def _cmd_cache(args) -> int:
    import json

    from rich.table import Table

    from benchkit.cli.cache import cache_usage, clear_cache
    from benchkit.data.image_cache import resolve_cache_dir
    root = resolve_cache_dir(args.cache_dir)
    if args.action == "clear":
        freed = clear_cache(root, images=args.only in (None, "images"), features=args.only in (None, "features"))
        console.print(f"cleared {args.only or 'images and features'} in {root}: {freed / 1e6:.1f} MB freed")
        return 0
    usage = cache_usage(root)
    if args.json:
        print(json.dumps(usage, indent=2))
        return 0
    table = Table(title=f"cache {root}", header_style="bold cyan")
    for col in ("cache", "entry", "images", "MB"):
        table.add_column(col, justify="right" if col in ("images", "MB") else "left")
    for item in usage["images"]:
        table.add_row("images", item["folder"], str(item["images"]), f"{item['bytes'] / 1e6:.1f}")
    for item in usage["features"]:
        entry = f"{item.get('backbone', '?')} {item.get('size', '?')}px {item.get('split', '?')} ({item['key'][:8]})"
        table.add_row("features", entry, str(item.get("images", "")), f"{item['bytes'] / 1e6:.1f}")
    console.print(table)
    console.print(f"total: {usage['total_bytes'] / 1e6:.1f} MB")
    return 0


def _cmd_list(args) -> int:
    from rich.table import Table
    from benchkit.registry import HEADS, import_plugins
    import_plugins(args.plugins, Path.cwd())
    if args.what == "formats":
        table = format_table(args.pattern)
    elif args.what == "heads":
        table = Table(title="heads", header_style="bold cyan")
        for col in ("name", "probabilities", "decodings", "defined in"):
            table.add_column(col)
        for name in HEADS.names(args.pattern):
            cls = HEADS.get(name)
            table.add_row(name, "yes" if cls.has_probabilities else "no", ", ".join(cls.decodings),
                          cls.__module__)
    else:
        table = _backbone_table(args.pattern)
    console.print(table)
    return 0


def _backbone_table(pattern: str):
    import torch
    from rich.table import Table

    from benchkit.registry import BACKBONES
    table = Table(title="backbones", header_style="bold cyan")
    for col in ("name", "input size", "stages", "features", "weight sources", "defined in"):
        table.add_column(col)
    for name in BACKBONES.names(pattern):
        factory = BACKBONES.get(name)
        try:
            with torch.device("meta"):  # architecture only: no memory, no weights
                backbone = BACKBONES.create(name)
            facts = [str(backbone.input_size), str(len(backbone.stages)), str(backbone.num_features)]
        except Exception as exc:  # a broken plugin is listed, not fatal
            facts = ["?", "?", f"cannot build: {exc}"]
        sources = getattr(factory, "weight_sources", "weights: PATH")
        table.add_row(name, *facts, sources, factory.__module__)
    for prefix in BACKBONES.prefixes():
        table.add_row(f"{prefix}:<name>", "from model", "from model", "", f"{prefix} cache; weights: PATH",
                      "generic adapter")
    return table


def _cmd_leaderboard(args) -> int:
    from benchkit.errors import OutputError
    from benchkit.io import folder_write_problem
    from benchkit.results import results_folder
    from benchkit.results.aggregate import aggregated_table
    from benchkit.results.leaderboard import require_run_results, rich_table
    from benchkit.results.plots import try_plots, write_experiment_plots
    from benchkit.results.rebuild import rebuild_leaderboard
    require_run_results(args.out_dir)
    problem = folder_write_problem(args.out_dir)
    if problem:
        raise OutputError(f"cannot write the leaderboard in {args.out_dir}: {problem}")
    saved = results_folder.read_experiment(args.out_dir)
    evaluation = saved.evaluation.model_copy(update={"sort_by": args.sort_by or saved.sort_by})
    frame, sheets = rebuild_leaderboard(args.out_dir, evaluation, saved.text, args.xlsx)
    try_plots(write_experiment_plots, args.out_dir, frame, evaluation.sort_by)
    console.print(rich_table(frame, f"leaderboard ({args.out_dir})"))
    if "aggregated" in sheets:
        console.print(aggregated_table(sheets["aggregated"], "across seeds and folds"))
    return 0


def _cmd_report(args) -> int:
    from benchkit.results.report import write_report
    path = write_report(args.out_dir, args.output)
    console.print(f"report: {path}")
    return 0


def _cmd_predict(args) -> int:
    import json

    from rich.table import Table

    from benchkit.errors import ConfigError, format_listing
    from benchkit.inference.predict import device_problems, image_problems, load_run, run_folder_problems
    problems = ([f"--run {p}" for p in run_folder_problems(args.run_dir)] + device_problems(args.device)
                + image_problems(args.images))
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} bad arguments:\n{format_listing(problems, limit=20)}")
    run = load_run(args.run_dir, device=args.device)
    results = run.predict_files(args.images, progress=True)
    if args.csv:
        from benchkit.io import atomic_path
        from benchkit.inference.predict import predictions_frame
        with atomic_path(args.csv) as tmp:
            predictions_frame(results, run.classes).to_csv(tmp, index=False)
        console.print(f"{len(results)} prediction(s): {args.csv}")
    if args.json:
        print(json.dumps(results, indent=2))
    if args.csv or args.json:
        return 0
    table = Table(title=f"predictions of {args.run_dir.name} (test-time augmentation: {run.tta})",
                  header_style="bold cyan")
    for col in ("image", "level", "score", "probabilities"):
        table.add_column(col, justify="right" if col == "score" else "left")
    for item in results:
        probs = item.get("probabilities")
        table.add_row(item["image"], item["level_name"], f"{item['score']:.3f}",
                      " ".join(f"{k} {v:.2f}" for k, v in probs.items()) if probs else "-")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
