"""`load_booru` against each site family's API shape, served by a local board (no site is reachable
from the tests): every post once, tags by category and rating right, deleted / hidden / missing
files, 429 with Retry-After, 5xx, a truncated file, md5 reuse, the sample variant, a plugin site."""

from __future__ import annotations

import base64

import pytest
from booru_server import FAMILIES, Board, make_posts, serving

import captionary
from captionary import LoadBooru, ParamError, Workspace, parse_pipeline


@pytest.fixture
def board_server():
    """Local boards on 127.0.0.1 for one test: `board_server(board)` starts one, returns its URL."""
    yield from serving()


SITE = {"danbooru": "danbooru", "moebooru": "yandere", "gelbooru": "gelbooru", "safebooru": "safebooru",
        "e621": "e621", "zerochan": "zerochan"}  # fmt: skip
FAST = {"requests_per_second": 0, "downloads_per_second": 0}  # politeness is tested on its own
EXPECTED_TAGS = {  # post 1001 (i = 1) in the default order: character, copyright, artist, general
    "categorised": ["surtr (arknights)", "arknights", "artist 1", "1girl", "solo", "long hair", "^_^"],
    "zerochan": [
        "surtr (arknights)",
        "arknights",
        "artist 1",
        "1girl",
        "solo",
        "long hair",
        "^_^",
        "highres",
    ],
}


def rating_of(family: str, letter: str) -> str:
    words = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit"}
    three_levels = family in ("moebooru", "safebooru", "e621")
    return "safe" if three_levels and letter in "gs" else words[letter]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_post_once_with_its_tags_and_rating(family, board_server, tmp_path):
    posts = make_posts(16)
    by_id = {p.id: p for p in posts}
    by_id[1002].deleted = True
    by_id[1000].data = None  # listed, but its file answers 404
    by_id[1005].hidden = family == "danbooru"  # no file URL for anonymous users
    md5 = family != "zerochan"
    board = Board(
        family,
        posts,
        page_faults={2: [(429, {"Retry-After": "1"})]},
        file_faults={1008: [(503, {"Retry-After": "0"})]},
        truncate_once={1010} if md5 else set(),
    )
    url = board_server(board)
    rating = [] if family == "zerochan" else ["g", "s"]  # Zerochan posts have no rating
    step = LoadBooru(site=SITE[family], base_url=url, tags=["surtr_(arknights)"], rating=rating,
                     blacklist=["artist_3"], page_size=5, **FAST)  # fmt: skip
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(step, progress=False)
        items = {item.name: item for item in ws.items()}
        first = list(board.requests)
        again = ws.run(step, progress=False)

    def wanted(p):
        kept_rating = family == "zerochan" or p.rating in "gs"
        return kept_rating and not p.deleted and not p.hidden and "artist_3" not in p.all_tags()

    expected = {p.id for p in posts if wanted(p)}
    label = SITE[family]
    assert set(items) == {f"{label}_{i}" for i in expected - {1000}}
    assert [e["source"].rsplit("/", 1)[1] for e in summary.errors] == ["1000"]
    assert "HTTP 404" in summary.errors[0]["reason"]
    stats = summary.step("load_booru")
    assert stats.n_out == len(expected) - 1 and stats.dropped == len(board.matching([])) - len(expected)
    # every wanted file asked for once; the 503, the truncated one (md5 sites) twice; the rest never
    hits = board.file_hits(first)
    retried = {1008} | ({1010} if md5 else set())
    assert {i: hits[i] for i in hits if i not in retried} == {i: 1 for i in expected - retried}
    assert all(hits[i] == 2 for i in retried if i in expected)
    # the page answered 429 was asked again after its Retry-After, never sooner
    page_times = [t for t, number in board.pages if number == 2]
    assert len(page_times) >= 2 and page_times[1] - page_times[0] >= 0.95
    # the 503's Retry-After: 0 was honoured too (a retry without it backs off 0.5 s at least)
    retry_times = [t for t, kind, path in first if kind == "file" and path == board.file_path(1008)]
    assert len(retry_times) == 2 and retry_times[1] - retry_times[0] < 0.45
    # tags by category, cleaned (kaomoji kept), in kohya's order; the rating in the tagger's words
    one = items[f"{label}_1001"].props
    assert one["tags"] == EXPECTED_TAGS["zerochan" if family == "zerochan" else "categorised"]
    if family != "zerochan":
        assert one["character_tags"] == ["surtr (arknights)"] and one["artist_tags"] == ["artist 1"]
        assert one["rating"] == rating_of(family, by_id[1001].rating)
        assert one["md5"] == by_id[1001].md5 and one["score"] == 1
    assert one["post_id"] == "1001" and one["source_url"] == "https://example.org/art/1"
    # a re-run asks the site nothing but the file that failed
    assert again.step("load_booru").cached == len(expected) - 1
    assert [path for _, _, path in board.requests[len(first) :]] == [board.file_path(1000)]


