"""Boosted LeNet-4 (Sec. III-C.8, Fig. 9's 0.7%): three LeNet-4s, the second and third trained
on patterns filtered by the nets before them (lenet1998/boosting.py).

    python -m experiments.ablate --family fig9     # net 1: `net_lenet4`, trained the usual way
    python -m experiments.boosted                  # nets 2 and 3 of seeds 0-4, then the combination
    python -m experiments.boosted --seed 1 --seed 3    # some seeds (two processes: disjoint seeds)
    python -m experiments.boosted --net1 net_lenet4+distortions   # net 1 trained on the distortion pool

Net 1 of seed s is the finished `net_lenet4` run of seed s in <out>/runs ("the first one is
trained the usual way"), or with --net1 the `net_lenet4+distortions` run. Net 2 trains on
60,000 new distorted patterns (net 1's training-set size), half of them ones net 1 gets right
and half ones it gets wrong; net 3 on as many new ones on which nets 1 and 2 disagree, read from
the stream after the last candidate net 2's set used. Each trains as `net_lenet4` does (its
config, with its own seed: s + SEED_OFFSET[net]): per-pattern SDLM, 20 passes over its set in
one random order. Their run folders are under <out>/fig9/boosted/<net 1's variant>/, each
with `training_set.json` (the set's stream positions, counts and SHA-256; a resumed run
rebuilds its set and checks it is the same).

At test time the three nets' outputs are added (their scores: minus the target head's
penalties, whose sum ranks the classes as the sum of the outputs does). The shortcut
(lenet1998.boosting.shortcut) answers with net 1 alone where its margin reaches a threshold,
chosen without the test set: the smallest margin at which the shortcut makes no more errors
than the full sum on the 20,000 new candidates after net 3's set (a third of a set). Written
to <out>/fig9/boosted.json per net 1 and seed: each net's test error, the combination's, Fig.
10's rejection for 0.5% error, the threshold, the shortcut's test error and its average number of nets called.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from lenet1998.boosting import (
    CHUNK, CandidateStream, added, digest, disagreement_set, margin, mixed_set, shortcut,
)
from lenet1998.classical import rejection
from lenet1998.data import MNIST, encode, ink, load_mnist
from lenet1998.patterns import STREAM_COINS, generator, test_images
from lenet1998.results import (
    ResultsError, RunFolder, atomic_write_text, check_writable, git_state, load_trained, read_manifest, write_json,
)

from .common import command, data_dir_option, one_line_errors
from .fig9 import FOLDER, scores
from .grid import GRID, train_group
from .variants import VARIANTS, budget

NET1 = "net_lenet4"  # nets 2 and 3 train as it does, on their filtered sets
# Net 1, "trained the usual way": as LeNet-4's own row (the default), or on the distortion pool as
# the row's "[distortions]" may also mean (a reading: both are measured, --net1).
NET1_READINGS = ("net_lenet4", "net_lenet4+distortions")
# Each filtered set holds as many patterns as net 1's training set (60,000; not stated), and nets
# 2 and 3 train on theirs for as many passes as net 1 did: the budget (--epochs, --train-size).
SEED_OFFSET = {2: 1000, 3: 2000}  # nets 2 and 3 of seed s start from seeds s + offset: not net 1's start
VALIDATION = 3  # the shortcut's threshold is chosen on a third as many new candidates as a set holds (20,000)
RUNS = "boosted"  # <out>/fig9/boosted/<net 1's variant>/<config hash>/: the run folders of nets 2 and 3
RESULT = "boosted.json"  # {"rows": {net 1's variant: {seed: the combination}}}
LABEL = "boosted_lenet4 net {}"


def net_config(seed: int, net: int, epochs: int = GRID.epochs, train_size: int = GRID.train_size, net1: str = NET1):
    """The config of net `net` (1, 2, 3) of boosted LeNet-4 seed `seed`: net 1 the run of variant
    `net1`, nets 2 and 3 NET1's config (no distortion pool: their sets are distorted patterns)
    for `epochs` passes over a set of `train_size` filtered patterns."""
    config = budget(VARIANTS[net1 if net == 1 else NET1].config, epochs, train_size)
    return config.replace(seed=seed + SEED_OFFSET.get(net, 0))


def answers(model, config):
    """images (M, 28, 28) grey levels -> the network's classes (M,)."""
    return lambda images: scores(model, config, encode(images, config.input_coding)).argmax(1)


