"""Separate hosts on this machine, to rehearse a real cluster: `ray up cluster.yaml` for real.

Each host has network, PID and mount namespaces of its own:
- its own address on a private bridge (10.23.0.0/24), in a switch namespace of its own, so nothing
  is added to this machine's network and no packet leaves the namespaces made here;
- its own processes: `ray stop` on a host sees that host's Ray alone, and killing the host's first
  process (`Host.power_off`) takes every process of the host with it, as a crash does;
- its own home (/root), /tmp, /run, /dev/shm and /etc/security/limits.d, so that two hosts never share
  the project's copy, its virtual environment or Ray's temporary directory by accident;
- an sshd, reachable as root with a key made here.

The PostgreSQL host runs the server instead of sshd; the operator's host runs nothing, and the
operator's commands (`ray up`, `ray job submit`, the shoppers' clients) run in it through nsenter.
The hosts have no way out to the internet: they install the project from a wheelhouse that the
harness fills from this machine's own package index (`pip download`), given to their pip in sshd's
environment, as an operator of machines without internet access would.

Everything is torn down by the process ids and namespace names made here, even when a test fails.

By hand (as root): `python -m tests.support.hosts DIR` makes a head, two workers, PostgreSQL and an
operator whose checkout has cluster.yaml and sneakers23.env filled in for them, writes DIR/enter (a
shell on the operator's host), and tears everything down on Ctrl-C. docs/operations.md has the
rehearsal.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import alive
from harness.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
INIT = Path(__file__).with_name("host_init.py")
NETWORK = "10.23.0"  # /24, private to the switch namespace
OWN_TMPFS = {"/run": "755", "/dev/shm": "1777"}  # a host's own, empty at boot, with their usual modes
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Host:
    """One host: its namespaces, its files, and the process that is its init."""

    name: str
    address: str
    netns: str
    files: Path  # this host's own home, /tmp, … (seen from outside)
    plan: dict
    unshare: subprocess.Popen | None = None
    init_pid: int = 0
    pid_namespace: str = ""  # what /proc/PID/ns/pid reads for every process of the host

    def boot(self) -> None:
        """Start the host: its init, which mounts its files and starts its service."""
        self.unshare = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--uts",
             "sh", "-c", 'exec "$@" 2>>"$0"', str(self.files / "init.log"), sys.executable, str(INIT),
             json.dumps(self.plan)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, env={"PATH": PATH, "LANG": "C.UTF-8"}, preexec_fn=_die_with_the_harness)
        line = self.unshare.stdout.readline()
        self.unshare.stdout.close()
        if line.strip() != b"up":
            self.power_off()
            raise RuntimeError(f"host {self.name} did not start: {(self.files / 'init.log').read_text()[-2000:]}")
        children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children").read_text().split()
        self.init_pid = int(children[0])
        self.pid_namespace = os.readlink(f"/proc/{self.init_pid}/ns/pid")

    def processes(self) -> dict[int, str]:
        """Every process of this host (their ids as this machine sees them) with its command line."""
        if not self.pid_namespace:
            return {}
        mine = self.pid_namespace
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns/pid") == mine and alive(int(entry.name)):
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
        return found

    def listening_ports(self) -> list[int]:
        """The TCP ports something listens on in this host's network namespace."""
        ports = set()
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{self.init_pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            ports |= {int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines if line.split()[3] == "0A"}
        return sorted(ports)

    def power_off(self) -> None:
        """Every process of the host at once, as a crash or a pulled plug: SIGKILL to its init."""
        if self.init_pid and alive(self.init_pid):
            os.kill(self.init_pid, signal.SIGKILL)
        if self.unshare is not None:
            try:
                self.unshare.wait(30)
            except subprocess.TimeoutExpired:
                self.unshare.kill()
                self.unshare.wait()
        deadline = time.monotonic() + 30
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.processes():
            raise RuntimeError(f"host {self.name} still has processes: {self.processes()}")
        self.init_pid = 0


@dataclass
class Hosts:
    """Ray hosts (the first is the head), a PostgreSQL host and the operator's host, on one bridge."""

    names: list[str] = field(default_factory=lambda: ["head", "worker1", "worker2"])
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="s23hosts-", dir="/var/tmp")))
    prefix: str = field(default_factory=lambda: f"s23-{secrets.token_hex(3)}-")
    hosts: dict[str, Host] = field(default_factory=dict)
    netns: list[str] = field(default_factory=list)
    database_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    # Made: ----------------------------------------------------------------------------------------

    @property
    def key(self) -> Path:
        return self.base / "keys" / "operator"

    @property
    def wheelhouse(self) -> Path:
        return self.base / "wheels"

    @property
    def operator(self) -> Host:
        return self.hosts["operator"]

    @property
    def database(self) -> Host:
        return self.hosts["postgres"]

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres:{self.database_password}@{self.database.address}:5432/postgres"

    def ray_hosts(self) -> list[Host]:
        return [self.hosts[name] for name in self.names]

    # Up and down: ---------------------------------------------------------------------------------

    def __enter__(self) -> "Hosts":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def start(self) -> None:
        self.base.chmod(0o755)  # PostgreSQL's user reaches its data directory through it
        (self.base / "keys").mkdir(mode=0o700, parents=True)
        _keygen(self.key)
        (self.base / "keys" / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        self._fill_the_wheelhouse()
        switch = self._namespace("switch")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "addr", "add", f"{NETWORK}.1/24", "dev", "br0")
        _ip("-n", switch, "link", "set", "br0", "up")
        layout = [(name, f"{NETWORK}.{10 + i}") for i, name in enumerate(self.names)]
        layout += [("postgres", f"{NETWORK}.5"), ("operator", f"{NETWORK}.2")]
        for number, (name, address) in enumerate(layout):
            netns = self._namespace(name)
            _ip("-n", switch, "link", "add", f"port{number}", "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("-n", switch, "link", "set", f"port{number}", "master", "br0", "up")
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            # A way out that leads nowhere (the switch forwards nothing): Ray finds its node's
            # address by the route to the internet.
            _ip("-n", netns, "route", "add", "default", "via", f"{NETWORK}.1")
            files = self.base / name
            files.mkdir()
            self.hosts[name] = Host(name, address, netns, files, {})
        for host in self.ray_hosts():
            host.plan = self._ssh_host_plan(host)
        self.database.plan = self._postgres_plan(self.database)
        self.operator.plan = self._operator_plan(self.operator)
        for host in self.hosts.values():
            host.plan["hostname"] = f"{self.prefix}{host.name}"
            # A machine knows its own name (Debian's installer writes it in /etc/hosts). Without it
            # every `sudo` waited 20 s for a name server these hosts cannot reach: cluster.yaml's
            # setup runs two, on each host, and again on a host brought back.
            names = host.files / "etc_hosts"
            names.write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.plan['hostname']}\n")
            host.plan.setdefault("binds", []).append([str(names), "/etc/hosts"])
        for host in self.hosts.values():
            host.boot()
        try:
            wait_for(lambda: all(22 in h.listening_ports() for h in self.ray_hosts())
                     and 5432 in self.database.listening_ports(), timeout=30, interval=0.1,
                     what="sshd on every host, and PostgreSQL")
        except AssertionError as error:
            raise RuntimeError(f"{error}\n{self.logs()}") from None

    def logs(self) -> str:
        """The last lines of every host's logs: its init's, and its service's."""
        said = []
        for host in self.hosts.values():
            for log in ("init.log", "sshd.log", "server.log"):
                if (host.files / log).exists():
                    said.append(f"--- {host.name} {log}:\n{(host.files / log).read_text()[-1500:]}")
        return "\n".join(said)

    def close(self) -> None:
        for host in self.hosts.values():
            try:
                host.power_off()
            except Exception as error:  # go on: the rest must go too
                print(f"hosts: powering off {host.name}: {error}", file=sys.stderr)
        for netns in reversed(self.netns):
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
        self.netns.clear()
        if os.environ.get("SNEAKERS23_KEEP_HOSTS_FILES"):  # for a post-mortem: logs, Ray's session dirs
            print(f"hosts: their files are left in {self.base}", file=sys.stderr)
            return
        # Three virtual environments: rm is several times faster than shutil.rmtree on them.
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], capture_output=True)

    def _namespace(self, name: str) -> str:
        netns = self.prefix + name
        _ip("netns", "add", netns)
        self.netns.append(netns)
        return netns

    # The operator's commands: ---------------------------------------------------------------------

    def enter(self, host: Host | None = None) -> list[str]:
        """The command prefix that runs a command in a host (the operator's by default)."""
        host = host or self.operator
        return ["nsenter", f"--target={host.init_pid}", "--net", "--mount", "--pid", "--uts", "--"]

    def operator_env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{Path(sys.executable).parent}:{PATH}", "HOME": str(self.operator.files / "home"),
                "LANG": "C.UTF-8", "TERM": "dumb", **extra}

    def run(self, *command: str, cwd: Path | None = None, timeout: float = 600, check: bool = True,
            **env: str) -> subprocess.CompletedProcess:
        """A command of the operator's, in the operator's host."""
        result = subprocess.run([*self.enter(), "env", "-C", str(cwd or self.operator.files), *command],
                                capture_output=True, text=True, timeout=timeout, env=self.operator_env(**env))
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                               f"{result.stderr[-4000:]}")
        return result

    def ssh(self, host: Host, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A command on a host, as an operator logs in to it."""
        return self.run("ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o",
                        "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"root@{host.address}", command,
                        timeout=timeout)

    # What the operator fills in: ------------------------------------------------------------------

    def filled_cluster_yaml(self, text: str) -> str:
        """cluster.yaml with what an operator fills in for these hosts (addresses, user, key), and
        nothing else changed."""
        head, *workers = self.ray_hosts()
        text = re.sub(r"(?m)^(\s*head_ip:)\s*\S+", rf"\g<1> {head.address}", text)
        text = re.sub(r"(?m)^(\s*worker_ips:)\s*\[[^\]]*\]", rf"\g<1> [{', '.join(w.address for w in workers)}]",
                      text)
        text = re.sub(r"(?m)^max_workers:\s*\d+", f"max_workers: {len(workers)}", text)
        text = re.sub(r"(?m)^(\s*ssh_user:)\s*\S+", r"\g<1> root", text)
        text = re.sub(r"(?m)^(\s*)#\s*ssh_private_key:.*$", rf"\g<1>ssh_private_key: {self.key}", text)
        return text

    def sneakers23_env(self, ray_token: str, admin_password: str) -> str:
        return (f"SNEAKERS23_DATABASE_URL={self.database_url}\n"
                f"SNEAKERS23_SECRET_KEY={secrets.token_urlsafe(32)}\n"
                f"SNEAKERS23_ADMIN_PASSWORD={admin_password}\n"
                f"RAY_AUTH_MODE=token\nRAY_AUTH_TOKEN={ray_token}\n")

    def operators_checkout(self) -> Path:
        """The project as the operator has it: its files, without this machine's virtual environment."""
        checkout = self.operator.files / "sneakers23"
        shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
            ".venv", "node_modules", ".git", "__pycache__", ".pytest_cache", "*.db", "*.db-*", "sneakers23.env",
            "*.egg-info", "build"))
        return checkout

    # Plans: ----------------------------------------------------------------------------------------

    def _own_files(self, host: Host, tmp: bool = True) -> dict:
        for sub in ("home", "tmp", "limits.d"):
            (host.files / sub).mkdir()
        plan = {"tmpfs": OWN_TMPFS, "dirs": ["/run/sshd"],
                "binds": [[str(host.files / "home"), "/root"],
                          [str(host.files / "limits.d"), "/etc/security/limits.d"]]}
        if tmp:
            plan["tmp"] = str(host.files / "tmp")
        return plan

    def _ssh_host_plan(self, host: Host) -> dict:
        _keygen(host.files / "ssh_host_ed25519_key")
        config = host.files / "sshd_config"
        config.write_text(
            f"ListenAddress {host.address}:22\n"
            f"HostKey {host.files / 'ssh_host_ed25519_key'}\n"
            f"AuthorizedKeysFile {self.base / 'keys' / 'authorized_keys'}\n"
            "PidFile none\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "MaxStartups 100\nMaxSessions 100\nSubsystem sftp internal-sftp\n"
            # No way out to a package index: pip installs from the wheelhouse. Without compiling
            # every module to bytecode (what runs is compiled at its first import). (pip reads a
            # boolean variable as the option's stored value, and --no-compile stores False: so 0.)
            f"SetEnv PIP_NO_INDEX=1 PIP_FIND_LINKS={self.wheelhouse} PIP_DISABLE_PIP_VERSION_CHECK=1 "
            "PIP_NO_COMPILE=0\n")
        return {**self._own_files(host), "service": ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                "log": str(host.files / "sshd.log")}

    def _postgres_plan(self, host: Host) -> dict:
        from harness.postgres import find_bindir

        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries on this machine")
        data = host.files / "data"
        password = host.files / "password"
        password.write_text(self.database_password)
        shutil.chown(host.files, "postgres", "postgres")
        shutil.chown(password, "postgres", "postgres")
        made = subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-U",
                               "postgres", "--auth=scram-sha-256", f"--pwfile={password}", "-E", "UTF8", "--no-sync"],
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stderr.strip()[-2000:]}")
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {NETWORK}.0/24 scram-sha-256\n")
        plan = {"tmpfs": OWN_TMPFS, "log": str(host.files / "server.log"),
                "service": ["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "-D", str(data),
                            "-c", f"listen_addresses={host.address}", "-p", "5432", "-c", "unix_socket_directories=",
                            "-c", "max_connections=400", "-c", "fsync=off", "-c", "synchronous_commit=off"]}
        return plan

    def _operator_plan(self, host: Host) -> dict:
        # The operator keeps this machine's /root (its Python may live there) and sees the project
        # and its virtual environment, wherever they are.
        (host.files / "tmp").mkdir()
        (host.files / "home").mkdir()
        keep = sorted(str(p) for p in {ROOT, Path(sys.prefix)} if p.is_relative_to("/tmp"))
        return {"tmpfs": OWN_TMPFS, "tmp": str(host.files / "tmp"), "keep_in_tmp": keep}

    def _fill_the_wheelhouse(self) -> None:
        """The project's dependencies as wheels, from this machine's package index, for hosts without
        internet access; and the build backend, for `pip install -e .`."""
        build = re.search(r'requires\s*=\s*\[([^\]]*)\]', (ROOT / "pyproject.toml").read_text()).group(1)
        requirements = [r.strip().strip('"') for r in build.split(",") if r.strip()]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(self.wheelhouse), str(ROOT),
                        "pip", "wheel", *requirements], check=True, capture_output=True, timeout=900)


