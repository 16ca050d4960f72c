"""The grid module: budgets written once, no import cycle among the command lines, the run lock,
two launchers on one folder, the submitit launcher, and stopping (Ctrl-C, SIGTERM, kill -9)."""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.grid import BUDGETS, GRID, QUICK, Budget, jobs_of, launch, plan
from experiments.tables import load_runs, summarize
from experiments.variants import FAMILY_SEEDS, VARIANTS
from lenet1998.config import LeNetConfig
from lenet1998.results import RunFolder, RunLock

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__")


def env_with_repo(data_dir=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if data_dir is not None:
        env["LENET1998_DATA"] = str(Path(data_dir).resolve())
    return env


# ------------------------------------------------------------------------------------------
# Budgets and imports


def test_the_named_budgets():
    assert (GRID.seeds, GRID.epochs, GRID.train_size) == (3, 20, 60000)
    assert (QUICK.seeds, QUICK.epochs, QUICK.train_size) == (2, 1, 2000)
    for family, seeds in FAMILY_SEEDS.items():
        assert BUDGETS[family] == Budget(seeds, GRID.epochs, GRID.train_size)
    config = QUICK.apply(VARIANTS["paper"].config)
    assert (config.epochs, config.train_size) == (1, 2000)


def test_the_grid_budget_is_typed_once():
    """No command line types the grid's budget again (nor plans against a made-up folder)."""
    for name in EXPERIMENTS:
        text = (REPO / "experiments" / f"{name}.py").read_text()
        assert "3, 20, 60000" not in text and "/nonexistent" not in text, name
        if name != "grid":
            assert "Budget(seeds=3" not in text, name


def imports_of(module: str) -> set:
    """The experiments modules that experiments/<module>.py imports (anywhere in the file)."""
    tree = ast.parse((REPO / "experiments" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif (node.module or "").startswith("experiments"):
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("experiments.")}
    return found & set(EXPERIMENTS)


def find_cycle(graph: dict):
    """A cycle of `graph` {node: set of nodes} as a list, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "closed"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"ablate": {"report"}, "report": {"ablate"}}) in (["ablate", "report", "ablate"],
                                                                       ["report", "ablate", "report"])
    assert find_cycle({"ablate": {"report", "grid"}, "report": {"grid"}, "grid": set()}) is None


def library_imports() -> dict:
    """{module: the lenet1998 modules it imports (anywhere in the file)}, modules named by their
    dotted path under lenet1998 ("train", "engine", "engine.kernel")."""
    root = REPO / "lenet1998"
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, parts if is_package else parts[:-1])
    graph = {}
    for name, (path, package) in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                elif (node.module or "").startswith("lenet1998"):
                    base = node.module.split(".")[1:]
                else:
                    continue
                for alias in node.names:  # `from . import engine` names a module; `from .x import y` names x
                    target = ".".join(base + [alias.name])
                    found.add(target if target in modules else ".".join(base))
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("lenet1998.")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycle_in_the_library():
    graph = library_imports()
    assert {"engine", "reference", "record"} <= graph["train"] and "record" in graph["engine"]  # real edges
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_import_cycle_among_the_command_lines():
    graph = {m: imports_of(m) for m in EXPERIMENTS}
    assert "grid" in graph["ablate"] and "ablation_tables" in graph["report"]  # the reader sees real edges
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def import_alone(module: str) -> str:
    """'' if experiments.<module> imports with no experiments module loaded before it, else the
    error. A forked child of this process (torch and the other libraries already loaded, every
    experiments module dropped) stands in for a fresh interpreter; a new interpreter where
    there is no fork."""
    if not hasattr(os, "fork"):
        result = subprocess.run([sys.executable, "-c", f"import experiments.{module}"], cwd=REPO, env=env_with_repo(),
                                capture_output=True, text=True, timeout=300)
        return "" if result.returncode == 0 else result.stderr[-2000:]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any of pytest's exit code
        os.close(read)
        try:
            for name in [n for n in sys.modules if n == "experiments" or n.startswith("experiments.")]:
                del sys.modules[name]
            __import__(f"experiments.{module}")
            message = b""
        except BaseException as e:  # noqa: BLE001 - any failure to import is the answer
            message = f"{type(e).__name__}: {e}".encode() or b"failed"
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message


def test_each_command_line_imports_alone_in_a_fresh_interpreter():
    assert "ImportError" in import_alone("no_such_module") or "No module" in import_alone("no_such_module")
    for m in EXPERIMENTS:
        assert import_alone(m) == "", f"experiments.{m}: {import_alone(m)}"


# ------------------------------------------------------------------------------------------
# The run lock


def test_a_lock_is_held_once_and_a_dead_or_silent_owner_is_taken_over(tmp_path):
    first, second = RunLock(tmp_path / "run"), RunLock(tmp_path / "run")
    assert first.acquire() and not second.acquire()  # a live owner: left alone
    info = json.loads((tmp_path / "run" / "lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] and info["heartbeat"] <= time.time()
    first.beat()
    first.release()
    assert not (tmp_path / "run" / "lock").exists() and second.acquire()
    second.release()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = RunLock(tmp_path / "run")
    (tmp_path / "run" / "lock").write_text(json.dumps({**lock.owner, "pid": dead.pid, "heartbeat": time.time()}))
    assert lock.acquire()  # this host's owner is gone: taken over at once
    lock.release()

    elsewhere = {"host": "another-node", "pid": 1, "heartbeat": time.time() - 30}
    (tmp_path / "run" / "lock").write_text(json.dumps(elsewhere))
    assert not RunLock(tmp_path / "run", stale_after=60).acquire()  # another machine, beating: alive
    taker = RunLock(tmp_path / "run", stale_after=10)
    assert taker.acquire()  # its heartbeat is older than stale_after: taken over
    assert json.loads((tmp_path / "run" / "lock").read_text())["pid"] == os.getpid()
    (tmp_path / "run" / "lock").write_text(json.dumps(elsewhere))  # taken from us meanwhile
    with pytest.raises(Exception, match="taken over"):
        taker.beat()


def segments_of(root: Path) -> dict:
    return {m.parent.name: json.loads(m.read_text())["segments"] for m in root.glob("*/manifest.json")}


def trained_lines(text: str) -> list:
    """The run hashes that a launcher's output says it started or resumed."""
    return [line.split("(")[1].split(")")[0] for line in text.splitlines()
            if "training run " in line or "resuming run " in line]


DRIVER = """
import sys
from pathlib import Path
from experiments.grid import Budget, jobs_of, launch, plan
names, epochs, size, root = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
workers = int(sys.argv[5]) if len(sys.argv) > 5 else 1
root.mkdir(parents=True, exist_ok=True)
groups = plan(names, Budget(2, epochs, size), root, lockstep="variant")
launch(jobs_of(groups, root, None, workers=workers), "local", workers=workers)
"""


def test_two_launchers_on_one_folder_train_every_run_exactly_once(tmp_path, data_dir):
    names, epochs = ["paper", "full_c3", "sgd"], 1
    root = tmp_path / "runs"
    args = [sys.executable, "-c", DRIVER, ",".join(names), str(epochs), "300", str(root)]
    launchers = [subprocess.Popen(args, cwd=REPO, env=env_with_repo(data_dir), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in launchers]
    assert all(p.returncode == 0 for p in launchers), outputs
    expected = {RunFolder(root, Budget(2, epochs, 300).apply(VARIANTS[n].config).replace(seed=s)).path.name
                for n in names for s in range(2)}
    started = trained_lines(outputs[0]) + trained_lines(outputs[1])
    assert sorted(started) == sorted(expected), outputs  # each run started by one launcher, once
    segments = segments_of(root)
    assert set(segments) == expected
    for name, segs in segments.items():
        assert len(segs) == 1 and segs[0]["from_pass"] == 1, (name, segs)
        assert (root / name / "done").is_file()
        passes = pd.read_csv(root / name / "metrics.csv")["pass"].tolist()
        assert passes == list(range(1, epochs + 1))
    assert not list(root.glob("*/lock")) and not list(root.glob("*/.*.tmp")) and not list(root.glob("*/state.pt"))


# ------------------------------------------------------------------------------------------
# submitit (its local executor: real subprocess jobs, no SLURM needed)


def table(out: Path, names, budget: Budget) -> pd.DataFrame:
    runs = load_runs(out, {n: budget.apply(VARIANTS[n].config) for n in names}, budget.seeds)
    return summarize(runs, reference="paper")[["variant", "n", "mean", "std", "diff"]]


def children(pid: int) -> list:
    """The child processes of `pid` (submitit's local job is a controller that starts the task)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_submitit_local_jobs_killed_and_relaunched_give_the_local_launchers_tables(tmp_path, data_dir, monkeypatch):
    pytest.importorskip("submitit")
    from experiments.grid import submit, wait

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    names, budget = ["paper", "sgd"], Budget(2, 2, 300)
    out, reference = tmp_path / "submitit", tmp_path / "local"
    root = out / "runs"
    root.mkdir(parents=True)
    groups = plan(names, budget, root, lockstep="variant")
    submitted = submit(jobs_of(groups, root, data_dir), cluster="local", log_dir=tmp_path / "logs")
    assert len(submitted) == 2 and all(int(j.job_id) > 0 for j in submitted)  # real processes
    victim_runs = [RunFolder(root, c) for _, c in groups[0][1]]
    deadline = time.time() + 300
    while time.time() < deadline and not any((f.path / "state.pt").is_file() for f in victim_runs):
        time.sleep(0.05)
    for pid in [*children(int(submitted[0].job_id)), int(submitted[0].job_id)]:  # the task, then its controller
        os.kill(pid, signal.SIGKILL)  # killed mid-run: a pass saved, the run not done
    assert not all(f.finished for f in victim_runs)
    saved = {f.path.name: len(pd.read_csv(f.path / "metrics.csv")) for f in victim_runs if (f.path / "metrics.csv").is_file()}
    assert saved and all(0 < n < budget.epochs for n in saved.values())
    wait(submitted[1:])
    again = plan(names, budget, root, lockstep="variant")
    assert [name for name, _ in again] == [groups[0][0]]  # only the killed job's runs are left
    wait(submit(jobs_of(again, root, data_dir), cluster="local", log_dir=tmp_path / "logs"))

    (reference / "runs").mkdir(parents=True)
    launch(jobs_of(plan(names, budget, reference / "runs", lockstep="variant"), reference / "runs", data_dir),
           "local", workers=1)
    pd.testing.assert_frame_equal(table(out, names, budget), table(reference, names, budget))
    for name, segs in segments_of(root).items():  # resumed where it stopped, never trained twice
        passes = pd.read_csv(root / name / "metrics.csv")["pass"].tolist()
        assert passes == list(range(1, budget.epochs + 1))
        starts = [s["from_pass"] for s in segs]
        if name in saved:
            assert starts == [1, saved[name] + 1], (name, segs)
        else:
            assert starts == [1], (name, segs)
    assert not list(root.glob("*/lock"))


def test_submitit_missing_is_one_line(monkeypatch):
    import builtins

    import click

    from experiments.grid import _submitit

    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(click.ClickException, match=r"pip install -e '\.\[cluster\]'"):
        _submitit()


def test_ablate_help_shows_the_launcher_options():
    from click.testing import CliRunner

    from experiments.ablate import main as ablate

    text = CliRunner().invoke(ablate, ["--help"]).output
    for option in ("--launcher", "--partition", "--timeout-min", "--cpus-per-task", "--gpus-per-task",
                   "--array-parallelism", "--log-dir", "--max-group", "submitit"):
        assert option in text


# ------------------------------------------------------------------------------------------
# Stopping the local launcher


def in_session(sid: int) -> list:
    """The pids of live processes of session `sid` (a command started with start_new_session)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def gone(sid: int, bound: float = 60.0) -> bool:
    deadline = time.time() + bound
    while time.time() < deadline:
        if not in_session(sid):
            return True
        time.sleep(0.2)
    return False


def passes_saved(root: Path) -> dict:
    return {p.parent.name: len(pd.read_csv(p)) for p in root.glob("*/metrics.csv")}


ABLATE = ["-m", "experiments.ablate", "--quick", "--only", "paper", "--only", "full_c3", "--only", "sgd",
          "--lockstep", "variant", "--jobs", "2", "--epochs", "3", "--train-size", "300"]  # three groups: two run, one waits


def start_ablate(out: Path, data_dir):
    proc = subprocess.Popen([sys.executable, *ABLATE, "--out", str(out), "--data-dir", str(Path(data_dir).resolve())],
                            cwd=REPO, env=env_with_repo(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    root, deadline = out / "runs", time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(root.glob("*/state.pt")):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0]
    assert list(root.glob("*/state.pt")), "no pass finished in time"
    time.sleep(0.5)
    return proc, root


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_worker_and_keeps_every_finished_pass(tmp_path, data_dir, signum):
    proc, root = start_ablate(tmp_path, data_dir)
    before = passes_saved(root)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)  # Ctrl-C in a terminal: the whole process group
    else:
        proc.send_signal(signum)  # a scheduler or `kill`: the command alone
    try:
        output = proc.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the command did not stop within 60 s")
    assert proc.returncode == 128 + signum, output
    assert gone(proc.pid), f"workers left: {in_session(proc.pid)}"
    assert "never started" in output and "Traceback" not in output
    after = passes_saved(root)
    assert all(after[name] >= n for name, n in before.items())  # no finished pass lost
    sgd = Budget(2, 3, 300).apply(VARIANTS["sgd"].config)
    assert not any(RunFolder(root, sgd.replace(seed=s)).path.exists() for s in range(2))  # the queued group never ran


def test_kill_9_of_the_command_leaves_no_worker_and_the_rerun_resumes(tmp_path, data_dir):
    proc, root = start_ablate(tmp_path, data_dir)
    before = passes_saved(root)
    proc.kill()  # SIGKILL: no handler runs in the parent
    proc.communicate()
    assert gone(proc.pid), f"workers outlived their parent: {in_session(proc.pid)}"
    after = passes_saved(root)
    assert all(after[name] >= n for name, n in before.items())
    import torch

    kept = {p.parent.name: torch.load(p, weights_only=False)["passes_done"] for p in root.glob("*/state.pt")}
    assert kept
    # the same grid again (ablate's training, without its report): each run resumes after its last saved pass
    result = subprocess.run([sys.executable, "-c", DRIVER, "paper,full_c3,sgd", "3", "300", str(root), "2"],
                            cwd=REPO, env=env_with_repo(data_dir), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    resumed = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "resuming run" in line]
    assert resumed and all("at pass " in line and " of 3" in line for line in resumed)
    for name, segs in segments_of(root).items():
        starts = [s["from_pass"] for s in segs]
        assert starts == ([1, kept[name] + 1] if name in kept else [1]), (name, segs)  # resumed where it stopped
        assert pd.read_csv(root / name / "metrics.csv")["pass"].tolist() == [1, 2, 3]


def test_ctrl_c_while_waiting_for_cluster_jobs_leaves_them_and_says_how_to_cancel(capsys):
    from experiments.grid import wait

    class Job:
        def __init__(self, job_id, interrupt):
            self.job_id, self.interrupt, self.cancelled = job_id, interrupt, False

        def result(self):
            if self.interrupt:
                raise KeyboardInterrupt
            return "paper"

        def cancel(self):
            self.cancelled = True

    jobs = [Job("4242_0", False), Job("4242_1", True), Job("4242_2", False)]
    with pytest.raises(SystemExit) as stop:
        wait(jobs)
    assert stop.value.code == 130
    err = capsys.readouterr().err
    assert "4242_0 4242_1 4242_2" in err and "scancel 4242" in err
    assert not any(j.cancelled for j in jobs)  # the jobs are the scheduler's


def test_the_plan_fills_the_kernels_lanes():
    """Per lockstep key, the groups take the fewest kernel blocks there are (at most one in part),
    and none is larger than max_group_default(), a whole number of blocks."""
    from lenet1998.engine import handles, lockstep_key, minibatch

    from experiments.grid import GRID as GRID_BUDGET, blocks, lane_width, max_group_default, plan
    from experiments.variants import VARIANTS, family

    MAX_GROUP = max_group_default()
    assert MAX_GROUP % lane_width() == 0
    names = [n for f in ("single", "open_question", "road") for n in family(f)]
    for seeds in (3, 5, 10, 20):
        groups = plan(names, GRID_BUDGET, None, seeds)
        by_key = {}
        for _, runs in groups:
            keys = {lockstep_key(c) if handles(c) or minibatch.groupable(c) else label for label, c in runs}
            assert len(keys) == 1 and len(runs) <= MAX_GROUP
            by_key.setdefault(keys.pop(), []).append(len(runs))
        for key, sizes in by_key.items():
            if key in VARIANTS:  # minibatch runs: one after the other, no lanes
                continue
            assert sum(blocks(n) for n in sizes) == blocks(sum(sizes)), (seeds, sizes)
            assert sum(n % lane_width() != 0 for n in sizes) <= 1, (seeds, sizes)
    assert blocks(16, 8) == 2 and blocks(17, 8) == 3 and blocks(1, 8) == 1 and blocks(17, 16) == 2


def test_the_timing_split_compares_each_group_with_what_the_bench_implies(monkeypatch):
    """A step costs what its lanes cost, filled or not: a bench row of K_b replicas on L_b lanes
    implies rate x (K / K_b) x (L_b / L) for a group of K on L lanes (experiments.timing.bench_rate)."""
    import pandas as pd

    from experiments import grid, timing

    monkeypatch.setattr(grid, "width_for", lambda k: 8 if k <= 8 or k > 16 else 16)
    bench = pd.DataFrame([
        {"device": "cpu", "case": "2 processes side by side: fit, kernel", "replicas": 3, "width": 8,
         "patterns_per_s_total": 20_000.0},
        {"device": "cpu", "case": "2 processes side by side: fit, kernel", "replicas": 16, "width": 16,
         "patterns_per_s_total": 48_000.0},
        {"device": "cpu", "case": "fit, Adam b=64, lockstep (kernel)", "replicas": 6, "width": 8,
         "patterns_per_s_total": 16_000.0},
    ])
    rate, case = timing.bench_rate(bench, 1, minibatch=False, mixed=False)
    assert rate == pytest.approx(10_000 / 3) and "K=3" in case  # one 8-lane block, a third of it filled
    rate, _ = timing.bench_rate(bench, 12, minibatch=False, mixed=False)
    assert rate == pytest.approx(24_000 * 12 / 16)  # one 16-lane block
    rate, _ = timing.bench_rate(bench, 3, minibatch=True, mixed=False)
    assert rate == pytest.approx(16_000 / 2)  # one process, the same 8 lanes
    rate, case = timing.bench_rate(bench, 20, minibatch=False, mixed=False)
    assert "K=16" in case and rate == pytest.approx(24_000 * 20 / 16 * 16 / 24)  # three 8-lane blocks: 24 lanes


def test_runs_that_resume_one_at_a_time_save_each_pass_into_their_own_folder(tmp_path, data_dir):
    """Adam runs stacked in one process (lenet1998/engine/minibatch.py) resume one at a time on
    the reference trainer; each pass must go to the run that trained it. (It went to the
    group's first folder, so a stop while the second run trained left the first run's resume
    point holding the second run's network.)"""
    from experiments.grid import train_group
    from lenet1998.data import load_mnist

    class Stop(Exception):
        pass

    data = load_mnist(data_dir)
    base = LeNetConfig(epochs=2, train_size=256, **VARIANTS["modern"].changes)
    runs = [("modern", base.replace(seed=0)), ("modern", base.replace(seed=1))]
    quiet = {"on_start": lambda *a: None}

    def stop_after_pass_1(pass_number, labelled):
        raise Stop

    with pytest.raises(Stop):  # pass 1 of both, stacked in one group
        train_group(runs, tmp_path, data, on_pass=stop_after_pass_1, **quiet)
    states = {}

    def stop_when_seed_1_has_pass_2(pass_number, labelled):
        for _, r in labelled:
            states[r.seed] = {k: v.clone() for k, v in r.state.items()}
        if any(r.seed == 1 for _, r in labelled):
            raise Stop

    with pytest.raises(Stop):  # both resume at pass 2: one at a time
        train_group(runs, tmp_path, data, on_pass=stop_when_seed_1_has_pass_2, **quiet)
    assert sorted(states) == [0, 1]
    for label, config in runs:
        point = RunFolder(tmp_path, config).resume_point()
        assert point["passes_done"] == 2
        for name, value in states[config.seed].items():
            assert torch.equal(point["state"][name], value), (config.seed, name)
