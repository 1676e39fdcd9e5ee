"""MkDocs hook: the generated pages of the documentation site.

A page holding one of the placeholders below gets it replaced, at every build, by text generated from the code
itself, so the reference cannot drift from what benchkit accepts:

- ``<!-- generated: config-reference -->``: every key of an experiment file, from the pydantic schema
  (``benchkit.config.schema.ExperimentConfig``): its type, default and description;
- ``<!-- generated: cli-reference -->``: every command and option of ``benchkit``, from its argparse parser;
- ``<!-- generated: moved-paths -->``: the module paths of 0.1 and where they moved (``benchkit._moved.MOVED``).

A schema field with no description (neither ``Field(description=...)`` nor an entry in
``docs/config_notes.yaml``) fails the build. ``tests/test_docs.py`` calls the same functions. The references
describe the ``benchkit`` that imports (``pip install -e ".[docs]"`` in a checkout, as CI installs it).
"""

from __future__ import annotations

import argparse
import os
import re
import typing
from pathlib import Path
from types import NoneType, UnionType

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

DOCS = Path(__file__).resolve().parent

PLACEHOLDERS = {"config-reference": "config_reference", "cli-reference": "cli_reference",
                "moved-paths": "moved_paths"}


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace each ``<!-- generated: NAME -->`` by its generated Markdown."""
    for name, function in PLACEHOLDERS.items():
        placeholder = f"<!-- generated: {name} -->"
        if placeholder in markdown:
            markdown = markdown.replace(placeholder, globals()[function]())
    return markdown


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings use Sphinx roles (``:class:`Results```); show their targets as plain code."""
    return re.sub(r":(?:class|func|meth|mod|data|attr|exc|obj):(<code>)~?", r"\1", html)


# ---------------------------------------------------------------- the configuration reference

class Row(typing.NamedTuple):
    model: str          # the pydantic class
    field: str
    key: str            # where it sits in an experiment file: data.synthetic.train, models.*.backbone.name
    type: str
    default: str
    description: str


def config_notes() -> dict[str, str]:
    """Descriptions of schema fields that carry none themselves: ``Class.field: text``."""
    return yaml.safe_load((DOCS / "config_notes.yaml").read_text(encoding="utf-8"))


