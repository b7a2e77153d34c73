"""What a new user trips on in the first hour (issue 15): each stays fixed."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

from captionary import FilterWhere, Load, PipelineWarning, Resize, Workspace, load_pipeline
from captionary.cli import main
from captionary.core.expression import MAX_DEPTH, Expression, ExpressionError
from captionary.errors import ConfigError
from captionary.review.browse import browse
from captionary.review.decisions import DecisionStore


# --- item 2: one semantics for a missing property, named in the drop reason; names checked first ---
def test_filter_on_a_property_items_lack_drops_them_saying_which(photos, ws_path):
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> FilterWhere(expr="width >= 512 and 'dog' in tags"), progress=False)
        dropped = [item for item in ws.items(include_dropped=True) if item.get("dropped_by")]
    assert summary.errors == [] and summary.step("filter").failed == 0
    assert summary.step("filter").dropped == 12
    assert all(item["drop_reason"].endswith("(tags is missing)") for item in dropped if item.width >= 512)


def test_browse_and_filter_agree_on_missing_properties(photos, ws_path):
    query = "width >= 512 and 'sks' in caption"
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> FilterWhere(expr=query), progress=False)
        kept = sorted(item.id for item in ws.items())
    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)  # every item in item_state, none dropped
    store = DecisionStore(ws_path / "captionary.db", durable=False)
    try:
        matched = sorted(entry["id"] for entry in browse(store, query)["items"])
    finally:
        store.close()
    assert matched == kept and len(kept) == 3


def test_an_unknown_name_is_reported_before_the_run_with_did_you_mean(photos, tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f'workspace: ws\nsteps:\n  - load: {{path: {photos}}}\n  - filter: {{expr: "widht > 5"}}\n'
    )
    with pytest.warns(
        PipelineWarning, match=r"p\.yaml:4: filter: no earlier step writes 'widht'.*did you mean width"
    ):
        load_pipeline(pipeline)
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    assert "warning: " in capsys.readouterr().err


def test_an_unknown_name_is_an_error_when_the_source_says_what_it_provides(photos, ws_path):
    class ClosedLoad(Load):
        open_properties = False

    with Workspace(ws_path) as ws, pytest.raises(ConfigError, match="did you mean caption"):
        ws.run(ClosedLoad(photos) >> FilterWhere(expr="captoin != None"), progress=False)


# --- issue 13 items 9, 10: deep expressions and huge values are one clear error ---
@pytest.mark.parametrize(
    "text", ["not " * 3000 + "x", "-" * 3000 + "x", "+".join(["1"] * 3000), "(" * 3000 + "x" + ")" * 3000]
)
def test_a_3000_deep_expression_is_one_clear_error(text):
    with pytest.raises(ValueError, match=r"nested too deeply|too many nested") as error:
        Expression(text)
    assert not isinstance(error.value, RecursionError) and len(str(error.value)) < 300


def test_the_expression_language_caps_the_values_it_builds():
    with pytest.raises(ExpressionError, match="at most 1,000,000"):
        Expression("'x' * 1000000000")({})
    with pytest.raises(ExpressionError):
        Expression("'%0999999999d' % 1")({})
    assert Expression("len('ab' * 3)")({}) == 6 and MAX_DEPTH >= 50


def test_browse_answers_a_deep_query_with_a_clear_error(ws_path, photos):
    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
    store = DecisionStore(ws_path / "captionary.db", durable=False)
    try:
        with pytest.raises(ValueError, match="nested too deeply"):
            browse(store, "not " * 3000 + "x")
        with pytest.raises(ValueError, match="at most"):
            browse(store, "'x' * 1000000000 == name")
    finally:
        store.close()


# --- item 4: captionary items, and the run's note on dropped items ---
def test_items_lists_dropped_and_failed_with_reasons(photos, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes(b"not an image at all")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"workspace: ws\nsteps:\n  - load: {{path: {photos}}}\n  - filter_by_size: {{min_edge: 512}}\n"
    )
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "duck_toy/01: filter_by_size: shorter edge 400 px < min_edge 512" in out
    assert "captionary items" in out and "--dropped" in out
    assert main(["items", str(tmp_path / "ws"), "--dropped", "--json"]) == 0
    [dropped] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert dropped["name"] == "duck_toy/01" and dropped["step"] == "filter_by_size"
    assert dropped["properties"]["width"] == 400
    assert main(["items", str(tmp_path / "ws"), "--failed"]) == 0
    assert "broken.jpg" in capsys.readouterr().out
    assert main(["items", str(tmp_path / "ws"), "--where", "caption != None"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


# --- item 5: only run creates a workspace ---
@pytest.mark.parametrize("command", [["gc"], ["status"], ["serve"], ["items"]])
def test_commands_other_than_run_never_create_a_workspace(command, tmp_path, capsys):
    typo = tmp_path / "wss"
    assert main([*command, str(typo)]) == 2
    assert "is not a captionary workspace" in capsys.readouterr().err
    assert not typo.exists()


# --- item 6: gc frees items that left, keeps decisions, reports bytes ---
def test_gc_frees_an_item_deleted_from_the_source(photos, ws_path, capsys):
    gone = photos / "teapot" / "01.jpg"
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Resize(max_edge=64), progress=False)
        [item_id] = [i.id for i in ws.items() if i.name == "teapot/01"]
        ws.db.execute("INSERT INTO decisions VALUES ('human_filter', ?, '\"keep\"', 1.0)", (item_id,))
        gone.unlink()
        ws.run(Load(photos) >> Resize(max_edge=64), progress=False)
        assert ws.gc(keep_runs=2).items_freed == 0  # one run has not seen it; two are asked for
        report = ws.gc()
        assert report.items_freed == 1 and report.decisions_kept == 1 and report.freed_bytes > 0
        assert item_id not in set(ws.blobs.digests())
        assert ws.db.execute("SELECT count(*) FROM results WHERE item = ?", (item_id,)).fetchone()[0] == 0
        assert ws.db.execute("SELECT count(*) FROM decisions WHERE item = ?", (item_id,)).fetchone()[0] == 1
        again = ws.run(Load(photos) >> Resize(max_edge=64), progress=False)
    assert again.computed == 0 and len(list(Workspace(ws_path).items())) == 11


def test_gc_frees_an_item_whose_record_an_earlier_gc_pruned(photos, ws_path):
    """Deleted, then gc (the record of the gone file is pruned; the last run still had the item),
    then a run (no source has it on record: it is not seen), then gc: it is freed."""
    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
        (photos / "cat" / "00.jpg").unlink()
        first = ws.gc()
        assert first.items_freed == 0 and first.pruned_sources == 1
        ws.run(Load(photos), progress=False)
        assert ws.gc().items_freed == 1
        assert ws.db.execute("SELECT count(*) FROM items").fetchone()[0] == 11


def test_gc_keeps_items_another_pipeline_reads(photos, tmp_path, ws_path):
    other = tmp_path / "other"
    shutil.copytree(photos / "cat", other)
    with Workspace(ws_path) as ws:
        ws.run(Load(photos / "dog"), progress=False)
        ws.run(Load(other), progress=False)  # a second pipeline in the same workspace
        assert ws.gc().items_freed == 0
        assert ws.run(Load(photos / "dog"), progress=False).step("load").cached == 5


# --- item 7: a missing extra names the install line ---
def test_a_missing_extra_names_the_command_and_the_install_line(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    assert main(["preview", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "captionary preview needs torch" in err and "pip install 'captionary[loader]'" in err


# --- item 8: sampler.report() counts every batch an epoch yields ---
def test_sampler_report_counts_the_smaller_last_batch():
    from captionary.loader.sampler import BucketBatchSampler

    sampler = BucketBatchSampler([(512, 512)] * 11, batch_size=2, seed=0)
    batches = list(sampler)
    assert len(batches) == 6
    assert "6 batch(es) per epoch" in sampler.report()
    assert sampler.report().splitlines()[1].split()[2] == "6"


# --- item 9: save anywhere: items pass through unchanged ---
def test_save_in_the_middle_writes_each_steps_results(photos, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"workspace: ws\nsteps:\n  - load: {{path: {photos}}}\n"
        "  - set_caption: {template: 'step one {name}'}\n"
        "  - save: {path: step1, format: jsonl}\n"
        "  - resize: {max_edge: 64}\n"
        "  - map_caption: {prefix: 'final '}\n"
        "  - save: {path: out, format: jsonl}\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PipelineWarning)
        spec = load_pipeline(pipeline)
    with Workspace(spec.workspace) as ws:
        summary = ws.run(spec.pipeline, progress=False)
        again = ws.run(spec.pipeline, progress=False)
    assert summary.step("save").n_out == 12 and summary.step("save#2").n_out == 12
    middle = [json.loads(line) for line in (tmp_path / "step1" / "metadata.jsonl").read_text().splitlines()]
    final = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert {row["caption"] for row in middle} == {f"step one {row['image_path'][:-4]}" for row in middle}
    assert all(row["caption"].startswith("final step one ") and row["width"] <= 64 for row in final)
    assert all(row["width"] > 64 for row in middle)
    assert again.computed == 0


def test_the_review_app_without_fastapi_names_the_extra(monkeypatch, photos, ws_path, capsys):
    import sys

    with Workspace(ws_path) as ws:
        ws.run(Load(photos), progress=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", str(ws_path)]) == 2
    err = capsys.readouterr().err
    assert "the review app needs fastapi" in err and "pip install 'captionary[review]'" in err


# --- item 8: preview writes under the workspace (or a temp folder), never the current folder ---
def test_preview_of_a_workspace_writes_inside_it(photos, ws_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Resize(max_edge=256), progress=False)
    monkeypatch.chdir(tmp_path)
    assert main(["preview", str(ws_path), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert (ws_path / "preview.png").is_file() and f"wrote {ws_path / 'preview.png'}" in out
    assert not (tmp_path / "preview.png").exists()
    assert "2 images of bucket" in out  # a full batch
