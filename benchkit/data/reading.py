"""Reading a dataset through its format: the contract a dataset format implements, and the one way to read.

A dataset format is a class registered with ``@register_dataset_format("name")`` (``from benchkit import
register_dataset_format``) and named by an experiment's ``data.format``. Its one required method is
``read(self, table)``: ``table`` (a :class:`benchkit.data.labels.LabelTable`) says what to read and
collects what was read:

- ``table.root``: ``data.root``, resolved (relative to the experiment file); ``table.classes``: ``data.classes``
  or None (set it when the files define the classes, e.g. a CSV header); ``table.options``: ``data.options``,
  validated by the format's ``Options`` model when it has one; ``table.data``: the whole ``data`` section;
- ``table.add_file(split, path, label, where=..., line=..., name=..., subject=...)``: one labelled image
  file (``path`` relative to the root or absolute; ``label`` a class name or an integer level; ``where``
  and ``line`` the label file and row, named in messages); ``table.add_array(split, images, index, label,
  name=...)``: one image held as ``images[index]``, an ``(H, W)`` or ``(H, W, 3)`` uint8 array (grey becomes
  RGB); ``table.add_unlabelled(split, path, reason)``: an image no row labels;
- ``table.problem(reason, where=..., line=...)``: a row it cannot read (every problem is reported
  together: ``benchkit run`` refuses the dataset, ``data check`` lists it); ``table.note(text)``.
  Raise :class:`benchkit.errors.DataError` when nothing can be read (a missing folder).

Splits are ``train``, ``valid`` and ``test``; a format whose rows carry no split may put them all in one
split named ``unsplit``, which ``data.split: group_holdout`` or ``group_kfold`` cuts into the three.
Subjects (``subject=``) keep a person's images on one side of a grouped split; without them the subject
comes from the file name (``data.subject_regex``). Every format's rows then go through the same
checks (:meth:`LabelTable.finish`): labels known, image files inside the dataset, no image listed twice.

Optional class attributes (defaults in :class:`DatasetFormat`, which first-party formats subclass):
``Options`` (a pydantic model of ``data.options``; without it ``data.options`` must be empty),
``needs_root``, ``needs_classes`` (for training), ``drawn`` (images drawn in memory: nothing for the
audit to check) and ``detect(path)`` (a classmethod: does ``data check PATH`` without ``--format`` look
like this format?). The audit reads a dataset through the same ``read``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from benchkit.config.schema import DataConfig
from benchkit.config.validation import format_validation_error
from benchkit.data.datasets import Dataset
from benchkit.data.labels import LabelTable
from benchkit.errors import ConfigError, DataError
from benchkit.registry import DATASET_FORMATS

UNSPLIT = "unsplit"
"""The split of rows that carry none, for a grouped ``data.split`` to cut."""


class DatasetFormat:
    """The defaults of a dataset format's optional settings; subclass it (or not) and implement ``read``."""

    Options: type[BaseModel] | None = None
    needs_root: bool = True
    needs_classes: bool = False
    drawn: bool = False

    @classmethod
    def detect(cls, path: Path) -> bool:
        return False

    def read(self, table: LabelTable) -> None:
        raise NotImplementedError


def format_class(name: str):
    """The registered format ``name``; a ConfigError listing the known formats when there is none."""
    return DATASET_FORMATS.get(name)


def setting(fmt, name: str) -> Any:
    """A format's optional attribute, or :class:`DatasetFormat`'s default when it does not set one."""
    return getattr(fmt, name, getattr(DatasetFormat, name))


def format_options(data: DataConfig) -> Any:
    """``data.options`` validated by the format's ``Options`` model; a ConfigError naming the key."""
    fmt = format_class(data.format)
    model = setting(fmt, "Options")
    if model is None:
        if data.options:
            raise ConfigError(f"data.options: format {data.format!r} takes no options (got "
                              f"{', '.join(map(str, data.options))})")
        return {}
    try:
        return model.model_validate(data.options)
    except ValidationError as exc:
        raise ConfigError(f"data.options ({data.format}): " + format_validation_error(exc)) from None


def check_data_config(data: DataConfig, training: bool = True) -> None:
    """What the format needs from the ``data`` section (a root, the classes, valid options), before reading."""
    fmt = format_class(data.format)
    if setting(fmt, "needs_root") and data.root is None:
        raise ConfigError(f"data.root is required for format {data.format!r}")
    if training and setting(fmt, "needs_classes") and not data.classes:
        raise ConfigError(f"data.classes is required for format {data.format!r} (the class names in level order)")
    format_options(data)


def read_labels(data: DataConfig, training: bool = False) -> LabelTable:
    """The label table of the dataset ``data`` names (its root already resolved), checked (see the labels module).

    Problems with rows are in the table, not raised; a dataset that cannot be read at all raises DataError.
    """
    check_data_config(data, training)
    fmt = format_class(data.format)
    root = Path(data.root).absolute() if data.root is not None else None
    table = LabelTable(format=data.format, root=root, classes=data.classes, options=format_options(data), data=data)
    fmt().read(table)
    if not table.splits and not table.problems:
        raise DataError(f"dataset {data.root or data.format}: format {data.format!r} found no images")
    return table.finish()


def read_dataset(data: DataConfig, check_images: bool = True) -> Dataset:
    """The dataset for training: :func:`read_labels`, then one DataError listing every problem."""
    return read_labels(data, training=True).to_dataset(check_images)


def read_folder(format_name: str, root: Path, classes=None, options: dict | None = None,
                check_images: bool = True) -> Dataset:
    """Read ``root`` as ``format_name`` (the readers' functions, e.g. ``read_roboflow_csv(root)``)."""
    data = DataConfig(format=format_name, root=root, classes=list(classes) if classes else None,
                      options=options or {})
    return read_dataset(data, check_images)


def detect_format(path: Path) -> str:
    """The one registered format whose ``detect`` recognises ``path`` (``data check PATH`` without ``--format``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data folder not found: {path} (see data/README.md for how to get the data)")
    found = [name for name in DATASET_FORMATS.names() if setting(format_class(name), "detect")(path)]
    if len(found) == 1:
        return found[0]
    known = ", ".join(DATASET_FORMATS.names())
    if found:
        raise ConfigError(f"{path} looks like several dataset formats ({', '.join(found)}): give --format")
    raise DataError(f"no splits (train, valid, test) under {path} and nothing a dataset format recognises: "
                    f"give --format (known: {known})")


def resolve_data_root(root: Path | None, base_dir: Path) -> Path | None:
    """``data.root`` if absolute, else relative to the experiment file's folder, else to the current one.

    A root found in neither place resolves beside the experiment file, which the error then names.
    """
    if root is None:
        return None
    root = Path(root).expanduser()
    if root.is_absolute():
        return root
    beside = Path(base_dir) / root
    return root if root.exists() and not beside.exists() else beside
