"""A local image board for the web-source tests and benchmark: one HTTP server on 127.0.0.1 that
answers in the documented shape of a site family (Danbooru `/posts.json`, Moebooru `/post.json`,
Gelbooru / Safebooru DAPI, e621 `/posts.json`, Zerochan `?json`), serves real photos as the posts'
files, and can misbehave on cue (429 with Retry-After, 5xx, truncated files, missing files)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlsplit

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[2]
DREAMBOOTH = Path("/work/shared/data/dreambooth")
FAMILIES = ("danbooru", "moebooru", "gelbooru", "safebooru", "e621", "zerochan")
THREE_LEVELS = {"moebooru", "safebooru", "e621"}  # their `s` is "safe"
WORDS = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit"}
FILE_PATHS = ("/data/", "/sample/", "/images/")  # /images/<directory>/<image>: Safebooru's file URLs
TYPE_NUMBERS = {"general": 0, "artist": 1, "copyright": 3, "character": 4, "meta": 5}


def photo_files() -> list[Path]:
    """Real photos: the DreamBooth set where this machine has it, else the bundled samples."""
    root = DREAMBOOTH if DREAMBOOTH.is_dir() else REPO / "examples" / "photos"
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


@functools.cache
def photo_bytes(n: int, edge: int = 256) -> list[bytes]:
    """`n` distinct JPEGs made from real photos (downsized; a crop per copy keeps them distinct)."""
    files = photo_files()
    out = []
    for i in range(n):
        with Image.open(files[i % len(files)]) as image:
            image.draft("RGB", (edge * 2, edge * 2))
            image = ImageOps.exif_transpose(image).convert("RGB")
            shift = i // len(files)
            image = image.crop((shift * 7, shift * 5, image.width, image.height))
            image.thumbnail((edge, edge))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            out.append(buffer.getvalue())
    return out


@dataclass
class FakePost:
    id: int
    data: bytes | None  # None: the file answers 404
    tags: dict[str, list[str]]
    rating: str = "g"  # Danbooru's letters
    score: int = 0
    source: str = ""
    deleted: bool = False
    hidden: bool = False  # listed without a file URL (Danbooru hides some from anonymous users)
    ext: str = "jpg"

    @property
    def md5(self) -> str | None:
        return hashlib.md5(self.data).hexdigest() if self.data is not None else "0" * 32

    def all_tags(self) -> list[str]:
        return [t for names in self.tags.values() for t in names]


def make_posts(n: int, *, first_id: int = 1000, tag: str = "surtr_(arknights)") -> list[FakePost]:
    """`n` posts with distinct photos; every 5th rated q, every 7th e, the rest g or s; varied tags."""
    images = photo_bytes(n)  # a cached list: posts share the bytes objects, never mutate them
    posts = []
    for i in range(n):
        rating = "q" if i % 5 == 4 else "e" if i % 7 == 6 else ("g" if i % 2 == 0 else "s")
        posts.append(
            FakePost(
                id=first_id + i,
                data=images[i],
                tags={
                    "character": [tag] + (["amiya_(arknights)"] if i % 3 == 0 else []),
                    "copyright": ["arknights"],
                    "artist": [f"artist_{i % 4}"],
                    "general": ["1girl", "solo", "long_hair", "^_^" if i % 2 else "red_eyes"],
                    "meta": ["highres"],
                },
                rating=rating,
                score=i,
                source=f"https://example.org/art/{i}",
            )
        )
    return posts


@dataclass
class Board:
    family: str
    posts: list[FakePost]
    delay: float = 0.0
    page_faults: dict[int, list[tuple]] = field(default_factory=dict)  # page n -> (status, headers[, body])
    file_faults: dict[int, list[tuple[int, dict]]] = field(default_factory=dict)  # post id -> answers first
    truncate_once: set[int] = field(default_factory=set)
    truncate_always: set[int] = field(default_factory=set)
    cut_once: set[int] = field(default_factory=set)  # the connection drops halfway through the file
    tag_api_down: bool = False  # Gelbooru's tag API answers 500
    headers: list[dict[str, str]] = field(default_factory=list)  # each request's headers
    requests: list[tuple[float, str, str]] = field(default_factory=list)  # (time, api|file, path)
    pages: list[tuple[float, int]] = field(default_factory=list)  # (time, page number) of listing requests
    hits: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # --- what the tests read ------------------------------------------------------------------------
    def file_hits(self, requests: list | None = None) -> Counter:
        """How often each post's file was asked for (in `requests`, default all so far)."""
        files = [p for _, kind, p in (self.requests if requests is None else requests) if kind == "file"]
        return Counter(int(p.rsplit("/", 1)[1].split(".")[0]) for p in files)

    def file_path(self, post_id: int) -> str:
        return f"/images/1/{post_id}.jpg" if self.family == "safebooru" else f"/data/{post_id}.jpg"

    def api_paths(self) -> list[str]:
        return [p for _, kind, p in self.requests if kind == "api"]

    # --- answers ----------------------------------------------------------------------------------------
    def matching(self, tags: list[str]) -> list[FakePost]:
        wanted = [t for t in tags if t and ":" not in t]
        listed = self.posts
        if self.family in ("safebooru", "zerochan"):  # their APIs leave deleted posts out
            listed = [p for p in listed if not p.deleted]
        return sorted((p for p in listed if all(t in p.all_tags() for t in wanted)), key=lambda p: -p.id)

    def rating(self, post: FakePost) -> str:
        if self.family == "gelbooru":
            return WORDS[post.rating]
        if self.family == "safebooru":
            return "safe" if post.rating in "gs" else WORDS[post.rating]
        return "s" if self.family in THREE_LEVELS and post.rating in "gs" else post.rating

    def file_url(self, post: FakePost) -> str | None:
        return None if post.hidden else f"{self.url}/data/{post.id}.{post.ext}"

    def page(self, posts: list[FakePost], cursor: str | None, limit: int, numbered_from: int = 1):
        """(page number, posts) for a `b<id>` cursor or a page number."""
        if cursor and cursor.startswith("b"):
            below = int(cursor[1:])
            rest = [p for p in posts if p.id < below]
            return (len(posts) - len(rest)) // limit + 1, rest[:limit]
        number = int(cursor or numbered_from) - numbered_from
        return number + 1, posts[number * limit : (number + 1) * limit]

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, bytes, dict]:
        family = self.family
        if path.startswith(FILE_PATHS):
            return self.file(path)
        tags = query.get("tags", "").split()
        limit = int(query.get("limit") or query.get("l") or 20)
        if family in ("danbooru", "e621") and path == "/posts.json":
            number, posts = self.page(self.matching(tags), query.get("page"), limit)
            body = (
                [self.danbooru(p) for p in posts]
                if family == "danbooru"
                else {"posts": [self.e621(p) for p in posts]}
            )
        elif family == "moebooru" and path == "/post.json":
            number, posts = self.page(self.matching(tags), query.get("page"), limit)
            kinds = {t: c for p in posts for c, names in p.tags.items() for t in names}
            kinds = {t: "faults" if c == "meta" else c for t, c in kinds.items()}
            body = {"posts": [self.moebooru(p) for p in posts], "pools": [], "pool_posts": [], "tags": kinds}
        elif family in ("gelbooru", "safebooru") and path == "/index.php" and query.get("s") == "tag":
            if self.tag_api_down:
                return 500, b"", {}
            return 200, json.dumps(self.tag_types(query.get("names", "").split())).encode(), {}
        elif family in ("gelbooru", "safebooru") and path == "/index.php":
            number, posts = self.page(self.matching(tags), query.get("pid"), limit, numbered_from=0)
            if family == "gelbooru":
                attributes = {"limit": limit, "offset": (number - 1) * limit, "count": len(self.posts)}
                body = {
                    "@attributes": attributes,
                    **({"post": [self.gelbooru(p) for p in posts]} if posts else {}),
                }
            else:
                body = [self.safebooru(p) for p in posts] if posts else ""
        elif family == "zerochan" and path.strip("/").isdigit():
            post = next((p for p in self.posts if p.id == int(path.strip("/"))), None)
            return (
                (404, b"", {}) if post is None else (200, json.dumps(self.zerochan_entry(post)).encode(), {})
            )
        elif family == "zerochan":
            tags = [unquote_plus(t) for t in path.strip("/").split(",")]
            number, posts = self.page(self.matching(tags), query.get("p"), limit)
            body = {"items": [self.zerochan(p) for p in posts]}
        else:
            return 404, b"", {}
        self.pages.append((time.monotonic(), number))
        faults = self.page_faults.get(number)
        if faults:
            status, headers, *body = faults.pop(0)
            return status, body[0] if body else b"", headers
        return 200, json.dumps(body).encode(), {}

    def file(self, path: str) -> tuple[int, bytes, dict]:
        post_id = int(path.rsplit("/", 1)[1].split(".")[0])
        post = next((p for p in self.posts if p.id == post_id), None)
        faults = self.file_faults.get(post_id)
        if faults:
            status, headers = faults.pop(0)
            return status, b"", headers
        if post is None or post.data is None:
            return 404, b"", {}
        data = post.data
        if path.startswith("/sample/"):
            with Image.open(io.BytesIO(data)) as image:
                image.thumbnail((96, 96))
                buffer = io.BytesIO()
                image.save(buffer, "JPEG")
                return 200, buffer.getvalue(), {}
        if post_id in self.truncate_always or post_id in self.truncate_once:
            self.truncate_once.discard(post_id)
            return 200, data[: len(data) // 2], {}
        return 200, data, {}

    # --- the families' post records (fields as the sites' API documentation lists them) --------------
    def danbooru(self, p: FakePost) -> dict:
        record = {
            "id": p.id, "md5": p.md5, "rating": p.rating, "score": p.score, "source": p.source,
            "image_width": 256, "image_height": 256, "file_ext": p.ext, "is_deleted": p.deleted,
            "is_banned": False, "tag_string": " ".join(p.all_tags()),
            **{f"tag_string_{c}": " ".join(p.tags.get(c, [])) for c in TYPE_NUMBERS},
        }  # fmt: skip
        if not p.hidden:
            record |= {"file_url": self.file_url(p), "large_file_url": f"{self.url}/sample/{p.id}.jpg"}
        return record

    def e621(self, p: FakePost) -> dict:
        return {
            "id": p.id,
            "file": {"width": 256, "height": 256, "ext": p.ext, "size": len(p.data or b""), "md5": p.md5,
                     "url": self.file_url(p)},
            "sample": {"has": True, "width": 96, "height": 96, "url": f"{self.url}/sample/{p.id}.jpg"},
            "score": {"up": p.score, "down": 0, "total": p.score},
            "tags": {"species": ["feline"], "invalid": [], "lore": [], **p.tags},
            "flags": {"pending": False, "flagged": False, "deleted": p.deleted},
            "rating": self.rating(p), "sources": [p.source] if p.source else [], "fav_count": 0,
        }  # fmt: skip

    def moebooru(self, p: FakePost) -> dict:
        return {
            "id": p.id, "tags": " ".join(p.all_tags()), "md5": p.md5, "file_url": self.file_url(p),
            "file_ext": p.ext, "sample_url": f"{self.url}/sample/{p.id}.jpg", "jpeg_url": self.file_url(p),
            "rating": self.rating(p), "score": p.score, "source": p.source, "width": 256, "height": 256,
            "status": "deleted" if p.deleted else "active",
        }  # fmt: skip

    def gelbooru(self, p: FakePost) -> dict:
        return {
            "id": p.id, "md5": p.md5, "file_url": self.file_url(p) or "", "directory": "ab/cd",
            "image": f"{p.md5}.{p.ext}", "sample": 1, "sample_url": f"{self.url}/sample/{p.id}.jpg",
            "rating": self.rating(p), "score": p.score, "source": p.source, "width": 256, "height": 256,
            "tags": " ".join(p.all_tags()), "status": "deleted" if p.deleted else "active",
        }  # fmt: skip

    def safebooru(self, p: FakePost) -> dict:
        return {
            "id": p.id, "hash": p.md5, "directory": "1", "image": f"{p.id}.{p.ext}", "sample": False,
            "rating": self.rating(p), "score": p.score, "source": p.source, "width": 256, "height": 256,
            "tags": " ".join(p.all_tags()), "owner": "someone",
        }  # fmt: skip

    def tag_types(self, names: list[str]) -> dict | list:
        kinds = {t: c for p in self.posts for c, ts in p.tags.items() for t in ts}
        rows = [{"name": n, "type": TYPE_NUMBERS[kinds[n]], "count": 1} for n in names if n in kinds]
        return {"@attributes": {"count": len(rows)}, "tag": rows} if self.family == "gelbooru" else rows

    def zerochan(self, p: FakePost) -> dict:
        return {"id": p.id, "width": 256, "height": 256, "thumbnail": "", "source": p.source,
                "tag": p.tags["character"][0], "tags": p.all_tags()}  # fmt: skip

    def zerochan_entry(self, p: FakePost) -> dict:
        entry = {"id": p.id, "width": 256, "height": 256, "source": p.source, "tags": p.all_tags(),
                 "large": f"{self.url}/sample/{p.id}.jpg"}  # fmt: skip
        return entry | ({"full": self.file_url(p)} if not p.hidden else {})


def serve(board: Board) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start the board on 127.0.0.1 (a daemon thread); returns the server and its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real sites

        def log_message(self, *args):
            pass

        def do_GET(self):
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            is_file = parts.path.startswith(FILE_PATHS)
            with board.lock:
                board.requests.append((time.monotonic(), "file" if is_file else "api", self.path))
                board.hits[parts.path] += 1
                board.headers.append(dict(self.headers))
            if board.delay:
                time.sleep(board.delay)
            with board.lock:
                status, data, headers = board.answer(parts.path, query)
                post_id = parts.path.rsplit("/", 1)[-1].split(".")[0]
                cut = is_file and post_id.isdigit() and int(post_id) in board.cut_once
                board.cut_once.discard(int(post_id) if post_id.isdigit() else -1)
            try:
                self.send_response(status)
                for name, value in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                if cut:  # the announced length, half the bytes, then the connection closes
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    board.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, board.url


def serving():
    """For a test's fixture: yields `start(board) -> base URL`; stops the boards when resumed."""
    servers = []

    def start(board: Board) -> str:
        httpd, url = serve(board)
        servers.append(httpd)
        return url

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
