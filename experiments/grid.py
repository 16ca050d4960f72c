"""The grid: budgets, the plan of lockstep groups, the job that trains one group, and the
launchers that run the jobs (a local process pool, or a cluster through submitit).

    budget     Budget(seeds, epochs, train_size); BUDGETS names the grid's, --quick's and each
               variant family's (experiments/variants.py FAMILY_SEEDS)
    plan       the lockstep groups that train the runs not yet done, largest first
    schedule   the makespan of groups handed to N workers in order (bench, timing)
    run_job    trains one group (a Job) into its run folders; runs in a worker or a cluster job
    launch     runs the jobs with a launcher of LAUNCHERS: "local" (a process pool, the default)
               or "submitit" (one SLURM job array; submitit's local executor where there is no SLURM)

Every run writes a folder named by its config hash (lenet1998/results.py) and holds its lock
while it trains, so jobs are idempotent: a rerun, a requeued cluster job or a second launcher
on the same folder trains only what is neither done nor locked by a live process, and resumes
an unfinished run from its last finished pass.

Stopping (local launcher): Ctrl-C (SIGINT) or SIGTERM stops every worker at once, starts no
queued group, keeps every finished pass, and exits 130 or 143; the workers die with their
parent (PR_SET_PDEATHSIG on Linux, a parent watchdog thread everywhere). Cluster jobs belong to
the scheduler: Ctrl-C stops the waiting command only and prints how to cancel the jobs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click
import torch

from lenet1998.results import LOCK_STALE_S, RunFolder, RunLock, environment

from .variants import FAMILY_SEEDS, VARIANTS, budget as with_budget


@dataclass(frozen=True)
class Budget:
    """How much each variant trains: seeds, passes, training patterns (the first N)."""

    seeds: int
    epochs: int
    train_size: int

    def apply(self, config):
        """The config with this budget's passes and training-set size."""
        return with_budget(config, self.epochs, self.train_size)


GRID = Budget(seeds=3, epochs=20, train_size=60000)  # `ablate --all`: the paper's 20 passes over 60,000
QUICK = Budget(seeds=2, epochs=1, train_size=2000)  # `--quick`: a smoke check of the pipeline
BUDGETS = {"grid": GRID, "quick": QUICK,
           **{family: replace(GRID, seeds=seeds) for family, seeds in FAMILY_SEEDS.items()}}

def lane_width() -> int:
    """The kernel's SIMD lanes per block on this machine (lenet1998/engine/kernel.py lane_width: 8
    or 16, measured at its first build; 8 where the kernel does not build): a group of K runs
    takes ceil(K / width) blocks, the last one padded with idle lanes."""
    from lenet1998.engine import kernel

    return kernel.lane_width() if kernel.available() else kernel.BLOCK


def width_for(replicas: int) -> int:
    """The block width a group of `replicas` runs takes here (kernel.width_for: the fewest
    seconds per step; 8 where the kernel does not build)."""
    from lenet1998.engine import kernel

    return kernel.width_for(replicas) if kernel.available() else kernel.BLOCK


def max_group_default() -> int:
    """Replicas per lockstep group: two blocks of lanes (throughput per process levels off there)."""
    return 2 * lane_width()


