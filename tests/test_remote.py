"""train/remote.py against a real sshd on 127.0.0.1: the README's "Train on a rented GPU" commands, as written.

The sshd (Debian openssh-server) runs from a temporary folder with its own config, host key and
client key; the machine's /etc/ssh and ~/.ssh are left alone (known hosts go to a temporary file
through -o). The "GPU host" is this machine: the run uses tiny random towers and --python with this
interpreter, so it takes seconds.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from test_train import dataset, overrides  # noqa: F401  (dataset is a fixture: 12 espeak-ng clips)

REPO = Path(__file__).resolve().parent.parent
SSHD = "/usr/sbin/sshd"
MARKER = "<!-- remote-session:"  # the README block this file runs


def readme_commands() -> dict[str, str]:
    """The README block's `python train/remote.py ...` lines, by subcommand."""
    text = (REPO / "README.md").read_text()
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return {line.split()[2]: line for line in block.splitlines() if line.startswith("python train/remote.py ")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throwaway sshd on a free loopback port; yields the connection flags ($R in the README)."""
    missing = [t for t in ("ssh", "ssh-keygen", "ssh-keyscan", "rsync") if shutil.which(t) is None]
    missing += [SSHD] if not os.path.exists(SSHD) else []
    if missing:
        pytest.skip(f"needs Debian openssh-server, openssh-client and rsync (`make system`); missing {missing}")
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    port = free_port()
    (root / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root / "host_key"}
AuthorizedKeysFile {root / "authorized_keys"}
PidFile {root / "sshd.pid"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel ERROR
""")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir; Debian's service makes it too
    with open(root / "sshd.log", "w") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=log,
                                stdin=subprocess.DEVNULL)
    deadline = time.time() + 10
    while proc.poll() is None and time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip(f"sshd could not be started: {(root / 'sshd.log').read_text()[-500:] or 'no output'}")
    # The README's way to accept a new host, into a temporary known_hosts instead of ~/.ssh/known_hosts.
    keys = subprocess.run(["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True, text=True, timeout=30)
    (root / "known_hosts").write_text(keys.stdout)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    yield (f"{user}@127.0.0.1 --port {port} --identity {root / 'client_key'} "
           f"-o UserKnownHostsFile={root / 'known_hosts'} -o BatchMode=yes -o IdentitiesOnly=yes "
           f"--remote-dir {root / 'host'}"), root / "host"
    proc.terminate()
    proc.wait(timeout=10)


class Session:
    """A copy of the working tree (fetch writes into it) from which the README lines run through bash."""

    def __init__(self, root: Path, connection: str, host_dir: Path):
        self.local, self.connection, self.host_dir = root, connection, host_dir
        self.commands = readme_commands()

    def run(self, command: str, launch: str = "", check: bool = True, timeout: float = 120):
        env = {**os.environ, "R": self.connection, "LAUNCH": launch,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        result = subprocess.run(["bash", "-c", self.commands[command]], cwd=self.local, env=env, capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert not check or result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result


@pytest.fixture(scope="module")
def session(sshd, tower_dir, dataset, tmp_path_factory):  # noqa: F811
    connection, host_dir = sshd
    local = tmp_path_factory.mktemp("local") / "tiny-audio"
    subprocess.run(["rsync", "-a", "--exclude=.git/", "--exclude=.venv/", "--exclude=runs/", "--filter=:- .gitignore",
                    f"{REPO}/", f"{local}/"], check=True)
    # The smoke run on tiny towers, as a config inside the synced tree (train/configs/smoke-tiny.yaml).
    # spec_augment off: train/data.py's 40-channel masks are wider than the tiny towers' 32-wide frames.
    tiny = overrides(tower_dir, dataset, eval_every=1000, spec_augment="false")
    (local / "train/configs/smoke-tiny.yaml").write_text("\n".join(item.replace("=", ": ", 1) for item in tiny) + "\n")
    return Session(local, connection, host_dir)


def test_readme_lists_every_command():
    assert set(readme_commands()) == {"launch", "logs", "status", "fetch", "stop"}


def test_launch_follow_finish_fetch_and_load(session, dataset):  # noqa: F811
    launched = session.run("launch", f"--python {sys.executable} --config train/configs/smoke-tiny.yaml max_steps=6")
    assert "follow: python train/remote.py logs" in launched.stdout, launched.stdout
    followed = session.run("logs")  # follows until the run ends
    assert "done at step 6" in followed.stdout, followed.stdout[-3000:]
    status = session.run("status").stdout
    assert ": finished" in status and "step 6/6" in status and "final/, best/, checkpoints/latest/" in status, status
    session.run("fetch")
    run = session.local / "runs" / "remote"
    for name in ("final/model.safetensors", "best/model.safetensors", "checkpoints/latest/trainer_state.json",
                 "log.csv", "curves.png", "train.log"):
        assert (run / name).exists(), name
    assert not list(run.rglob("optimizer.*")) and not (run / "features").exists()  # projector only, small
    assert all(key.startswith("projector.") for key in load_file(run / "final" / "model.safetensors"))
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=str(run / "final"), trust_remote_code=True, device="cpu")
    assert isinstance(pipe(str(dataset / "clip0.wav"))["text"], str)


def wait_for_step(folder: Path, step: int, timeout: float = 60) -> None:
    """Until train.py has logged `step` in <folder>/log.csv (the first column)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = (folder / "log.csv").read_text().splitlines()[1:] if (folder / "log.csv").exists() else []
        if max([int(row.split(",", 1)[0]) for row in rows if row[:1].isdigit()], default=0) >= step:
            return
        time.sleep(0.3)
    raise AssertionError(f"step {step} not logged in {timeout} s:\n{(folder / 'train.log').read_text()[-2000:]}")


def test_stop_a_running_job(session):
    folder = session.host_dir / "runs" / "remote"
    state = folder / "checkpoints" / "latest" / "trainer_state.json"
    saved_step = lambda: json.loads(state.read_text())["step"] if state.exists() else 0  # noqa: E731
    long_run = f"--python {sys.executable} --config train/configs/smoke-tiny.yaml max_steps=100000"
    session.run("launch", long_run)  # after the smoke test: resumes from its checkpoint
    wait_for_step(folder, saved_step() + 2)
    refused = session.run("launch", long_run, check=False)
    assert refused.returncode == 4 and "still running" in refused.stderr, refused.stderr

    first_pid = (folder / "train.pid").read_text()
    forced = session.run("launch", long_run + " --force").stdout  # stops the first (it saves), starts again
    assert "stopping pid" in forced and (folder / "train.pid").read_text() != first_pid, forced
    forced_at = saved_step()
    wait_for_step(folder, forced_at + 2)
    stopped = session.run("stop").stdout
    assert "stopped (by stop)" in stopped, stopped
    assert "stopped (by stop)" in session.run("status").stdout
    assert (folder / "exit_code").read_text().strip() == "0"  # train.py saved and exited on its own
    assert forced_at + 2 <= saved_step() < 100000
