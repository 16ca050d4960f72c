"""Corrupt run folders: one line naming the folder and the file; the report goes on without
them; a broken finished run is moved aside and retrained."""

import shutil
from pathlib import Path

import pytest

from experiments.grid import Budget, plan, train_runs
from experiments.ablation_tables import collect_runs
from experiments.report import build_report
from experiments.variants import VARIANTS, budget
from lenet1998.results import ResultsError, RunFolder, load_checkpoint, read_manifest

EPOCHS, TRAIN_SIZE = 1, 200
CONFIG = budget(VARIANTS["paper"].config, EPOCHS, TRAIN_SIZE)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, mnist):
    """Two finished paper runs (seeds 0, 1) on 200 patterns, trained once."""
    out = tmp_path_factory.mktemp("healthy")
    train_runs(CONFIG, [0, 1], out / "runs", mnist, "paper", engine="eager")
    return out


@pytest.fixture
def out(healthy, tmp_path):
    shutil.copytree(healthy, tmp_path / "out")
    return tmp_path / "out"


def folder(out, seed):
    return RunFolder(out / "runs", CONFIG.replace(seed=seed))


CORRUPTIONS = {
    "metrics.csv": [b"", b"\x00\x01garbage\nnot,a,table\n"],
    "manifest.json": [b"", b"{not json"],
    "checkpoint.pt": [b"", None],  # None: the real file cut in half
}


def corrupt(path, data):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] if data is None else data)


@pytest.mark.parametrize("name,data", [(n, d) for n, ds in CORRUPTIONS.items() for d in ds])
def test_a_corrupt_file_is_one_line_naming_the_folder_and_the_file(out, name, data):
    broken = folder(out, 1)
    assert broken.done and broken.check() is None
    corrupt(broken.path / name, data)
    reason = broken.check()
    assert reason and str(broken.path) in reason and name in reason and "\n" not in reason
    assert not broken.done  # ablate retrains it
    assert folder(out, 0).done


@pytest.mark.parametrize("data", [b"", b"{not json"])
def test_read_manifest_names_the_file(out, data):
    path = folder(out, 0).path
    (path / "manifest.json").write_bytes(data)
    with pytest.raises(ResultsError, match="manifest.json") as e:
        read_manifest(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_truncated_checkpoint_is_one_whole_line(out):
    path = folder(out, 0).path / "checkpoint.pt"
    corrupt(path, None)
    with pytest.raises(ResultsError) as e:
        load_checkpoint(path)
    message = str(e.value)
    assert str(path.parent) in message and "checkpoint.pt" in message and "\n" not in message
    assert message.endswith(")") or message.endswith(".")  # a whole sentence, not cut


@pytest.mark.parametrize("name", ["metrics.csv", "manifest.json", "checkpoint.pt"])
def test_the_report_skips_a_broken_run_and_lists_it(out, mnist, data_dir, name, capsys):
    corrupt(folder(out, 1).path / name, b"garbage")
    broken = []
    runs = collect_runs(out, 2, EPOCHS, TRAIN_SIZE, broken=broken)
    assert list(runs.seed[runs.variant == "paper"]) == [0]
    assert len(broken) == 1 and name in broken[0]
    build_report(out, seeds=2, epochs=EPOCHS, train_size=TRAIN_SIZE, data_dir=data_dir)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if folder(out, 1).path.name in line]
    assert len(lines) == 1 and name in lines[0]
    assert "paper" in (out / "ablation.md").read_text()


def test_ablate_retrains_a_broken_run_and_keeps_the_broken_folder_aside(out, mnist, capsys):
    broken = folder(out, 1)
    corrupt(broken.path / "metrics.csv", b"")
    groups = plan(["paper"], Budget(2, EPOCHS, TRAIN_SIZE), out / "runs")
    assert [config.seed for _, runs in groups for _, config in runs] == [1]
    before = (broken.path / "manifest.json").read_bytes()
    train_runs(CONFIG, [0, 1], out / "runs", mnist, "paper", engine="eager")
    assert broken.done and broken.check() is None
    aside = list((out / "runs" / ".broken").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith(broken.path.name)
    assert (aside[0] / "manifest.json").read_bytes() == before  # nothing deleted
    assert (aside[0] / "metrics.csv").read_bytes() == b""
    lines = [line for line in capsys.readouterr().err.splitlines() if ".broken" in line]
    assert len(lines) == 1 and "metrics.csv" in lines[0]


def test_the_report_without_mnist_builds_the_rest_and_names_the_skipped_figures(out, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LENET1998_DATA", raising=False)
    paths = build_report(out, seeds=2, epochs=EPOCHS, train_size=TRAIN_SIZE, data_dir=tmp_path / "no-mnist")
    names = {p.name for p in paths}
    assert {"runs.csv", "ablation.md", "ablation.csv", "test_error_curves.png", "loss_curves.png", "ablation.png"} <= names
    assert not {"distortions.png", "misclassified.png"} & names
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(lines) == 1 and "distortions.png" in lines[0] and "misclassified.png" in lines[0]
    assert not (tmp_path / "no-mnist").exists()


def read_only(folder, monkeypatch):
    """Make `folder` read-only; as root (where modes do not bind) refuse opening files in it for writing."""
    import builtins
    import io
    import os

    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = builtins.open

        def guarded(file, mode="r", *args, **kwargs):
            if any(m in mode for m in "wax+") and str(folder) in os.path.abspath(str(file)):
                raise PermissionError(13, "Permission denied", str(file))
            return real(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded)
        monkeypatch.setattr(io, "open", guarded)


def test_a_read_only_figures_folder_is_one_line_naming_it(out, data_dir, monkeypatch):
    from click.testing import CliRunner

    from experiments.report import main as report

    figures = out / "figures"
    figures.mkdir()
    read_only(figures, monkeypatch)
    try:
        result = CliRunner().invoke(report, ["--out", str(out), "--seeds", "2", "--epochs", str(EPOCHS),
                                             "--data-dir", str(data_dir)])
    finally:
        figures.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert str(figures) in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if "error" in line]) == 1


def test_report_format_latex_writes_a_booktabs_table_beside_md_and_csv(out, data_dir):
    from click.testing import CliRunner

    from experiments.report import main as report

    build_report(out, seeds=2, epochs=EPOCHS, train_size=TRAIN_SIZE, data_dir=data_dir, latex=True)
    tex = (out / "ablation.tex").read_text()
    assert (out / "ablation.md").is_file() and (out / "ablation.csv").is_file()
    for command in (r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}"):
        assert command in tex
    row = next(line for line in tex.splitlines() if line.startswith(r"\texttt{paper}"))
    assert row.endswith(r"\\") and row.count("&") == 7 and "%" not in row.replace(r"\%", "")
    result = CliRunner().invoke(report, ["--help"])
    assert "--format" in result.output and "latex" in result.output


def test_a_stopped_worker_with_a_progress_bar_leaks_no_semaphore(tmp_path):
    """ablate's Ctrl-C terminates its workers; a worker's tqdm bar must not leave a semaphore for
    the resource tracker to warn about ("leaked semaphore objects") at exit."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "stop.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing, time
        def worker():
            from experiments.grid import Progress
            Progress("group", 100, bar=True)
            time.sleep(60)
        if __name__ == "__main__":
            p = multiprocessing.get_context("spawn").Process(target=worker)
            p.start()
            time.sleep(6)
            p.terminate()
            p.join()
    """))
    repo = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=repo,
                          env={**__import__("os").environ, "PYTHONPATH": repo})
    assert done.returncode == 0, done.stderr
    assert "leaked semaphore" not in done.stderr, done.stderr
