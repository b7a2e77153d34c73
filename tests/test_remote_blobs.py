"""Blobs on an fsspec URL: the workspace keeps only its database; pool workers (other processes) read
the blobs from the URL. Tested with `file://` (the only file system reachable here), through fsspec."""

from __future__ import annotations

import textwrap

import pytest

from captionary import Load, Resize, Save, Workspace, WorkspaceError
from captionary.cli import main
from conftest import tree

pytest.importorskip("fsspec")


def blob_files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.parent.name != "tmp")


def assert_same_output_with_blobs_at(url: str, photos, tmp_path) -> None:
    """`load >> resize >> save` with a local blob store and with one at `url` (workspaces `ws-local`,
    `ws-remote`): both complete, a re-run computes nothing, and the exports are byte-identical."""
    outputs = {}
    for name, blobs in (("local", None), ("remote", url)):
        with Workspace(tmp_path / f"ws-{name}", blobs=blobs) as ws:
            pipeline = Load(photos) >> Resize(max_edge=80) >> Save(tmp_path / f"out-{name}")
            first = ws.run(pipeline, progress=False, workers=2)  # workers open the store from its URL
            again = ws.run(pipeline, progress=False, workers=2)
        assert first.step("resize").computed == 12 and again.step("resize").computed == 0
        assert not first.errors
        outputs[name] = tree(tmp_path / f"out-{name}")
    assert outputs["local"] == outputs["remote"]


def test_a_pipeline_with_blobs_at_a_url_gives_the_same_output(photos, tmp_path):
    remote = tmp_path / "bucket" / "objects"
    url = f"file://{remote}"
    assert_same_output_with_blobs_at(url, photos, tmp_path)
    assert len(blob_files(remote)) == 12  # the originals live at the URL
    assert blob_files(tmp_path / "ws-remote" / "objects") == []  # and not in the workspace

    with Workspace(tmp_path / "ws-remote") as ws:  # the URL is remembered
        assert ws.blobs.root == url
        orphan = ws.blobs.put(b"nothing refers to me")
        report = ws.gc()
        assert orphan not in ws.blobs
    assert report.removed == 1 and report.kept == 12
    assert len(blob_files(remote)) == 12


def test_the_blob_store_cannot_move_silently(photos, tmp_path):
    with Workspace(tmp_path / "ws", blobs=f"file://{tmp_path / 'a'}"):
        pass
    with pytest.raises(WorkspaceError, match="keeps its blobs at file://"):
        Workspace(tmp_path / "ws", blobs=f"file://{tmp_path / 'b'}")
    with Workspace(tmp_path / "local") as ws:
        ws.run(Load(photos), progress=False)
    with pytest.raises(WorkspaceError, match="already stores its blobs in objects/"):
        Workspace(tmp_path / "local", blobs=f"file://{tmp_path / 'c'}")


def test_yaml_names_the_blob_url(photos, tmp_path, capsys):
    remote = tmp_path / "store"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        textwrap.dedent(f"""\
        workspace: ws
        blobs: file://{remote}
        steps:
          - load: {{path: {photos}}}
          - save: {{path: out}}
        """)
    )
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    assert len(blob_files(remote)) == 12
    assert (tmp_path / "ws" / "blobs.url").read_text().strip() == f"file://{remote}"
    pipeline.write_text(pipeline.read_text().replace(f"file://{remote}", "not-a-url"))
    assert main(["run", str(pipeline)]) == 2
    assert "`blobs` must be an fsspec URL" in capsys.readouterr().err