def blocks(replicas: int, width: int | None = None) -> int:
    """The kernel's blocks a group of `replicas` runs fills (the last one perhaps in part)."""
    width = width or lane_width()
    return -(-replicas // width)


def fill_lanes(runs: list, max_group: int | None = None) -> list:
    """`runs` (of one lockstep key) split into groups that fill the kernel's lanes: full groups of
    `max_group` (default max_group_default(); rounded down to a multiple of the lane width) and
    one group of the rest, so that they take the fewest blocks there are, ceil(runs / lane width),
    with at most one block in part. The runs keep their order."""
    max_group = max_group or max_group_default()
    size = max(lane_width(), max_group - max_group % lane_width())  # whole blocks (a --max-group of 18: 16)
    return [runs[i:i + size] for i in range(0, len(runs), size)]


# ----------------------------------------------------------------------------------------------
# The plan


def plan(names, budget: Budget, root: Path | None = None, seeds=None, lockstep: str = "architecture",
         max_group: int | None = None) -> list:
    """The lockstep groups that train the runs not yet done under `root` (every run when root
    is None): [(group name, [(variant, config), ...])].

    seeds: the seeds of every variant (default budget.seeds), or {variant: seeds}. A run whose
    config an earlier variant of `names` already has is planned once, under that variant's name.

    lockstep "variant": one group per variant (its seeds). "architecture": the runs whose configs
    share a lockstep key (lenet1998.engine.lockstep_key) train together (e.g. the 11 variants of
    the paper's layer shapes), in groups that fill the kernel's lanes (`fill_lanes`). Runs keep
    the order of `names` and of their seeds, so a variant's seeds stay together where a group
    boundary allows. Each replica still follows its own config (tests/test_engine.py).
    Largest groups first, so that `--jobs 2` starts them at once.
    """
    from lenet1998.engine import handles, lockstep_key, minibatch

    seeds = budget.seeds if seeds is None else seeds
    by_key, planned = {}, set()
    for name in names:
        config = budget.apply(VARIANTS[name].config)
        for seed in range(seeds if isinstance(seeds, int) else seeds[name]):
            run = config.replace(seed=seed)
            if run in planned:  # another variant of the same config (a road step, say): one run
                continue
            planned.add(run)
            if root is None or not RunFolder(root, run).done:
                stackable = handles(run) or minibatch.groupable(run)  # per-pattern, or Adam (engine/minibatch.py)
                key = (lockstep_key(run) if stackable else name) if lockstep == "architecture" else name
                by_key.setdefault(key, []).append((name, run))
    groups = [group for runs in by_key.values() for group in fill_lanes(runs, max_group)]
    jobs = [(" + ".join(dict.fromkeys(label for label, _ in runs)), runs) for runs in groups]
    return sorted(jobs, key=lambda job: -group_cost(job[1]))


def schedule(durations, jobs: int) -> float:
    """Makespan of running `durations` in order, each on the first free of `jobs` workers
    (how the local launcher hands the groups out)."""
    workers = [0.0] * jobs
    for d in durations:
        workers[workers.index(min(workers))] += d
    return max(workers)


def group_cost(runs) -> float:
    """A rough relative cost, for ordering: per-pattern runs cost 1, minibatch runs 0.7
    (results/bench.md: Adam K=3 runs at about 1.4x the per-pattern K=3 rate)."""
    return sum(1.0 if config.batch_size == 1 else 0.7 for _, config in runs)


# ----------------------------------------------------------------------------------------------
# Training one group into its run folders


def resume_point(point: dict | None, config):
    """A stored state.pt as a ResumePoint (None: start over). Adam needs its moments: a resume
    point of an older format without them starts over."""
    from lenet1998.record import ResumePoint

    needs_state = config.optimizer == "adam" or config.sdlm_reestimate == "once"  # moments; h_kk of pass 1
    if point is None or (needs_state and point.get("rule_state") is None):
        return None
    return ResumePoint(point["passes_done"], point["state"], point["history"], point.get("rule_state"))


HEARTBEAT_S = 30.0  # how often a training process refreshes its locks within a pass


def run_name(label: str, config) -> str:
    return f"{label} seed {config.seed} ({config.digest()[:12]})"


def train_group(runs, root: Path, data, device: str = "cpu", on_pass=None, on_progress=None,
                engine: str = "auto", on_start=None, stale_after: float = LOCK_STALE_S) -> list:
    """Train runs [(label, config with its seed), ...] into their run folders under `root`: the
    per-pattern runs as one lockstep group (lenet1998/engine/: they must share a lockstep key),
    Adam runs of one lockstep key stacked in one process (lenet1998/engine/minibatch.py), other
    minibatch runs one after the other. Returns the run folders, one per run.

    Each run is trained only by the process that holds its lock (lenet1998.results.RunLock): a
    run that another live process trains is skipped, one that is done meanwhile too.
    on_pass(pass_number, labelled): [(label, RunResult), ...] of the runs training, after each
    pass. on_progress(done, total, replicas) within a pass. on_start(label, config, passes_done)
    when a run starts or resumes (default: a "resuming run ... at pass N of M" line on stderr).
    """
    from lenet1998.engine import check_group, handles, minibatch
    from lenet1998.train import fit

    if all(handles(c) for _, c in runs):
        check_group([c for _, c in runs])  # one group, or a clear error before anything is written
        batches = [list(range(len(runs)))]
    elif minibatch.handles([c for _, c in runs], device=device, engine=engine):  # Adam runs: stacked in one process
        batches = [list(range(len(runs)))]
    else:
        batches = [[i] for i in range(len(runs))]
    if on_start is None:
        def on_start(label, config, passes_done):
            if passes_done:
                click.echo(f"resuming run {run_name(label, config)} at pass {passes_done + 1} of {config.epochs}",
                           err=True)
    env = environment(device)  # the code as it is when training starts, not when it ends
    folders = [RunFolder(root, c) for _, c in runs]
    locks = {}
    try:
        for batch in batches:
            pending = {}
            for i in batch:
                lock = RunLock(folders[i].path, stale_after)
                if not lock.acquire():
                    click.echo(f"skipping run {run_name(*runs[i])}: {lock.describe()} is training it", err=True)
                    continue
                reason = folders[i].broken
                if reason:  # a finished run damaged since: keep it aside (lock and all) and train it again
                    target = folders[i].move_aside()
                    (target / "lock").unlink(missing_ok=True)
                    click.echo(f"broken run moved to {target}, retraining: {reason}", err=True)
                    if not lock.acquire():
                        continue
                if folders[i].done:  # finished by another process since the plan
                    lock.release()
                    continue
                locks[i] = lock
                point = folders[i].resume_point()
                start = resume_point(point, runs[i][1])
                pending.setdefault(0 if start is None else start.passes_done, []).append((i, point, start))
            for passes_done, members in sorted(pending.items()):
                _train_members(runs, folders, locks, members, passes_done, data, device, engine, env,
                               fit, on_pass, on_progress, on_start)
    finally:
        for lock in locks.values():
            lock.release()
    return folders


def _train_members(runs, folders, locks, members, passes_done, data, device, engine, env, fit,
                   on_pass, on_progress, on_start):
    """Train the runs `members` [(index, stored point, ResumePoint)] that resume at the same pass."""
    group = [i for i, _, _ in members]
    segment = {"from_pass": passes_done + 1, "git_commit": env["git_commit"], "git_dirty": env["git_dirty"],
               "engine": engine, "device": device, "host": locks[group[0]].owner["host"], "pid": os.getpid(),
               "replicas_in_group": len(group), "variants_in_group": sorted({runs[i][0] for i in group})}
    segments = {i: (p.get("segments", []) if p else []) + [dict(segment)] for i, p, _ in members}
    for i in group:
        folders[i].start(runs[i][0])
        on_start(runs[i][0], runs[i][1], passes_done)
    t0 = time.perf_counter()
    last_beat = [time.monotonic()]

    def beat():
        last_beat[0] = time.monotonic()
        for i in group:
            locks[i].beat()

    def save(pass_number, results, rule_states):
        for i, r, rule_state in zip(group, results, rule_states, strict=True):
            if r is None:  # a run that did not train in this call (lenet1998.train.fit: one at a time)
                continue
            segments[i][-1]["engine"] = r.engine  # the path that ran
            folders[i].save_pass(r, segments[i], rule_state)
        beat()
        if on_pass is not None:
            on_pass(pass_number, [(runs[i][0], r) for i, r in zip(group, results) if r is not None])

    def progress(done, total):
        if time.monotonic() - last_beat[0] > HEARTBEAT_S:
            beat()
        if on_progress is not None:
            on_progress(done, total, len(group))

    results = fit([runs[i][1] for i in group], data, device=device, start=[s for _, _, s in members],
                  on_pass=save, on_progress=progress, engine=engine)
    wall = time.perf_counter() - t0
    for i, r in zip(group, results):
        segments[i][-1]["engine"] = r.engine
        folders[i].finish(r, runs[i][0], env, segments[i], wall, len(group))  # `done` last
        locks.pop(i).release()


def train_runs(config, seeds, root: Path, data, label: str, device: str = "cpu",
               on_pass=None, on_progress=None, engine: str = "auto") -> list:
    """Train `config` for every seed into run folders under `root`, in lockstep groups.

    Finished runs are skipped; unfinished ones resume from their last completed pass (seeds
    stopped at the same pass resume together). on_pass(pass_number, results);
    on_progress(done, total). Returns the run folders, one per seed.
    """
    runs = [(label, config.replace(seed=int(s))) for s in seeds]
    report = None if on_pass is None else (lambda pass_number, labelled: on_pass(pass_number, [r for _, r in labelled]))
    progress = None if on_progress is None else (lambda done, total, replicas: on_progress(done, total))
    return train_group(runs, root, data, device, report, progress, engine)


class Progress:
    """One group's progress: a tqdm bar (patterns/s over all replicas, time left) while stderr
    is a terminal, and one line per pass (on stdout, above the bar)."""

    def __init__(self, name: str, total: int, position: int = 0, bar: bool | None = None):
        self.name, self.last, self.t0 = name, 0, time.perf_counter()
        self.bar = None
        if (sys.stderr.isatty() if bar is None else bar) and total:
            from tqdm import tqdm

            # A thread lock, not tqdm's default process-shared one: a worker stopped by SIGTERM
            # (Ctrl-C on ablate) cannot release a semaphore, and the resource tracker then warns
            # of "leaked semaphore objects" at exit. Each worker draws its own bar (`position`).
            tqdm.set_lock(threading.RLock())
            self.bar = tqdm(total=total, desc=name[:40], unit="pattern", unit_scale=True, position=position,
                            leave=False, file=sys.stderr, mininterval=1.0, dynamic_ncols=True)

    def advance(self, done: int, total: int, replicas: int) -> None:
        delta = done - self.last if done >= self.last else done  # a new pass starts from 0
        self.last = 0 if done >= total else done
        if self.bar is not None:
            self.bar.update(delta * replicas)

    def skip(self, patterns: int) -> None:
        """Passes already done (a resumed run): counted, not timed."""
        if self.bar is not None:
            self.bar.total = max(0, self.bar.total - patterns)
            self.bar.refresh()

    def line(self, text: str, err: bool = False) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr if err else sys.stdout)
        else:
            click.echo(text, err=err)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class Job:
    """One lockstep group to train: what a worker process or a cluster job receives."""

    name: str
    runs: tuple  # ((variant, config with its seed), ...)
    root: Path
    data_dir: str | None
    device: str = "cpu"
    engine: str = "auto"
    threads: int = 1
    position: int = 0  # the progress bar's line, among the workers
    tensorboard: str | None = None  # a folder to log each run to as its passes finish


