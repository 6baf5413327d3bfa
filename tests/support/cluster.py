"""A local Redis Cluster on loopback, built from the same binaries as the standalone servers.

Example::

    with ClusterProcess(valkey_binary()) as cluster:   # 3 masters, slots 0-5460-10922-16383
        with cluster.client() as client:               # a redis.cluster.RedisCluster
            client.set("{q}:a", 1)
        cluster.node_for_key("{q}:a").kill()           # chaos on one master
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from .polling import Deadline
from .servers import LOOPBACK, ServerError, ServerProcess

__all__ = ["CLUSTER_SLOTS", "ClusterProcess"]

CLUSTER_SLOTS = 16384


class ClusterProcess:
    """A local Redis Cluster of ``masters`` nodes (no replicas) on loopback.

    Nodes are :class:`ServerProcess` objects with ``cluster-enabled yes``, a free client port
    and a free cluster-bus port each (``cluster-port``, so Redis >= 7.0 or Valkey). Slots are
    split as ``redis-cli --cluster create`` does (0-5460, 5461-10922, 10923-16383 for three).
    The cluster is created with ``redis-cli --cluster create`` when ``redis-cli`` is on PATH,
    else with CLUSTER ADDSLOTSRANGE / SET-CONFIG-EPOCH / MEET from Python.

    Args:
        binary: The server executable for every node.
        masters: How many master nodes.
        extra_args: More configuration for every node (e.g.
            ``["--cluster-require-full-coverage", "no"]`` to keep serving while a node is down).
        use_redis_cli: Force (True) or forbid (False) ``redis-cli``; None picks it if present.
        password: ``requirepass`` on every node (also used as ``masterauth``).
        startup_timeout: Seconds for the whole cluster to reach ``cluster_state:ok``.

    Raises:
        ServerError: If the cluster does not come up.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        masters: int = 3,
        extra_args: Sequence[str] = (),
        use_redis_cli: bool | None = None,
        password: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.password = password
        self.nodes: list[ServerProcess] = []
        redis_cli = shutil.which("redis-cli")
        if use_redis_cli is None:
            use_redis_cli = redis_cli is not None
        if use_redis_cli and redis_cli is None:
            raise ServerError("redis-cli is not on PATH")
        deadline = Deadline(startup_timeout)
        node_args = list(extra_args)
        if password is not None:
            node_args += ["--masterauth", password]
        try:
            for _ in range(masters):
                self.nodes.append(
                    ServerProcess(
                        binary,
                        cluster=True,
                        extra_args=node_args,
                        password=password,
                        startup_timeout=max(1.0, deadline.remaining()),
                    )
                )
            self.slot_ranges = _split_slots(masters)
            if use_redis_cli and redis_cli is not None:
                self._create_with_redis_cli(redis_cli, deadline)
            else:
                self._create_from_python()
            self.wait_ok(timeout=deadline.remaining())
            self.slot_ranges = self._read_slot_ranges()
        except BaseException:
            self.close()
            raise

    @property
    def host(self) -> str:
        """Always ``"127.0.0.1"``."""
        return LOOPBACK

    @property
    def ports(self) -> list[int]:
        """The client ports of the nodes, in slot order."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first node (``RedisCluster.from_url`` takes it)."""
        return self.nodes[0].url

    @property
    def cluster_url(self) -> str:
        """``redis+cluster://127.0.0.1:PORT`` of the first node (redisq's cluster scheme)."""
        return f"redis+cluster://{LOOPBACK}:{self.nodes[0].port}"

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """Every node, for ``RedisCluster(startup_nodes=...)``."""
        # redis-py leaves ClusterNode.__init__ unannotated.
        return [ClusterNode(LOOPBACK, node.port) for node in self.nodes]  # type: ignore[no-untyped-call]

    def client(self, **kwargs: Any) -> RedisCluster:
        """Return a new redis-py cluster client (the caller closes it)."""
        options: dict[str, Any] = {"startup_nodes": self.startup_nodes, "password": self.password}
        options.update(kwargs)
        return RedisCluster(**options)

    def keyslot(self, key: str) -> int:
        """Return the hash slot of ``key`` (asked of the server, so hash tags count)."""
        with self.nodes[0].client() as client:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))

    def node_for_slot(self, slot: int) -> ServerProcess:
        """Return the node that owns ``slot``."""
        for node, (first, last) in zip(self.nodes, self.slot_ranges, strict=True):
            if first <= slot <= last:
                return node
        raise ValueError(f"slot {slot} is outside 0-{CLUSTER_SLOTS - 1}")

    def node_for_key(self, key: str) -> ServerProcess:
        """Return the node that owns ``key``."""
        return self.node_for_slot(self.keyslot(key))

    def _create_with_redis_cli(self, redis_cli: str, deadline: Deadline) -> None:
        command = [redis_cli]
        if self.password is not None:
            command += ["-a", self.password, "--no-auth-warning"]
        command += ["--cluster", "create"]
        command += [f"{LOOPBACK}:{node.port}" for node in self.nodes]
        command += ["--cluster-replicas", "0", "--cluster-yes"]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline.remaining()),
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"redis-cli --cluster create timed out: {exc.output!r}") from None
        if result.returncode != 0:
            raise ServerError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def _create_from_python(self) -> None:
        for epoch, (node, (first, last)) in enumerate(
            zip(self.nodes, self.slot_ranges, strict=True), start=1
        ):
            with node.client() as client:
                # Distinct epochs up front, as redis-cli does, so no collision round is needed.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
                try:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                except redis.ResponseError:  # before 7.0: no ADDSLOTSRANGE
                    client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        with self.nodes[0].client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", LOOPBACK, node.port, node.cluster_port)

    def _read_slot_ranges(self) -> list[tuple[int, int]]:
        """Return the slot range each node owns, in node order (asked of the first node)."""
        with self.nodes[0].client() as client:
            reply = client.execute_command("CLUSTER", "SLOTS")
        # Raw reply: [[first, last, [host, port, id, ...], replicas...], ...]
        owner = {int(entry[2][1]): (int(entry[0]), int(entry[1])) for entry in reply}
        return [owner[node.port] for node in self.nodes]

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and the full slot map.

        Raises:
            ServerError: On timeout, with each node's last view.
        """
        deadline = Deadline(timeout)
        views: dict[int, str] = {}
        while True:
            ready = True
            for node in self.nodes:
                if not node.running:
                    continue
                ok, views[node.port] = self._node_ok(node)
                ready = ready and ok
            if ready:
                return
            if deadline.expired():
                detail = "\n".join(f"{port}: {view}" for port, view in views.items())
                raise ServerError(f"cluster not ok after {timeout:g} s:\n{detail}")
            time.sleep(min(0.02, deadline.remaining()))

    def _node_ok(self, node: ServerProcess) -> tuple[bool, str]:
        expected = sum(1 for other in self.nodes if other.running)
        try:
            with node.client(socket_timeout=2, retry=Retry(NoBackoff(), 0)) as client:
                info = client.execute_command("CLUSTER", "INFO")
                nodes = client.execute_command("CLUSTER", "NODES")
        except redis.RedisError as exc:
            return False, repr(exc)
        text = info.decode() if isinstance(info, bytes) else str(info)
        table = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
        fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
        lines = [line.split() for line in table.splitlines() if line.strip()]
        healthy = [
            parts
            for parts in lines
            if not {"handshake", "noaddr", "fail", "fail?"} & set(parts[2].split(","))
            and parts[7] == "connected"
        ]
        ok = (
            fields.get("cluster_state") == "ok"
            and fields.get("cluster_slots_assigned") == str(CLUSTER_SLOTS)
            and len(healthy) >= expected
        )
        return ok, f"state={fields.get('cluster_state')} nodes={len(healthy)}/{len(lines)}"

    def stop(self) -> None:
        """Stop every node (folders stay)."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop every node and delete their folders."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ClusterProcess {LOOPBACK} ports={self.ports}>"


def _split_slots(masters: int) -> list[tuple[int, int]]:
    """Split the slots as ``redis-cli --cluster create`` does."""
    if masters < 1:
        raise ValueError("a cluster needs at least one master")
    per_node = CLUSTER_SLOTS / masters
    ranges = []
    first = 0
    for index in range(masters):
        last = CLUSTER_SLOTS - 1 if index == masters - 1 else round(per_node * (index + 1)) - 1
        ranges.append((first, last))
        first = last + 1
    return ranges
