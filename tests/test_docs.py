"""Every code block of the documentation (docs/**/*.md and README.md) runs as written; the generated references
list every key, command and option.

One test per page runs its blocks in order, in a fresh folder (a page's blocks build on each other). By language:

- ``python``: executed, a page's blocks in one namespace;
- ``bash`` (``console``: its ``$ `` lines): every command runs and must exit 0. ``benchkit ...`` runs through
  ``benchkit.cli.main`` in this process (the console script's own function, without a new Python's few seconds
  of start-up per command); other commands run through a subprocess; ``pip install`` is taken as done (the
  project under test is the installed one). ``&&``, ``\\`` continuations, ``> FILE``, ``*`` globs, ``$PWD`` and
  ``VAR=value command`` are understood;
- ``yaml``: parsed; a block whose first line is ``# PATH.yaml`` is written there, and every experiment a page
  writes must pass ``benchkit run FILE --print-config`` after the page's last block; a fragment (no ``name:``) is
  checked the same way as part of ``experiments/quickstart.yaml`` (``base:``);
- ``toml``: parsed; ``text``: layouts and diagrams, not run.

A comment just before a block changes how it runs (docs/development.md shows them):
``<!-- docs-test: file=PATH -->`` writes the block to PATH instead of running it; ``same-as=REPO_PATH`` asserts
the block equals that file of the repository; ``small`` adds :data:`docs_blocks.SMALL` (one epoch, 16 images of
32 px per split, 100 resamples, no plots) and ``set="KEY=VALUE ..."`` its own overrides to every ``benchkit
run``; ``dry-run="why"`` adds ``--dry-run`` (for what would train for minutes or needs a GPU); ``exit=N`` expects
that status; ``skip reason="why"`` does not run it (a Ray cluster, a web server, the test suite itself).

A page's folder holds a copy of ``experiments/``, photographs ``scalp1.jpg``, ``scalp2.jpg`` and ``photos/*.jpg``,
``../shared/data/hair-loss`` (the real data, when present; blocks naming it skip without it) and
``results/quickstart`` (README.md's Set-up command with ``small``, run once per session). README.md and
getting-started.md, which run that command, share the folder where it ran, so they find its runs finished.
Plugins registered by other tests are set aside while a page runs; what a page registers goes with it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import shutil
from pathlib import Path

import numpy as np
import pydantic
import pytest
from PIL import Image

from conftest import HAIR_LOSS, REPO
from docs_blocks import SMALL, Page, blocks_of, trains

PAGES = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "docs").rglob("*.md")) + ["README.md"]
QUICKSTART_PAGES = {"README.md", "docs/getting-started.md"}


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


def _page_params():
    for page in PAGES:
        try:
            slow = trains(blocks_of(REPO / page, page))
        except AssertionError:  # a malformed page fails its own test, not the collection
            slow = False
        yield pytest.param(page, id=page, marks=[pytest.mark.slow] if slow else [])


def _furnish(folder: Path) -> None:
    """What every page's folder holds before its first block."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "experiments", folder / "experiments", dirs_exist_ok=True)
    rng = np.random.default_rng(0)
    (folder / "photos").mkdir(exist_ok=True)
    for name in ("scalp1.jpg", "scalp2.jpg", "photos/a.jpg", "photos/b.jpg", "photos/sub/c.jpg"):
        (folder / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (60, 50, 3), dtype=np.uint8)).save(folder / name)
    shared = folder.parent / "shared" / "data" / "hair-loss"   # what the pages call ../shared/data/hair-loss
    if HAIR_LOSS.is_dir() and not shared.exists():
        shared.parent.mkdir(parents=True)
        shared.symlink_to(HAIR_LOSS, target_is_directory=True)


@pytest.fixture(scope="session")
def docs_session(tmp_path_factory):
    """The session's cache folder, and the folder where README.md's quickstart ran (with ``small``)."""
    from benchkit.cli import main
    root = tmp_path_factory.mktemp("docs")
    cache = root / "cache"
    quickstart = root / "quickstart" / "work"
    _furnish(quickstart)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHKIT_CACHE_DIR", str(cache))
        patch.chdir(quickstart)
        argv = ["run", "experiments/quickstart.yaml", "--out", "results/quickstart", "--quiet"]
        assert main(argv + [f"--set={item}" for item in SMALL]) == 0
    return {"cache": cache, "quickstart": quickstart}


@pytest.fixture
def own_plugins_only(monkeypatch):
    """Plugin-file registrations of other tests set aside, and the page's own removed after it."""
    from benchkit.registry import BACKBONES, DATASET_FORMATS, HEADS
    for registry in (BACKBONES, HEADS, DATASET_FORMATS):
        registry.load_plugins()
        kept = {name: factory for name, factory in registry._entries.items()
                if not getattr(factory, "__module__", "").startswith("benchkit_plugin_")}
        monkeypatch.setattr(registry, "_entries", kept)