def jobs_of(groups, root, data_dir, device="cpu", engine="auto", threads=1, workers=1, tensorboard=None) -> list:
    """plan()'s groups as Jobs."""
    data_dir = None if data_dir is None else str(Path(data_dir).resolve())  # the same folder from any cwd
    return [Job(name, tuple(runs), Path(root).resolve(), data_dir, device, engine, threads,
                position=i % max(1, workers), tensorboard=tensorboard) for i, (name, runs) in enumerate(groups)]


def run_job(job: Job) -> str:
    """Train one lockstep group into its run folders (in a worker process or a cluster job)."""
    from lenet1998.data import load_mnist

    torch.set_num_threads(job.threads)
    device = job.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_mnist(job.data_dir, download=False)
    epochs = job.runs[0][1].epochs
    progress = Progress(job.name, sum(c.epochs * c.train_size for _, c in job.runs), job.position)
    t0 = time.perf_counter()
    tb = None
    if job.tensorboard:
        from lenet1998.results import RunFolder

        from .tensorboard import TensorBoardLog, run_name as tb_name

        tb = TensorBoardLog(job.tensorboard)
        logged = {(label, c.seed): (RunFolder(job.root, c).path, tb_name(label, c.seed)) for label, c in job.runs}

    def on_start(label, config, passes_done):
        progress.skip(passes_done * config.train_size)
        what = f"resuming run {run_name(label, config)} at pass {passes_done + 1} of {config.epochs}" if passes_done \
            else f"training run {run_name(label, config)}: {config.epochs} passes"
        progress.line(f"[{job.name}] {what}", err=True)

    def on_pass(pass_number, labelled):
        elapsed = time.perf_counter() - t0
        done = pass_number - labelled[0][1].history[0]["pass"] + 1
        left = elapsed / done * (epochs - pass_number)
        seconds = labelled[0][1].history[-1].get("train_time_s")
        speed = f", {len(labelled) * job.runs[0][1].train_size / seconds:.0f} patterns/s" if seconds else ""
        # a run that holds patterns out is being used to choose something: show its validation error only
        shown = "val" if "val_error" in labelled[0][1].history[-1] else "test"
        by_label = {}
        for label, r in labelled:
            by_label.setdefault(label, []).append(f"{r.history[-1][shown + '_error']:.2f}{' (failed)' if r.failed else ''}")
        tests = "; ".join(f"{label} {' '.join(t)}" for label, t in by_label.items())
        progress.line(f"[{job.name}] pass {pass_number}/{epochs} {shown} % by seed: {tests}"
                      f"  ({elapsed / 60:.1f} min, ~{left / 60:.1f} min left{speed})")
        if tb is not None:  # the rows of each metrics.csv (written before this call) not yet logged
            for label, r in labelled:
                tb.log(*logged[label, r.seed])

    try:
        train_group(list(job.runs), job.root, data, device, on_pass=on_pass, on_progress=progress.advance,
                    engine=job.engine, on_start=on_start)
    finally:
        progress.close()
        if tb is not None:
            tb.close()
    return job.name


