"""The review server over real HTTP (`captionary serve` in a child process): token, file safety,
committed decisions, renditions with immutable caching, browse queries."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import httpx
import pytest
from PIL import Image
from review_helpers import Served, client_for, make_photos, prepare_task

from captionary import HumanFilter, Load, Resize
from captionary.core.blobstore import BlobStore


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("server")
    photos = make_photos(root / "photos", 5, size=(900, 600))
    (root / "secret.txt").write_text("TOP-SECRET-MARKER")
    items = prepare_task(
        root / "ws", Load(photos) >> Resize(max_edge=700) >> HumanFilter(), "human_filter", 5
    )
    return root / "ws", items


@pytest.fixture(scope="module")
def served(workspace):
    with Served(workspace[0], host="0.0.0.0") as server:
        yield server


@pytest.fixture
def client(served):
    with client_for(served.url.replace(served.url.split("/?")[0], served.base)) as client:
        yield client


def test_every_request_without_the_token_gets_401_on_a_lan_bind(served, workspace):
    item = workspace[1][0]
    paths = [
        "/",
        "/static/review.js",
        "/api/tasks",
        "/api/tasks/human_filter",
        f"/api/image/{item['id']}/{item['image']}",
    ]
    for path in paths:
        assert httpx.get(served.base + path).status_code == 401, path
        assert httpx.get(served.base + path, params={"token": "wrong"}).status_code == 401, path
    put = httpx.put(f"{served.base}/api/tasks/human_filter/items/{item['id']}", json={"value": "keep"})
    assert put.status_code == 401
    page = httpx.get(served.local_url())
    assert page.status_code == 200 and "captionary review" in page.text
    [(name, cookie)] = page.cookies.items()
    assert name.startswith("captionary_") and cookie == served.url.split("token=")[1]
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    assert "httponly" in page.headers["set-cookie"].lower()
    assert httpx.get(served.base + "/api/tasks", cookies={name: cookie}).status_code == 200
    assert httpx.get(served.base + "/api/tasks", cookies={"captionary_other": cookie}).status_code == 401


def test_no_client_path_reads_outside_the_blob_store(client, workspace):
    ws, items = workspace
    secret = str(ws.parent / "secret.txt")
    item = items[0]
    attempts = [
        "/static/..%2F..%2F..%2Fsecret.txt",
        "/static/../server.py",
        "/static/%2Fetc%2Fpasswd",
        f"/api/image/..%2F..%2Fsecret.txt/{item['image']}",
        f"/api/image/{item['id']}/..%2F..%2F..%2Fsecret.txt",
        f"/api/image/{item['id']}/{item['image']}?size=../../secret.txt",
        f"/api/image/{item['id']}/%2Fetc%2Fpasswd",
        f"/api/image/{item['id']}/{secret.replace('/', '%2F')}",
        "/api/image/" + "0" * 64 + "/" + "0" * 64,
        "/api/tasks/..%2F..%2Fsecret.txt",
        "/api/browse/..%2Fcaptionary.db",
        "/../../etc/passwd",
        "/objects/" + item["id"][:2] + "/" + item["id"],
        "/captionary.db",
    ]
    for path in attempts:
        response = client.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert b"TOP-SECRET" not in response.content and b"root:" not in response.content
        assert b"SQLite format" not in response.content
    cors = client.get("/api/tasks", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in cors.headers


def test_decision_is_committed_before_the_response(client, workspace):
    ws, items = workspace
    db = sqlite3.connect(ws / "captionary.db")
    for item, value in zip(items[:3], ["keep", "reject", "keep"]):
        answer = client.put(f"/api/tasks/human_filter/items/{item['id']}", json={"value": value})
        assert answer.json()["saved"] is True
        row = db.execute(
            "SELECT value FROM decisions WHERE task = 'human_filter' AND item = ?", (item["id"],)
        ).fetchone()
        assert row == (f'"{value}"',)
    bad = client.put(f"/api/tasks/human_filter/items/{items[3]['id']}", json={"value": "maybe"})
    assert bad.status_code == 400 and "'maybe'" in bad.json()["detail"]
    assert client.put("/api/tasks/human_filter/items/" + "a" * 64, json={"value": "keep"}).status_code == 404
    assert client.delete(f"/api/tasks/human_filter/items/{items[0]['id']}").json()["saved"]
    assert db.execute("SELECT count(*) FROM decisions WHERE item = ?", (items[0]["id"],)).fetchone() == (0,)
    task = client.get("/api/tasks/human_filter").json()
    assert task["decisions"] == {items[1]["id"]: "reject", items[2]["id"]: "keep"}
    for item in items[1:3]:
        client.delete(f"/api/tasks/human_filter/items/{item['id']}")


def test_renditions_are_webp_of_the_current_image_made_once_and_immutable(client, workspace):
    ws, items = workspace
    item = items[0]
    assert item["image"].startswith("~")  # a derived (resized) image, recomputed from its recipe
    response = client.get(f"/api/image/{item['id']}/{item['image']}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    assert "immutable" in response.headers["cache-control"]
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.format == "WEBP" and thumb.size == (512, 342)  # 700x467 fitted into 512
    large = Image.open(io.BytesIO(client.get(f"/api/image/{item['id']}/{item['image']}?size=large").content))
    assert large.size == (700, 467)  # the resized image itself: large is never upscaled
    db = sqlite3.connect(ws / "captionary.db")
    [(blob,)] = db.execute("SELECT blob FROM thumbnails WHERE image = ? AND size = 512", (item["image"],))
    assert BlobStore(ws / "objects").get(blob) == response.content  # stored once, served as stored
    assert client.get(f"/api/image/{item['id']}/{item['image']}").content == response.content
    stale = client.get(f"/api/image/{item['id']}/{item['id']}")  # the original is not a task image
    assert stale.status_code == 200  # ...but it is a workspace item, so its original may be shown


def test_browse_filters_by_properties_and_decisions(client, workspace):
    items = workspace[1]
    assert client.get("/api/browse").json()["total"] == 5
    one = client.get("/api/browse", params={"q": "caption == 'caption 001'"}).json()
    assert one["total"] == 1 and one["items"][0]["name"] == "p001"
    client.put(f"/api/tasks/human_filter/items/{items[4]['id']}", json={"value": "reject"})
    rejected = client.get("/api/browse", params={"q": "human_filter == 'reject'"}).json()
    assert [i["id"] for i in rejected["items"]] == [items[4]["id"]]
    client.delete(f"/api/tasks/human_filter/items/{items[4]['id']}")
    wide = client.get("/api/browse", params={"q": "width > 600"}).json()
    assert wide["total"] == 5
    bad = client.get("/api/browse", params={"q": "__import__('os')"})
    assert bad.status_code == 400
    info = client.get(f"/api/browse/{items[0]['id']}").json()
    assert info["props"]["caption"] == "caption 000" and info["props"]["width"] == 700


def test_browse_finds_the_items_that_failed_in_the_latest_run(tmp_path):
    from captionary import SetCaption, Workspace

    photos = make_photos(tmp_path / "photos", 3)
    (photos / "p001.txt").unlink()  # p001 has no caption: the template below fails on it
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos), progress=False)
        ws.run(Load(photos) >> SetCaption(template="a photo: {caption}"), progress=False)
    with Served(tmp_path / "ws") as served, client_for(served.url) as client:
        failed = client.get("/api/browse", params={"q": "error != None"}).json()
        assert [item["name"] for item in failed["items"]] == ["p001"]
        [error] = client.get(f"/api/browse/{failed['items'][0]['id']}").json()["errors"]
        assert error["step"] == "set_caption" and "caption" in error["reason"]
        fine = client.get("/api/browse", params={"q": "error == None and 'a photo' in caption"}).json()
        assert [item["name"] for item in fine["items"]] == ["p000", "p002"]


def test_browse_details_name_a_childs_parent(tmp_path):
    from captionary import Flip, Workspace

    photos = make_photos(tmp_path / "photos", 2)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> Flip(), progress=False)
        items = {item.name: item for item in ws.items()}
    with Served(tmp_path / "ws") as served, client_for(served.url) as client:
        child = client.get(f"/api/browse/{items['p000_flip'].id}").json()
        parent = client.get(f"/api/browse/{items['p000'].id}").json()
    assert child["parent"] == {"id": items["p000"].id, "name": "p000"}
    assert parent["parent"] is None


def test_a_3000_deep_or_huge_browse_query_is_a_400_with_one_clear_line(client):
    deep = client.get("/api/browse", params={"q": "not " * 3000 + "x"})
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["detail"]
    huge = client.get("/api/browse", params={"q": "'x' * 1000000000 == name"})
    assert huge.status_code == 400 and "at most 1,000,000" in huge.json()["detail"]


def test_the_favicon_is_served(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
