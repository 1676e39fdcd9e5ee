"""The dataset audit against the least any audit must do: decoding every image once.

``audit_dataset`` reads, hashes (SHA-256 and a perceptual hash of a thumbnail) and decodes each image
on two threads, then compares them all. The baseline opens and decodes every image with PIL on two
threads and does nothing else; both run on a warm page cache (the baseline first, once untimed). The
figure is the ratio of their times: what the audit's checks cost on top of reading the data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from benchkit.data.audit import audit_dataset
from benchkit.data.image_files import image_files
from benchkit.data.image_hashes import forget_facts

from _bench import Figure, timed


def _decode(path: Path) -> None:
    with Image.open(path) as img:
        img.load()


def decode_all(paths: list[Path], workers: int = 2) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_decode, paths))


def audit_speed(root: Path, repeats: int = 2) -> Figure:
    paths = image_files(root, recursive=True)
    decode_all(paths)  # warm the page cache for both sides
    decode_s = min(timed(lambda: decode_all(paths))[0] for _ in range(repeats))
    audit_s, report = min((timed(lambda: forget_facts() or audit_dataset(root)) for _ in range(repeats)),
                          key=lambda t: t[0])  # each audit decodes afresh, not from the facts it remembers
    ratio = audit_s / decode_s
    return Figure("audit_vs_decoding_every_image_time", ratio, "<= 2.5x", ratio <= 2.5, "x",
                  {"images": len(paths), "audit_seconds": audit_s, "decode_seconds": decode_s,
                   "clean": report["clean"]},
                  note=f"{audit_s:.1f} s vs {decode_s:.1f} s for {len(paths)} images")