# ----------------------------------------------------------------------------------------------
# Launchers


class Stopped(Exception):
    """SIGINT or SIGTERM reached the launching process."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopOnSignals:
    """While active (main thread only): SIGINT and SIGTERM raise Stopped."""

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.saved[s] = signal.signal(s, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise Stopped(signum)

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)
        return False


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Make this worker die when its parent does: the kernel's parent-death signal on Linux, and
    a thread that watches the parent's pid everywhere (and catches a parent gone already)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker(job: Job, parent: int) -> None:
    """A local worker process: the parent alone answers Ctrl-C (it stops every worker)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    run_job(job)


def _stop(processes, grace: float = 10.0) -> None:
    for p in processes:
        if p.is_alive():
            p.terminate()  # SIGTERM: a worker dies at once; every finished pass is on disk already
    deadline = time.monotonic() + grace
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def launch_local(jobs, workers: int = 2, **unused) -> list:
    """Train the jobs here, `workers` groups at a time (one process each; in this process when
    there is one worker or one job). Returns the names of the groups trained."""
    import multiprocessing
    import multiprocessing.connection

    t0, done = time.perf_counter(), []

    def finished(job):
        done.append(job.name)
        elapsed = time.perf_counter() - t0
        left = elapsed / len(done) * (len(jobs) - len(done))
        click.echo(f"== {job.name} done ({len(done)}/{len(jobs)} groups, {elapsed / 60:.1f} min, "
                   f"~{left / 60:.1f} min left)")

    running, queued, failed, here = {}, list(jobs), [], []
    try:
        with _StopOnSignals():
            if workers == 1 or len(jobs) <= 1:
                while queued:
                    here = [queued.pop(0)]  # the group training in this process
                    run_job(here[0])
                    finished(here.pop())
                return done
            context = multiprocessing.get_context("spawn")
            while queued or running:
                while queued and len(running) < workers:
                    job = queued.pop(0)
                    p = context.Process(target=_worker, args=(job, os.getpid()), name=f"lenet1998 {job.name}")
                    p.start()
                    running[p.sentinel] = (p, job)
                for sentinel in multiprocessing.connection.wait(list(running), timeout=1.0):
                    p, job = running.pop(sentinel)
                    p.join()
                    if p.exitcode == 0:
                        finished(job)
                    else:
                        failed.append(job.name)
                        click.echo(f"== {job.name} FAILED (exit code {p.exitcode}; its error is above)", err=True)
    except (Stopped, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        _stop([p for p, _ in running.values()])
        click.echo(f"stopped by {signal.Signals(signum).name}: {len(running) + len(here)} running group(s) stopped, "
                   f"{len(queued)} never started; every finished pass is kept: run the same command again "
                   "to resume", err=True)
        raise SystemExit(128 + signum) from None
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(jobs)} groups failed: {', '.join(failed)}")
    return done


