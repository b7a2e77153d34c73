"""The openai backend against a real HTTP server on 127.0.0.1: images, retries, timeouts, concurrency."""

from __future__ import annotations

import itertools
import threading

import pytest
from openai_server import FakeOpenAI
from PIL import Image

from captionary import ConfigError
from captionary.backends import BackendConfig, GenerationParams, Request, make_backend
from conftest import SAMPLE_PHOTOS

FAST = {"retry_backoff": 0.01, "max_retries": 2}
SERVERS: list[FakeOpenAI] = []


TRANSPORT = {"transport": "auto"}


@pytest.fixture(autouse=True, params=["aiohttp", "httpx"])
def _transport(request):
    """Every test on both HTTP clients (aiohttp's and httpx's)."""
    TRANSPORT["transport"] = request.param
    yield
    TRANSPORT["transport"] = "auto"


@pytest.fixture(autouse=True)
def _stop_servers():
    yield
    while SERVERS:
        SERVERS.pop().close()


def serve(**kwargs) -> FakeOpenAI:
    SERVERS.append(FakeOpenAI(**kwargs))
    return SERVERS[-1]


def backend(server, **options):
    options = {"base_url": server.url, **TRANSPORT, **options}
    return make_backend(BackendConfig("openai", "test-model", options=options))


def photo(name: str = "dog/00.jpg") -> Image.Image:
    return Image.open(SAMPLE_PHOTOS / name)


def test_images_arrive_as_downscaled_jpeg_and_usage_is_counted():
    server = serve()
    image = photo()
    with backend(server, max_image_edge=256) as b:
        [with_image, text_only] = b.generate([Request("caption it", [image]), Request("just text")])
    width, height = image.size
    expected = (
        f"256x{round(256 * height / width)}" if width >= height else f"{round(256 * width / height)}x256"
    )
    assert with_image.texts[0].startswith(f"a {expected} JPEG image")
    assert with_image.texts[0].endswith("for: caption it") and with_image.finish_reasons == ["stop"]
    assert text_only.texts == ["no image for: just text"]
    assert with_image.prompt_tokens == 2 + 85 and text_only.prompt_tokens == 2
    assert with_image.completion_tokens == len(with_image.texts[0].split())
    [first] = server.hits_for("caption it")
    assert first.body["model"] == "test-model" and first.body["max_tokens"] == 256
    assert first.body["messages"][0]["content"][0]["type"] == "image_url"  # image first, then the text


def test_429_waits_as_long_as_retry_after_says():
    server = serve(script={"limited": ["429:1", "429:1"]})
    with backend(server, **FAST) as b:
        [result, other] = b.generate([Request("limited"), Request("free")])
    assert result.error is None and result.texts == ["no image for: limited"]
    assert other.error is None
    hits = server.hits_for("limited")
    assert [h.status for h in hits] == [429, 429, 200]
    assert all(later.at - earlier.at >= 1.0 for earlier, later in itertools.pairwise(hits))
    assert b.retries == 2 and b.requests_sent == 4


def test_500s_are_retried_a_bounded_number_of_times_and_fail_alone():
    server = serve(script={"flaky": ["500"], "broken": ["500"] * 10})
    with backend(server, **FAST) as b:
        flaky, broken, fine = b.generate([Request("flaky"), Request("broken"), Request("fine")])
    assert flaky.texts == ["no image for: flaky"] and fine.texts == ["no image for: fine"]
    assert (
        broken.texts == [] and "HTTP 500: The server had an error (gave up after 3 attempts)" in broken.error
    )
    assert len(server.hits_for("broken")) == 3  # max_retries=2: three attempts, no more
    assert len(server.hits_for("flaky")) == 2


def test_client_errors_are_not_retried():
    server = serve(script={"bad": ["400"], "garbled": ["bad-json"]})
    with backend(server, **FAST) as b:
        bad, garbled = b.generate([Request("bad"), Request("garbled")])
    assert bad.error == "HTTP 400: Invalid image" and len(server.hits_for("bad")) == 1
    assert "not JSON" in garbled.error


