"""A real S3 API on 127.0.0.1 (moto's server) for the remote tests, reached the way a user reaches
MinIO, R2 or any other S3-compatible endpoint: `AWS_ENDPOINT_URL` plus keys in the environment, which
pool workers and subprocesses inherit. Import the fixtures into a test module: `s3 = s3_server.s3`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


@dataclass
class S3:
    endpoint: str
    bucket: str
    fs: Any  # an s3fs.S3FileSystem on the endpoint

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def keys(self, prefix: str = "") -> list[str]:
        self.fs.invalidate_cache()
        return sorted(p.removeprefix(f"{self.bucket}/") for p in self.fs.find(f"{self.bucket}/{prefix}"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """A fresh bucket; the environment points every S3 client (s3fs, boto3) at the local endpoint."""
    import s3fs

    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # clients made under another environment
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    yield S3(s3_endpoint, bucket, fs)
    s3fs.S3FileSystem.clear_instance_cache()
