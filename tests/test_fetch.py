"""``benchkit data fetch`` against a local HTTP server on 127.0.0.1 (never a real network host)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchkit.cli import main as cli_main
from benchkit.data.fetch import FetchError, dataset_complete, fetch_dataset

FILES = {
    "train/_classes.csv": b"filename, LEVEL_2, LEVEL_3\n1-Front.jpg,1,0\n2-Back.jpg,0,1\n",
    "train/1-Front.jpg": b"jpeg bytes one",
    "train/2-Back.jpg": b"jpeg bytes two",
    "valid/_classes.csv": b"filename, LEVEL_2, LEVEL_3\n3-Left.jpg,0,1\n",
    "valid/3-Left.jpg": b"jpeg bytes three",
    "README.dataset.txt": b"test archive",
}


def _zip(files: dict[str, bytes], manifest: bool = False, prefix: str = "") -> bytes:
    files = dict(files)
    if manifest:
        files["MANIFEST.sha256"] = "".join(f"{hashlib.sha256(v).hexdigest()}  ./{k}\n"
                                           for k, v in files.items()).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(prefix + name), data)
    return buffer.getvalue()


class _Server:
    """Serves ``routes[path] = (status, content type, body, declared length or None)`` and logs requests."""

    def __init__(self):
        self.routes: dict[str, tuple[int, str, bytes, int | None]] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                status, kind, body, declared = owner.routes.get(self.path.split("?")[0],
                                                                (404, "text/plain", b"no", None))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(declared if declared is not None else len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, kind: str = "application/zip", status: int = 200,
              declared: int | None = None) -> str:
        self.routes[path] = (status, kind, body, declared)
        return self.base + path

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_verifies_and_places_the_archive(server, tmp_path):
    archive = _zip(FILES, manifest=True)
    url = server.serve("/hair-loss.zip", archive)
    dest = tmp_path / "data" / "hair-loss"
    assert fetch_dataset("hair-loss", dest, url=url, sha256=hashlib.sha256(archive).hexdigest().upper(),
                         progress=False) == dest
    assert (dest / "train" / "1-Front.jpg").read_bytes() == b"jpeg bytes one"
    assert (dest / "MANIFEST.sha256").is_file() and dataset_complete(dest)
    assert _leftovers(dest.parent) == []


def test_a_complete_destination_is_left_alone_unless_forced(server, tmp_path):
    url = server.serve("/a.zip", _zip(FILES))
    dest = tmp_path / "hl"
    fetch_dataset("hair-loss", dest, url=url, progress=False)
    (dest / "marker").write_text("old")
    fetch_dataset("hair-loss", dest, url=url, progress=False)
    assert len(server.requests) == 1 and (dest / "marker").exists()
    fetch_dataset("hair-loss", dest, url=url, force=True, progress=False)
    assert len(server.requests) == 2 and not (dest / "marker").exists()
    assert dataset_complete(dest) and _leftovers(tmp_path) == []


def test_an_incomplete_destination_is_not_overwritten_silently(server, tmp_path):
    dest = tmp_path / "hl"
    (dest / "train").mkdir(parents=True)
    with pytest.raises(FetchError, match="not a complete dataset"):
        fetch_dataset("hair-loss", dest, url=server.serve("/a.zip", _zip(FILES)), progress=False)
    assert server.requests == []


def test_archive_checksum_mismatch_writes_nothing(server, tmp_path):
    url = server.serve("/a.zip", _zip(FILES))
    dest = tmp_path / "hl"
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch_dataset("hair-loss", dest, url=url, sha256="0" * 64, progress=False)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_manifest_mismatch_writes_nothing(server, tmp_path):
    files = dict(FILES)
    good = hashlib.sha256(FILES["train/2-Back.jpg"]).hexdigest()
    files["MANIFEST.sha256"] = (f"{hashlib.sha256(b'other').hexdigest()}  ./train/1-Front.jpg\n"
                                f"{good}  ./train/2-Back.jpg\n"
                                f"{'1' * 64}  ./train/missing.jpg\n").encode()
    dest = tmp_path / "hl"
    with pytest.raises(FetchError, match=r"2 file\(s\): train/1-Front.jpg: checksum mismatch; "
                                         r"train/missing.jpg: missing"):
        fetch_dataset("hair-loss", dest, url=server.serve("/a.zip", _zip(files)), progress=False)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing(server, tmp_path):
    archive = _zip(FILES)
    url = server.serve("/cut.zip", archive[: len(archive) // 2], declared=len(archive))
    dest = tmp_path / "hl"
    with pytest.raises(FetchError, match=f"broke off.*{len(archive) // 2} of {len(archive)} bytes"):
        fetch_dataset("hair-loss", dest, url=url, progress=False)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_no_network_says_how_to_place_the_data(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    dest = tmp_path / "hl"
    with pytest.raises(FetchError) as caught:
        fetch_dataset("hair-loss", dest, url=f"http://127.0.0.1:{closed_port}/x.zip", timeout=5,
                      progress=False)
    message = str(caught.value)
    assert "cannot reach" in message and "../shared/data/hair-loss" in message
    assert "train/_classes.csv" in message
    assert not dest.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("evil", ["../evil.txt", "train/../../evil.txt", "/tmp/benchkit-abs-evil.txt",
                                  "C:/evil.txt"])
def test_members_escaping_the_destination_are_refused(server, tmp_path, evil):
    files = dict(FILES)
    files[evil] = b"owned"
    dest = tmp_path / "inner" / "hl"
    with pytest.raises(FetchError, match="outside the destination"):
        fetch_dataset("hair-loss", dest, url=server.serve("/evil.zip", _zip(files)), progress=False)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "inner" / "evil.txt").exists()
    assert not Path("/tmp/benchkit-abs-evil.txt").exists()
    assert _leftovers(tmp_path / "inner") == []


def test_a_single_top_folder_in_the_archive_is_unwrapped(server, tmp_path):
    dest = tmp_path / "hl"
    url = server.serve("/w.zip", _zip(FILES, prefix="hair-loss-1/"))
    fetch_dataset("hair-loss", dest, url=url, progress=False)
    assert (dest / "valid" / "3-Left.jpg").is_file()


def test_an_archive_without_a_dataset_is_refused(server, tmp_path):
    dest = tmp_path / "hl"
    with pytest.raises(FetchError, match="does not hold a dataset"):
        fetch_dataset("hair-loss", dest, url=server.serve("/n.zip", _zip({"notes.txt": b"x"})),
                      progress=False)
    with pytest.raises(FetchError, match="not a zip archive"):
        fetch_dataset("hair-loss", dest, url=server.serve("/h.zip", b"<html>login</html>"), progress=False)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_roboflow_export_link_is_followed_with_the_key_from_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOFLOW_API_KEY", "secret-key-123")
    link = server.serve("/signed/export.zip", _zip(FILES))
    server.serve("/uze/hair-loss-nq8hh/1/multiclass", json.dumps({"export": {"link": link}}).encode(),
                 kind="application/json")
    dest = tmp_path / "hl"
    fetch_dataset("hair-loss", dest, api_base=server.base, progress=False)
    assert server.requests[0] == "/uze/hair-loss-nq8hh/1/multiclass?api_key=secret-key-123"
    assert server.requests[1] == "/signed/export.zip" and dataset_complete(dest)


def test_errors_never_show_the_api_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOFLOW_API_KEY", "secret-key-123")
    server.serve("/uze/hair-loss-nq8hh/1/multiclass", b"denied", kind="text/plain", status=403)
    with pytest.raises(FetchError) as caught:
        fetch_dataset("hair-loss", tmp_path / "hl", api_base=server.base, progress=False)
    assert "HTTP 403" in str(caught.value) and "secret-key-123" not in str(caught.value)


def test_without_key_or_url_the_error_says_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBOFLOW_API_KEY", raising=False)
    with pytest.raises(FetchError, match="ROBOFLOW_API_KEY.*--url.*../shared/data/hair-loss"):
        fetch_dataset("hair-loss", tmp_path / "hl", progress=False)
    with pytest.raises(FetchError, match="no download source known for 'faces'"):
        fetch_dataset("faces", tmp_path / "faces", progress=False)


def test_fetch_command_line(server, tmp_path, capsys):
    url = server.serve("/a.zip", _zip(FILES))
    dest = tmp_path / "hl"
    assert cli_main(["data", "fetch", "hair-loss", "--dest", str(dest), "--url", url]) == 0
    assert dataset_complete(dest)
    assert cli_main(["data", "fetch", "hair-loss", "--dest", str(dest), "--url", url]) == 0
    assert "already complete" in capsys.readouterr().err
    assert cli_main(["data", "fetch", "hair-loss", "--dest", str(tmp_path / "b"), "--url", url,
                          "--sha256", "ab" * 32]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
