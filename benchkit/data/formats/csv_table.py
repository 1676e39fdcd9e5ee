"""``csv``: one CSV of image paths and labels (or one CSV per split), the way most graded datasets come.

``data.root`` is the data root folder, with the CSV ``data.options.file`` (default ``labels.csv``) or one
CSV per split (``data.options.files: {train: train.csv, valid: valid.csv, test: test.csv}``), relative
to the root; or ``data.root`` is the CSV itself and its folder the data root. Columns (``data.options``):
``path_column`` (default ``path``) and ``label_column`` (``label``) are required; ``subject_column``
(``subject``) and ``split_column`` (``split``) are used when present (and required when named). Image
paths are relative to the CSV's folder and must stay inside the data root. Labels are class names of
``data.classes`` (their order is the level order) or integer levels ``0..K-1``. Splits are ``train``,
``valid`` (also ``val``, ``validation``) and ``test``; without a split column all rows are one pool that
``data.split: group_holdout`` or ``group_kfold`` cuts, grouped by the subject column when there is one
(its values as they are; else by ``data.subject_regex`` over the file names).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from benchkit.data.labels import LabelTable
from benchkit.data.reading import UNSPLIT, DatasetFormat
from benchkit.errors import ConfigError, DataError
from benchkit.registry import register_dataset_format

SPLIT_NAMES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "validation": "valid",
               "test": "test"}


class CsvOptions(BaseModel):
    """``data.options`` of the ``csv`` format."""

    model_config = ConfigDict(extra="forbid")
    file: str = Field("labels.csv", description="the CSV, relative to data.root (when data.root is a folder)")
    files: dict[Literal["train", "valid", "test"], str] | None = Field(
        None, description="one CSV per split instead, relative to data.root")
    path_column: str = Field("path", description="image paths, relative to the CSV's folder")
    label_column: str = Field("label", description="class names of data.classes, or integer levels 0..K-1")
    subject_column: str = Field("subject", description="who an image shows (used when present)")
    split_column: str = Field("split", description="train, valid or test (used when present)")


@register_dataset_format("csv")
class CsvTable(DatasetFormat):
    """A table of image paths and labels, with optional subject and split columns."""

    Options = CsvOptions

    @classmethod
    def detect(cls, path: Path) -> bool:
        return (path.is_file() and path.suffix.lower() == ".csv") or (path / "labels.csv").is_file()

    def read(self, table: LabelTable) -> None:
        options: CsvOptions = table.options
        given = Path(table.root)
        if given.is_file():
            if options.files:
                raise ConfigError(f"data.options.files: data.root {given} is a CSV file; give the data folder")
            table.root, tables = given.parent, {None: given}
        elif given.is_dir():
            tables = ({split: given / name for split, name in options.files.items()} if options.files
                      else {None: given / options.file})
        else:
            raise DataError(f"data folder not found: {given}")
        for split, path in tables.items():
            if not path.is_file():
                key = f"files.{split}" if split else "file"
                raise DataError(f"CSV file not found: {path} (data.options.{key})")
            _read_table(table, path, split, options)


def _read_table(table: LabelTable, path: Path, split: str | None, options: CsvOptions) -> None:
    where = _where(path, table.root)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None
    header = [cell.strip() for cell in rows[0]] if rows else []
    chosen = options.model_fields_set

    def column(name: str, required: bool) -> int | None:
        if name in header:
            return header.index(name)
        if required:
            table.problem(f"missing column {name!r} (the header has {header})", where=where, line=1, split=split)
        return None

    at_path = column(options.path_column, True)
    at_label = column(options.label_column, True)
    at_subject = column(options.subject_column, "subject_column" in chosen)
    at_split = column(options.split_column, "split_column" in chosen) if split is None else None
    if at_path is None or at_label is None:
        return
    added = 0
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            table.problem(f"{len(row)} fields, expected {len(header)}", where=where, line=line, split=split)
            continue
        name, label = row[at_path].strip(), row[at_label].strip()
        part = split or (SPLIT_NAMES.get(row[at_split].strip().lower()) if at_split is not None else UNSPLIT)
        subject = row[at_subject].strip() if at_subject is not None else None
        reason = ("empty path" if not name else "empty label" if not label else
                  f"unknown split {row[at_split].strip()!r} (train, valid or test)" if part is None else
                  "empty subject" if subject == "" else None)
        if reason:
            table.problem(reason, where=where, line=line, split=part, name=name or None)
            continue
        table.add_file(part, path.parent / name, label, where=where, line=line, name=name, subject=subject,
                       within=table.root)
        added += 1
    if split is not None and not added:
        table.problem(f"no image rows: split {split!r} would be empty", where=where, split=split)


def _where(path: Path, root: Path) -> str:
    """The CSV named relative to the data root (absolute when it lies elsewhere)."""
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)
