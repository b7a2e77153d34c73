"""`monochrome`: the colourfulness score as a property; the filter's decision from it is the same."""

from __future__ import annotations

from PIL import Image

from captionary import FilterByScore, FilterMonochrome, Load, Monochrome, Workspace


def test_colourfulness_is_measured_once_and_a_threshold_decides_like_filter_monochrome(photos, tmp_path):
    Image.open(photos / "dog" / "00.jpg").convert("L").save(photos / "dog" / "grey.jpg")
    with Workspace(tmp_path / "ws") as ws:
        ws.run(
            Load(photos) >> Monochrome() >> FilterByScore(property="colourfulness", min=10), progress=False
        )
        kept = {item.name: item["colourfulness"] for item in ws.items()}
        again = ws.run(
            Load(photos) >> Monochrome() >> FilterByScore(property="colourfulness", min=5), progress=False
        )
        ws.run(Load(photos) >> FilterMonochrome(threshold=10), progress=False)
        by_filter = {item.name for item in ws.items()}
    assert "dog/grey" not in kept and len(kept) == 12
    assert min(kept.values()) >= 10
    assert again.step("monochrome").computed == 0  # a new threshold measures nothing again
    assert set(kept) == by_filter
