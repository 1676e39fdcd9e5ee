"""``benchkit export``: a finished run as ``model.safetensors`` and ``config.json`` for use outside benchkit."""

from __future__ import annotations

from pathlib import Path

from benchkit.progress import console


def add_export_command(sub) -> None:
    export = sub.add_parser("export", help="export a finished run: model.safetensors and config.json",
                            description="Write OUT/model.safetensors (the backbone under its library's own key "
                                        "names, the head under benchkit_head.) and OUT/config.json (architecture, "
                                        "input size, mean/std, classes, head, decoding, thresholds). timm or "
                                        "torchvision load the backbone; benchkit.load_run(OUT) loads the grader.")
    export.add_argument("run_dir", type=Path, help="results/<exp>/runs/<run_id>")
    export.add_argument("--out", type=Path, required=True,
                        help="folder to write: new, empty or an earlier export (else refused, see --force)")
    export.add_argument("--force", action="store_true",
                        help="write into a folder that holds other files, replacing its config.json and "
                             "model.safetensors")
    export.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from benchkit.inference.export import export_run
    from benchkit.results.exported import read_export_config
    out = export_run(args.run_dir, args.out, force=args.force)
    arch = read_export_config(out)["architecture"]
    console.print(f"exported {args.run_dir.name} to {out}: model.safetensors ({arch['library']} {arch['name']} "
                  f"+ head) and config.json")
    return 0
