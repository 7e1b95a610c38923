"""A Ray cluster on one machine, each node its own ``ray start`` process, on loopback only:
what tests/test_ray_cluster.py and bench/ray_cluster_faults.py run sweeps on.

    with LoopbackCluster() as c:
        c.start(workers=2)
        sweep = c.popen([python, "-m", "audioscale", "sweep", ..., "--ray-address", c.address])

Choices:
- Network: on Linux, Ray turns ``--node-ip-address=127.0.0.1`` into the machine's routable
  address (``ray._private.services.resolve_ip_for_localhost``) and its GCS and raylets then
  listen on every interface. So where the machine allows it (root and util-linux
  ``unshare``/``nsenter``), the cluster lives in a private network namespace that holds
  only a loopback device, and every process of it, nodes and drivers, starts through
  ``nsenter``: whatever Ray binds, no other machine can reach it, and the node IP Ray
  resolves is 127.0.0.1. Elsewhere (no CAP_SYS_ADMIN: most containers) the nodes share
  the machine's network, ``netns`` is False and ``node_ips()`` shows what Ray chose
  (``AUDIOSCALE_RAY_NETNS=0`` / ``1`` forces either way).
  ``listeners()`` reads the listening sockets of the cluster's own processes from /proc.
- Auth: Ray's token authentication as its docs set it up (ray-security/token-auth):
  ``ray get-auth-token --generate`` with HOME at the cluster's folder writes a fresh token
  to HOME/.ray/auth_token (mode 600), and every node and driver gets ``RAY_AUTH_MODE=token``
  and ``RAY_AUTH_TOKEN_PATH`` at that file, ``RAY_AUTH_TOKEN`` and ``RAY_ADDRESS`` removed
  and HOME at the cluster's folder: the user's own token is never read, written or sent.
- Ports: each node gets free ports for all its servers (GCS, node manager, object
  manager, agents, metrics), its own worker-port range and its own short ``--temp-dir``
  (unix socket paths must stay under 108 bytes): nodes on one address must not collide
  with each other or with another Ray on the machine. Dashboard and usage stats off,
  100 MB object store per node. The head gets ``--num-cpus=0``, so tasks run on workers.
- Processes: each node is ``ray start --block`` in a session of its own (gcs_server,
  raylet, agents, and the raylet's workers, which Ray puts in process groups of their
  own); so is each driver started with ``popen``. ``kill_node`` SIGKILLs a node's raylet
  (the fault; ``ray start --block`` then ends the rest of the node) and then whatever of
  the node's session is left; ``close`` SIGKILLs every process of every session it
  started, by pid, and waits until none is left. Never ``ray stop``: it stops every Ray
  on the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
STARTED = "Ray runtime started"
WORKER_PORTS = 100  # per node: one port per worker process (a run, the driver, idle ones)
_LO_UP = """
import fcntl, signal, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack('16sH22x', fcntl.ioctl(s, 0x8913, struct.pack('16sH22x', b'lo', 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack('16sH22x', b'lo', flags | 1))
print('up', flush=True)
signal.pause()
"""  # SIOCGIFFLAGS / SIOCSIFFLAGS |= IFF_UP on lo, then hold the namespace open


def can_unshare() -> bool:
    """Whether this process may make a network namespace (root with util-linux)."""
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return False
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    return probe.returncode == 0


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(taken: set[int]) -> int:
    """A port free on this machine's loopback, not in ``taken`` (which it joins)."""
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def free_range(taken: set[int], n: int = WORKER_PORTS) -> tuple[int, int]:
    """``n`` consecutive free ports below the ephemeral range (32768), none in ``taken``."""
    while True:
        lo = random.randrange(20000, 32768 - n)
        ports = set(range(lo, lo + n))
        if not ports & taken and all(_bindable(p) for p in ports):
            taken |= ports
            return lo, lo + n - 1


def _stat(pid: str) -> tuple[str, int] | None:
    """(state, session id) of a pid from /proc, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[3])


def session_pids(sids: set[int]) -> list[int]:
    """Live (not zombie) processes of the sessions ``sids``. Sessions, not process groups:
    Ray puts each worker process in a process group of its own, in the node's session."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(entry)
            if st and st[0] != "Z" and st[1] in sids:
                out.append(int(entry))
    return out


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                out.add(link[8:-1])
    except OSError:
        pass
    return out


def _address(hexaddr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A /proc/net/tcp{,6} address: hex 32-bit words in host byte order; an IPv4 address
    mapped into IPv6 (``::ffff:127.0.0.1``) comes back as IPv4."""
    words = [bytes.fromhex(hexaddr[i : i + 8]) for i in range(0, len(hexaddr), 8)]
    if sys.byteorder == "little":
        words = [w[::-1] for w in words]
    ip = ipaddress.ip_address(b"".join(words))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def listening(pids: list[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket these processes listen on."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    out = set()
    for pid in pids[:1]:  # one netns for all of them: any pid's view of /proc/net
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if f[3] == "0A" and f[9] in owner:  # 0A: LISTEN
                    addr, port = f[1].split(":")
                    out.add((str(_address(addr)), int(port, 16), owner[f[9]]))
    return sorted(out)


@dataclass
class Node:
    """One ``ray start --block`` process (the leader of the node's session)."""

    name: str
    proc: subprocess.Popen
    temp_dir: Path
    log: Path
    node_id: str = ""  # Ray's node id (hex), read from the raylet's command line

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def node_ip(self) -> str | None:
        """The node IP Ray settled on (its 'Local node IP:' line)."""
        for line in self.log_text().splitlines():
            if "Local node IP:" in line:
                return line.rsplit(":", 1)[1].strip()
        return None


class LoopbackCluster:
    """Head and worker nodes as separate ``ray start`` processes (see the module doc)."""

    def __init__(self, root: str | Path | None = None, netns: bool | None = None):
        # short: Ray's unix sockets live under each node's temp dir
        self.own_root = root is None  # removed by close()
        self.root = Path(root or tempfile.mkdtemp(prefix="asr-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = self.root / "home"
        self.token_path = self.home / ".ray" / "auth_token"
        if netns is None and os.environ.get("AUDIOSCALE_RAY_NETNS") in ("0", "1"):
            netns = os.environ["AUDIOSCALE_RAY_NETNS"] == "1"
        self.netns = can_unshare() if netns is None else netns
        self.ray = str(Path(sys.executable).with_name("ray"))
        self.holder: subprocess.Popen | None = None
        self.sessions: list[subprocess.Popen] = []  # the leader of every session started
        self.nodes: list[Node] = []
        self.taken: set[int] = set()
        self.port = free_port(self.taken)
        self.address = f"{LOOPBACK}:{self.port}"

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ processes

    def env(self) -> dict[str, str]:
        """The environment of every node and driver: the cluster's token, nobody else's."""
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS")}
        env.update(HOME=str(self.home), RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0",
                   RAY_AUTH_TOKEN_PATH=str(self.token_path))  # fmt: skip
        return env

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside the cluster's network namespace (as is without one)."""
        if self.holder is None:
            return list(args)
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *args]

    def popen(self, args: list[str], log: Path, env: dict | None = None,
              err: Path | None = None) -> subprocess.Popen:  # fmt: skip
        """Start ``args`` in the cluster's network, in a session of its own, stdout to
        ``log`` (stderr too, unless ``err``); ``close`` kills it with the nodes."""
        with open(log, "ab") as out, open(err or os.devnull, "ab") as errf:
            proc = subprocess.Popen(self.command(args), stdout=out, env=env or self.env(),
                                    stderr=errf if err else subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self.sessions.append(proc)
        return proc

    def _make_netns(self) -> None:
        cmd = ["unshare", "--net", "--", sys.executable, "-c", _LO_UP]
        self.holder = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
        self.sessions.append(self.holder)
        if self.holder.stdout.readline().strip() != b"up":
            raise RuntimeError("could not bring up lo in the cluster's network namespace")

    def _make_token(self) -> None:
        """``ray get-auth-token --generate``: a new token in HOME/.ray/auth_token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        env["HOME"] = str(self.home)
        self.home.mkdir(parents=True, exist_ok=True)
        subprocess.run([self.ray, "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        self.token_path.chmod(0o600)

    # ------------------------------------------------------------------ nodes

    def _node_args(self, head: bool, cpus: int, temp_dir: Path) -> list[str]:
        t = self.taken
        lo, hi = free_range(t)
        args = [self.ray, "start", "--block", "--disable-usage-stats",
                f"--node-ip-address={LOOPBACK}", f"--temp-dir={temp_dir}", f"--num-cpus={cpus}",
                "--num-gpus=0", "--object-store-memory=100000000",
                f"--node-manager-port={free_port(t)}", f"--object-manager-port={free_port(t)}",
                f"--dashboard-agent-listen-port={free_port(t)}",
                f"--dashboard-agent-grpc-port={free_port(t)}",
                f"--metrics-export-port={free_port(t)}", f"--runtime-env-agent-port={free_port(t)}",
                f"--min-worker-port={lo}", f"--max-worker-port={hi}"]  # fmt: skip
        if head:
            return [*args, "--head", f"--port={self.port}", "--include-dashboard=false"]
        return [*args, f"--address={self.address}"]

    def _start_node(self, head: bool, cpus: int) -> Node:
        name = "head" if head else f"worker{len(self.nodes)}"
        temp_dir = self.root / name[0] / str(len(self.nodes))
        temp_dir.mkdir(parents=True)
        log = self.root / f"{name}.log"
        proc = self.popen(self._node_args(head, cpus, temp_dir), log)
        node = Node(name, proc, temp_dir, log)
        self.nodes.append(node)
        return node

    def wait_started(self, node: Node, timeout: float = 120.0) -> None:
        """Until the node's ``ray start`` says the runtime started (it has joined)."""
        t0 = time.time()
        while STARTED not in node.log_text():
            if node.proc.poll() is not None or time.time() - t0 > timeout:
                tail = node.log_text()[-3000:]
                raise RuntimeError(f"Ray node {node.name} did not start:\n{tail}")
            time.sleep(0.2)
        node.node_id = self._raylet(node)[1]

    def add_worker(self, cpus: int = 1, wait: bool = True) -> Node:
        node = self._start_node(False, cpus)
        if wait:
            self.wait_started(node)
        return node

    def start(self, workers: int = 1, cpus_per_worker: int = 1) -> LoopbackCluster:
        """Token, namespace (when allowed), the head, then ``workers`` worker nodes."""
        self._make_token()
        if self.netns:
            self._make_netns()
        self.wait_started(self._start_node(True, 0))
        started = [self.add_worker(cpus_per_worker, wait=False) for _ in range(workers)]
        for node in started:
            self.wait_started(node)
        return self

    @property
    def head(self) -> Node:
        return self.nodes[0]

    def workers(self) -> list[Node]:
        return [n for n in self.nodes[1:] if n.proc.poll() is None]

    def node_ips(self) -> dict[str, str | None]:
        return {n.name: n.node_ip() for n in self.nodes}

    def _raylet(self, node: Node) -> tuple[int, str]:
        """(pid, node id) of the node's raylet."""
        for pid in session_pids({node.proc.pid}):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if argv[0].endswith("/raylet"):
                ids = [a.split("=", 1)[1] for a in argv if a.startswith("--node_id=")]
                return pid, ids[0] if ids else ""
        raise RuntimeError(f"no raylet in node {node.name}")

    def node_of(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    def kill_node(self, node: Node, timeout: float = 60.0) -> None:
        """SIGKILL the node's raylet; wait until no process of the node is left."""
        os.kill(self._raylet(node)[0], signal.SIGKILL)
        try:
            node.proc.wait(timeout=timeout)  # ray start --block ends the rest of the node
        except subprocess.TimeoutExpired:
            pass
        self._kill_sessions([node.proc], timeout)

    def listeners(self) -> list[tuple[str, int, int]]:
        """(address, port, pid) of every TCP listener of the cluster's processes."""
        return listening(self.pids())

    def pids(self) -> list[int]:
        """Live processes of every session this cluster started."""
        return session_pids({p.pid for p in self.sessions})

    # ------------------------------------------------------------------ teardown

    def _kill_sessions(self, leaders: list[subprocess.Popen], timeout: float) -> None:
        """SIGKILL every process of the sessions of ``leaders``, by pid, until none is left."""
        sids, t0 = {p.pid for p in leaders}, time.time()
        while left := session_pids(sids):
            if time.time() - t0 > timeout:
                raise RuntimeError(f"processes of the Ray cluster still alive: {left}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for p in leaders:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=0.1)  # reap our own children
        for p in leaders:
            p.wait()

    def close(self, timeout: float = 30.0) -> None:
        """SIGKILL every process this cluster started; wait until none is left."""
        try:
            self._kill_sessions(self.sessions, timeout)
        finally:
            if self.holder and self.holder.stdout:
                self.holder.stdout.close()
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)