def config_sections() -> list[tuple[str, type[BaseModel], list[Row]]]:
    """Every section of an experiment file, depth first: (its key, its model, its fields)."""
    from benchkit.config.schema import ExperimentConfig
    notes, sections, seen = config_notes(), [], set()

    def visit(prefix: str, model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        rows, nested = [], []
        for name, info in model.model_fields.items():
            key = f"{prefix}.{name}" if prefix else name
            inner = [sub for _, sub in models_in(info.annotation)]
            description = (info.description or notes.get(f"{model.__name__}.{name}")
                           or (_doc(inner[0]) if len(inner) == 1 else ""))
            if not description:
                raise ValueError(f"{model.__name__}.{name} ({key}) has no description: give it "
                                 f"Field(description=...) or an entry in docs/config_notes.yaml")
            rows.append(Row(model.__name__, name, key, type_text(info.annotation, info.metadata),
                            default_text(info), description))
            nested += [(key + suffix, sub) for suffix, sub in models_in(info.annotation)]
        sections.append((prefix, model, rows))
        for key, sub in nested:
            visit(key, sub)

    visit("", ExperimentConfig)
    return sections


def models_in(annotation, suffix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """The pydantic models inside a field's type, with the key suffix of their place (lists: ``.*``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(suffix, annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return models_in(args[0], suffix)
    if origin is list:
        return models_in(args[0], suffix + ".*")
    if origin is dict:
        return models_in(args[1], suffix + ".<path>")
    return [found for arg in args for found in models_in(arg, suffix)]


def type_text(annotation, metadata=()) -> str:
    """A field's type in words: ``int (≥ 1)``, ``"official" or "group_kfold"``, ``list of str or null``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0], [*args[1:], *metadata])
    if origin in (typing.Union, UnionType):
        text = " or ".join(type_text(arg) for arg in args if arg is not NoneType)
        text += " or null" if NoneType in args else ""
    elif origin is typing.Literal:
        text = " or ".join(f'"{arg}"' if isinstance(arg, str) else str(arg).lower() for arg in args)
    elif origin in (list, tuple):
        items = [type_text(arg) for arg in args if arg is not Ellipsis]
        text = f"list of {items[0]}" if origin is list else f"[{', '.join(items)}]"
    elif origin is dict:
        text = f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    elif annotation is typing.Any:
        text = "any"
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = f"section ({annotation.__name__})"
    elif annotation is Path:
        text = "path"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    bounds = [bound for bound in map(_bound, metadata) if bound]
    return f"{text} ({', '.join(bounds)})" if bounds else text


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥"))
"""The constraint objects pydantic keeps in a field's metadata (annotated_types' Ge, Gt, ...), by attribute."""


def _bound(item) -> str:
    if isinstance(item, FieldInfo):  # Annotated[int, Field(ge=1)] inside a union
        return ", ".join(bound for bound in map(_bound, item.metadata) if bound)
    for attribute, sign in _BOUNDS:
        value = getattr(item, attribute, None)
        if value is not None and not isinstance(value, (str, bool)):
            return f"{sign} {'2**32 - 1' if value == 2 ** 32 - 1 else value}"
    pattern = getattr(item, "pattern", None)
    return f"matching {pattern}" if isinstance(pattern, str) else ""


def default_text(info) -> str:
    """A field's default as YAML (``required`` when there is none; a section's defaults are its rows)."""
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, BaseModel):
        return "(its keys' defaults)"
    return yaml.safe_dump(_plain(value), default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def config_reference() -> str:
    """The configuration reference: one table per section."""
    out = []
    for key, model, rows in config_sections():
        title = f"`{key}` ({model.__name__})" if key else "The top level (ExperimentConfig)"
        doc = _doc(model)
        out += [f"### {title}", "", *([doc, ""] if doc else []),
                "| key | type | default | description |", "|---|---|---|---|"]
        out += [f"| {_code(row.key)} | {_cell(row.type)} | {_code(row.default)} | {_cell(row.description)} |"
                for row in rows]
        out.append("")
    return "\n".join(out)


def _doc(model: type[BaseModel]) -> str:
    """A model's own docstring on one line ("" when it has none)."""
    doc = model.__dict__.get("__doc__") or ""
    return re.sub(r":\w+:`~?([^`]+)`", r"``\1``", " ".join(doc.split()))


def _code(text: str) -> str:
    """Text as a code span in a table cell."""
    return f"`{text}`"  # Python-Markdown keeps a pipe inside a code span in its cell


def _cell(text: str) -> str:
    """Text for a table cell: pipes escaped, and ``<`` ``>`` outside code spans shown as themselves."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    parts[::2] = [part.replace("<", "&lt;").replace(">", "&gt;") for part in parts[::2]]
    return "`".join(parts)


# ---------------------------------------------------------------- the command-line reference

def cli_commands() -> list[tuple[str, argparse.ArgumentParser, str]]:
    """``benchkit`` and every subcommand, depth first: (the command line, its parser, its one-line help)."""
    from benchkit.cli.main import build_parser

    found = []

    def visit(prog: str, parser: argparse.ArgumentParser, summary: str) -> None:
        found.append((prog, parser, summary))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    visit(f"{prog} {name}", sub, helps.get(name, ""))

    visit("benchkit", build_parser(), "")
    return found


def cli_reference() -> str:
    """The command-line reference: per command its usage, description and arguments."""
    out = []
    for prog, parser, summary in cli_commands():
        level = "#" * min(2 + prog.count(" "), 4)
        usage = _usage(parser)
        out += [f"{level} `{prog}`", ""]
        text = parser.description or summary
        if text:
            out += [" ".join(text.split()), ""]
        out += ["```text", usage, "```", ""]
        rows = [_argument_row(action) for action in parser._actions
                if not isinstance(action, (argparse._SubParsersAction, argparse._HelpAction))]
        if rows:
            out += ["| argument | what it does | default |", "|---|---|---|", *rows, ""]
    return "\n".join(out)


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line, wrapped the same way whatever the terminal's width."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return parser.format_usage().removeprefix("usage: ").strip()
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _argument_row(action: argparse.Action) -> str:
    if action.option_strings:
        name = ", ".join(action.option_strings)
        if action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
    else:
        name = action.metavar or action.dest
    help_text = " ".join((action.help or "").split()) % {"default": action.default} if action.help else ""
    if action.choices and not isinstance(action.choices, dict):
        help_text = f"{help_text} (one of: {', '.join(map(str, action.choices))})".strip()
    shown = action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0
    return f"| {_code(name)} | {_cell(help_text)} | {_code(str(action.default)) if shown else ''} |"


# ---------------------------------------------------------------- the moved module paths

def moved_paths() -> str:
    """The 0.1 module paths that still import, with a DeprecationWarning, and their new places."""
    from benchkit._moved import MOVED
    rows = [f"| `{old}` | `{new}` |" for old, new in MOVED.items()]
    return "\n".join(["| 0.1 path (deprecated) | imports, with a warning, the module |", "|---|---|", *rows])
