"""The package outside the checkout: `pip install .` ships what the library reads (the Fig. 3
bitmaps, the kernel's source), claims no generic top-level name, carries lower bounds only, and
says one version everywhere."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import lenet1998
from lenet1998.layers import BITMAPS, load_bitmaps

REPO = Path(__file__).resolve().parent.parent


def test_the_package_bitmaps_are_the_top_level_ones():
    top = sorted(p.name for p in (REPO / "data" / "RBF").glob("*.txt"))
    assert top == [f"{d}.txt" for d in range(10)]
    for name in top:
        assert (BITMAPS / name).read_text() == (REPO / "data" / "RBF" / name).read_text(), name
    assert load_bitmaps().equal(load_bitmaps(REPO / "data" / "RBF"))


def test_one_version_everywhere():
    version = lenet1998.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: lenet1998.__version__"
    assert f'version: "{version}"' in (REPO / "CITATION.cff").read_text()
    assert f"version {version}" in (REPO / "REPRODUCING.md").read_text()


def test_dependencies_carry_lower_bounds_only():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    requirements = [r.strip() for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    for extra in cfg["options.extras_require"].values():
        requirements += [r.strip() for r in extra.split("\n") if r.strip()]
    assert requirements and all("<" not in r and "==" not in r for r in requirements), requirements


# What a build reads: the packaging files and the library (a copy, so that no build/ folder of
# the checkout, nor one left by an earlier build, can add files to the wheel).
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "lenet1998")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel of the checkout, built from a clean copy without network (this environment's setuptools)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return next(out.glob("lenet1998-*.whl"))


def test_the_wheel_holds_the_library_and_what_it_reads_and_no_experiments(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"lenet1998/bitmaps/{d}.txt" for d in range(10)} <= set(names)
    assert "lenet1998/engine/kernel.c" in names
    assert not [n for n in names if n.startswith("experiments/")]
    assert any(n.endswith(f"-{lenet1998.__version__}.dist-info/METADATA") or f"lenet1998-{lenet1998.__version__}" in n
               for n in names)


def test_the_installed_wheel_classifies_digits_from_elsewhere(wheel, tmp_path, data_dir):
    data = data_dir
    released = REPO / "results" / "released" / "paper" / "model.safetensors"
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent(f"""
        import sys, safetensors.torch, torch
        import lenet1998
        from lenet1998.config import LeNetConfig
        from lenet1998.data import encode, load_mnist
        from lenet1998.model import LeNet5
        assert lenet1998.__file__.startswith({str(site)!r}), lenet1998.__file__
        assert not any(p.rstrip("/") == {str(REPO)!r} for p in sys.path)
        model = LeNet5(LeNetConfig())
        model.load_state(safetensors.torch.load_file({str(released)!r}))
        mnist = load_mnist({str(Path(data).resolve())!r}, download=False)
        x, y = encode(mnist.test_images[:50]).unsqueeze(1), mnist.test_labels[:50]
        right = int((model.predict(model(x)) == y).sum())
        print(right)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    env["LENET1998_CACHE"] = str(tmp_path / "cache")
    run = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.strip()) >= 49  # the released paper model errs on about 1% of the test set
