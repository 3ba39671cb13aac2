"""A real multi-node Ray cluster on this machine, for tests: a head and worker nodes started with
`ray start --block`, token authentication on, the dashboard (Jobs API) on 127.0.0.1.

Each node is its own `ray start` process in its own process group, with its own logical CPUs,
custom resources and ports (nodes on one machine must not share the dashboard-agent, metrics or
runtime-env ports). Teardown is by process group: SIGTERM, a grace period, then SIGKILL
(SIGTERM alone leaves gcs_server running). Killing one
worker node's group is how the chaos tests take a whole node away.

Used by tests/test_cluster.py; also runnable by hand:

    python tests/cluster_harness.py up /tmp/rc    # prints the address and the env to export
    python tests/cluster_harness.py down /tmp/rc
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    num_cpus: int
    resources: dict[str, float]
    killed: bool = False

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, grace: float = 3.0, sig: int = signal.SIGTERM) -> None:
        """Stop this node: its process group (raylet, agents) and every descendant (Ray puts
        each worker process in a group of its own)."""
        self.killed = True
        workers = descendants(self.proc.pid)
        if sig == signal.SIGKILL:
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _kill_group(self.proc, grace=grace, first=sig)
        for pid in workers:  # whatever outlived its raylet
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def descendants(root: int) -> list[int]:
    """Every living descendant of process `root` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_group(proc: subprocess.Popen, grace: float, first: int = signal.SIGTERM) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((first, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + wait
        while time.time() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        if not _group_alive(pgid):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if os.getpgid(int(p.name)) == pgid:
                stat = (p / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except (OSError, ProcessLookupError, IndexError):
            continue
    return False


@dataclass
class LocalCluster:
    """Head + workers on this machine. `env` is what a client needs (token auth included)."""

    root: Path
    head_cpus: int = 1
    workers: list[tuple[int, dict[str, float]]] = field(
        default_factory=lambda: [(3, {"worker_a": 1.0}), (3, {"worker_b": 1.0})]
    )
    object_store_bytes: int = 200 * 2**20
    nodes: list[Node] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token_path = self.root / "ray_auth_token"
        if not self.token_path.exists():
            self.token_path.write_text(secrets.token_hex(32))
            self.token_path.chmod(0o600)
        # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
        self.temp_dir = Path(f"/tmp/rayh-{os.getpid()}-{secrets.token_hex(3)}")
        self.temp_dirs: list[str] = []

    # -- environment ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, token: bool = True) -> dict[str, str]:
        """Environment of a client (ray job submit, a driver): token auth on, this cluster."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_ADDRESS=self.dashboard_url, TF_USE_LEGACY_KERAS="1")
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        if token:
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        else:  # nothing to fall back on: no env token and an empty HOME (no ~/.ray/auth_token)
            env.pop("RAY_AUTH_TOKEN", None)
            env["HOME"] = str(self.root / "no-home")
            Path(env["HOME"]).mkdir(exist_ok=True)
        return env

    def _node_env(self) -> dict[str, str]:
        env = self.env()
        env.pop("RAY_ADDRESS")  # ray start's worker processes must not reuse a client's address
        # Ray's memory monitor counts every process of the machine: on a shared test machine another
        # user's big process gets our tasks killed. The kernel's OOM killer still applies.
        env["RAY_memory_monitor_refresh_ms"] = "0"
        return env

    # -- lifecycle -----------------------------------------------------------------------------

    def _start(self, name: str, args: list[str], num_cpus: int, resources: dict[str, float]) -> Node:
        log = self.root / f"{name}.log"
        # Each node its own temp dir: nodes sharing one would share runtime_resources/, and a node
        # unpacking a job's working_dir replaces the directory a driver on another node runs in.
        temp = f"{self.temp_dir}-{name}"
        self.temp_dirs.append(temp)
        ports = [
            f"--temp-dir={temp}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
        ]
        cmd = [
            RAY,
            "start",
            "--block",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--resources={json.dumps(resources)}",
            f"--object-store-memory={self.object_store_bytes}",
            "--disable-usage-stats",
            *ports,
            *args,
        ]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self._node_env(), start_new_session=True
            )
        node = Node(name, proc, log, num_cpus, resources)
        self.nodes.append(node)
        return node

    def start(self, timeout: float = 180.0) -> LocalCluster:
        """Start the head, then each worker in turn (a loaded 2-core machine makes a raylet miss
        Ray's fixed 30 s registration window when several start at once); stop all on failure."""
        try:
            return self._start_all(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_all(self, timeout: float, tries: int = 3) -> LocalCluster:
        for attempt in range(tries):  # the head too can miss Ray's 30 s window on a loaded machine
            self.gcs_port, self.dashboard_port = free_port(), free_port()
            head = self._start(
                "head",
                [
                    "--head",
                    "--node-ip-address=127.0.0.1",
                    f"--port={self.gcs_port}",
                    "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={self.dashboard_port}",
                ],
                self.head_cpus,
                {"head": 1.0},
            )
            try:
                self._wait_dashboard(timeout)
                break
            except RuntimeError:
                head.kill(grace=1)
                self.nodes.remove(head)
                if attempt == tries - 1:
                    raise
        self.wait_nodes(1, timeout)
        for i, (cpus, res) in enumerate(self.workers):
            self.add_worker(f"worker{i}", cpus, res, timeout=timeout)
        return self

    def add_worker(
        self, name: str, num_cpus: int, resources: dict[str, float], timeout: float = 180.0, tries: int = 3
    ) -> Node:
        """Start a worker node and wait until the cluster counts it (retried if its start times out)."""
        # count our own living nodes: the GCS lists a just-killed node as alive for a while
        expected = sum(1 for n in self.nodes if n.alive and not n.killed) + 1
        for attempt in range(tries):
            node = self._start(
                name, [f"--address={self.address}", "--node-ip-address=127.0.0.1"], num_cpus, resources
            )
            try:
                self.wait_nodes(expected, timeout)
                return node
            except RuntimeError:  # its `ray start` gave up (Ray's 30 s window): once more
                node.kill(grace=1)
                self.nodes.remove(node)
                if attempt == tries - 1:
                    raise
        raise AssertionError("unreachable")

    def _wait_dashboard(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.nodes[0].alive:
                raise RuntimeError(f"ray head exited; log:\n{self.nodes[0].log.read_text()[-3000:]}")
            try:
                req = urllib.request.Request(
                    f"{self.dashboard_url}/api/version",
                    headers={"Authorization": f"Bearer {self.token_path.read_text().strip()}"},
                )
                with urllib.request.urlopen(req, timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"dashboard not up after {timeout:.0f} s; see {self.nodes[0].log}")

    def alive_nodes(self) -> int:
        """Nodes the cluster counts as alive (asked through the dashboard's state API)."""
        req = urllib.request.Request(
            f"{self.dashboard_url}/api/v0/nodes?limit=100",
            headers={"Authorization": f"Bearer {self.token_path.read_text().strip()}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                data = json.load(r)
        except OSError:
            return -1
        rows = data.get("data", {}).get("result", {}).get("result", [])
        return sum(1 for n in rows if n.get("state") == "ALIVE")

    def wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            dead = [nd.name for nd in self.nodes if not nd.alive and not nd.killed]
            if dead:
                raise RuntimeError(f"ray node(s) {dead} exited; logs in {self.root}")
            if self.alive_nodes() >= n:
                return
            time.sleep(0.5)
        raise TimeoutError(f"fewer than {n} nodes alive after {timeout:.0f} s; logs in {self.root}")

    def ray_worker_pids(self, node: Node, pattern: str = "ray::") -> list[int]:
        """PIDs of the Ray processes (tasks, actors, agents) of one node: the descendants of its
        `ray start` (Ray puts each worker in a process group of its own, so not by group)."""
        pids = []
        for pid in descendants(node.proc.pid):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(pattern.encode()):
                    pids.append(pid)
            except OSError:
                continue
        return sorted(pids)

    def kill_node(self, node: Node) -> None:
        """Take a whole worker node away at once (SIGKILL to its process group: no clean shutdown)."""
        node.kill(grace=0.0, sig=signal.SIGKILL)

    def replace_node(self, node: Node, timeout: float = 180.0) -> Node:
        """A fresh node with the resources of a killed one (as an autoscaler would start)."""
        self.nodes.remove(node)
        return self.add_worker(node.name + "r", node.num_cpus, node.resources, timeout=timeout)

    def _submit_cmd(
        self,
        entrypoint: list[str],
        working_dir: str | Path,
        env_vars: dict[str, str] | None,
        submission_id: str | None = None,
    ) -> list[str]:
        """The `ray job submit` command line of `submit` and `submit_async`."""
        runtime_env = {"env_vars": {"TF_USE_LEGACY_KERAS": "1", **(env_vars or {})}}
        return [
            RAY,
            "job",
            "submit",
            *([f"--submission-id={submission_id}"] if submission_id else []),
            f"--address={self.dashboard_url}",
            f"--working-dir={working_dir}",
            f"--runtime-env-json={json.dumps(runtime_env)}",
            "--",
            *entrypoint,
        ]

    def submit_async(
        self,
        entrypoint: list[str],
        working_dir: str | Path,
        env_vars: dict[str, str] | None = None,
        submission_id: str | None = None,
    ) -> subprocess.Popen:
        """`ray job submit` in the background (it waits for the job and streams its logs)."""
        cmd = self._submit_cmd(entrypoint, working_dir, env_vars, submission_id)
        return subprocess.Popen(
            cmd, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def stop_job(self, submission_id: str) -> None:
        """`ray job stop`: the driver and its tasks are killed (as when a driver dies)."""
        subprocess.run(
            [RAY, "job", "stop", f"--address={self.dashboard_url}", submission_id],
            env=self.env(),
            capture_output=True,
            timeout=120,
        )

    def stop(self) -> None:
        """Workers first, then the head; each by its process group (SIGTERM, then SIGKILL)."""
        for node in reversed(self.nodes):
            node.kill()
        self.nodes.clear()
        for temp in self.temp_dirs:
            subprocess.run(["rm", "-rf", temp], check=False)

    def submit(
        self,
        entrypoint: list[str],
        working_dir: str | Path,
        env_vars: dict[str, str] | None = None,
        token: bool = True,
        extra_env: dict[str, str] | None = None,
        timeout: float = 600.0,
    ) -> subprocess.CompletedProcess:
        """`ray job submit --working-dir DIR -- ENTRYPOINT` and wait for the job (its logs stream)."""
        cmd = self._submit_cmd(entrypoint, working_dir, env_vars)
        env = {**self.env(token=token), **(extra_env or {})}
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__)
        return 2
    root = Path(argv[1])
    state = root / "cluster.json"
    if argv[0] == "up":
        c = LocalCluster(root).start()
        state.write_text(json.dumps({"pids": [n.proc.pid for n in c.nodes], "temp": c.temp_dirs}))
        print(f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={c.token_path} RAY_ADDRESS={c.dashboard_url}")
        return 0
    info = json.loads(state.read_text())
    for pid in reversed(info["pids"]):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            time.sleep(3)
    subprocess.run(["rm", "-rf", *info["temp"]], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
