"""Run folders: config, per-pass metrics, checkpoints and manifest, all written atomically.

A run folder is named by the hash of its resolved config (LeNetConfig.digest) and holds

    config.json     the resolved config
    metrics.csv     one row per pass (lenet1998/record.py pass_record)
    state.pt        resume point, rewritten after every pass, removed when the run ends
    checkpoint.pt   final parameters and config
    manifest.json   git commit and dirty flag, versions, device, threads, wall time, date
    done            written last: a folder without it is not a finished run
    lock            while a process trains the run: its host, pid and heartbeat (RunLock)

Every file is written to a temporary name and renamed, so a killed process never leaves a
half-written file under a real name, and a finished run is never overwritten. The lock keeps
two launchers (two machines on a shared filesystem, or a requeued cluster job and its ghost)
from training the same run at once.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from .config import LeNetConfig

REPO = Path(__file__).resolve().parent.parent


class ResultsError(RuntimeError):
    """An output folder that cannot be written, or a run folder that cannot be read."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(path: Path, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def check_writable(folder: Path) -> Path:
    """Create `folder` if needed and prove that a file can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ResultsError(f"cannot write to output folder {folder}: {e.strerror or e}") from None
    return folder


def git_state() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = run("rev-parse", "HEAD")
    dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", "lenet1998", "experiments"))
    return {"git_commit": commit or "unknown", "git_dirty": dirty}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def vector_extensions() -> str:
    """The CPU's SIMD extensions that set the kernel's speed (from /proc/cpuinfo's flags), e.g.
    "AVX2, FMA, AVX-512F/VL/BW/DQ"; "" where unknown."""
    try:
        flags = next((l.split(":", 1)[1].split() for l in Path("/proc/cpuinfo").read_text().splitlines()
                      if l.startswith(("flags", "Features"))), [])
    except OSError:
        return ""
    found = [name for flag, name in (("avx2", "AVX2"), ("fma", "FMA"), ("neon", "NEON"), ("asimd", "ASIMD"))
             if flag in flags]
    wide = [f.removeprefix("avx512") for f in ("avx512f", "avx512vl", "avx512bw", "avx512dq") if f in flags]
    return ", ".join(found + ([f"AVX-512{'/'.join(w.upper() for w in wide)}"] if wide else []))


def environment(device: str) -> dict:
    import numpy
    import torchvision

    return {
        **git_state(),
        "python": sys.version.split()[0], "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": numpy.__version__,
        "device": device, "cpu": cpu_model(), "vector_extensions": vector_extensions(), "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


LOCK_STALE_S = 600.0  # a lock whose heartbeat is older than this (10 min) is taken over


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class RunLock:
    """`<run folder>/lock`: created atomically (O_CREAT | O_EXCL) by the one process that trains
    the run, holding its host, pid and a heartbeat time that it refreshes while it trains.

    Another process finds the lock and leaves the run alone, unless the lock is stale: its
    heartbeat is older than `stale_after` seconds (a process on another machine that died), or its
    owner is a process of this host that no longer exists (killed, preempted). A stale lock is
    moved aside under a unique name and then created anew, so that of two processes taking over
    the same stale lock, one wins.
    """

    def __init__(self, folder: Path, stale_after: float = LOCK_STALE_S):
        self.path = Path(folder) / "lock"
        self.stale_after = stale_after
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}
        self.held = False

    def read(self) -> dict | None:
        """The lock's contents, {} if unreadable (being written), None if there is no lock."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            info = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return info if isinstance(info, dict) else {}

    def stale(self, info: dict) -> bool:
        """Whether a lock with these contents may be taken over."""
        if info.get("host") == self.owner["host"] and isinstance(info.get("pid"), int) and not _alive(info["pid"]):
            return True
        beat = info.get("heartbeat")
        if not isinstance(beat, (int, float)):  # being written, or garbage: judge by the file's age
            try:
                beat = self.path.stat().st_mtime
            except FileNotFoundError:
                return True
        return time.time() - beat > self.stale_after

    def _contents(self) -> str:
        return json.dumps({**self.owner, "heartbeat": time.time(),
                           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}) + "\n"

    def _create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(self._contents())
            f.flush()
            os.fsync(f.fileno())
        self.held = True
        return True

    def acquire(self) -> bool:
        """Take the lock: True if this process now holds it, False if a live owner does."""
        for _ in range(3):
            if self._create():
                return True
            seen = self.read()
            if seen is None:  # released in between: try again
                continue
            if not self.stale(seen):
                return False
            aside = self.path.with_name(f"lock.stale.{self.owner['host']}.{self.owner['pid']}.{time.time_ns()}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:  # another process took it over first
                continue
            try:
                taken = json.loads(aside.read_text())
            except (OSError, json.JSONDecodeError):
                taken = {}
            if taken != seen and seen:  # a fresh lock appeared between reading and moving: give it back
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
                aside.unlink(missing_ok=True)
                return False
            aside.unlink(missing_ok=True)
        return self._create()

    def owned(self) -> bool:
        info = self.read()
        return bool(info) and all(info.get(k) == v for k, v in self.owner.items())

    def beat(self) -> None:
        """Refresh the heartbeat; ResultsError if another process has taken the lock over."""
        if not self.held:
            return
        if not self.owned():
            self.held = False
            raise ResultsError(f"{self.path.parent}: lock taken over by {self.read()} (no heartbeat for "
                               f"{self.stale_after:.0f} s?); this process stops training the run")
        atomic_write_text(self.path, self._contents())

    def release(self) -> None:
        if self.held and self.owned():
            self.path.unlink(missing_ok=True)
        self.held = False

    def describe(self) -> str:
        info = self.read() or {}
        return f"{info.get('host', '?')} pid {info.get('pid', '?')}"


class RunFolder:
    """One run's folder under `root`, named by the config's hash."""

    def __init__(self, root: Path, config: LeNetConfig):
        self.config = config
        self.path = Path(root) / config.digest()

    @property
    def finished(self) -> bool:
        """The run wrote its `done` file (it may since have been damaged: see check())."""
        return (self.path / "done").is_file()

    @property
    def done(self) -> bool:
        """A finished run whose files all read back: a broken one is retrained."""
        return self.finished and self.check() is None

    @property
    def broken(self) -> str | None:
        """Why a finished run's folder cannot be used (one line), or None."""
        return self.check() if self.finished else None

    def check(self) -> str | None:
        """None if the finished run's manifest.json, metrics.csv and checkpoint.pt read back;
        otherwise one line naming the folder and the first bad file."""
        try:
            manifest = read_manifest(self.path)
            for key in ("status", "final_test_error", "passes", "wall_time_s"):
                if key not in manifest:
                    raise ResultsError(f"{self.path}: manifest.json has no {key!r}")
            read_metrics(self.path)
            load_checkpoint(self.path / "checkpoint.pt")
        except ResultsError as e:
            return str(e)
        return None

    def move_aside(self) -> Path:
        """Move this (broken) folder to <root>/.broken/<hash>-<UTC time>: never delete data."""
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.parent / ".broken" / f"{self.path.name}-{stamp}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        return target

    def resume_point(self):
        """The stored per-pass state of an unfinished run, or None."""
        state = self.path / "state.pt"
        if self.finished or not state.is_file():
            return None
        try:
            return torch.load(state, map_location="cpu", weights_only=False)
        except Exception:  # a corrupt resume point: start over rather than fail
            return None

    def start(self, label: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        write_json(self.path / "config.json", {"label": label, **self.config.to_dict()})

    def save_pass(self, result, segments, rule_state=None) -> None:
        """After each pass: metrics so far and the resume point (with the step rule's state,
        where it has one: Adam's moments)."""
        atomic_write_text(self.path / "metrics.csv", metrics_csv(result.history))
        save_torch(self.path / "state.pt", {
            "passes_done": result.history[-1]["pass"], "state": result.state,
            "history": result.history, "rule_state": rule_state, "failed": result.failed,
            "segments": segments,
        })

    def finish(self, result, label: str, env: dict, segments: list, wall_time_s: float, group_size: int) -> None:
        """Final checkpoint and manifest, then `done`. `env` is the environment when this
        process started; `segments` lists the code (commit) behind each resumed stretch."""
        atomic_write_text(self.path / "metrics.csv", metrics_csv(result.history))
        save_torch(self.path / "checkpoint.pt", {"config": self.config.to_dict(), "state": result.state})
        last = result.history[-1] if result.history else {}
        write_json(self.path / "manifest.json", {
            "label": label, "seed": result.seed, "config_hash": self.config.digest(),
            "status": "failed" if result.failed else "ok", "failure": result.failed,
            "passes": len(result.history), "final_test_error": last.get("test_error"),
            "final_train_error": last.get("train_error"),
            "final_train_error_eval": last.get("train_error_final"),
            "wall_time_s": wall_time_s, "replicas_in_group": group_size,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **env, "segments": segments,
        })
        atomic_write_text(self.path / "done", "ok\n" if not result.failed else f"failed: {result.failed}\n")
        (self.path / "state.pt").unlink(missing_ok=True)


def metrics_csv(history) -> str:
    if not history:
        return ""
    columns = list(dict.fromkeys(k for row in history for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def read_manifest(run_path: Path) -> dict:
    """A run folder's manifest.json; ResultsError (one line, naming the folder and the file) if
    it is missing or not a JSON object."""
    path = Path(run_path) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{run_path}: manifest.json is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{run_path}: manifest.json is corrupt ({one_line(e)})") from None
    if not isinstance(manifest, dict):
        raise ResultsError(f"{run_path}: manifest.json is corrupt (not a JSON object)")
    return manifest


METRICS_COLUMNS = ("pass", "test_error", "train_error", "wall_time_s")


def read_metrics(run_path: Path):
    """A run folder's metrics.csv as a DataFrame, one row per pass; ResultsError (one line,
    naming the folder and the file) if it is missing, empty or lacks the columns every run writes."""
    import pandas as pd

    path = Path(run_path) / "metrics.csv"
    try:
        metrics = pd.read_csv(path)
    except FileNotFoundError:
        raise ResultsError(f"{run_path}: metrics.csv is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as e:  # EmptyDataError is a ValueError
        raise ResultsError(f"{run_path}: metrics.csv is corrupt ({one_line(e)})") from None
    missing = [c for c in METRICS_COLUMNS if c not in metrics.columns]
    if missing or not len(metrics):
        raise ResultsError(f"{run_path}: metrics.csv is corrupt (" +
                           (f"no column {missing[0]!r})" if missing else "no rows)"))
    return metrics


def one_line(e: BaseException, limit: int = 120) -> str:
    """An exception as a short single line: its type and the first line of its message."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_checkpoint(path: Path):
    """(config, one-replica state) from a checkpoint.pt; ResultsError (one line, naming the
    folder and the file) if it is missing, truncated or not a lenet1998 checkpoint."""
    path = Path(path)
    where = f"{path.parent}: {path.name}"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise ResultsError(f"{path}: a folder, not a checkpoint.pt") from None
    except Exception as e:  # truncated zip, garbage bytes, unpickling errors
        raise ResultsError(f"{where} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "config" not in obj or "state" not in obj:
        raise ResultsError(f"{where} is not a lenet1998 checkpoint (no config and state)")
    try:
        config = LeNetConfig.from_dict(obj["config"])
    except Exception as e:
        raise ResultsError(f"{where} holds an unusable config ({one_line(e)})") from None
    return config, obj["state"]


def load_trained(path: Path):
    """The network stored in a checkpoint.pt, rebuilt from its own config."""
    from .networks import build

    try:
        config, state = load_checkpoint(path)
        model = build(config)
        names = [n for n, _ in model.named_parameters()]
        if sorted(names) != sorted(state):
            raise ValueError(f"its parameters {sorted(state)} do not match its config's {sorted(names)}")
        model.load_state(state)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such checkpoint") from None
    except ResultsError:
        raise
    except Exception as e:  # not a checkpoint, or parameters that its config cannot hold
        raise ResultsError(f"{path}: not a usable lenet1998 checkpoint ({str(e).splitlines()[0][:200]})") from None
    return model.eval()


RELEASED = REPO / "results" / "released"


def release(run_path: Path, variant: str, root: Path = RELEASED) -> Path:
    """Copy a finished run's checkpoint, config and manifest to results/released/<variant>/."""
    run_path = Path(run_path)
    if not (run_path / "done").is_file():
        raise ResultsError(f"{run_path} is not a finished run")
    target = Path(root) / variant
    target.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "config.json", "manifest.json", "metrics.csv"):
        atomic_write_bytes(target / name, (run_path / name).read_bytes())
    config, state = load_checkpoint(run_path / "checkpoint.pt")
    from .networks import build

    model = build(config)
    model.load_state(state)  # every tensor in the model's own shape (F6 of version 0.1 was (1, 84, 120))
    write_safetensors(target / "model.safetensors", model.state_dict(), config)
    return target


def write_safetensors(path: Path, state: dict, config: LeNetConfig) -> None:
    """The weights as safetensors (no pickle: loadable from untrusted sources), the config as
    JSON metadata beside them. `state` is what `LeNet5.state_dict()` gives (the parameters; the
    fixed masks and RBF codes are non-persistent buffers, rebuilt by LeNet5(config)), so that
    `LeNet5(config).load_state_dict(safetensors.torch.load_file(path))` loads it."""
    from safetensors.torch import save

    tensors = {name: t.detach().contiguous().cpu() for name, t in state.items()}
    atomic_write_bytes(path, save(tensors, metadata={"config": json.dumps(config.to_dict(), sort_keys=True)}))


def read_safetensors(path: Path):
    """(config, one-replica state) from a model.safetensors written by write_safetensors."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            config = LeNetConfig.from_dict(json.loads((f.metadata() or {})["config"]))
            state = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:
        raise ResultsError(f"{path.parent}: {path.name} is not a usable lenet1998 model ({one_line(e)})") from None
    return config, state


def load_pretrained(variant: str = "paper", root: Path = RELEASED):
    """The released LeNet-5 of a variant ("paper", "modern", ...), rebuilt exactly from its
    stored config; its manifest (with the recorded test error) is `model.manifest`."""
    folder = Path(root) / variant
    if (folder / "model.safetensors").is_file():  # preferred: no pickle
        from .networks import build

        config, state = read_safetensors(folder / "model.safetensors")
        model = build(config)
        if sorted(n for n, _ in model.named_parameters()) != sorted(state):
            raise ResultsError(f"{folder}: model.safetensors does not match its config's parameters")
        model.load_state(state)
        model.eval()
    elif (folder / "checkpoint.pt").is_file():
        model = load_trained(folder / "checkpoint.pt")
    else:
        available = sorted(p.name for p in Path(root).glob("*")
                           if (p / "checkpoint.pt").is_file() or (p / "model.safetensors").is_file())
        raise ResultsError(f"no released checkpoint for {variant!r}; available: {available}")
    model.manifest = read_manifest(folder)
    return model
