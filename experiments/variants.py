"""The ablation grid as data: each variant is the paper's config with named fields changed.

A single-factor variant switches one paper piece to its modern counterpart and leaves every
other field as the paper has it. Where two fields must move together the variant says so in
its `coupled` note (and REPRODUCING.md explains why). `modern` switches every piece at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lenet1998.config import LeNetConfig

PAPER = LeNetConfig()


@dataclass(frozen=True)
class Variant:
    name: str
    changes: dict = field(default_factory=dict)
    what: str = ""
    coupled: str = ""  # why more than one field moves, if it does
    paper_test_error: float | None = None  # the paper's own number, where it has one
    core: bool = True  # False: added beyond `paper`, one switch per paper piece, and `modern`

    @property
    def config(self) -> LeNetConfig:
        return PAPER.replace(**self.changes)


_MODERN = {
    "subsampling": "max_pool", "c3_table": "full", "squashing": "relu", "output": "linear",
    "loss": "cross_entropy", "optimizer": "adam", "batch_size": 64, "init": "pytorch",
    "input_coding": "unit",
}

_TABLE = [
    Variant("paper", {}, "LeNet-5 as the paper trains it (our reading of its open questions)",
            paper_test_error=0.95),
    Variant("avg_pool", {"subsampling": "avg_pool"}, "S2/S4 -> parameter-free 2x2 average pooling, no squashing after it"),
    Variant("max_pool", {"subsampling": "max_pool"}, "S2/S4 -> 2x2 max pooling, no squashing after it"),
    Variant("full_c3", {"c3_table": "full"}, "C3 connection table (Table I) -> every S2 map feeds every C3 map"),
    Variant("relu", {"squashing": "relu"}, "f = 1.7159 tanh(2/3 a) -> ReLU on C1..F6",
            coupled="F6 >= 0 can no longer reach the -1 entries of the RBF codes; kept as is (single factor)"),
    Variant("tanh", {"squashing": "tanh"}, "f -> plain tanh on C1..F6 (asymptotes +-1 = the RBF targets)",
            core=False),
    Variant("linear_softmax", {"output": "linear", "loss": "cross_entropy"},
            "RBF output + MAP loss -> linear 84 -> 10 layer + softmax cross-entropy",
            coupled="the MAP and MLE criteria are defined on RBF penalties, so output and loss switch together"),
    Variant("mle", {"loss": "mle"}, "MAP criterion (Eq. 9) -> MLE criterion (Eq. 8)"),
    Variant("sgd", {"optimizer": "sgd"}, "SDLM -> plain per-pattern SGD, step eta/mu (SDLM with h_kk = 0)",
            coupled="the step follows the paper's eta schedule divided by mu, so only the curvature is removed"),
    Variant("adam", {"optimizer": "adam", "batch_size": 64}, "SDLM -> Adam (lr 1e-3) on minibatches of 64",
            coupled="Adam is a minibatch method: batch 64 and its default lr 1e-3 replace the per-pattern schedule"),
    Variant("pytorch_init", {"init": "pytorch"}, "U(+-2.4/sqrt(F_i)) -> PyTorch's default U(+-1/sqrt(F_i))"),
    Variant("literal_init", {"init": "paper"}, "open question: Appendix A's bound read literally, U(+-2.4/F_i)",
            core=False),
    Variant("sum_subsampling", {"subsampling": "trainable_sum"}, "open question: S2/S4 sum their inputs (Sec. II-B) instead of averaging (II-A)", core=False),
    Variant("unit_input", {"input_coding": "unit"}, "input -0.1/1.175 padded with -0.1 -> pixels in [0, 1] padded with 0"),
    Variant("modern", _MODERN, "every switch at once: max pool, full C3, ReLU, linear + softmax CE, Adam, PyTorch init, [0,1] input"),
    Variant("paper+distortions", {"distortions": "affine"},
            "the paper's LeNet-5 on 60,000 originals + 540,000 affine-distorted patterns (Sec. III-C)",
            paper_test_error=0.8, core=False),
    Variant("modern+distortions", {**_MODERN, "distortions": "affine"}, "`modern` on the same distortion pool", core=False),
]

VARIANTS = {v.name: v for v in _TABLE}


def budget(config: LeNetConfig, epochs: int, train_size: int) -> LeNetConfig:
    """The variant's config with the run's budget (passes and training-set size)."""
    return config.replace(epochs=epochs, train_size=train_size)