def test_truncated_files(board_server, tmp_path):
    posts = make_posts(4)
    # 1001: always half the file (its md5 never matches); 1002: the connection drops mid-file, once
    board = Board("danbooru", posts, truncate_always={1001}, cut_once={1002})
    url = board_server(board)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadBooru(site="danbooru", base_url=url, **FAST), progress=False)
        names = {item.name for item in ws.items()}
    assert names == {"danbooru_1000", "danbooru_1002", "danbooru_1003"}
    (error,) = summary.errors
    assert "md5 mismatch" in error["reason"] and error["source"].endswith("/1001")
    assert board.file_hits()[1001] == 2 and board.file_hits()[1002] == 2


def test_file_over_the_size_limit_is_its_error(board_server, tmp_path):
    board = Board("danbooru", make_posts(2))
    url = board_server(board)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadBooru(site="danbooru", base_url=url, max_file_mb=0.001, **FAST), progress=False)
    assert summary.step("load_booru").failed == 2
    assert all("larger than max_file_mb (0.001 MB)" in e["reason"] for e in summary.errors)


def test_same_file_twice_is_downloaded_once(board_server, tmp_path):
    posts = make_posts(6)
    posts[5].data = posts[0].data  # a re-upload: another post id, the same md5
    posts[5].tags["character"].append("texas_(arknights)")
    board = Board("danbooru", posts)
    url = board_server(board)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadBooru(site="danbooru", base_url=url, **FAST), progress=False)
        assert summary.step("load_booru").n_out == 5 and summary.step("load_booru").dropped == 1
        # another search in the same workspace lists the re-upload alone: its file is not fetched again
        texas = ws.run(LoadBooru(site="danbooru", base_url=url, tags=["texas_(arknights)"], **FAST),
                       progress=False)  # fmt: skip
        (item,) = ws.items()
    assert texas.step("load_booru").cached == 1
    assert sum(board.file_hits().values()) == 5
    assert item.name == "danbooru_1005" and "texas (arknights)" in item["tags"]


def test_tag_options_and_sample_variant(board_server, tmp_path):
    board = Board("e621", make_posts(3))
    url = board_server(board)
    step = LoadBooru(
        site="e621", base_url=url, variant="sample", tag_order=["character", "species", "general"],
        replace_underscores=False, escape_brackets=True, exclude_tags=["long hair", "solo"], **FAST,
    )  # fmt: skip
    with Workspace(tmp_path / "ws") as ws:
        ws.run(step, progress=False)
        items = {item.name: item for item in ws.items()}
    one = items["e621_1001"]
    assert one["tags"] == ["surtr_\\(arknights\\)", "feline", "1girl", "^_^"]
    assert one.width == 96  # the sample, not the 256 px original
    assert all(path.startswith("/sample/") for _, kind, path in board.requests if kind == "file")


