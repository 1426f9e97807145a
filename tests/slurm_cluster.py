"""A real one-node SLURM cluster with accounting, for the cluster tests (and by hand).

Debian's packages (`slurm-wlm munge slurmdbd mariadb-server`, installed by `.ci/run`),
run as root without systemd or cgroups (see SLURM_FACTS in the design notes): munged,
mariadbd, slurmdbd, slurmctld and slurmd are started here, each in its own session, and
stopped by the process groups started, newest first.

    python -m tests.slurm_cluster start DIR    # prints `export SLURM_CONF=DIR/slurm.conf`
    python -m tests.slurm_cluster stop DIR
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
#: Why the cluster tests cannot run here, or None when they can.
MISSING: str | None = ("SLURM needs root" if os.geteuid() != 0 else None) or next(
    (
        f"`{name}` is missing: apt-get install slurm-wlm munge slurmdbd mariadb-server"
        for name in DAEMONS
        if shutil.which(name) is None
    ),
    None,
)


def _run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


class Cluster:
    """A started cluster: ``env`` for clients (``SLURM_CONF``), stopped by :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._pids: list[int] = []
        self._started: list[subprocess.Popen[bytes]] = []
        self._record = folder / "pids.json"

    # -- start ---------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> Cluster:
        for sub in ("state", "spool", "log", "mysql"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        self._munge()
        self._write_config()
        self._mariadb(timeout)
        self._daemon("slurmdbd", "-D")
        self._wait(lambda: _ok("sacctmgr", "-n", "list", "cluster", env=self.env), timeout)
        self._daemon("slurmctld", "-D", "-i")
        self._daemon("slurmd", "-D")
        self._wait(self._idle, timeout)
        return self

    def _munge(self) -> None:
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        if not _ok("munge", "-n"):
            self._spawn(["runuser", "-u", "munge", "--", "munged", "--foreground"], "munged")
            self._wait(lambda: _ok("munge", "-n"), 20)

    def _write_config(self) -> None:
        node = _run("slurmd", "-C").splitlines()[0]
        name = re.search(r"NodeName=(\S+)", node)
        memory = re.search(r"RealMemory=(\d+)", node)
        assert name and memory, node
        cpus = re.sub(r"\s*(NodeName|RealMemory|UpTime)=\S+", "", node).strip()
        f = self.folder
        self.conf.write_text(
            f"""ClusterName=lineage
SlurmctldHost={socket.gethostname()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=16819
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# A cancelled job's processes get SIGKILL 2 s after SIGTERM (30 s by default): submitit
# ignores SIGTERM, so a cancel test would otherwise wait for the job to end by itself.
KillWait=2
NodeName={name.group(1)} NodeAddr=127.0.0.1 {cpus} RealMemory={int(memory.group(1)) * 95 // 100}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        dbd = f / "slurmdbd.conf"
        dbd.write_text(
            f"""AuthType=auth/munge
DbdHost=localhost
DbdPort=16819
SlurmUser=root
LogFile={f}/log/slurmdbd.log
PidFile={f}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=16306
StorageLoc=slurm_acct_db
StorageUser=root
"""
        )
        dbd.chmod(0o600)

    def _mariadb(self, timeout: float) -> None:
        data = self.folder / "mysql"
        sock = data / "mysql.sock"  # in the folder mysql owns: it binds as that user
        shutil.chown(data, "mysql", "mysql")
        if not (data / "mysql").is_dir():
            _run("mariadb-install-db", "--user=mysql", f"--datadir={data}", "--skip-test-db")
        self._spawn(
            [
                "mariadbd",
                "--user=mysql",
                f"--datadir={data}",
                f"--socket={sock}",
                "--bind-address=127.0.0.1",
                "--port=16306",
                f"--pid-file={data / 'mariadb.pid'}",
                "--skip-grant-tables",
            ],
            "mariadbd",
        )
        self._wait(lambda: _ok("mariadb", f"--socket={sock}", "-e", "SELECT 1"), timeout)

    def _daemon(self, name: str, *args: str) -> None:
        self._spawn([name, *args], name, env=self.env)

    def _spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> None:
        with open(self.folder / "log" / f"{name}.out", "ab") as log:  # the daemon keeps its copy
            process = subprocess.Popen(
                argv, stdout=log, stderr=log, env=env, start_new_session=True, cwd=self.folder
            )
        self._started.append(process)
        self._pids.append(process.pid)
        self._record.write_text(json.dumps(self._pids))

    def _alive(self) -> None:
        """Fail fast where a daemon died: its log says why."""
        for process in self._started:
            if process.poll() is not None:
                raise RuntimeError(
                    f"`{process.args[0]}` exited ({process.returncode}); see {self.folder}/log"
                )

    def _idle(self) -> bool:
        done = subprocess.run(
            ["timeout", "5", "sinfo", "-h", "-o", "%T"],
            capture_output=True,
            text=True,
            env=self.env,
        )
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def _wait(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self._alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SLURM cluster did not come up within {timeout:.0f} s")
            time.sleep(0.5)

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop what was started, newest first: SIGTERM, then SIGKILL after 10 s."""
        pids = self._pids or json.loads(self._record.read_text() or "[]")
        for pid in reversed(pids):
            _end_group(pid)
        for process in self._started:  # reaped: none is left a zombie
            process.wait(timeout=30)
        self._pids, self._started = [], []
        self._record.write_text("[]")


def _end_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # a dead leader left unreaped holds
            os.waitpid(pid, os.WNOHANG)  # its group open: reap it (ours or not, no harm)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _ok(*args: str, env: dict[str, str] | None = None) -> bool:
    try:
        done = subprocess.run(args, capture_output=True, env=env, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2]).resolve()
    if command == "start":
        started = Cluster(folder).start()
        print(f"export SLURM_CONF={started.conf}")
    else:
        Cluster(folder).stop()