EXPECTED_OUTPUT = {
    "docs/python.md": ["resnet18-coral__s1", "test_mae_mean", "'level_name'"],
    "docs/own-data.md": ["resnet18-corn", "reference"],
    "docs/add-head.md": ["frank_hall", "tiny_cnn-frank_hall__s1"],
}
"""Printed text a page's blocks must produce (what a reader is told to look for)."""


@pytest.mark.parametrize("page", list(_page_params()))
def test_page_code_blocks_run(page, docs_session, own_plugins_only, tmp_path, monkeypatch, capsys):
    from benchkit.cli import main
    monkeypatch.setenv("BENCHKIT_CACHE_DIR", str(docs_session["cache"]))
    blocks = blocks_of(REPO / page, page)
    if page in QUICKSTART_PAGES:
        folder = docs_session["quickstart"]
    else:
        folder = tmp_path / "work"
        _furnish(folder)
        if "results/quickstart" in "".join(block.text for block in blocks):
            shutil.copytree(docs_session["quickstart"] / "results", folder / "results")
    monkeypatch.chdir(folder)
    runner = Page(folder, main, HAIR_LOSS)
    for block in blocks:
        runner.run(block, REPO)
    runner.check_experiments()
    printed = capsys.readouterr().out
    missing = [text for text in EXPECTED_OUTPUT.get(page, []) if text not in printed]
    assert not missing, f"{page}: printed nothing with {missing}"
    with capsys.disabled():
        for line in runner.skipped:
            print(f"\n  skipped {line}", end="")


def test_every_page_is_in_the_site_navigation():
    import yaml
    listed = set(_flatten(yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]))
    pages = {path.relative_to(REPO / "docs").as_posix() for path in (REPO / "docs").rglob("*.md")}
    assert pages == listed


def _flatten(items):
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        yield from (_flatten(value) if isinstance(value, list) else [value])


# ---------------------------------------------------------------- the generated references

INTERNAL = {"RunSpec", "BuildInputs", "TrialInfo", "TunedParams"}
"""Models of what a run records (``runs/<id>/config.yaml``), never written by hand."""


def _schema_fields() -> set[tuple[str, str]]:
    found = set()
    for module_name in ("schema", "tuning", "runtime_sections", "limits"):
        module = importlib.import_module(f"benchkit.config.{module_name}")
        for name, cls in vars(module).items():
            if (inspect.isclass(cls) and issubclass(cls, pydantic.BaseModel) and cls.__module__ == module.__name__
                    and name not in INTERNAL):
                found |= {(name, field) for field in cls.model_fields}
    return found


def test_the_configuration_reference_lists_every_key_with_a_description():
    rows = [row for _, _, section in hooks.config_sections() for row in section]
    assert _schema_fields() <= {(row.model, row.field) for row in rows}
    assert all(row.description.strip() and row.type and row.default for row in rows)
    text = hooks.on_page_markdown("<!-- generated: config-reference -->", None, None, None)
    for key in ("`data.synthetic.num_classes`", "`models.*.backbone.freeze.stages`", "`max_runs`",
                "`evaluation.ensembles.*.name`", "`tuning.space.<path>.low`", "`tracking.mlflow.uri`"):
        assert key in text
    assert "| `seeds` | list of int (≥ 0, ≤ 2**32 - 1) (length ≥ 1) | `[0]` |" in text


def test_the_notes_describe_only_keys_the_schema_leaves_undescribed():
    from benchkit.config import runtime_sections, schema, tuning
    for key in hooks.config_notes():
        model, field = key.split(".")
        cls = next(getattr(module, model) for module in (schema, tuning, runtime_sections) if hasattr(module, model))
        assert field in cls.model_fields, f"docs/config_notes.yaml: {key} is not a schema field"
        assert not cls.model_fields[field].description, f"{key} is described in the schema and in the notes"


def test_the_cli_reference_lists_every_command_and_option():
    from benchkit.cli.main import build_parser
    text = hooks.on_page_markdown("<!-- generated: cli-reference -->", None, None, None)
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"run", "list", "leaderboard", "report", "predict", "export", "cache", "schema", "data", "clean"} <= set(
        commands)
    for name, parser in [*commands.items(), *[(f"data {n}", p) for n, p in
                                              commands["data"]._subparsers._group_actions[0].choices.items()]]:
        assert f"`benchkit {name}`" in text, name
        for action in parser._actions:
            for option in action.option_strings if action.dest != "help" else ():
                assert f"`{option}" in text or f" {option}" in text, f"benchkit {name} {option}"
    assert "--ray-address ADDRESS" in text and "| `--yes` |" in text and "| `--force` |" in text


def test_the_moved_paths_table_names_each_old_path():
    from benchkit._moved import MOVED
    text = hooks.on_page_markdown("<!-- generated: moved-paths -->", None, None, None)
    assert all(f"| `{old}` | `{new}` |" in text for old, new in MOVED.items())
