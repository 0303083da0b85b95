"""Real services for tests, started as processes on free loopback ports and stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def free_cluster_port() -> int:
    """A free loopback port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@dataclass
class ClusterNode:
    """One redis-server of a test cluster, with what it takes to start it again."""

    port: int
    command: list[str]
    process: subprocess.Popen[bytes]


@dataclass
class RedisCluster:
    """A Redis Cluster this test session started on loopback (see ``start_cluster``)."""

    nodes: list[ClusterNode]
    tls_args: list[str]
    userinfo: str = ""
    query: str = ""

    @property
    def url(self) -> str:
        scheme = "rediss+cluster" if self.tls_args else "redis+cluster"
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        return f"{scheme}://{self.userinfo}{seeds}{'?' + self.query if self.query else ''}"

    def cli(self, port: int, *args: str, timeout: float = 30) -> str:
        out = subprocess.run(
            ["redis-cli", *self.tls_args, "-p", str(port), *args],
            capture_output=True,
            check=True,
            timeout=timeout,
        )
        return out.stdout.decode().strip()

    def primaries(self) -> list[int]:
        """Ports of the nodes that are primaries now, from a live node's CLUSTER NODES."""
        live = next(node for node in self.nodes if node.process.poll() is None)
        ports = []
        for line in self.cli(live.port, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2] and fields[8:]:
                ports.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return ports

    def slots_of(self, port: int) -> set[int]:
        """The slots the node on ``port`` serves, from its own CLUSTER NODES line."""
        for line in self.cli(port, "cluster", "nodes").splitlines():
            fields = line.split()
            if "myself" in fields[2]:
                slots: set[int] = set()
                for part in fields[8:]:
                    if not part.startswith("["):  # [slot->-node] marks a migration
                        first, _, last = part.partition("-")
                        slots.update(range(int(first), int(last or first) + 1))
                return slots
        raise RuntimeError(f"node {port} did not list itself")

    def node_id(self, port: int) -> str:
        return self.cli(port, "cluster", "myid")

    def flush(self) -> None:
        for port in self.primaries():
            self.cli(port, "flushall")

    def kill(self, port: int) -> None:
        node = next(node for node in self.nodes if node.port == port)
        node.process.kill()
        node.process.wait()

    def restart(self, port: int) -> None:
        """Start a killed node again from its own directory: it rejoins the cluster (a
        primary that was replaced comes back as a replica)."""
        node = next(node for node in self.nodes if node.port == port)
        node.process = _spawn(node.command)
        self.wait_until_ok()

    def wait_until_ok(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                if node.process.poll() is not None:
                    continue
                try:
                    states.append("cluster_state:ok" in self.cli(node.port, "cluster", "info"))
                except subprocess.CalledProcessError:
                    states.append(False)
            if states and all(states):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster was not ok within {timeout:g} s")

    def stop(self) -> None:
        for node in self.nodes:
            stop_process(node.process)


def start_cluster_node(directory: Path, tls: ClusterTls | None = None) -> ClusterNode:
    """One redis-server with cluster support on a free port pair, in a folder of its own,
    serving no slot yet."""
    port = free_cluster_port()
    folder = directory / str(port)
    folder.mkdir(parents=True)
    listen = ["--port", str(port)]
    if tls is not None:
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes"]
        listen += ["--tls-replication", "yes", "--tls-auth-clients", "optional"]
        listen += ["--tls-cert-file", tls.cert, "--tls-key-file", tls.key]
        listen += ["--tls-client-cert-file", tls.client_cert]
        listen += ["--tls-client-key-file", tls.client_key, "--tls-ca-cert-file", tls.ca]
    command = [
        "redis-server",
        *listen,
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
        "--repl-diskless-sync-delay",
        "0",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    return ClusterNode(port, command, _spawn(command))


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass(frozen=True)
class ClusterTls:
    """PEM files of a TLS cluster: each node's server certificate, the client certificate
    its nodes show each other on the cluster bus, and the CA of both."""

    cert: str
    key: str
    client_cert: str
    client_key: str
    ca: str


def start_cluster(
    directory: Path, primaries: int = 3, replicas: int = 1, tls: ClusterTls | None = None
) -> RedisCluster:
    """Start ``primaries * (1 + replicas)`` redis-servers on loopback and join them into a
    cluster (node timeout 2 s, no persistence: ``../shared/RECIPES.md``). With ``tls`` the
    nodes speak TLS only, to clients and to each other."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed: run bash scripts/test.sh")
    nodes = [start_cluster_node(directory, tls) for _ in range(primaries * (1 + replicas))]
    tls_cli = ["--tls", "--cacert", tls.ca] if tls is not None else []
    cluster = RedisCluster(nodes, tls_cli)
    try:
        for node in nodes:
            wait_for_ping(cluster, node)
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
        subprocess.run(
            ["redis-cli", *tls_cli, *create, "--cluster-yes"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        cluster.wait_until_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_for_ping(cluster: RedisCluster, node: ClusterNode) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"redis-server on {node.port} exited with {node.process.returncode}")
        try:
            if cluster.cli(node.port, "ping") == "PONG":
                return
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on {node.port} did not answer PING within 10 s")


@dataclass
class RayCluster:
    """A one-node Ray cluster this session started with ``ray start --head --block`` in a
    process group of its own (Ray's processes all join it), on loopback only."""

    process: subprocess.Popen[bytes]
    port: int
    environment: dict[str, str]
    temp: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def processes(self) -> dict[int, bytes]:
        """PID -> process title of every process of this cluster: the session ``ray start``
        leads (Ray gives its workers process groups of their own, not sessions)."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) != self.process.pid:
                    continue
                found[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except (OSError, ProcessLookupError):
                continue
        return found

    def workers_running(self, task: str) -> list[int]:
        """PIDs of this cluster's workers running ``task`` now (Ray titles them ray::TASK)."""
        title = f"ray::{task}".encode()
        return [pid for pid, name in self.processes().items() if name.strip() == title]

    def stop(self) -> None:
        """SIGTERM ``ray start`` (Ray drains for up to 30 s), then after 5 s SIGKILL every
        process of its session, by PID."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self.temp, ignore_errors=True)


def ray_environment() -> dict[str, str]:
    """What every process of a test Ray cluster (and every driver) needs: loopback only
    (Ray otherwise binds the machine's address), no usage report, and a token of our own."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # "no multi-node cluster": 127.0.0.1
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }


def start_ray(directory: Path, cpus: int = 2) -> RayCluster:
    """Start a Ray head on loopback with every port it opens chosen here; ready when its
    ``ray start`` says so (about 5-8 s)."""
    binary = Path(sys.executable).parent / "ray"
    if not binary.exists():
        raise RuntimeError("Ray is not installed: run bash scripts/test.sh (it installs it)")
    environment = ray_environment()
    port = free_port()
    ports = [str(free_port()) for _ in range(3)]
    workers = free_port()
    log = directory / "ray-start.log"
    # Ray's sockets live under its temp dir: keep that path short (a socket path < 108 B).
    temp = tempfile.mkdtemp(prefix="ferry-ray-", dir="/tmp")
    command = [str(binary), "start", "--head", "--block", "--port", str(port)]
    command += ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus)]
    command += ["--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp]
    command += ["--dashboard-port", ports[0], "--ray-client-server-port", ports[1]]
    command += ["--dashboard-agent-listen-port", ports[2]]
    command += ["--min-worker-port", str(workers), "--max-worker-port", str(workers + 40)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **environment},
            start_new_session=True,
        )
    cluster = RayCluster(process, port, environment, temp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}: {log.read_text()}")
        if "Ray runtime started" in log.read_text(errors="replace"):
            return cluster
        time.sleep(0.2)
    cluster.stop()
    raise RuntimeError("ray start did not say it had started within 60 s")
