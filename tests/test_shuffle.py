"""`shuffle`: a seeded order that the steps after it keep."""

from __future__ import annotations

from captionary import Load, Save, Shuffle, Take, Workspace


def kept_names(ws_path, photos, *steps) -> list[str]:
    pipeline = Load(photos)
    for step in steps:
        pipeline = pipeline >> step
    with Workspace(ws_path) as ws:
        ws.run(pipeline, progress=False)
        return sorted(item.name for item in ws.items())


def test_every_item_gets_a_distinct_position(photos, ws_path):
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Shuffle(seed=1), progress=False)
        orders = sorted(item["order"] for item in ws.items())
    assert orders == list(range(12))


def test_shuffle_then_take_keeps_a_seeded_random_subset(photos, tmp_path):
    first_five = kept_names(tmp_path / "a", photos, Take(n=5))
    seed_1 = kept_names(tmp_path / "b", photos, Shuffle(seed=1), Take(n=5))
    seed_1_again = kept_names(tmp_path / "c", photos, Shuffle(seed=1), Take(n=5))
    seed_2 = kept_names(tmp_path / "d", photos, Shuffle(seed=2), Take(n=5))
    assert seed_1 == seed_1_again
    assert len(seed_1) == len(seed_2) == 5
    assert seed_1 != first_five
    assert seed_1 != seed_2


def test_sequential_file_names_follow_the_shuffled_order(photos, tmp_path):
    out = tmp_path / "out"
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> Shuffle(seed=3) >> Save(out, naming="sequential"), progress=False)
        by_order = {item["order"]: ws.blobs.get(item.id) for item in ws.items()}
    files = sorted(out.glob("*.*[!t]"))  # images, not the .txt captions
    assert [p.stem for p in files] == [f"{n:06d}" for n in range(12)]
    assert [p.read_bytes() for p in files] == [by_order[n] for n in range(12)]


def test_take_top_by_a_score_keeps_the_highest_and_says_why_the_rest_went(photos, tmp_path):
    from captionary import FilterByScore, step

    @step(kind="map", writes=("score",), reads_image=False)
    def score_by_name(item):
        return {"score": float(item.name[-2:]) if item.name[-2:].isdigit() else 0.0}

    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> score_by_name() >> Take(top=3, by="score"), progress=False, workers=0)
        kept = sorted((item["score"] for item in ws.items()), reverse=True)
        everything = sorted((item["score"] for item in ws.items(include_dropped=True)), reverse=True)
        assert kept == everything[:3]
        ws.run(
            Load(photos) >> score_by_name() >> FilterByScore(property="score", min=everything[2]),
            progress=False,
            workers=0,
        )
        assert sorted((item["score"] for item in ws.items()), reverse=True) == kept


def test_take_needs_n_or_top_with_by():
    import pytest

    from captionary.errors import ParamError

    with pytest.raises(ParamError, match="one of them"):
        Take(n=3, top=3, by="x")
    with pytest.raises(ParamError, match="top needs by"):
        Take(top=3)
