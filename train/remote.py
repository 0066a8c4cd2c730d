"""Train on a rented GPU host over SSH: launch, logs, status, fetch, stop.

    python train/remote.py launch root@203.0.113.7 --port 22022 --identity ~/.ssh/rental_key
    python train/remote.py logs|status|fetch|stop root@203.0.113.7 --port 22022 --identity ~/.ssh/rental_key

Plain ssh and rsync: host keys are checked as ssh always checks them. On the host everything lives
in --remote-dir (default ~/tiny-audio, marked as ours by a .tiny-audio-remote file): the synced
working tree, its .venv and runs/<run>/, where train.py writes and this script keeps train.log,
train.pid (the trainer), runner.pid (the shell that waits for it), exit_code and stop_requested.
Nothing is ever deleted outside runs/<run>/ (the sync never uses --delete).
"""

import argparse
import csv
import io
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from train.config import load_config  # noqa: E402

DEFAULT_CONFIG = "train/configs/full-a100.yaml"
MARKER = ".tiny-audio-remote"  # a --remote-dir without it must be empty before we write there
NOT_SYNCED = [".git/", ".venv/", "runs/", "test-artifacts/", "__pycache__/", ".*_cache/", "*.egg-info/"]
FETCHED = ["/final/***", "/best/***", "/checkpoints/", "/checkpoints/latest/***",
           "/log.csv", "/curves.png", "/train.log", "/train_config.json"]
SECTION = "::remote.py:: "  # starts each part of status's answer from the host
STOP_WAIT_S = 300  # a SIGTERM finishes the step, then saves; a large step on a busy GPU takes a while
HOST_KEY_HINT = """ssh could not connect (exit 255; its message is above). A host ssh has not seen before needs its
key accepted once, e.g.  ssh-keyscan -p PORT ADDRESS >> ~/.ssh/known_hosts  (compare the fingerprint with
the one your provider shows), or connect once with  ssh -o StrictHostKeyChecking=accept-new ..."""

# Shell on the host (POSIX sh). alive: the runner shell of this run folder still waits on train.py.
ALIVE = """alive() {
  r=$(cat runner.pid 2>/dev/null) && [ -n "$r" ] && grep -q train/train.py /proc/"$r"/cmdline 2>/dev/null; }"""


@dataclass
class Remote:
    """Where the run lives: an ssh destination plus the folder and run name on it."""

    dest: str
    port: int | None = None
    identity: str | None = None
    options: list[str] = field(default_factory=list)
    remote_dir: str = "tiny-audio"
    run: str = "remote"

    def ssh(self) -> list[str]:
        args = ["ssh"] + (["-p", str(self.port)] if self.port else [])
        args += ["-i", str(Path(self.identity).expanduser())] if self.identity else []
        for option in self.options:
            args += ["-o", option]
        return args

    def cli(self) -> str:
        """The connection flags as given, to print commands the user can paste."""
        args = [self.dest] + (["--port", str(self.port)] if self.port else [])
        args += (["--identity", self.identity] if self.identity else []) + [a for o in self.options for a in ("-o", o)]
        args += ["--remote-dir", self.remote_dir] if self.remote_dir != "tiny-audio" else []
        return shlex.join(args + (["--run", self.run] if self.run != "remote" else []))

    @property
    def folder(self) -> str:
        """The run folder, relative to the host's login directory unless --remote-dir is absolute."""
        return f"{self.remote_dir}/runs/{self.run}"

    def sh(self, script: str, capture: bool = False, tty: bool = False) -> subprocess.CompletedProcess:
        """Run a POSIX sh script on the host; exit 255 is ssh's own failure."""
        cmd = self.ssh() + (["-t"] if tty else []) + [self.dest, "sh -c " + shlex.quote(script)]
        result = subprocess.run(cmd, stdin=None if tty else subprocess.DEVNULL, text=True,
                                stdout=subprocess.PIPE if capture else None)
        if result.returncode == 255:
            raise SystemExit(HOST_KEY_HINT)
        return result

    def rsync(self, *args: str) -> None:
        cmd = ["rsync", "-az", "-e", shlex.join(self.ssh()), *args]
        if subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode != 0:
            raise SystemExit("rsync failed (its message is above)")


