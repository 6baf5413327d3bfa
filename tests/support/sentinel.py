"""A local Sentinel setup for tests: a master, a replica and one sentinel watching them.

::

    with SentinelGroup(redis_binary()) as group:
        url = group.url                  # redis+sentinel://127.0.0.1:PORT/mymaster
        group.failover()                 # SENTINEL FAILOVER; returns when the replica leads

Every process listens on 127.0.0.1 only, in its own temporary folder. The sentinel is the
same server binary started with ``--sentinel`` on a config file it may rewrite; one sentinel
with quorum 1 is enough for ``SENTINEL FAILOVER`` (which needs no agreement).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from .polling import Deadline, wait_for
from .servers import LOOPBACK, ServerError, ServerProcess, free_port
from .tls import TlsFiles

__all__ = ["MASTER_NAME", "SentinelGroup", "SentinelProcess"]

MASTER_NAME = "mymaster"


class SentinelProcess:
    """``SERVER --sentinel`` monitoring one master, on a free loopback port.

    Args:
        binary: redis-server or valkey-server.
        master_port: the port of the master to monitor (on 127.0.0.1).
        down_after_ms: how long a silent master takes to be judged down.
        tls: also listen with TLS on `tls_port`, and reach the master over TLS (then
            `master_port` is the master's TLS port).
    """

    def __init__(
        self,
        binary: str,
        master_port: int,
        *,
        down_after_ms: int = 1000,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = binary
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        tls_lines = (
            [
                f"tls-port {self.tls_port}",
                f'tls-cert-file "{tls.cert_file}"',
                f'tls-key-file "{tls.key_file}"',
                f'tls-ca-cert-file "{tls.ca_file}"',
                "tls-auth-clients optional",
                "tls-replication yes",
            ]
            if tls is not None
            else []
        )
        self.dir = Path(tempfile.mkdtemp(prefix="redisq-sentinel-"))
        config = self.dir / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f"bind {LOOPBACK}",
                    "daemonize no",
                    f'dir "{self.dir}"',
                    f'logfile "{self.dir / "sentinel.log"}"',
                    f"sentinel monitor {MASTER_NAME} {LOOPBACK} {master_port} 1",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
                    f"sentinel failover-timeout {MASTER_NAME} 10000",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                    *tls_lines,
                    "",
                ]
            )
        )
        with open(self.dir / "stdio.log", "ab") as stdio:
            self.process = subprocess.Popen(
                [binary, str(config), "--sentinel"],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self._answers, timeout=15, message=lambda: f"sentinel up: {self.log_tail()}")
        except BaseException:
            self.close()
            raise

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise ServerError(f"the sentinel exited while starting:\n{self.log_tail()}")
        try:
            with self.client() as client:
                return client.ping() is True
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        """A client of the sentinel itself (the caller closes it)."""
        return redis.Redis(LOOPBACK, self.port, socket_timeout=5, decode_responses=True)

    def master_port(self) -> int:
        """The port of the master the sentinel names now."""
        with self.client() as client:
            _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(port)

    def log_tail(self, lines: int = 30) -> str:
        out: list[str] = []
        for name in ("stdio.log", "sentinel.log"):
            with contextlib.suppress(OSError):
                out += (self.dir / name).read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A master, its replica (in sync when this returns) and a sentinel that knows both."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.master = ServerProcess(binary)
        self.replica: ServerProcess | None = None
        self.sentinel: SentinelProcess | None = None
        try:
            self.replica = ServerProcess(
                binary, extra_args=["--replicaof", LOOPBACK, str(self.master.port)]
            )
            self._wait_in_sync(self.replica)
            self.sentinel = SentinelProcess(binary, self.master.port)
            wait_for(self._replica_known, timeout=30, message="the sentinel to see the replica")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:PORT/mymaster``."""
        assert self.sentinel is not None
        return f"redis+sentinel://{LOOPBACK}:{self.sentinel.port}/{MASTER_NAME}"

    def servers(self) -> list[ServerProcess]:
        return [s for s in (self.master, self.replica) if s is not None]

    def leader(self) -> ServerProcess:
        """The server the sentinel names master now."""
        assert self.sentinel is not None
        port = self.sentinel.master_port()
        return next(s for s in self.servers() if s.port == port)

    @staticmethod
    def _wait_in_sync(replica: ServerProcess) -> None:
        def linked() -> bool:
            with replica.client(decode_responses=True) as client:
                info = client.info("replication")
            return bool(info.get("master_link_status") == "up")

        wait_for(linked, timeout=30, message="the replica's link to its master")

    def _replica_known(self) -> bool:
        assert self.sentinel is not None
        assert self.replica is not None
        with self.sentinel.client() as client:
            replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
        for entry in replicas:
            fields = (
                dict(zip(entry[::2], entry[1::2], strict=True))
                if isinstance(entry, list)
                else entry
            )
            if int(fields.get("port", 0)) == self.replica.port and "down" not in fields.get(
                "flags", ""
            ):
                return True
        return False

    def wait_replicated(self) -> None:
        """Wait until the leader's writes so far reached its replica (WAIT 1)."""
        with self.leader().client() as client:
            acked = client.execute_command("WAIT", 1, 10_000)
        assert int(acked) >= 1, "the replica did not acknowledge the writes within 10 s"

    def failover(self, timeout: float = 60.0) -> ServerProcess:
        """SENTINEL FAILOVER, retried while the sentinel has no replica to promote yet; returns
        the new master once the sentinel names it and it accepts writes."""
        assert self.sentinel is not None
        old = self.leader()
        deadline = Deadline(timeout)

        def asked() -> bool:
            assert self.sentinel is not None
            try:
                with self.sentinel.client() as client:
                    client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            except redis.ResponseError:  # NOGOODSLAVE, INPROG: the sentinel is not ready yet
                return False
            return True

        wait_for(asked, timeout=timeout, interval=0.05, message="SENTINEL FAILOVER accepted")

        def promoted() -> ServerProcess | None:
            new = self.leader()
            if new is old:
                return None
            with new.client(decode_responses=True) as client:
                role = client.info("replication").get("role")
            return new if role == "master" else None

        found = wait_for(
            promoted, timeout=deadline.remaining() or 1, message="the replica promoted"
        )
        assert found is not None
        return found

    def kill_leader(self, timeout: float = 60.0) -> ServerProcess:
        """kill -9 the master; returns the replica once the sentinel promoted it."""
        old = self.leader()
        old.kill()

        def promoted() -> ServerProcess | None:
            new = self.leader()
            if new is old:
                return None
            with new.client(decode_responses=True) as client:
                role = client.info("replication").get("role")
            return new if role == "master" else None

        found = wait_for(promoted, timeout=timeout, message="the replica promoted")
        assert found is not None
        return found

    def close(self) -> None:
        if self.sentinel is not None:
            self.sentinel.close()
        for server in self.servers():
            server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