def _die_with_the_harness() -> None:
    """In the host's first process before it runs: SIGKILL when the harness dies, however it dies
    (unshare --kill-child passes it on to the host's init, and the whole host goes)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sneakers23-rehearsal", "-f", str(path)],
                   check=True)


def main() -> None:
    """`python -m tests.support.hosts DIR`: the hosts, and DIR with the operator's files filled in."""
    import click

    @click.command()
    @click.argument("workdir", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--workers", type=click.IntRange(min=0, max=8), default=2, show_default=True)
    def up(workdir: Path, workers: int) -> None:
        """Makes a head, WORKERS workers, PostgreSQL and an operator's host, each in namespaces of its
        own, with the operator's checkout (cluster.yaml and sneakers23.env filled in for them);
        writes WORKDIR/enter, a shell on the operator's host; tears it all down on Ctrl-C, SIGINT or
        SIGTERM."""
        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

        if os.geteuid() != 0:
            raise click.ClickException("namespaces and sshd need root")
        if workdir.exists() and any(workdir.iterdir()):
            raise click.ClickException(f"{workdir} is not empty")
        # Both, explicitly: a shell starts a background job with SIGINT ignored, and Python then
        # leaves it ignored.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        click.echo("making the hosts and the wheelhouse (a minute)...", err=True)
        with Hosts(names=["head", *(f"worker{n}" for n in range(1, workers + 1))]) as hosts:
            checkout = hosts.operators_checkout()
            (checkout / "cluster.yaml").write_text(hosts.filled_cluster_yaml((ROOT / "cluster.yaml").read_text()))
            token = generate_new_authentication_token()
            (checkout / "sneakers23.env").write_text(hosts.sneakers23_env(token, secrets.token_urlsafe(12)))
            workdir.mkdir(parents=True, exist_ok=True)
            environment = {"PATH": hosts.operator_env()["PATH"], "HOME": hosts.operator_env()["HOME"],
                           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
            enter = workdir / "enter"
            enter.write_text(
                "#!/bin/sh\n# The operator's host: ray up, ray job submit, curl http://HOST:8000/ ...\n"
                f"exec {shlex.join(hosts.enter())} env -C {shlex.quote(str(checkout))} "
                + " ".join(shlex.quote(f"{key}={value}") for key, value in environment.items())
                + ' "${@:-bash}"\n')
            enter.chmod(0o700)
            for host in hosts.hosts.values():
                click.echo(f"{host.name:10} {host.address}")
            click.echo(f"\nThe operator's files: {checkout} (cluster.yaml and sneakers23.env filled in).\n"
                       f"Enter the operator's host with {workdir / 'enter'}, then: ray up -y cluster.yaml\n"
                       f"Ctrl-C here powers every host off and removes everything.")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            finally:
                click.echo("powering every host off...", err=True)
                enter.unlink()  # its namespaces go now

    up()


if __name__ == "__main__":
    main()
