"""Request bodies with images spliced in are byte for byte what `json.dumps` writes."""

from __future__ import annotations

import base64
import json
import os

from captionary.backends import json_body as module
from captionary.backends.json_body import DataUrl, json_body


def dumps(body) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def url(n: int) -> DataUrl:
    return DataUrl("data:image/jpeg;base64," + base64.b64encode(os.urandom(n)).decode())


def body(*parts, text='Describe "this" \\ café \ue000 😀 \n\t'):
    content = [{"type": "text", "text": text}]
    content += [{"type": "image_url", "image_url": {"url": part}} for part in parts]
    return {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 8, "stop": ("x",)}


def test_bodies_with_images_are_what_json_dumps_writes():
    for parts in [(), (url(300),), (url(3000), url(1), 'https://example.com/a.jpg?q="1"')]:
        assert json_body(body(*parts)) == dumps(body(*parts))
        assert json.loads(json_body(body(*parts))) == json.loads(dumps(body(*parts)))


def test_text_holding_the_placeholder_falls_back_to_a_plain_dump(monkeypatch):
    monkeypatch.setattr(module, "_counter", iter([7, 7]))
    token = f"{module._TOKEN}7\ue000"
    tricky = body(url(100), text=token)
    assert json_body(tricky) == dumps(tricky)