def test_own_site_by_import_path_in_yaml(board_server, tmp_path):
    board = Board("danbooru", make_posts(5))
    url = board_server(board)
    pipeline = f"""
workspace: ws
steps:
  - load_booru: {{site: "my_board:MyBoard", base_url: "{url}", tags: [solo], limit: 3}}
"""
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(parse_pipeline(pipeline, base=tmp_path).pipeline, progress=False)
        names = sorted(item.name for item in ws.items())
    assert summary.step("load_booru").n_out == 3
    assert names == ["myboard_1002", "myboard_1003", "myboard_1004"]


def test_bad_settings_fail_before_any_request():
    with pytest.raises(ParamError, match="did you mean danbooru"):
        LoadBooru(site="danboru")
    with pytest.raises(ParamError, match="needs a base_url"):
        LoadBooru(site="moebooru")
    with pytest.raises(ParamError, match="unknown rating 'x'"):
        LoadBooru(site="danbooru", rating=["g", "x"])
    with pytest.raises(ParamError, match=r"not a captionary\.sources\.web\.site\.Site"):
        LoadBooru(site="json:loads")


def test_new_tag_options_relabel_stored_posts_without_a_request(board_server, tmp_path):
    board = Board("moebooru", make_posts(10))
    url = board_server(board)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(LoadBooru(site="konachan", base_url=url, **FAST), progress=False)
        before = len(board.requests)
        step = LoadBooru(site="konachan", base_url=url, tag_order=["artist", "character"],
                         exclude_tags=["amiya_(arknights)"], min_score=4, **FAST)  # fmt: skip
        summary = ws.run(step, progress=False)
        items = {item.name: item for item in ws.items()}
    assert len(board.requests) == before  # the stored listing and images: no request at all
    assert summary.step("load_booru").dropped == 4  # scores 0..3
    assert items["konachan_1006"]["tags"] == ["artist 2", "surtr (arknights)"]  # amiya excluded
    assert items["konachan_1006"]["meta_tags"] == ["highres"]  # Moebooru's "faults" type


def test_gelbooru_without_its_tag_api_keeps_every_tag_general(board_server, tmp_path):
    board = Board("gelbooru", make_posts(3), tag_api_down=True)
    url = board_server(board)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadBooru(site="gelbooru", base_url=url, retries=0, **FAST), progress=False)
        (item, *_) = sorted(ws.items(), key=lambda i: i.name)
    assert summary.step("load_booru").n_out == 3 and not summary.errors
    assert item["tags"][:2] == ["surtr (arknights)", "amiya (arknights)"]  # the site's order
    assert "character_tags" not in item.props and "1girl" in item["general_tags"]


def test_refused_search_says_why_and_credentials_come_from_the_environment(
    board_server, tmp_path, monkeypatch
):
    refusal = b'{"success": false, "message": "You cannot search for more than 2 tags at a time"}'
    board = Board(
        "e621", make_posts(3), page_faults={1: [(422, {"Content-Type": "application/json"}, refusal)]}
    )
    url = board_server(board)
    monkeypatch.setenv("E621_LOGIN", "someone")
    monkeypatch.setenv("E621_API_KEY", "secret")
    with Workspace(tmp_path / "ws") as ws:
        refused = ws.run(LoadBooru(site="e621", base_url=url, tags=["a", "b", "c"]), progress=False)
        ws.run(LoadBooru(site="e621", base_url=url, **FAST), progress=False)
    (error,) = refused.errors
    assert "HTTP 422" in error["reason"] and "more than 2 tags" in error["reason"]
    assert "secret" not in error["reason"]
    expected_auth = "Basic " + base64.b64encode(b"someone:secret").decode()
    api = [h for h, (_, kind, _) in zip(board.headers, board.requests) if kind == "api"]
    assert api and all(h["Authorization"] == expected_auth for h in api)
    agents = {h["User-Agent"] for h in board.headers}
    assert agents == {
        f"captionary/{captionary.__version__} (+https://pypi.org/project/captionary/) (by someone on e621)"
    }