def net1_folder(out: Path, seed: int, epochs: int, train_size: int, net1: str) -> RunFolder:
    folder = RunFolder(out / "runs", net_config(seed, 1, epochs, train_size, net1))
    if not folder.done:
        raise ResultsError(f"{folder.path}: net 1 of boosted LeNet-4 seed {seed} ({net1} seed {seed}, {epochs} passes "
                           f"over {train_size:,} patterns) is not trained; run python -m experiments.ablate "
                           f"--family fig9 first")
    return folder


def build_set(stream: CandidateStream, seed: int, net: int, models: list, configs: list, start: int = 0):
    """(stream indices, description) of net `net`'s training set (as many patterns as net 1's)."""
    size = configs[0].train_size
    chunk = min(CHUNK, 20 * size)  # a small set (a test's) reads a small stream
    if net == 2:
        index = mixed_set(stream, answers(models[0], configs[0]), size, generator(seed, STREAM_COINS), chunk)
        read = int(index[-1]) + 1
    else:
        index = disagreement_set(stream, answers(models[0], configs[0]), answers(models[1], configs[1]),
                                 size, start, chunk)
        read = int(index[-1]) + 1 - start
    return index, {"net": net, "size": len(index), "first_candidate": int(index[0]), "last_candidate": int(index[-1]),
                   "candidates_read_from": start, "candidates_read": read}


def train_net(root: Path, data: MNIST, stream: CandidateStream, seed: int, net: int, models: list, configs: list,
              start: int, engine: str) -> RunFolder:
    """Train net `net` of seed `seed` into its run folder under `root` (or find it done)."""
    config = net_config(seed, net, configs[0].epochs, configs[0].train_size)
    folder = RunFolder(root, config)
    if folder.done:
        return folder
    click.echo(f"boosted LeNet-4 seed {seed}: filtering net {net}'s set ...", err=True)
    index, described = build_set(stream, seed, net, models, configs, start)
    images, labels = stream.images(index), stream.targets(index)
    if net == 2:
        described["net1_right"] = int((answers(models[0], configs[0])(images) == labels).sum())
    described.update(sha256=digest(images), net1=str(configs[0].digest()), nets_before=[c.digest() for c in configs])
    known = folder.path / "training_set.json"
    if known.is_file() and json.loads(known.read_text())["sha256"] != described["sha256"]:
        raise ResultsError(f"{known}: the set rebuilt now differs from the one this run started on; "
                           f"move {folder.path} aside to train it again")
    folder.path.mkdir(parents=True, exist_ok=True)
    write_json(known, described)
    filtered = MNIST(images, labels, data.test_images, data.test_labels)
    click.echo(f"boosted LeNet-4 seed {seed}: training net {net} on {len(index):,} patterns "
               f"({described['candidates_read']:,} candidates read)", err=True)
    train_group([(LABEL.format(net), config)], root, filtered, engine=engine)
    if not folder.done:
        raise ResultsError(f"{folder.path}: net {net} of seed {seed} did not finish (another process may hold it)")
    return folder