def launch_submitit(jobs, partition: str | None = None, timeout_min: int = 24 * 60, cpus_per_task: int = 1,
                    gpus_per_task: int = 0, array_parallelism: int = 32, log_dir="results/slurm",
                    cluster: str | None = None, **unused) -> list:
    """Submit the jobs as one job array through submitit (SLURM where `sbatch` exists, else
    submitit's local executor, or `cluster` by name) and wait for them. Ctrl-C stops the
    waiting only: the jobs belong to the scheduler, and the message says how to cancel them."""
    submitted = submit(jobs, partition, timeout_min, cpus_per_task, gpus_per_task, array_parallelism, log_dir, cluster)
    return wait(submitted)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise click.ClickException("--launcher submitit needs submitit: pip install -e '.[cluster]'") from None
    return submitit


def submit(jobs, partition=None, timeout_min=24 * 60, cpus_per_task=1, gpus_per_task=0, array_parallelism=32,
           log_dir="results/slurm", cluster=None) -> list:
    """Submit the jobs as one array; returns submitit's job handles (in the order of `jobs`)."""
    submitit = _submitit()
    executor = submitit.AutoExecutor(folder=str(log_dir), cluster=cluster)
    parameters = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_task, "name": "lenet1998",
                  "slurm_array_parallelism": array_parallelism}
    if gpus_per_task:
        parameters["gpus_per_node"] = gpus_per_task
    if partition:
        parameters["slurm_partition"] = partition
    executor.update_parameters(**parameters)
    jobs = [replace(job, threads=cpus_per_task, position=0) for job in jobs]
    submitted = executor.map_array(run_job, jobs)
    click.echo(f"submitted {len(submitted)} jobs ({executor.cluster}): {', '.join(j.job_id for j in submitted)}; "
               f"logs in {log_dir}")
    return submitted


