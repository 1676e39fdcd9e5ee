"""A dataset format from a user's own file: register it, then list this file under an experiment's `plugins:`."""
import json
from pathlib import Path

from pydantic import BaseModel

from benchkit import register_dataset_format


class GradesOptions(BaseModel):
    file: str = "grades.json"


@register_dataset_format("grades_json")
class GradesJson:
    """{"train": [{"image": "a.png", "grade": 2, "patient": "p7"}, ...], "valid": [...], "test": [...]}"""

    Options = GradesOptions

    @classmethod
    def detect(cls, path: Path) -> bool:
        return (path / "grades.json").is_file()

    def read(self, table) -> None:
        listing = json.loads((table.root / table.options.file).read_text())
        for split, items in listing.items():
            for row, item in enumerate(items, start=1):
                table.add_file(split, item["image"], item["grade"], subject=item.get("patient"),
                               where=table.options.file, line=row, name=item["image"])
