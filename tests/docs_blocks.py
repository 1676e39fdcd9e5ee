"""The code blocks of a documentation page, and running them as a reader would (see tests/test_docs.py)."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import yaml

DIRECTIVE = re.compile(r"^<!-- docs-test: (?P<text>.*) -->$")
KEYS = {"skip", "reason", "file", "same-as", "small", "set", "dry-run", "exit"}
LANGUAGES = {"python", "bash", "console", "yaml", "toml", "text"}
SMALL = ["train.epochs=1", "data.max_per_split=16", "data.image_size=32", "data.synthetic.train=32",
         "data.synthetic.valid=16", "data.synthetic.test=16", "data.synthetic.image_size=32",
         "evaluation.bootstrap.n_resamples=100", "evaluation.plots=false"]
"""What ``<!-- docs-test: small -->`` adds to every ``benchkit run`` of a block: one epoch, 16 images per split
at 32 px, 100 bootstrap resamples, no plots (a run of a small model then takes a few seconds on a CPU)."""


@dataclass
class Block:
    page: str
    line: int
    language: str
    text: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def overrides(self) -> list[str]:
        return (SMALL if "small" in self.options else []) + shlex.split(self.options.get("set", ""))


def blocks_of(path: Path, name: str) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the ``docs-test`` options of the comment just before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, pending, index = [], None, 0
    while index < len(lines):
        line = lines[index]
        if pending is not None and line.strip() and not line.startswith("```"):
            raise AssertionError(f"{name}:{pending[0]}: a docs-test comment must come just before a code block")
        if DIRECTIVE.match(line):
            pending = (index + 1, _options(DIRECTIVE.match(line)["text"], f"{name}:{index + 1}"))
        elif line.startswith("```"):
            language = line[3:].strip()
            assert language in LANGUAGES, f"{name}:{index + 1}: code block language {language!r} not in {LANGUAGES}"
            end = lines.index("```", index + 1)
            options = pending[1] if pending else {}
            blocks.append(Block(name, index + 1, language, "\n".join(lines[index + 1:end]) + "\n", options))
            pending, index = None, end
        index += 1
    return blocks


def _options(text: str, where: str) -> dict[str, str]:
    options = dict(item.split("=", 1) if "=" in item else (item, "") for item in shlex.split(text))
    unknown = set(options) - KEYS
    assert not unknown, f"{where}: unknown docs-test option(s) {sorted(unknown)}; known: {sorted(KEYS)}"
    assert "skip" not in options or options.get("reason"), f"{where}: skip needs reason=\"why\""
    assert "dry-run" not in options or options["dry-run"], f"{where}: dry-run needs a reason: dry-run=\"why\""
    return options


def commands_of(block: Block) -> list[str]:
    """The command lines of a bash block (continuations joined) or of a console block (``$ `` lines)."""
    text = block.text.replace("\\\n", " ")
    if block.language == "console":
        return [line[2:] for line in text.splitlines() if line.startswith("$ ")]
    return [line for line in text.splitlines() if line.strip()]


class Page:
    """Runs one page's blocks in order, in ``folder``; ``main`` is ``benchkit.cli.main``."""

    def __init__(self, folder: Path, main, hair_loss: Path):
        self.folder, self.main, self.hair_loss = folder, main, hair_loss
        self.namespace: dict = {"__name__": "__docs__"}
        self.experiments: list[Path] = []
        self.skipped: list[str] = []

    def run(self, block: Block, repo: Path) -> None:
        if "skip" in block.options:
            self.skipped.append(f"{block.where}: {block.options['reason']}")
            return
        if "shared/data/hair-loss" in block.text and not (self.hair_loss / "train").is_dir():
            self.skipped.append(f"{block.where}: needs the real data at {self.hair_loss}")
            return
        if "same-as" in block.options:
            expected = (repo / block.options["same-as"]).read_text(encoding="utf-8")
            assert block.text == expected, f"{block.where}: differs from {block.options['same-as']}"
        getattr(self, f"_{block.language}")(block)

    def _python(self, block: Block) -> None:
        if "file" in block.options:
            self._write(block.options["file"], block.text)
            return
        exec(compile(block.text, block.where, "exec"), self.namespace)

    def _bash(self, block: Block) -> None:
        for line in commands_of(block):
            tokens = shlex.split(line, comments=True)
            while tokens:
                cut = tokens.index("&&") if "&&" in tokens else len(tokens)
                self._command(block, tokens[:cut])
                tokens = tokens[cut + 1:]

    _console = _bash

    def _command(self, block: Block, tokens: list[str]) -> None:
        env = {}
        while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
            key, value = tokens.pop(0).split("=", 1)
            env[key] = value
        output = None
        if ">" in tokens:
            at = tokens.index(">")
            output, tokens = self.folder / tokens[at + 1], tokens[:at] + tokens[at + 2:]
        tokens = [expanded for token in tokens for expanded in self._expand(token)]
        if tokens[:2] == ["pip", "install"]:
            return  # the project under test is the installed one
        expected = int(block.options.get("exit", 0))
        if tokens[0] == "benchkit":
            code, text = self._benchkit(block, tokens[1:], env)
        else:
            done = subprocess.run(tokens, cwd=self.folder, env={**os.environ, **env}, capture_output=True, text=True)
            code, text = done.returncode, done.stdout
            print(done.stdout, done.stderr)
        if output is not None:
            output.write_text(text, encoding="utf-8")
        assert code == expected, f"{block.where}: `{' '.join(tokens)}` exited {code}, expected {expected}"

    def _expand(self, token: str) -> list[str]:
        token = os.path.expandvars(token.replace("$PWD", str(self.folder)))
        found = sorted(glob.glob(token, root_dir=self.folder)) if "*" in token else []
        return found or [token]

    def _benchkit(self, block: Block, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        if argv[:1] == ["run"] and "--print-config" not in argv:
            argv = argv + [f"--set={item}" for item in block.overrides]
            if "dry-run" in block.options and "--dry-run" not in argv:
                argv.append("--dry-run")
        buffer = io.StringIO()
        with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(buffer):
            try:
                code = self.main(argv)
            except SystemExit as stop:  # argparse: --help, --version, usage errors
                code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
        print(buffer.getvalue())
        return code, buffer.getvalue()

    def _yaml(self, block: Block) -> None:
        data = yaml.safe_load(block.text)
        named = re.match(r"# (\S+\.ya?ml)\n", block.text)
        target = block.options.get("file") or (named and named[1])
        if target:
            self.experiments.append(self._write(target, block.text))
        elif isinstance(data, dict):  # a fragment: checked as part of the quickstart experiment
            fragment = self.folder / "experiments" / f"_fragment_{block.line}.yaml"
            fragment.write_text(yaml.safe_dump({"base": "quickstart.yaml", **data}), encoding="utf-8")
            self.experiments.append(fragment)

    def _toml(self, block: Block) -> None:
        tomllib.loads(block.text)

    def _text(self, block: Block) -> None:
        """Layouts and diagrams: not code."""

    def _write(self, relative: str, text: str) -> Path:
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def check_experiments(self) -> None:
        """Every experiment file a page wrote validates, as ``benchkit run FILE --print-config`` reads it."""
        for path in self.experiments:
            if "name" in (data := yaml.safe_load(path.read_text())) or "base" in data:
                buffer = io.StringIO()
                with contextlib.redirect_stdout(buffer):
                    code = self.main(["run", str(path), "--print-config"])
                assert code == 0, f"{path.relative_to(self.folder)} does not validate"


def trains(blocks: list[Block]) -> bool:
    """Whether a page's blocks train a model (its test is then marked slow)."""
    for block in blocks:
        if "skip" in block.options or "dry-run" in block.options:
            continue
        if "benchkit.run(" in block.text or re.search(r"benchkit run (?!.*--(dry-run|print-config))", block.text):
            return True
    return False
