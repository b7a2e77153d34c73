"""The rows of a JSONL or CSV/TSV manifest, each with where it stands (`meta.csv:7`): one reader for
the `load_manifest` source and the training loader. A row that cannot be used comes as the reason
(a string) in its place, so a caller fails that row alone or stops, as it chooses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Row = dict[str, Any] | str
"""A row's columns, or why the line is unusable."""


def jsonl_rows(path: Path, label: str) -> Iterator[tuple[str, Row]]:
    """(`label:line`, row) per non-blank line; a line that is not a JSON object comes as the reason."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield f"{label}:{number}", _json_object(line)


def csv_rows(path: Path, label: str, delimiter: str = ",") -> Iterator[tuple[str, Row]]:
    """(`label:line`, row) per record under the header; a line without the header's fields comes as
    the reason."""
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for row in reader:
            where = f"{label}:{reader.line_num}"
            if None in row or None in row.values():
                yield where, f"malformed line: not the {len(reader.fieldnames or [])} fields of the header"
            else:
                yield where, row


def _json_object(line: str) -> Row:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg}"
    return value if isinstance(value, dict) else "not a JSON object"
