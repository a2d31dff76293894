"""``STUDY/status.json``: what each stage and arm of a study did, and the inputs it did it with.

A stage is skipped on a re-run when its recorded fingerprint (``digest`` of its resolved inputs)
is unchanged and it finished; writes are atomic so a killed study never leaves half a book.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
DONE = "done"


@dataclass(frozen=True)
class StageOutcome:
    status: str  # "done" | "failed: <reason>"
    seconds: float
    skipped: bool = False  # finished earlier with the same inputs


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class StatusBook:
    """``STUDY/status.json``: per stage and arm, status, seconds and input fingerprint."""

    def __init__(self, study_dir: Path, name: str):
        self.path = study_dir / STATUS_FILE
        self.data: dict[str, Any] = {"study": name, "stages": {}, "arms": {}}
        if self.path.is_file():
            try:
                self.data.update(json.loads(self.path.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                log.warning("%s is unreadable; starting a fresh status book", self.path)

    def key(self, section: str, name: str) -> str | None:
        entry = self.data[section].get(name) or {}
        return entry.get("key") if entry.get("status") == DONE else None

    def record(self, section: str, name: str, outcome: StageOutcome, key: str | None) -> None:
        self.data[section][name] = {
            "status": outcome.status,
            "seconds": round(outcome.seconds, 3),
            "skipped": outcome.skipped,
            "key": key,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.data["updated_at"] = self.data[section][name]["at"]
        write_json(self.path, self.data)
