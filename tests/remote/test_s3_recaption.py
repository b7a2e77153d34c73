"""`captionary recaption s3://bucket/shards-{0..1}.tar`: shards read from S3 (moto's server), images
referenced in place, a tiny random LLaVA's captions written to local shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import s3_server

from conftest import REPO

s3 = s3_server.s3
s3_endpoint = s3_server.s3_endpoint
pytest.importorskip("torch")
pytest.importorskip("transformers")
wds = pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.append(str(REPO / "tests" / "backends"))  # the tiny model builders live beside their tests
    from tiny_models import tiny_model

    return tiny_model("llava", tmp_path_factory.mktemp("tiny_models"))


def recaption(shards: str, out: Path, model: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "captionary.cli", "recaption", shards, "--model", str(model), "--in-place"]
    args += ["--backend", "transformers", "--out", str(out), "--shard-size", "5", "--max-tokens", "4"]
    args += ["--batch-size", "6", "--prompt", "Describe.", "--no-progress"]
    env = {"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    env |= {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # the endpoint and keys
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_recaption_reads_shards_from_s3(photos, tmp_path, s3, llava):
    files = sorted(photos.rglob("*.jpg"))
    originals = {}
    for n, chunk in enumerate((files[:6], files[6:])):
        local = tmp_path / f"shards-{n}.tar"
        with wds.TarWriter(str(local)) as sink:
            for file in chunk:
                key = f"{file.parent.name}_{file.stem}"
                sink.write({"__key__": key, "jpg": file.read_bytes()})
                originals[f"shards-{n}/{key}"] = file.read_bytes()
        s3.fs.put_file(str(local), f"{s3.bucket}/in/shards-{n}.tar")
        local.unlink()

    out = tmp_path / "out"
    done = recaption(s3.url("in/shards-{0..1}.tar"), out, llava)
    assert done.returncode == 0, done.stderr
    written = list(wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False))
    assert sorted(sample["__key__"] for sample in written) == sorted(originals)  # every sample, once
    assert all(sample["jpg"] == originals[sample["__key__"]] for sample in written)  # bytes untouched
    assert all(sample["txt"] for sample in written)

    again = recaption(s3.url("in/shards-{0..1}.tar"), out, llava)
    assert again.returncode == 0, again.stderr
    caption_line = next(line for line in again.stdout.splitlines() if line.startswith("caption "))
    assert caption_line.split()[3:5] == ["0", "12"]  # computed 0, cached 12
    refs = [p for p in (tmp_path / "out.workspace" / "objects").rglob("*") if p.is_file()]
    assert len(refs) == 12 and all(p.suffix == ".ref" for p in refs)  # images stay in the bucket
