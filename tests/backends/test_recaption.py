"""`captionary recaption`: WebDataset shards in, a tiny random VLM's captions beside the originals out."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tiny_models import tiny_model

from conftest import REPO

pytest.importorskip("torch")
pytest.importorskip("transformers")
wds = pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("llava", tmp_path_factory.mktemp("tiny_models"))


def write_shards(photos: Path, folder: Path) -> dict[str, tuple[bytes, str | None]]:
    """Two shards of the bundled photos; returns the output key (`<input shard>/<key>`) -> (image bytes,
    original caption)."""
    folder.mkdir()
    samples = {}
    files = sorted(photos.rglob("*.jpg"))
    for shard, chunk in enumerate((files[:6], files[6:])):
        with wds.TarWriter(str(folder / f"in-{shard}.tar")) as sink:
            for file in chunk:
                key = file.relative_to(photos).with_suffix("").as_posix().replace("/", "_")
                caption_file = file.with_suffix(".txt")
                caption = caption_file.read_text().strip() if caption_file.exists() else None
                sample = {"__key__": key, "jpg": file.read_bytes()}
                if caption is not None:
                    sample["txt"] = caption
                sink.write(sample)
                samples[f"in-{shard}/{key}"] = (file.read_bytes(), caption)
    return samples


def recaption(shards: str, out: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "captionary.cli", "recaption", shards, "--model", str(model), *extra]
    args += ["--backend", "transformers", "--out", str(out), "--shard-size", "5", "--max-tokens", "6"]
    args += ["--batch-size", "4", "--prompt", "Describe.", "--no-progress"]
    env = {"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


def test_recaption_writes_every_sample_once_with_original_bytes_and_both_captions(photos, tmp_path, llava):
    samples = write_shards(photos, tmp_path / "in")
    out = tmp_path / "out"
    done = recaption(str(tmp_path / "in" / "in-{0..1}.tar"), out, llava, "--in-place")
    assert done.returncode == 0, done.stderr

    urls = sorted(str(p) for p in out.glob("shard-*.tar"))
    assert len(urls) == 3  # 12 samples, 5 per shard
    written = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert sorted(s["__key__"] for s in written) == sorted(samples)  # every sample, once
    for sample in written:
        image, original = samples[sample["__key__"]]
        assert sample["jpg"] == image  # the original bytes, untouched
        props = json.loads(sample["json"])
        assert props.get("caption") == original  # the old caption beside the new one
        assert sample["txt"].decode() == props["recaption"]
        assert props["recaption"]  # a (random-weight) caption was written
        assert Image.open(io.BytesIO(sample["jpg"])).size == (props["width"], props["height"])

    again = recaption(str(tmp_path / "in" / "in-{0..1}.tar"), out, llava, "--in-place")
    workspace = tmp_path / "out.workspace" / "objects"
    assert {p.suffix for p in workspace.rglob("*") if p.is_file() and p.parent.name != "tmp"} == {".ref"}
    assert again.returncode == 0, again.stderr
    caption_line = next(line for line in again.stdout.splitlines() if line.startswith("caption "))
    assert caption_line.split()[3:5] == ["0", "12"]  # computed 0, cached 12: a re-run resumes, never redoes


@pytest.mark.gpu
def test_recaption_with_vllm_in_ray_model_actors(photos, tmp_path):
    """On a CUDA machine with vLLM and Ray: the engine runs inside a Ray model actor holding one GPU."""
    pytest.importorskip("vllm")
    pytest.importorskip("ray")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from tiny_models import build_llava

    from captionary.recaption import recaption as run_recaption

    samples = write_shards(photos, tmp_path / "in")
    folder = build_llava(tmp_path / "llava")
    options = {"enforce_eager": True, "gpu_memory_utilization": 0.3, "max_model_len": 256, "data_parallel": 1}
    summary = run_recaption(
        str(tmp_path / "in" / "in-{0..1}.tar"),
        tmp_path / "out",
        str(folder),
        backend="vllm",
        max_tokens=8,
        batch_size=6,
        options=options,
        executor="ray",
        executor_options={"progress": False},
    )
    assert summary.step("caption").computed == 12
    urls = sorted(str(p) for p in (tmp_path / "out").glob("shard-*.tar"))
    written = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert sorted(s["__key__"] for s in written) == sorted(samples)
    assert all(json.loads(s["json"])["recaption"] for s in written)


def test_recaption_keeps_a_hostile_key_inside_the_output_folder(photos, tmp_path, llava):
    """Issue 13: `recaption` writes through `save`, so a shard key climbing out of the output folder
    (`../../../../outside/owned`) is that sample's error, and nothing lands outside."""
    (tmp_path / "in").mkdir()
    with wds.TarWriter(str(tmp_path / "in" / "hostile.tar")) as sink:
        sink.write({"__key__": "fine", "jpg": (photos / "dog" / "00.jpg").read_bytes()})
        sink.write({"__key__": "../../../../outside/owned", "jpg": (photos / "cat" / "00.jpg").read_bytes()})
    out = tmp_path / "a" / "b" / "out"
    done = recaption(str(tmp_path / "in" / "hostile.tar"), out, llava, "--format", "parquet")
    assert done.returncode == 0, done.stderr
    assert "unsafe output name" in done.stderr and "'..' would leave the output folder" in done.stderr
    assert not [p for p in tmp_path.rglob("*") if "owned" in p.name or p.name == "outside"]
