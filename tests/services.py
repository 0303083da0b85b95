"""Real services for tests, started as processes on free loopback ports and stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiobotocore.session import get_session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process this session started (by its PID), SIGKILL it after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RedisServer:
    """A redis-server this test session started."""

    process: subprocess.Popen[bytes]
    port: int
    tls_port: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, check=True, timeout=10
        )
        return out.stdout.decode().strip()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing its connections cleanly."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)


def start_redis(
    directory: Path, port: int | None = None, tls: tuple[str, str, str] | None = None
) -> RedisServer:
    """Start redis-server on a loopback port (a free one by default); a missing binary is
    a setup error, never a skip. With ``tls`` (certificate, key and CA files) it also
    listens for TLS on ``RedisServer.tls_port``; client certificates are then optional."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed: run bash scripts/test.sh (it installs it)"
        )
    port = port or free_port()
    tls_args: list[str] = []
    tls_port = 0
    if tls is not None:
        tls_port = free_port()
        cert, key, ca = tls
        tls_args = ["--tls-port", str(tls_port), "--tls-cert-file", cert, "--tls-key-file", key]
        tls_args += ["--tls-ca-cert-file", ca, "--tls-auth-clients", "optional"]
    process = subprocess.Popen(
        [
            binary,
            *tls_args,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "local",
            "--dir",
            str(directory),
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(process, port, tls_port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            if server.cli("ping") == "PONG":
                return server
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.02)
    server.stop()
    raise RuntimeError("redis-server did not answer PING within 10 s")


@contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """A redis-server (``start_redis``) for as long as the block runs."""
    server = start_redis(directory)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class MotoServer:
    """A moto_server this test session started: DynamoDB and S3 on one loopback port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dynamodb_url(self, table: str) -> str:
        return f"dynamodb://{table}?region=us-east-1&endpoint_url={self.endpoint}"

    def stop(self) -> None:
        stop_process(self.process)


AWS_TEST_ENVIRONMENT = {
    # moto accepts any credentials; these keep botocore and pyarrow off the real AWS chain
    # (no instance metadata lookups, no profile files).
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def start_moto(check_credentials: bool = False) -> MotoServer:
    """Start moto_server on a free loopback port; a missing binary is a setup error. With
    ``check_credentials`` it refuses every request not signed by a user it knows (moto's
    IAM mode), as AWS refuses wrong credentials."""
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(binary).exists():
        raise RuntimeError(
            "moto_server is not installed: run bash scripts/test.sh (it installs it)"
        )
    port = free_port()
    environment = {**os.environ}
    if check_credentials:
        environment["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    server = MotoServer(process, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("moto_server did not answer within 30 s")


def put_s3_objects(moto: MotoServer, bucket: str, objects: dict[str, bytes]) -> None:
    """Create ``bucket`` if needed and put each object (key -> bytes) with plain PutObject:
    moto fails some of pyarrow's multipart uploads of small files."""

    async def put() -> None:
        async with get_session().create_client(
            "s3", region_name="us-east-1", endpoint_url=moto.endpoint
        ) as client:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                await client.create_bucket(Bucket=bucket)
            for key, body in objects.items():
                await client.put_object(Bucket=bucket, Key=key, Body=body)

    # In a thread of its own: fixtures may run while an event loop is running.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, put()).result()


def upload_to_s3(folder: Path, moto: MotoServer, bucket: str, prefix: str = "offline") -> str:
    """Copy a local offline store to ``s3://bucket/prefix`` on moto; returns that URI.

    Readers find the endpoint in ``AWS_ENDPOINT_URL`` (set here, for this process and the
    CLIs it runs), as they would any S3-compatible store.
    """
    os.environ["AWS_ENDPOINT_URL"] = moto.endpoint
    files = {
        f"{prefix}/{path.relative_to(folder).as_posix()}": path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    put_s3_objects(moto, bucket, files)
    return f"s3://{bucket}/{prefix}"