def evaluate(data: MNIST, stream: CandidateStream, seed: int, folders: list, start: int) -> dict:
    """The combination of seed `seed` on the test set, and its shortcut (module docstring)."""
    models = [load_trained(f.path / "checkpoint.pt") for f in folders]
    configs = [f.config for f in folders]
    images, labels = test_images(configs[0], data)
    each = [scores(m, c, images) for m, c in zip(models, configs)]
    combined = added(each)
    index = torch.arange(start, start + configs[0].train_size // VALIDATION)  # new: never a training or test pattern
    coded, targets = encode(stream.images(index), configs[0].input_coding), stream.targets(index)
    v_each = [scores(m, c, coded) for m, c in zip(models, configs)]
    v_combined = added(v_each)
    full_errors = int((v_combined.argmax(1) != targets).sum())
    threshold = next(float(t) for t in margin(v_each[0]).sort().values.tolist() + [float("inf")]
                     if int((shortcut(v_each[0], v_combined, t)[0].argmax(1) != targets).sum()) <= full_errors)
    shortcut_scores, called = shortcut(each[0], combined, threshold)

    def error(s):
        return 100.0 * float((s.argmax(1) != labels).double().mean())

    return {"seed": seed, "nets": [f.path.name for f in folders], "net_test_errors": [error(s) for s in each],
            "recorded_net_test_errors": [read_manifest(f.path)["final_test_error"] for f in folders],
            "test_error": error(combined), "rejection_0.5": rejection(combined, labels),
            "threshold": threshold, "validation_candidates": [start, int(index[-1]) + 1],
            "shortcut_test_error": error(shortcut_scores), "nets_called": float(called.double().mean())}


@command()
@click.option("--seed", "seeds", type=click.IntRange(0), multiple=True, default=tuple(range(5)), show_default=True,
              help="Seeds to build (repeatable); net 1 of seed s is the --net1 variant's run of seed s.")
@click.option("--net1", type=click.Choice(NET1_READINGS), default=NET1, show_default=True,
              help="Net 1: LeNet-4's own runs, or LeNet-4 trained on the distortion pool.")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Results folder: reads <out>/runs, writes <out>/fig9/boosted/<net1>/ and <out>/fig9/boosted.json.")
@click.option("--epochs", type=click.IntRange(min=1), default=GRID.epochs, show_default=True,
              help="Net 1's passes (its net_lenet4 run) and nets 2 and 3's.")
@click.option("--train-size", type=click.IntRange(min=100, max=GRID.train_size), default=GRID.train_size,
              show_default=True, help="Net 1's training patterns, and the size of nets 2 and 3's filtered sets.")
@click.option("--engine", type=click.Choice(["auto", "kernel", "compiled", "eager"]), default="auto", show_default=True)
@data_dir_option
@one_line_errors
def main(seeds, net1, out, epochs, train_size, engine, data_dir):
    """Train nets 2 and 3 of boosted LeNet-4 for each seed (resuming), then record the combination."""
    torch.set_num_threads(1)
    out = Path(out)
    target = check_writable(out / FOLDER)
    data = load_mnist(data_dir)
    originals = ink(data.train_images)
    path = target / RESULT
    for seed in sorted(set(seeds)):
        folders = [net1_folder(out, seed, epochs, train_size, net1)]
        stream = CandidateStream(originals, data.train_labels, seed)
        start = 0
        for net in (2, 3):
            models = [load_trained(f.path / "checkpoint.pt") for f in folders]
            folders.append(train_net(out / FOLDER / RUNS / net1, data, stream, seed, net, models,
                                     [f.config for f in folders], start, engine))
            start = json.loads((folders[-1].path / "training_set.json").read_text())["last_candidate"] + 1
        row = evaluate(data, stream, seed, folders, start)
        known = json.loads(path.read_text()).get("rows", {}) if path.is_file() else {}  # another process's rows
        known.setdefault(net1, {})[str(seed)] = row
        atomic_write_text(path, json.dumps({"rows": known, "command": "python -m experiments.boosted", **git_state()},
                                           indent=2, sort_keys=True) + "\n")
        click.echo(f"{net1} seed {seed}: nets {', '.join(f'{e:.2f}' for e in row['net_test_errors'])}% -> boosted "
                   f"{row['test_error']:.2f}%; shortcut {row['shortcut_test_error']:.2f}% at "
                   f"{row['nets_called']:.2f} nets per pattern")
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
