"""benchmarks/recaption.py on a tiny setting (tiny random LLaVA on CPU, 24 samples in 2 shards, batches
of 5: a partial one per shard): the table has the loop's and captionary's rows, and every output, read
back with `webdataset`, holds every input sample once with its original image bytes, a new caption and
the old one."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

from conftest import REPO, SAMPLE_PHOTOS

pytest.importorskip("torch")
pytest.importorskip("transformers")
wds = pytest.importorskip("webdataset")

TOKENS = 5


def load_benchmark(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the script imports bench_models beside it
    spec = importlib.util.spec_from_file_location("recaption_benchmark", REPO / "benchmarks" / "recaption.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "recaption_benchmark", module)
    spec.loader.exec_module(module)
    return module


def samples(folder: Path) -> list[dict]:
    urls = sorted(str(p) for p in folder.glob("*.tar"))
    assert urls, f"no shards in {folder}"
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


@pytest.mark.slow
def test_recaption_benchmark_runs_both_sides_on_the_same_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bench = load_benchmark(monkeypatch)
    executors = ["local", "ray"] if importlib.util.find_spec("ray") else ["local"]
    work = tmp_path / "work"
    argv = ["--backend", "transformers", "--photos", str(SAMPLE_PHOTOS), "--shards", "2", "--copies", "2"]
    argv += ["--tokens", str(TOKENS), "--batch", "5", "--executors", ",".join(executors), "--work", str(work)]
    rows = bench.main(argv)

    printed = capsys.readouterr().out
    labels = [row.run for row in rows]
    assert labels[0] == "loop: webdataset, model, TarWriter (baseline)"
    assert [f"captionary recaption, {e} executor" for e in executors] == labels[2 : 2 + len(executors)]
    assert labels[-1] == "captionary local re-run (all committed)"
    for label in labels:
        assert label in printed
    assert f"command: python benchmarks/recaption.py {shlex.join(argv)}\n" in printed
    assert "CPUs" in printed and "vs loop" in printed

    inputs = {s["__key__"]: s for s in samples(work / "in")}
    assert len(inputs) == 24  # 12 photos x 2 variants, distinct keys
    assert len({s["jpg"] for s in inputs.values()}) == 24  # and distinct images
    for row in rows[:-1]:  # identical work on both sides: every caption exactly TOKENS tokens
        assert (row.images, row.tokens) == (24, 24 * TOKENS), row
    assert (rows[-1].images, rows[-1].tokens) == (24, 0), rows[-1]  # the re-run computed nothing

    for side in ["loop", *executors]:
        written = samples(work / f"out-{side}")
        keys = [s["__key__"].rsplit("/", 1)[-1] for s in written]  # captionary: <input shard>/<key>
        assert sorted(keys) == sorted(inputs), side  # every input sample, once
        for key, sample in zip(keys, written):
            original = inputs[key]
            props = json.loads(sample["json"])
            assert sample["jpg"] == original["jpg"], (side, key)  # the original bytes, untouched
            assert props["caption"] == original["txt"].decode()  # the old caption kept beside
            assert sample["txt"].decode() == props["recaption"] != ""
            assert props["photo"] == json.loads(original["json"])["photo"]
