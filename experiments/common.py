"""What every command line shares: options, config overrides, errors as one line, devices."""

from __future__ import annotations

import dataclasses
import functools
import math
import sys

import click
import torch

from lenet1998.config import TRAIN_PATTERNS, ConfigError, LeNetConfig
from lenet1998.data import DataError
from lenet1998.results import ResultsError
from lenet1998.train import ENGINES

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> str:
    """'auto' picks cuda, then mps, then cpu; an absent device is a usage error."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        raise click.BadParameter(f"device {name!r} is not available here", param_hint="--device")
    return name


SET_HELP = ("Change one config field, e.g. --set init=paper (repeatable). eta_schedule takes "
            "FIRST_PASS:ETA stages, e.g. --set eta_schedule=1:5e-4,3:2e-4 (5e-4 from pass 1, 2e-4 from pass 3). "
            "The seed is set with --seed, not --set. val_size=N holds out the last N training patterns as a "
            "validation split and, without train_size, trains on the rest.")


def article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def parse_eta_schedule(pair: str, value: str) -> tuple:
    """'1:5e-4,3:2e-4' -> ((1, 5e-4), (3, 2e-4)): stages FIRST_PASS:ETA, the first at pass 1,
    passes increasing, each eta a finite number > 0."""
    def bad(why):
        return click.BadParameter(f"{pair!r}: eta_schedule takes FIRST_PASS:ETA stages separated by commas, "
                                  f"e.g. eta_schedule=1:5e-4,3:2e-4 ({why})", param_hint="--set")
    stages = []
    for stage in value.split(","):
        first, sep, eta = stage.strip().partition(":")
        try:
            stages.append((int(first), float(eta)))
        except ValueError:
            raise bad(f"{stage.strip()!r} is not FIRST_PASS:ETA") from None
        if not sep:
            raise bad(f"{stage.strip()!r} is not FIRST_PASS:ETA")
    passes = [p for p, _ in stages]
    if passes[0] != 1:
        raise bad("the first stage must start at pass 1")
    if any(b <= a for a, b in zip(passes, passes[1:])):
        raise bad("the passes must increase")
    if not all(math.isfinite(eta) and eta > 0 for _, eta in stages):
        raise bad("each eta must be a finite number > 0")
    return tuple(stages)


def parse_overrides(pairs) -> dict:
    """FIELD=VALUE strings -> {field: typed value}, typed by the LeNetConfig field. val_size=N
    without train_size trains on the other 60,000 - N patterns (train_size=60000 - N)."""
    fields = {f.name: f for f in dataclasses.fields(LeNetConfig)}
    defaults = LeNetConfig()
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in fields:
            raise click.BadParameter(f"{pair!r}: expected FIELD=VALUE with FIELD one of {list(fields)}",
                                     param_hint="--set")
        if name == "seed":  # --seed would silently win; one way to set it
            raise click.BadParameter(f"{pair!r}: set the seed with --seed {value}, not --set", param_hint="--set")
        if name == "eta_schedule":
            out[name] = parse_eta_schedule(pair, value)
            continue
        kind = type(getattr(defaults, name))
        try:
            out[name] = value if kind is str else kind(value)
        except ValueError:
            raise click.BadParameter(f"{pair!r}: {name} takes {article(kind.__name__)}", param_hint="--set") from None
    if out.get("val_size", 0) > 0 and "train_size" not in out:  # hold out val_size, train on the rest
        out["train_size"] = max(1, TRAIN_PATTERNS - out["val_size"])
    return out


def exit_if_all_failed(folders) -> None:
    """Exit 1 with one line when every run of `folders` (RunFolders) ended failed."""
    from lenet1998.results import read_manifest

    failures = [read_manifest(f.path).get("failure") for f in folders if f.finished]  # not: locked by another process
    if failures and all(failures):
        click.echo(f"error: all {len(failures)} runs failed ({failures[0]})", err=True)
        sys.exit(1)


class OneLineErrors:
    """A click command (or group) whose every error reads like the library's: one line on
    stderr, `error: <what>` (a bad command line adds where to look: --help), exit code 2 for a
    bad command line, 1 for a failed action; click's own four-line usage block is not printed."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            hint = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)


class OneLineCommand(OneLineErrors, click.Command):
    pass


class OneLineGroup(OneLineErrors, click.Group):
    command_class = OneLineCommand


def command(**kwargs):
    """click.command with one-line errors (OneLineCommand): every command line of experiments/."""
    return click.command(cls=OneLineCommand, **kwargs)


def group(**kwargs):
    """click.group with one-line errors, its subcommands too."""
    return click.group(cls=OneLineGroup, **kwargs)


def one_line_errors(func):
    """Turn the library's expected errors into a one-line message and exit code 2."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ConfigError, DataError, ResultsError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            # on a line of its own (a progress counter may hold the current one), and true before any pass ends
            click.echo("\ninterrupted: every pass that had finished is saved, and the same command resumes after the "
                       "last of them (a run stopped in its first pass starts over)", err=True)
            sys.exit(130)
    return wrapper


def data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        help="The folder holding MNIST/raw/ (or MNIST/ or MNIST/raw/ itself); it must hold the files. "
                             "Default: $LENET1998_DATA, else ./data (downloaded there if missing).")(f)


def device_option(f):
    return click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
                        help="Where to train; auto picks the best present.")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                        help="torch threads per process (per-pattern training is fastest on 1).")(f)


def engine_option(f):
    return click.option("--engine", type=click.Choice(list(ENGINES)), default="auto", show_default=True,
                        help="How per-pattern runs step (lenet1998/engine/): the C kernel, torch.compile, or eager "
                             "PyTorch (same math); auto: the fastest that builds here.")(f)