def wait(submitted) -> list:
    """Wait for submitted jobs; their names. Ctrl-C (or SIGTERM) leaves the jobs running."""
    done, failed = [], []
    try:
        with _StopOnSignals():
            for job in submitted:
                try:
                    done.append(job.result())
                    click.echo(f"== {done[-1]} done (job {job.job_id})")
                except Exception as e:  # submitit's FailedJobError and friends: the job's log says why
                    failed.append(job.job_id)
                    click.echo(f"== job {job.job_id} FAILED: {str(e).strip().splitlines()[0][:200]}", err=True)
    except (Stopped, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        ids = [j.job_id for j in submitted]
        arrays = sorted({i.split("_")[0] for i in ids})
        click.echo(f"stopped waiting; the jobs keep running: {' '.join(ids)}\n"
                   f"cancel them with: scancel {' '.join(arrays)}   (submitit's local executor: kill the job pids)\n"
                   "collect what they wrote with: python -m experiments.report", err=True)
        raise SystemExit(128 + signum) from None
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(submitted)} jobs failed: {', '.join(failed)}")
    return done


LAUNCHERS = {"local": launch_local, "submitit": launch_submitit}


def launch(jobs, launcher: str = "local", **options) -> list:
    """Run the jobs with a launcher of LAUNCHERS; returns the names of the groups trained."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; valid: {list(LAUNCHERS)}")
    if not jobs:
        return []
    return LAUNCHERS[launcher](jobs, **options)


def launcher_options(f):
    """The command-line options of the launchers (ablate, trainsize)."""
    options = [
        click.option("--launcher", type=click.Choice(list(LAUNCHERS)), default="local", show_default=True,
                     help="local: a process pool here (--jobs). submitit: one SLURM job array (submitit's local "
                          "executor where there is no SLURM; pip install -e '.[cluster]')."),
        click.option("--partition", default=None, help="submitit: the SLURM partition."),
        click.option("--timeout-min", type=click.IntRange(min=1), default=24 * 60, show_default=True,
                     help="submitit: the time limit of each job (minutes)."),
        click.option("--cpus-per-task", type=click.IntRange(min=1), default=1, show_default=True,
                     help="submitit: cores of each job (its torch threads)."),
        click.option("--gpus-per-task", type=click.IntRange(min=0), default=0, show_default=True,
                     help="submitit: GPUs of each job (with --device cuda)."),
        click.option("--array-parallelism", type=click.IntRange(min=1), default=32, show_default=True,
                     help="submitit: jobs of the array running at once."),
        click.option("--log-dir", type=click.Path(file_okay=False), default="results/slurm", show_default=True,
                     help="submitit: the folder of the jobs' logs and pickles (on the shared filesystem)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def launch_from_options(jobs, launcher, workers, partition, timeout_min, cpus_per_task, gpus_per_task,
                        array_parallelism, log_dir) -> list:
    """launch() with the values of launcher_options and --jobs."""
    return launch(jobs, launcher, workers=workers, partition=partition, timeout_min=timeout_min,
                  cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, array_parallelism=array_parallelism,
                  log_dir=log_dir)

