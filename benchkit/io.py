"""Atomic file writes (a kill at any instant leaves the old file or the new one, never half of one) and
the one cross-process file lock every writer shares."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from filelock import FileLock, Timeout

from benchkit.errors import OutputError, WeightsError, describe_os_error

_TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    A write that fails (read-only folder, full disk, file-size limit) raises an OutputError naming
    ``path`` and the reason, and leaves no temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_TEMP_SUFFIX}"
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # mode follows the umask
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from None
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def folder_write_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be written (or created), or None: a file in the way, or no write permission."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return (f"{folder} is an existing file, not a folder" if existing == folder
                else f"{existing} is a file, so the folder {folder} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is read-only (no permission to write there)"
    return None


def remove_temporary_files(folder: str | Path, name_prefix: str = "") -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder`` (names starting ``name_prefix``).

    Call it only while no other process can be writing those files (e.g. under their lock).
    """
    stale = list(Path(folder).glob(f".{name_prefix}*{_TEMP_SUFFIX}"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=_json_default, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping as plain data; empty when the file is absent or empty."""
    path = Path(path)
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically; a failed write names the file and the operating system's reason."""
    with atomic_path(path) as tmp, open(tmp, "wb", buffering=0) as fh:
        recorder = _WriteRecorder(fh)
        try:
            torch.save(obj, recorder)
        except RuntimeError:  # torch's zip writer replaces the OSError by "unexpected pos ..."
            if recorder.error is None:
                raise
            raise recorder.error from None


class _WriteRecorder(io.RawIOBase):
    """A write-only file that keeps the OSError of a failed write (full disk, file-size limit)."""

    def __init__(self, raw):
        super().__init__()
        self.raw, self.error = raw, None

    @property
    def name(self) -> str:
        return self.raw.name

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view, done = memoryview(data), 0
        try:
            while done < len(view):
                done += self.raw.write(view[done:])
        except OSError as exc:
            self.error = exc
            raise
        return done


def load_torch(path: str | Path, mmap: bool = False) -> Any:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only).

    ``mmap=True`` maps the tensors instead of reading them: a cheap check that the file opens.
    """
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def read_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """:func:`load_torch` for a file a user names; a WeightsError says why it cannot be read.

    A file holding Python objects besides tensors is refused (loading objects can run code); a file
    that is not a PyTorch file at all (an image, text, a truncated copy) is said to be one.
    """
    try:
        return load_torch(path)
    except Exception as exc:  # the weights-only unpickler, zip reader and pickle raise many types
        lines = str(exc).splitlines() or [""]
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if unsafe:
            reason = (f"refused: it holds a Python object ({unsafe.group(1)}) besides tensors; benchkit loads only "
                      f"tensors and plain containers (weights_only=True), since loading objects can run code")
        else:
            detail = "" if isinstance(exc, pickle.UnpicklingError) else f" ({type(exc).__name__}: {lines[0][:100]})"
            reason = f"not a PyTorch file, or a damaged one{detail}"
        raise WeightsError(f"cannot read {what} file {path}: {reason}") from None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Tensors as a safetensors file (no pickle; memory-mapped on load), written atomically."""
    from safetensors.torch import save
    data = save(tensors, metadata=metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def read_tensors_file(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a WeightsError says why it cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        reason = (str(exc).splitlines() or [""])[0][:100]
        raise WeightsError(f"cannot read {what} file {path}: not a safetensors file, or a damaged one "
                           f"({reason})") from None


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextmanager
def file_lock(path: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block; yield whether it is held.

    ``wait=False`` tries once and yields False when another holder has it. The lock is the operating
    system's (``flock`` on POSIX, ``LockFileEx`` on Windows, through :mod:`filelock`): it is released
    when its holder dies, so a killed process never leaves a stale lock. Two locks on one path
    exclude each other within one process too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
