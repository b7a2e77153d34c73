"""A captionary workspace read directly: the items of its latest complete run."""

from __future__ import annotations

from pathlib import Path

from captionary.loader.records import Record, WorkspaceImage, captions_of


def read_workspace(root: Path, *, caption_column: str | None = None, **_: object) -> list[Record]:
    from captionary.core.workspace import Workspace

    records = []
    with Workspace(root) as ws:
        for item in ws.items():
            if not item.has_image:  # a prompt no step has given pixels yet: nothing to train on
                continue
            props = dict(item.props)
            captions = captions_of(props.pop(caption_column or "caption", None))
            size = (props["width"], props["height"]) if "width" in props and "height" in props else None
            records.append(
                Record(
                    item.id,
                    WorkspaceImage(str(root.resolve()), item),
                    captions,
                    size,
                    f"{root}: {item.name}",
                    props,
                )
            )
    return records
