"""Run folders: config, per-pass metrics, checkpoints and manifest, all written atomically.

A run folder is named by the hash of its resolved config (LeNetConfig.digest) and holds

    config.json     the resolved config
    metrics.csv     one row per pass (lenet1998/train.py records)
    state.pt        resume point, rewritten after every pass, removed when the run ends
    checkpoint.pt   final parameters and config
    manifest.json   git commit and dirty flag, versions, device, threads, wall time, date
    done            written last: a folder without it is not a finished run

Every file is written to a temporary name and renamed, so a killed process never leaves a
half-written file under a real name, and a finished run is never overwritten.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
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


def environment(device: str) -> dict:
    import numpy
    import torchvision

    return {
        **git_state(),
        "python": sys.version.split()[0], "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": numpy.__version__,
        "device": device, "cpu": cpu_model(), "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


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
        raise ResultsError(f"{where} is missing") from None
    except Exception as e:  # truncated zip, garbage bytes, unpickling errors
        raise ResultsError(f"{where} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "config" not in obj or "state" not in obj:
        raise ResultsError(f"{where} is not a lenet1998 checkpoint (no config and state)")
    try:
        config = LeNetConfig.from_dict(obj["config"])
    except Exception as e:
        raise ResultsError(f"{where} holds an unusable config ({one_line(e)})") from None
    return config, obj["state"]


def train_runs(config: LeNetConfig, seeds, root: Path, data, label: str, device: str = "cpu",
               on_pass=None, on_progress=None, engine: str = "auto") -> list:
    """Train `config` for every seed into run folders under `root`, in lockstep groups.

    Finished runs are skipped; unfinished ones resume from their last completed pass (seeds
    stopped at the same pass resume together). Returns the run folders, one per seed.
    """
    runs = [(label, config.replace(seed=int(s))) for s in seeds]
    report = None if on_pass is None else (lambda pass_number, labelled: on_pass(pass_number, [r for _, r in labelled]))
    return train_group(runs, root, data, device, report, on_progress, engine)


def resume_point(point: dict | None, config: LeNetConfig):
    """A stored state.pt as a ResumePoint (None: start over). Adam needs its moments: a resume
    point of an older format without them starts over."""
    from .train import ResumePoint

    if point is None or (config.optimizer == "adam" and point.get("rule_state") is None):
        return None
    return ResumePoint(point["passes_done"], point["state"], point["history"], point.get("rule_state"))


def train_group(runs, root: Path, data, device: str = "cpu", on_pass=None, on_progress=None,
                engine: str = "auto") -> list:
    """Train runs [(label, config with its seed), ...] into their run folders under `root`: the
    per-pattern runs as one lockstep group (lenet1998/engine/: they must share a lockstep key),
    minibatch runs one after the other.

    on_pass(pass_number, labelled) gets [(label, RunResult), ...] of the runs training.
    """
    import time

    from .engine import check_group, handles
    from .train import fit

    if all(handles(c) for _, c in runs):
        check_group([c for _, c in runs])  # one group, or a clear error before anything is written
        batches = [list(range(len(runs)))]
    else:
        batches = [[i] for i in range(len(runs))]
    env = environment(device)  # the code as it is when training starts, not when it ends
    folders = [RunFolder(root, c) for _, c in runs]
    for batch in batches:
        pending = {}
        for i in batch:
            reason = folders[i].broken
            if reason:  # a finished run damaged since: keep it aside and train it again
                target = folders[i].move_aside()
                print(f"broken run moved to {target}, retraining: {reason}", file=sys.stderr, flush=True)
            if not folders[i].done:
                point = folders[i].resume_point()
                start = resume_point(point, runs[i][1])
                pending.setdefault(0 if start is None else start.passes_done, []).append((i, point, start))
        for passes_done, members in sorted(pending.items()):
            group = [i for i, _, _ in members]
            segment = {"from_pass": passes_done + 1, "git_commit": env["git_commit"], "git_dirty": env["git_dirty"],
                       "engine": engine, "replicas_in_group": len(group),
                       "variants_in_group": sorted({runs[i][0] for i in group})}
            segments = {i: (p.get("segments", []) if p else []) + [dict(segment)] for i, p, _ in members}
            for i in group:
                folders[i].start(runs[i][0])
            t0 = time.perf_counter()

            def save(pass_number, results, rule_states, group=group):
                for i, r, rule_state in zip(group, results, rule_states):
                    segments[i][-1]["engine"] = r.engine  # the path that ran
                    folders[i].save_pass(r, segments[i], rule_state)
                if on_pass is not None:
                    on_pass(pass_number, [(runs[i][0], r) for i, r in zip(group, results)])

            results = fit([runs[i][1] for i in group], data, device=device, start=[s for _, _, s in members],
                          on_pass=save, on_progress=on_progress, engine=engine)
            wall = time.perf_counter() - t0
            for i, r in zip(group, results):
                segments[i][-1]["engine"] = r.engine
                folders[i].finish(r, runs[i][0], env, segments[i], wall, len(group))
    return folders


def load_trained(path: Path):
    """The LeNet5 stored in a checkpoint.pt, rebuilt from its own config."""
    from .model import LeNet5

    try:
        config, state = load_checkpoint(path)
        model = LeNet5(config)
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
    write_safetensors(target / "model.safetensors", state, config)
    return target


def write_safetensors(path: Path, state: dict, config: LeNetConfig) -> None:
    """The weights as safetensors (no pickle: loadable from untrusted sources), the config as
    JSON metadata beside them."""
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
        from .model import LeNet5

        config, state = read_safetensors(folder / "model.safetensors")
        model = LeNet5(config)
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