def q(path: str) -> str:
    return shlex.quote(path)


def launch(remote: Remote, config: str, overrides: list[str], python: str | None, force: bool) -> None:
    config_path = (Path.cwd() / config).resolve()
    if not config_path.is_relative_to(REPO):
        raise SystemExit(f"--config must be inside the repository (it is synced with it): {config}")
    config = str(config_path.relative_to(REPO))
    try:
        load_config(str(config_path), overrides)  # a typo fails here, not after the host is set up
    except (OSError, ValueError) as error:
        raise SystemExit(f"remote.py: {error}")
    folder = remote.folder
    refuse = (f'echo "remote.py: {folder} is still running (pid $(cat train.pid)); stop it first or pass --force" >&2; '
              'exit 4')
    check = f"""set -e
{ALIVE}
d={q(remote.remote_dir)}
if [ -d "$d" ] && [ ! -e "$d/{MARKER}" ] && [ -n "$(ls -A "$d")" ]; then
  echo "remote.py: $d on the host is not empty and was not made by remote.py; pass another --remote-dir" >&2; exit 3; fi
mkdir -p {q(folder)} && touch "$d/{MARKER}" && cd {q(folder)}
command -v rsync >/dev/null || {{ echo "remote.py: the host has no rsync (apt-get install -y rsync)" >&2; exit 3; }}
if alive; then
  {stop_script(STOP_WAIT_S) if force else refuse}
fi"""
    if (code := remote.sh(check).returncode) != 0:
        raise SystemExit(code)
    print(f"syncing {REPO} -> {remote.dest}:{remote.remote_dir}")
    remote.rsync(*[f"--exclude={p}" for p in NOT_SYNCED], "--filter=:- .gitignore",
                 f"{REPO}/", f"{remote.dest}:{remote.remote_dir}/")
    if python is None:
        print("setting up .venv on the host (the first time: pip install -r requirements.txt, several minutes)")
        if (code := remote.sh(setup_script(remote.remote_dir)).returncode) != 0:
            raise SystemExit(code)
        python = ".venv/bin/python"
    train = shlex.join([python, "train/train.py", "--config", config, "--output-dir", f"runs/{remote.run}", *overrides])
    log, run = f"runs/{remote.run}/train.log", f"runs/{remote.run}"
    # The runner shell, in its own session (setsid) so the SSH session's end does not reach it, starts
    # train.py, records both pids, and writes the exit code when train.py ends.
    runner = (f"echo $$ > {run}/runner.pid; PYTHONUNBUFFERED=1 {train} >> {log} 2>&1 < /dev/null & "
              f"echo $! > {run}/train.pid; wait $!; echo $? > {run}/exit_code")
    start = f"""set -e
cd {q(remote.remote_dir)}
rm -f {run}/runner.pid {run}/train.pid {run}/exit_code {run}/stop_requested
echo "=== $(date -u '+%F %T UTC') launch: "{q(train)} >> {log}
nohup setsid sh -c {q(runner)} > /dev/null 2>&1 < /dev/null &
i=0; while [ ! -s {run}/train.pid ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
cat {run}/train.pid"""
    result = remote.sh(start, capture=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise SystemExit("could not start train.py on the host")
    print(f"started {train}\n  on {remote.dest} in {remote.folder} (pid {result.stdout.strip()})\n"
          f"  follow: python train/remote.py logs {remote.cli()}\n  (status, fetch and stop take the same flags)")


def setup_script(remote_dir: str) -> str:
    """A venv in <remote_dir>/.venv with the pinned requirements; reinstalled only when they change."""
    return f"""set -e
cd {q(remote_dir)}
if ! .venv/bin/python -m pip --version > /dev/null 2>&1; then
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {{
    echo "remote.py: the host's python3 is $(python3 -V 2>&1); the pinned requirements need 3.11+" \
      "(or pass --python PATH)" >&2; exit 3; }}
  python3 -m venv .venv || {{ echo "remote.py: python3 -m venv failed (apt-get install -y python3-venv)" >&2; exit 3; }}
fi
if ! cat requirements.txt pyproject.toml | cmp -s - .venv/.remote-installed; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  cat requirements.txt pyproject.toml > .venv/.remote-installed
fi"""


def stop_script(wait_s: int) -> str:
    """SIGTERM train.py (it finishes the step, saves checkpoints/latest and final/, exits); wait for the runner."""
    return f"""echo "stopping pid $(cat train.pid): SIGTERM, train.py saves a checkpoint, then exits"
  touch stop_requested; kill -TERM "$(cat train.pid)" 2>/dev/null || true
  i=0; while alive; do
    if [ $i -ge {2 * wait_s} ]; then
      echo "remote.py: still saving after {wait_s} s (pid $(cat train.pid)); run stop again later" >&2; exit 5; fi
    sleep 0.5; i=$((i+1)); done"""


def stop(remote: Remote) -> None:
    script = f"""set -e
{ALIVE}
cd {q(remote.folder)} 2>/dev/null || {{ echo "remote.py: no run {remote.folder} on the host" >&2; exit 1; }}
if alive; then
  {stop_script(STOP_WAIT_S)}
else echo "not running"; fi"""
    if (code := remote.sh(script).returncode) != 0:
        raise SystemExit(code)
    status(remote)


def logs(remote: Remote, lines: int) -> None:
    """Print the log's last lines and follow it until the run ends (Ctrl-C stops following, not training)."""
    script = f"""{ALIVE}
cd {q(remote.folder)} 2>/dev/null || {{ echo "remote.py: no run {remote.folder} on the host" >&2; exit 1; }}
if alive; then exec tail -n {lines} -s 0.5 -F --pid="$r" train.log; else exec tail -n {lines} train.log; fi"""
    raise SystemExit(remote.sh(script, tty=sys.stdin.isatty()).returncode)


def status(remote: Remote) -> None:
    """Running or not, the last logged step, loss and throughput, the last eval, the checkpoints."""
    script = f"""{ALIVE}
section() {{ echo; echo "{SECTION}$1"; }}  # on a line of its own, even after a file without a final newline
cd {q(remote.folder)} 2>/dev/null || {{ section state; echo none; exit 0; }}
section state
if alive; then echo "running $(cat train.pid)"; elif [ -e stop_requested ]; then echo stopped
elif [ -e exit_code ]; then echo "exited $(cat exit_code)"; else echo gone; fi
section config; cat train_config.json 2>/dev/null
section log; head -n 1 log.csv 2>/dev/null; tail -n 200 log.csv 2>/dev/null
section checkpoint; cat checkpoints/latest/trainer_state.json 2>/dev/null
section folders; for f in final best checkpoints/latest; do [ -d $f ] && echo $f; done
section tail; tail -n 8 train.log 2>/dev/null"""
    sections, name = {}, None
    for line in remote.sh(script, capture=True).stdout.splitlines():
        if line.startswith(SECTION):
            name = line[len(SECTION):]
            sections[name] = []
        elif name and line.strip():
            sections[name].append(line)
    state = " ".join(sections.get("state", ["none"]))
    print(f"{remote.dest}:{remote.folder}: {describe(state)}")
    if state == "none":
        raise SystemExit(1)
    print(summarize(sections))
    if state == "gone" or (state.startswith("exited") and state != "exited 0"):
        print("last lines of train.log:\n  " + "\n  ".join(sections.get("tail", [])))
        raise SystemExit(1)


def describe(state: str) -> str:
    kind, _, detail = state.partition(" ")
    return {"running": f"running (pid {detail})", "stopped": "stopped (by stop)", "none": "no such run",
            "gone": "not running, no exit code (killed, or the host restarted?)"}.get(
        kind, "finished" if detail == "0" else f"failed (exit code {detail})")


def summarize(sections: dict) -> str:
    """Lines about progress, from the log.csv tail, train_config.json and the latest checkpoint."""
    lines = sections.get("log", [])
    header = lines[0] if lines else ""
    rows = list(csv.DictReader(io.StringIO("\n".join([header] + [r for r in lines[1:] if r != header]))))
    train = [r for r in rows if r.get("loss")]
    max_steps = json.loads("\n".join(sections["config"])).get("max_steps", "?") if sections.get("config") else "?"
    out = []
    if train:
        r = train[-1]
        out.append(f"step {r['step']}/{max_steps}  loss {r['loss']}  {r['samples_per_s']} samples/s  "
                   f"{r['audio_h_per_h']} audio-h/h  {r['audio_hours']} audio-h seen  "
                   f"{float(r['elapsed_s']) / 60:.1f} min")
    else:
        out.append(f"step 0/{max_steps} (no step logged yet)")
    evals = [r for r in rows if r.get("eval_set")]
    if evals:
        r = evals[-1]
        out.append(f"eval {r['eval_set']} at step {r['step']}: WER {r['eval_wer']}  loss {r['eval_loss']}")
    if sections.get("checkpoint"):
        out.append(f"checkpoint: checkpoints/latest at step {json.loads(chr(10).join(sections['checkpoint']))['step']}")
    folders = sections.get("folders", [])
    out.append("checkpoint folders: " + (", ".join(f + "/" for f in folders) if folders else "none yet"))
    return "\n".join(out)


def fetch(remote: Remote, to: str | None) -> None:
    """Copy back the projector-only checkpoint folders (no optimizer state), log.csv, curves.png, train.log."""
    target = Path(to) if to else REPO / "runs" / remote.run
    target.mkdir(parents=True, exist_ok=True)
    filters = ["--exclude=optimizer.*", "--exclude=*.tmp/"] + [f"--include={p}" for p in FETCHED] + ["--exclude=*"]
    remote.rsync(*filters, f"{remote.dest}:{remote.folder}/", f"{target}/")
    print(f"fetched {remote.dest}:{remote.folder} -> {target}: "
          + ", ".join(p.name + ("/" if p.is_dir() else "") for p in sorted(target.iterdir())))
    if (target / "final").exists():
        print(f'load: pipeline("automatic-speech-recognition", model="{target / "final"}", trust_remote_code=True)')


def parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"remote.py {command}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host", help="ssh destination: user@address, or a Host alias from ~/.ssh/config")
    p.add_argument("--port", type=int, help="ssh port (rentals often map 22 to another port)")
    p.add_argument("--identity", help="private key file (ssh -i)")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTION",
                   help="an ssh option, as ssh -o (repeatable), e.g. -o UserKnownHostsFile=...")
    p.add_argument("--remote-dir", default="tiny-audio", help="the folder on the host (relative: in its home)")
    p.add_argument("--run", default="remote", help="run name: runs/<run> on the host (and locally after fetch)")
    if command == "launch":
        p.add_argument("--config", default=DEFAULT_CONFIG, help="a training config inside the repository")
        p.add_argument("--python", help="this interpreter on the host (an environment it already has; relative: "
                                        "to --remote-dir) instead of creating <remote-dir>/.venv")
        p.add_argument("--force", action="store_true", help="stop a run still going in runs/<run> first")
        p.add_argument("overrides", nargs="*", help="key=value config overrides, as for train.py")
    if command == "logs":
        p.add_argument("-n", "--lines", type=int, default=40, help="log lines to show before following")
    if command == "fetch":
        p.add_argument("--to", help="local folder (default: runs/<run> in the repository)")
    return p


COMMANDS = ("launch", "logs", "status", "fetch", "stop")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(__doc__ + f"\ncommands: {', '.join(COMMANDS)}; `remote.py COMMAND -h` for options")
    command, args = argv[0], parser(argv[0]).parse_intermixed_args(argv[1:])
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", args.run):
        raise SystemExit(f"--run must be a plain folder name (letters, digits, _ . -), got {args.run!r}")
    remote = Remote(args.host, args.port, args.identity, args.options, args.remote_dir.removeprefix("~/"), args.run)
    if command == "launch":
        launch(remote, args.config, args.overrides, args.python, args.force)
    elif command == "logs":
        try:
            logs(remote, args.lines)
        except KeyboardInterrupt:  # stops following; the run goes on
            raise SystemExit(130)
    elif command == "status":
        status(remote)
    elif command == "fetch":
        fetch(remote, args.to)
    else:
        stop(remote)


if __name__ == "__main__":
    main()