def test_a_dropped_connection_is_retried_and_a_refused_one_is_named():
    server = serve(script={"dropped": ["drop"], "gone": ["drop"] * 5, "bare": ["empty-502"] * 5})
    with backend(server, **FAST) as b:
        dropped, gone, bare = b.generate([Request("dropped"), Request("gone"), Request("bare")])
    assert dropped.texts == ["no image for: dropped"]
    assert [h.status for h in server.hits_for("dropped")] == [-1, 200]
    assert gone.error.startswith("connection failed: ") and gone.error.endswith("(gave up after 3 attempts)")
    assert bare.error == "HTTP 502: Bad Gateway (gave up after 3 attempts)"  # no body: the status's name
    server.close()
    with backend(server, **FAST) as b:
        [refused] = b.generate([Request("anyone?")])
    assert refused.error.startswith("connection failed: ") and "(gave up after 3 attempts)" in refused.error


def test_a_slow_answer_times_out_and_is_retried():
    server = serve(script={"slow": ["slow:2"], "stuck": ["slow:2"] * 3})
    with backend(server, timeout=0.5, retry_backoff=0.01, max_retries=1) as b:
        slow, stuck = b.generate([Request("slow"), Request("stuck")])
    assert slow.texts == ["no image for: slow"] and len(server.hits_for("slow")) == 2
    assert stuck.error == "timed out after 0.5 s (gave up after 2 attempts)"
    assert len(server.hits_for("stuck")) == 2


def test_concurrency_limit_is_respected_and_used():
    server = serve(delay=0.2)
    with backend(server, concurrency=3) as b:
        results = b.generate([Request(f"r{i}") for i in range(12)])
    assert [r.texts[0] for r in results] == [f"no image for: r{i}" for i in range(12)]  # order kept
    assert server.peak == 3


def test_n_texts_also_from_servers_that_ignore_n():
    for ignore_n, hits in ((False, 1), (True, 3)):
        server = serve(ignore_n=ignore_n)
        with backend(server) as b:
            [result] = b.generate([Request("x", params=GenerationParams(n=3, seed=7))])
        assert len(result.texts) == 3 and len(set(result.texts)) == 3
        assert len(server.hits) == hits
        assert result.completion_tokens == sum(len(t.split()) for t in result.texts)


def test_length_finish_reason_is_reported():
    server = serve()
    with backend(server) as b:
        [result] = b.generate([Request("a b c d e f", params=GenerationParams(max_tokens=3))])
    assert result.truncated and result.texts == ["no image for:"]


def test_api_key_from_the_named_environment_variable(monkeypatch):
    server = serve(api_key="sk-test")
    monkeypatch.setenv("MY_KEY", "sk-test")
    with backend(server, api_key_env="MY_KEY") as b:
        [ok] = b.generate([Request("x")])
    assert ok.error is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with backend(server) as b:
        [refused] = b.generate([Request("x")])
    assert refused.error == "HTTP 401: Incorrect API key provided"
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(ConfigError, match=r"environment variable MY_KEY .* is not set"):
        backend(server, api_key_env="MY_KEY").preflight()
    monkeypatch.delenv("OPENAI_API_KEY")
    for hosted in ("https://api.openai.com/v1", "https://openrouter.ai/api/v1", "http://8.8.8.8/v1"):
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            make_backend(BackendConfig("openai", "gpt-4o-mini", options={"base_url": hosted})).preflight()
    for own in ("http://localhost:8000/v1", "http://192.168.1.20:8000/v1", "http://gpu-box.local/v1"):
        make_backend(BackendConfig("openai", "m", options={"base_url": own})).preflight()  # no key needed


def test_submitted_requests_keep_their_order_and_a_failed_preparation_fails_only_its_own():
    """`submit` queues requests without waiting (one slot here): a request still being prepared (a
    function, as the caption step passes them, waiting for its image) is built in its turn, an image
    already encoded by `prepare_image` is sent as is, and a preparation that raised fails only its
    own result."""
    import threading

    server = serve()
    ready = threading.Event()

    def first() -> Request:
        ready.wait(10)
        return Request("first")

    def broken() -> Request:
        raise OSError("truncated file")

    with backend(server, concurrency=1, max_image_edge=64) as b:
        encoded = b.prepare_image(photo())
        futures = [b.submit(first), b.submit(broken), b.submit(Request("third", [encoded]))]
        ready.set()
        results = [f.exception() or f.result() for f in futures]
    assert isinstance(encoded, str) and encoded.startswith("data:image/jpeg;base64,")
    assert [h.prompt for h in server.hits] == ["first", "third"]
    assert isinstance(results[1], OSError)
    assert results[2].texts[0].startswith("a 64x") and results[2].texts[0].endswith("for: third")


