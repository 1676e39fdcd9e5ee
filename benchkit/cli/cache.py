"""What the cache directory holds (decoded images, frozen-backbone features), and clearing it.

Both caches only grow: a changed image file or a new backbone adds entries and nothing removes old
ones. ``benchkit cache info`` shows their size; ``benchkit cache clear`` deletes them under the same
locks the writers take, so a run that is filling the cache at that moment is never cut in half.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchkit.data.image_cache import IMAGES_FOLDER, ImageCache
from benchkit.training.feature_cache import FEATURES_FOLDER
from benchkit.io import file_lock


def cache_usage(root: Path) -> dict:
    """``{"cache_dir", "images": [...], "features": [...], "total_bytes"}``, one item per cache entry."""
    root = Path(root)
    images = []
    for folder in sorted((root / IMAGES_FOLDER).glob("*px-*")):
        cache = ImageCache(root, int(folder.name.split("px-")[0]))
        if cache.folder != folder or not cache.index_path.is_file():
            continue
        index = cache.read_index()
        images.append({"folder": folder.name, "size": cache.size, "images": index["rows"],
                       "bytes": _bytes(cache.pixels_path, cache.index_path)})
    features = []
    for meta in sorted((root / FEATURES_FOLDER).glob("*.json")):
        array = meta.with_suffix(".npy")
        if array.is_file():
            description = json.loads(meta.read_text(encoding="utf-8"))
            features.append({"key": meta.stem, **description, "bytes": _bytes(array, meta)})
    features.sort(key=lambda item: (str(item.get("backbone")), str(item.get("size")), str(item.get("split")),
                                    item["key"]))
    total = sum(item["bytes"] for item in images + features)
    return {"cache_dir": str(root), "images": images, "features": features, "total_bytes": total}


def clear_cache(root: Path, images: bool = True, features: bool = True) -> int:
    """Delete the chosen caches' entries (each under its writer's lock); return the bytes freed."""
    usage = cache_usage(root)
    freed = 0
    if images:
        for item in usage["images"]:
            cache = ImageCache(root, item["size"])
            with file_lock(cache.folder / ".lock"):
                freed += _remove(cache.index_path, cache.pixels_path)
    if features:
        folder = Path(root) / FEATURES_FOLDER
        for item in usage["features"]:
            key = item["key"]
            with file_lock(folder / f"{key}.lock"):
                freed += _remove(folder / f"{key}.json", folder / f"{key}.npy")
    return freed


def _bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def _remove(*paths: Path) -> int:
    """Delete ``paths`` (the index first, so no reader trusts rows that are going away)."""
    freed = _bytes(*paths)
    for path in paths:
        path.unlink(missing_ok=True)
    return freed
