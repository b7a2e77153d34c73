"""`save` hands its threads several items per task: each item keeps its own outcome, and the items
being written stay bounded (the sink stage's `max_pending` counts items, not tasks)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from PIL import Image

from captionary import Load, Resize, Save, Workspace
from captionary.executors.stages.sink import SinkStage
from captionary.sinks.files import OutputFiles
from captionary.sinks.formats.base import WRITE_TASK, FileExport, write_tasks


def make_photos(folder, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        noise = random.Random(i).randbytes(16 * 12 * 3)
        Image.frombytes("RGB", (16, 12), noise).save(folder / f"{i:04d}.png")


def test_tasks_spread_a_few_items_over_the_threads_and_batch_many():
    assert [len(t) for t in write_tasks(list(range(4)), threads=4)] == [1, 1, 1, 1]
    assert [len(t) for t in write_tasks(list(range(4)), threads=1)] == [4]
    sizes = [len(t) for t in write_tasks(list(range(100)), threads=4)]
    assert sum(sizes) == 100 and max(sizes) == WRITE_TASK
    assert write_tasks([], threads=2) == []


def test_a_write_failing_in_a_thread_fails_its_item_only(tmp_path):
    make_photos(tmp_path / "photos", 20)
    out = tmp_path / "out"
    (out / "0003.png").mkdir(parents=True)  # the target is taken by a folder: that write raises
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(tmp_path / "photos") >> Save(out, threads=2), progress=False)
    assert [e["item"] is not None and "0003.png" in e["reason"] for e in summary.errors] == [True]
    assert summary.steps[-1].n_out == 19
    written = sorted(p.name for p in out.glob("*.png") if p.is_file())
    assert written == [f"{i:04d}.png" for i in range(20) if i != 3]


def test_items_being_written_stay_within_max_pending(tmp_path, monkeypatch):
    n, chunk = 700, 32
    make_photos(tmp_path / "photos", n)
    handed, written, most = [0], [0], [0]
    lock = threading.Lock()
    write, write_task = FileExport.write, FileExport._write_task

    def counting_write(self, items):
        results = write(self, items)
        with lock:
            handed[0] += sum(1 for r in results if hasattr(r, "result"))
            most[0] = max(most[0], handed[0] - written[0])
        return results

    def slow_task(self, task):
        time.sleep(0.002 * len(task))  # the disk is slower than the source: the driver must wait
        outcomes = write_task(self, task)
        with lock:
            written[0] += len(task)
        return outcomes

    monkeypatch.setattr(FileExport, "write", counting_write)
    monkeypatch.setattr(FileExport, "_write_task", slow_task)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            Load(tmp_path / "photos") >> Save(tmp_path / "out", threads=1), progress=False, chunk_size=chunk
        )
    assert summary.steps[-1].n_out == n
    assert handed[0] == n
    assert SinkStage.max_pending < most[0] <= SinkStage.max_pending + chunk


def test_files_a_pool_worker_encoded_are_written_by_one_thread(tmp_path, monkeypatch):
    make_photos(tmp_path / "photos", 60)
    threads: set[str] = set()
    write = OutputFiles.write

    def recording_write(self, relative, item_id, digest, content):
        threads.add(threading.current_thread().name)
        return write(self, relative, item_id, digest, content)

    monkeypatch.setattr(OutputFiles, "write", recording_write)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(
            Load(tmp_path / "photos") >> Resize(max_edge=8) >> Save(tmp_path / "out", threads=4),
            progress=False,
            workers=2,
            chunk_size=8,
        )
    assert summary.steps[-1].computed == 60
    assert len(list((tmp_path / "out").glob("*.png"))) == 60
    assert len(threads) == 1  # the workers encoded: one thread writes (4 only wait on each other)


def test_images_the_sink_encodes_spread_over_the_save_threads(tmp_path, monkeypatch):
    make_photos(tmp_path / "photos", 40)
    met = threading.Barrier(2, timeout=10)  # two save threads must be writing at once
    seen: set[str] = set()
    write_task = FileExport._write_task

    def meeting_task(self, task):
        name = threading.current_thread().name
        if name not in seen:
            seen.add(name)
            if len(seen) <= 2:
                met.wait()
        return write_task(self, task)

    monkeypatch.setattr(FileExport, "_write_task", meeting_task)
    with Workspace(tmp_path / "ws") as ws:  # PNG in, JPEG out, no image step: save encodes
        summary = ws.run(
            Load(tmp_path / "photos") >> Save(tmp_path / "out", image_format="jpg", threads=3), progress=False
        )
    assert summary.steps[-1].computed == 40
    assert len(seen) >= 2


def copying_threads(tmp_path: Path, monkeypatch, size: tuple[int, int], n: int) -> set[str]:
    """The threads that wrote the image files of `load >> save` (originals copied as they are)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(n):
        Image.new("RGB", size, (i * 9 % 256, 40, 90)).save(photos / f"{i:03d}.png")
    threads: set[str] = set()
    write = OutputFiles.write

    def recording_write(self, relative, item_id, digest, content):
        if relative.endswith(".png"):
            threads.add(threading.current_thread().name)
        return write(self, relative, item_id, digest, content)

    monkeypatch.setattr(OutputFiles, "write", recording_write)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> Save(tmp_path / "out", threads=4), progress=False, chunk_size=8)
    assert summary.steps[-1].computed == n
    assert all(p.read_bytes() == (photos / p.name).read_bytes() for p in (tmp_path / "out").glob("*.png"))
    return threads


def test_small_originals_are_copied_by_the_one_thread_that_writes_bytes_in_hand(tmp_path, monkeypatch):
    assert copying_threads(tmp_path, monkeypatch, (600, 600), 40) == {"captionary-save-ready_0"}


def test_large_originals_are_copied_by_the_save_threads(tmp_path, monkeypatch):
    threads = copying_threads(tmp_path, monkeypatch, (1200, 1000), 12)  # 1.2 MP each
    assert threads and all(name.startswith("captionary-save_") for name in threads)