def test_asking_for_the_aiohttp_transport_without_aiohttp_names_the_extra(monkeypatch):
    from captionary.backends import http_clients

    monkeypatch.setattr(http_clients, "installed", lambda transport: transport != "aiohttp")
    server = serve()
    with pytest.raises(ConfigError, match=r"aiohttp package .*captionary\[openai\]"):
        backend(server, transport="aiohttp").preflight()
    with backend(server, transport="auto") as b:  # auto falls back to httpx's client
        assert b.generate([Request("hello")])[0].texts == ["no image for: hello"]
        assert b._http.transport == "httpx"
    monkeypatch.setattr(http_clients, "installed", lambda transport: False)
    with pytest.raises(ConfigError, match=r"need aiohttp .*captionary\[openai\]"):
        backend(server, transport="auto").preflight()


def test_a_transport_that_does_not_exist_is_named():
    with pytest.raises(ConfigError, match="transport must be auto, aiohttp or httpx, not 'requests'"):
        backend(serve(), transport="requests").preflight()


class Builder:
    """A request built when its slot comes; records the thread that built it."""

    def __init__(self, prompt: str, ready: bool | None):
        self.prompt, self.is_ready, self.thread = prompt, ready, ""
        if ready is not None:
            self.ready = lambda: self.is_ready

    def __call__(self) -> Request:
        self.thread = threading.current_thread().name
        return Request(self.prompt)


def test_a_builder_that_says_it_is_ready_runs_on_the_loop_and_others_in_a_helper_thread():
    server = serve()
    builders = [Builder("ready", True), Builder("not yet", False), Builder("plain", None)]
    with backend(server) as b:
        results = [future.result() for future in [b.submit(x) for x in builders]]
    assert [r.texts for r in results] == [
        ["no image for: ready"],
        ["no image for: not yet"],
        ["no image for: plain"],
    ]
    assert [x.thread.rsplit("_", 1)[0] for x in builders] == [
        "captionary-http",  # the event loop's own thread: no round trip through a helper
        "captionary-http-prep",
        "captionary-http-prep",
    ]


def test_requests_go_through_the_proxy_the_environment_names(monkeypatch):
    """HTTP_PROXY is honoured on both clients (as httpx does by default): the proxy receives the
    request for the API's full URL."""
    api, proxy = serve(), serve()
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with backend(api, max_retries=0) as b:
        [result] = b.generate([Request("via the proxy")])
    assert result.error == f"HTTP 404: no route {api.url}/chat/completions"  # the proxy got the full URL
    assert not api.hits and [h.status for h in proxy.hits] == [404]


def _certificates(folder) -> tuple[str, str, str]:
    """A certificate authority of the test's own and a certificate it signed for 127.0.0.1: (the
    authority's certificate, the server's certificate, its key), as PEM files."""
    import datetime
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, key, issuer, issuer_key, ca: bool, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test authority", ca_key, "test authority", ca_key, True)
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = certificate("127.0.0.1", server_key, "test authority", ca_key, False, names)
    paths = [str(folder / name) for name in ("ca.pem", "server.pem", "server.key")]
    for path, data in zip(paths[:2], (ca, server), strict=True):
        with open(path, "wb") as f:
            f.write(data.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths[0], paths[1], paths[2]


def test_https_is_verified_against_the_authorities_the_environment_names(tmp_path, monkeypatch):
    """An https server whose certificate no trusted authority signed is refused, with the reason;
    naming its authority in SSL_CERT_FILE (as for a company's own CA) makes it trusted."""
    authority, certificate, key = _certificates(tmp_path)
    server = serve(tls=(certificate, key))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with backend(server, max_retries=0) as b:
        [refused] = b.generate([Request("over tls")])
    assert refused.error.startswith("connection failed: ") and "CERTIFICATE_VERIFY_FAILED" in refused.error
    assert not server.hits
    monkeypatch.setenv("SSL_CERT_FILE", authority)
    with backend(server, max_retries=0) as b:
        [answered] = b.generate([Request("over tls")])
    assert answered.error is None and answered.texts == ["no image for: over tls"]
