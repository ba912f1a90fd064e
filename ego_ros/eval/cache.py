"""Per-sample result cache: one JSON object per line, appended and flushed after every sample.

A run that is interrupted loses at most the line being written; the next run with the same settings
reads the file, skips every sample already there and appends the rest. Line shape::

    {"key": "<task>|<image>|<concept>|<item>|<method>|<settings hash>",
     "task": "recognition", "image": "test/bo/0.png", "concept": "bo", "item": "",
     "method": "ego", "settings": "3f2a...", "result": {...}, "seconds": 0.41, "time": 1732662000.0}

``result`` per task: ``recognition`` {"present", "probability"}; ``vqa`` / ``video_qa`` {"prediction",
"answer_concepts"}; ``captioning`` {"caption", "answer_concepts"}; ``introduce`` {"seconds",
"num_tokens", "k_c", "alpha", "keywords"}; ``judge:<judge id>`` {"correct", "score", "parsed", "raw"}.
Lines of other settings are kept (several runs may share a folder) but ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CACHE_FILE = "cache.jsonl"


class CacheError(RuntimeError):
    """The cache file holds a malformed line that is not the last one."""


def settings_hash(settings: Mapping[str, Any]) -> str:
    """Short stable hash of the settings that change results (canonical JSON, SHA-256, 16 hex digits)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def make_key(task: str, image: str, concept: str, method: str, settings: str, item: str = "") -> str:
    """Cache key of one sample: task, image, concept, item discriminator, method and settings hash."""
    return "|".join((task, image, concept, item, method, settings))


def item_id(text: str) -> str:
    """Short discriminator for several items on one image (e.g. two questions)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


class ResultCache:
    """Append-only JSONL store of per-sample results, read back as ``{key: record}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped_partial_line = False
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as f:
            lines = f.read().split("\n")
        # The file ends with "\n" after each complete record; a last piece without it is a torn write.
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                    raise ValueError("not an object with a 'key'")
            except (json.JSONDecodeError, ValueError) as exc:
                if number == len(lines):
                    self.dropped_partial_line = True
                    continue
                raise CacheError(f"{self.path}:{number}: malformed cache line ({exc})") from exc
            self.records[record["key"]] = record
        if self.dropped_partial_line:
            self._truncate_torn_tail(lines)

    def _truncate_torn_tail(self, lines: list[str]) -> None:
        # Rewrite without the torn line so the next append starts on a fresh line.
        keep = "".join(line + "\n" for line in lines[:-1] if line.strip())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(keep, encoding="utf-8")
        os.replace(tmp, self.path)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.records[key]

    def put(
        self,
        key: str,
        *,
        task: str,
        image: str,
        concept: str,
        method: str,
        settings: str,
        result: Mapping[str, Any],
        seconds: float | None = None,
        item: str = "",
    ) -> dict[str, Any]:
        """Append one record and flush it to disk before returning."""
        record = {
            "key": key,
            "task": task,
            "image": image,
            "concept": concept,
            "item": item,
            "method": method,
            "settings": settings,
            "result": dict(result),
            "seconds": seconds,
            "time": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False, default=_json_default)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[key] = record
        return record


def _json_default(value: Any) -> Any:
    # numpy scalars and paths appear in engine results; store them as plain JSON values.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
