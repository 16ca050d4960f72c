"""lenet1998: LeNet-5 as LeCun, Bottou, Bengio & Haffner (1998) built and trained it.

    from lenet1998.config import LeNetConfig      # one frozen dataclass; defaults = the paper
    from lenet1998.model import LeNet5            # C1 S2 C3 S4 C5 F6 + RBF output
    from lenet1998.train import fit               # the one training loop (per-pattern SDLM)
    from lenet1998.results import load_pretrained # released checkpoints

A library: imported, never run. The command lines are in experiments/.
"""

__version__ = "0.3.0"  # the one version: setup.cfg reads it; CITATION.cff and REPRODUCING.md say it (tests/test_package.py)
