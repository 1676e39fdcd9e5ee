"""``benchkit data fetch``: download a dataset archive, verify it and put it in place all at once.

The archive is streamed to a temporary file beside ``dest``, checked (archive sha256 when given,
and every file against a ``MANIFEST.sha256`` inside the archive when there is one), extracted into a
temporary folder beside ``dest`` with every member path checked (no ``..``, no absolute paths), and
only then renamed to ``dest``. Any failure or interruption removes the temporary files, so ``dest``
is either complete or untouched.

Without ``url`` the Roboflow export of a known dataset is used: the REST API answers
``GET https://api.roboflow.com/<workspace>/<project>/<version>/<format>?api_key=KEY`` with JSON whose
``export.link`` is the zip, which needs a Roboflow API key in ``$ROBOFLOW_API_KEY``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from benchkit.data.datasets import SPLITS
from benchkit.errors import DataError

ROBOFLOW_API = "https://api.roboflow.com"
_CHUNK = 1 << 16
_MAX_JSON = 1 << 20


@dataclass(frozen=True)
class RoboflowExport:
    """Where a dataset lives on Roboflow Universe and in which export format benchkit reads it."""

    workspace: str
    project: str
    version: int
    export_format: str = "multiclass"
    page: str = ""

    def api_url(self, api_base: str = ROBOFLOW_API) -> str:
        return f"{api_base.rstrip('/')}/{self.workspace}/{self.project}/{self.version}/{self.export_format}"


KNOWN_DATASETS = {
    "hair-loss": RoboflowExport("uze", "hair-loss-nq8hh", 1, "multiclass",
                                "https://universe.roboflow.com/uze/hair-loss-nq8hh"),
}


class FetchError(DataError):
    """A download, checksum or archive problem; nothing was written at the destination."""


def fetch_dataset(name: str = "hair-loss", dest: Path = Path("data/hair-loss"), url: str | None = None,
                  sha256: str | None = None, api_key_env: str = "ROBOFLOW_API_KEY", timeout: float = 30,
                  *, force: bool = False, api_base: str = ROBOFLOW_API, progress: bool = True) -> Path:
    """Download, verify and extract a dataset to ``dest``; returns ``dest``.

    ``url`` is a zip archive or a Roboflow export API URL (its JSON answer is followed). A complete
    ``dest`` is left alone unless ``force``; an incomplete one is an error unless ``force``.
    """
    dest = Path(dest)
    if dest.exists() and not force:
        if dataset_complete(dest):
            _say(progress, f"{dest} is already complete; nothing to do (use --force to fetch again)")
            return dest
        raise FetchError(f"{dest} exists but is not a complete dataset (no <split>/_classes.csv with its "
                         f"images); remove it or use --force")
    source = url or _roboflow_url(name, api_key_env, api_base, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    archive = staging = None
    try:
        handle, archive_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".zip.part", dir=dest.parent)
        os.close(handle)
        archive = Path(archive_name)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extract", dir=dest.parent))
        _download(source, archive, timeout, progress, dest)
        if sha256:
            _verify_archive(archive, sha256)
        extracted = _extract(archive, staging)
        _verify_manifest(extracted)
        if not dataset_complete(extracted):
            raise FetchError(f"the archive from {_redact(source)} does not hold a dataset: expected "
                             f"{'/'.join(SPLITS)} folders with _classes.csv and their images")
        _replace(extracted, dest)
    finally:
        if archive is not None:
            archive.unlink(missing_ok=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    _say(progress, f"{name}: extracted to {dest}")
    return dest


def dataset_complete(root: Path) -> bool:
    """True when at least one split has ``_classes.csv`` and every file it lists exists."""
    root = Path(root)
    found = False
    for split in SPLITS:
        csv_path = root / split / "_classes.csv"
        if not csv_path.is_file():
            continue
        found = True
        lines = csv_path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[1:]
        names = [line.split(",", 1)[0].strip() for line in lines if line.strip()]
        if not names or any(not (root / split / n).is_file() for n in names):
            return False
    return found


def how_to_place_by_hand(dest: Path) -> str:
    """Instructions for getting the data without network access."""
    return (f"To place the data by hand, copy or link an existing export to {dest} (on the project's "
            f"machines one lies at ../shared/data/hair-loss beside the checkout; or point data.root at it "
            f"without copying), so that {dest}/train/_classes.csv, {dest}/valid/_classes.csv and "
            f"{dest}/test/_classes.csv exist with their images beside them. See data/README.md.")


def _say(enabled: bool, message: str) -> None:
    if enabled:
        from rich.console import Console
        Console(stderr=True).print(message, markup=False, highlight=False)


def _roboflow_url(name: str, api_key_env: str, api_base: str, dest: Path) -> str:
    export = KNOWN_DATASETS.get(name)
    if export is None:
        raise FetchError(f"no download source known for {name!r} (known: {', '.join(KNOWN_DATASETS)}); "
                         f"give --url of a zip archive")
    key = os.environ.get(api_key_env)
    if not key:
        raise FetchError(f"fetching {name!r} from Roboflow needs an API key in ${api_key_env} (free account: "
                         f"sign in at https://app.roboflow.com, then Settings > API Keys; dataset page "
                         f"{export.page}), or give --url of an export zip. " + how_to_place_by_hand(dest))
    return export.api_url(api_base) + "?" + urllib.parse.urlencode({"api_key": key})


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, "***" if k.lower() in {"api_key", "key", "token"} else v)
             for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="*")))


def _open(url: str, timeout: float, dest: Path):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "benchkit"}),
                                      timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{_redact(url)} answered HTTP {exc.code} {exc.reason}. "
                         + how_to_place_by_hand(dest)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach {_redact(url)} ({reason}); no network? "
                         + how_to_place_by_hand(dest)) from None


def _download(url: str, target: Path, timeout: float, progress: bool, dest: Path) -> None:
    response = _open(url, timeout, dest)
    with response:
        if "json" in (response.headers.get("Content-Type") or ""):
            link = _export_link(response.read(_MAX_JSON), url)
            return _download(link, target, timeout, progress, dest)
        expected = response.headers.get("Content-Length")
        expected = int(expected) if expected and expected.isdigit() else None
        received = 0
        try:
            with open(target, "wb") as out, _progress_bar(progress, expected) as advance:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"download from {_redact(url)} broke off after {received} bytes "
                             f"({type(exc).__name__}: {exc}); nothing was written to {dest}") from None
    if expected is not None and received != expected:
        raise FetchError(f"download from {_redact(url)} broke off: {received} of {expected} bytes; "
                         f"nothing was written to {dest}")


def _export_link(body: bytes, url: str) -> str:
    try:
        answer = json.loads(body)
        link = answer["export"]["link"] if "export" in answer else answer["link"]
    except (ValueError, KeyError, TypeError):
        raise FetchError(f"{_redact(url)} answered JSON without export.link: {body[:300]!r}") from None
    if not isinstance(link, str) or not link.startswith(("https://", "http://")):
        raise FetchError(f"{_redact(url)} answered an export link that is not a URL: {link!r}")
    return link


class _progress_bar:
    """A rich progress bar over bytes (silent when disabled); yields ``advance(n)``."""

    def __init__(self, enabled: bool, total: int | None):
        self.enabled, self.total, self.bar = enabled, total, None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)
        self.bar = Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), transient=True)
        self.bar.start()
        task = self.bar.add_task("download", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_archive(archive: Path, expected: str) -> None:
    actual = _file_sha256(archive)
    if actual.lower() != expected.strip().lower():
        raise FetchError(f"archive checksum mismatch: sha256 {actual}, expected {expected.strip()}; "
                         f"nothing was written")


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts or (
            path.parts and ":" in path.parts[0]):
        raise FetchError(f"archive member {name!r} would be written outside the destination; "
                         f"archive refused, nothing was written")
    return path


def _extract(archive: Path, staging: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            paths = [_safe_member(m.filename) for m in members]
            for member, rel in zip(members, paths):
                target = staging.joinpath(*rel.parts)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"the download is not a zip archive ({exc}); nothing was written") from None
    entries = [p for p in staging.iterdir() if not p.name.startswith("__MACOSX")]
    if len(entries) == 1 and entries[0].is_dir() and not any((staging / s).is_dir() for s in SPLITS):
        return entries[0]
    return staging


def _verify_manifest(root: Path) -> None:
    manifest = root / "MANIFEST.sha256"
    if not manifest.is_file():
        return
    bad = []
    for line_no, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*").removeprefix("./")
        if len(digest) != 64 or not name:
            bad.append(f"line {line_no}: not '<sha256>  <path>'")
            continue
        rel = _safe_member(name)
        path = root.joinpath(*rel.parts)
        if not path.is_file():
            bad.append(f"{rel}: missing")
        elif _file_sha256(path) != digest.lower():
            bad.append(f"{rel}: checksum mismatch")
    if bad:
        listing = "; ".join(bad[:10]) + (f"; ... {len(bad)} in all" if len(bad) > 10 else "")
        raise FetchError(f"MANIFEST.sha256 check failed for {len(bad)} file(s): {listing}; "
                         f"nothing was written")


def _replace(extracted: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / dest.name)
    try:
        os.replace(extracted, dest)
    except OSError:
        if old is not None:
            os.replace(old / dest.name, dest)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
