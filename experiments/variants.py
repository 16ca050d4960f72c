"""The ablation grid as data: each variant is the paper's config with named fields changed.

A single-factor variant switches one paper piece to its modern counterpart and leaves every
other field as the paper has it. Where two fields must move together the variant says so in
its `coupled` note (and REPRODUCING.md explains why). `modern` switches every piece at once.

Every variant belongs to a family (FAMILY_SEEDS: the seeds each family trains by default):

    single         today's grid (`ablate --all`): one piece off `paper`, `modern`, the distortions
    add_one_in     `modern+<piece>`: `modern` with one paper piece put back (the other direction)
    road           the road from `paper` to `modern`, one piece per step, in the order ROAD_ORDER
    open_question  what the paper leaves open, measured: one field off its `base` variant
    fingerprint    the reading chosen by the paper's pass-1 steps (experiments/fingerprint.py),
                   without and with distortions

Variants with the same config are the same runs (same run hash): a road step that equals a
single-factor variant shares its runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    family: str = "single"  # see FAMILY_SEEDS
    base: str = ""  # the variant this one differs from by one piece (add_one_in, road, open_question)
    seeds: int = 0  # seeds `ablate --family` trains (0: the family's FAMILY_SEEDS)

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

# --------------------------------------------------------------------------------------------
# Add-one-in: `modern` plus one paper piece. Each is one piece away from `modern`.

_ADD_ONE_IN = [
    Variant("modern+trainable_subsampling", {**_MODERN, "subsampling": "trainable_average"},
            "`modern` with the paper's S2/S4: coefficient x 2x2 average + bias, then the squashing "
            "(ReLU, modern's f) in place of max pooling"),
    Variant("modern+table_c3", {**_MODERN, "c3_table": "paper"}, "`modern` with the Table I C3 connections"),
    Variant("modern+scaled_tanh", {**_MODERN, "squashing": "scaled_tanh"},
            "`modern` with f = 1.7159 tanh(2/3 a) on C1, C3, C5, F6 (max pooling has none)"),
    Variant("modern+rbf_map", {**_MODERN, "output": "rbf", "loss": "map"},
            "`modern` with the fixed-code RBF output and the MAP criterion (Eq. 9, j = 10), F6 still ReLU",
            coupled="MAP is defined on RBF penalties, so output and loss switch together. F6 keeps modern's "
                    "ReLU (one piece at a time): F6 >= 0 cannot reach a code's -1 entries, so every penalty "
                    "is at least its code's number of -1 entries (41 to 59 of 84), far above j = 10; the "
                    "rubbish term e^{-j} then dominates Eq. (9), which reduces to y_D - j (MLE) up to e^{-31}: "
                    "the variant measures the fixed-code head without MAP's competition between classes "
                    "(the argmin still discriminates: y_i - y_k = -2 sum_j (w_ij - w_kj) x_j). A squashing "
                    "on F6 alone would be a second piece and a new field; the head under the paper's f is "
                    "measured on the road (`road2_init` -> `road3_output`)"),
    Variant("modern+paper_init", {**_MODERN, "init": "paper_sqrt"},
            "`modern` with the paper's init U(+-2.4/sqrt(F_i)), Table I fan-ins (biases drawn the same way "
            "in both: bias_init fan_in)"),
    Variant("modern+paper_input", {**_MODERN, "input_coding": "paper"},
            "`modern` with the paper's input coding: white -0.1, black 1.175, padded with -0.1"),
    Variant("modern+sdlm", {**_MODERN, "optimizer": "sdlm", "batch_size": 1},
            "`modern` trained by per-pattern SDLM with the paper's eta schedule, mu and 500-pattern h_kk; "
            "the linear output's curvature seed is the Gauss-Newton diagonal p_i (1 - p_i) of softmax CE",
            coupled="SDLM updates after every pattern: batch size 1 replaces Adam's 64, and the paper's eta "
                    "schedule replaces Adam's lr 1e-3"),
]


def _in_family(variants, family, base):
    """The variants as members of `family`, each one piece off `base` unless it names its own."""
    return [replace(v, family=family, base=v.base or base, core=False) for v in variants]


_ADD_ONE_IN = _in_family(_ADD_ONE_IN, "add_one_in", "modern")

# --------------------------------------------------------------------------------------------
# The road from 1998 to modern. The order is fixed here, before any result:
#
#   data (input coding, Sec. II-B/III-A) -> init (Appendix A) -> output + loss (Sec. II-B/II-C)
#   -> squashing (Eq. 6) -> subsampling (S2/S4) -> C3 table (Table I) -> optimizer (Appendix C)
#
# Why: from the data inward, as the paper's pieces sit around the network (input, then the
# initial weights, then the architecture, then the training algorithm), with two constraints
# that decide the rest. (1) The output + loss switch comes before ReLU: ReLU's F6 >= 0 cannot
# reach the fixed codes' -1 entries (see `modern+rbf_map`), so an order with ReLU before the
# linear output would charge the squashing step with that mismatch and the output step with
# undoing it. (2) The optimizer comes last: every step before it stays per-pattern SDLM on one
# layer-shape family or two, so the first six steps train in lockstep groups beside `paper`,
# and the last step isolates SDLM -> Adam on an otherwise modern network (the reverse of
# `modern+sdlm`). The road ends at exactly `modern`'s config (tests/test_variants_grid.py).
ROAD_ORDER = (
    ("input", {"input_coding": "unit"}),
    ("init", {"init": "pytorch"}),
    ("output", {"output": "linear", "loss": "cross_entropy"}),
    ("relu", {"squashing": "relu"}),
    ("pool", {"subsampling": "max_pool"}),
    ("c3", {"c3_table": "full"}),
    ("optimizer", {"optimizer": "adam", "batch_size": 64}),
)
_ROAD_COUPLED = {
    "output": "the MAP and MLE criteria are defined on RBF penalties, so output and loss switch together",
    "optimizer": "Adam is a minibatch method: batch 64 and its default lr 1e-3 replace the per-pattern schedule",
}


def _road():
    steps, changes, previous = [], {}, "paper"
    for i, (piece, switch) in enumerate(ROAD_ORDER, 1):
        changes = {**changes, **switch}
        name = f"road{i}_{piece}"
        what = ", ".join(f"{k}={v}" for k, v in switch.items())
        steps.append(Variant(name, dict(changes), f"road step {i}: `{previous}` with {what}",
                             coupled=_ROAD_COUPLED.get(piece, ""), core=False, family="road", base=previous))
        previous = name
    return steps


_ROAD = _road()

# --------------------------------------------------------------------------------------------
# The open questions, measured: one field off its base (`paper`, or `paper+distortions` for the
# distortion ranges).

_OPEN = [
    Variant("map_j1", {"map_j": 1.0}, "open question: MAP's j = 1 (the paper gives no value; default 10)"),
    Variant("map_j100", {"map_j": 100.0}, "open question: MAP's j = 100 (the rubbish class almost never active)"),
    Variant("curvature1", {"sdlm_output_curvature": 1.0}, "open question: SDLM's curvature seed at F6 = 1 (default 2)"),
    Variant("curvature4", {"sdlm_output_curvature": 4.0}, "open question: SDLM's curvature seed at F6 = 4 (default 2)"),
    Variant("hessian_samples5000", {"sdlm_samples": 5000}, "open question: h_kk re-estimated on 5,000 patterns (paper: 500)"),
    Variant("reshuffle", {"order": "reshuffle"}, "open question: a new random order each pass (paper: one constant order)"),
    Variant("zero_bias", {"bias_init": "zero"}, "open question: biases start at 0 (default: drawn like the unit's weights)"),
    Variant("distortions_half", {"distortions": "affine", "distortion_scale": 0.5},
            "open question: `paper+distortions` with every distortion range's half-width halved", base="paper+distortions"),
    Variant("distortions_1.5x", {"distortions": "affine", "distortion_scale": 1.5},
            "open question: `paper+distortions` with every distortion range's half-width x1.5", base="paper+distortions"),
    Variant("shared_sum_h", {"sdlm_subsampling_h": "shared_sum"},
            "deviation measured: S2/S4 coefficient's h_kk = (s sum_j x_j)^2 (cross terms kept, as an independent "
            "implementation) instead of Eq. (23)'s sum_j (s x_j)^2"),
]
_OPEN = _in_family(_OPEN, "open_question", "paper")

# --------------------------------------------------------------------------------------------
# The reading chosen by the paper's pass-1 steps, without the test set (experiments/fingerprint.py,
# REPRODUCING.md "Choosing a reading by the fingerprint"). FINGERPRINT_CHOICE is what
# `python -m experiments.fingerprint pass1` chose from results/fingerprints/pass1.csv
# (tests/test_fingerprint.py checks that the two agree).
FINGERPRINT_CHOICE = {"sdlm_output_curvature": 1.0, "input_coding": "lab"}  # curvature1 + lab_input (rank 2)
# Which candidate of experiments.fingerprint.candidates it is: 0, the greedy choice; n, the n-th
# pair by distance, taken because the candidates before it did not train on the validation split.
FINGERPRINT_RANK = 2

_FINGERPRINT = [
    Variant("paper_fingerprint", dict(FINGERPRINT_CHOICE),
            "the readings chosen by the paper's pass-1 steps (results/fingerprints.md)", paper_test_error=0.95,
            seeds=20),
    Variant("paper_fingerprint+distortions", {**FINGERPRINT_CHOICE, "distortions": "affine"},
            "`paper_fingerprint` on the distortion pool (Sec. III-C)", paper_test_error=0.8,
            base="paper_fingerprint"),
]
_FINGERPRINT = _in_family(_FINGERPRINT, "fingerprint", "paper")

# --------------------------------------------------------------------------------------------
# The other networks of Fig. 9 (Sec. III-C; lenet1998/networks.py), trained as LeNet-5 is: the
# paper's per-pattern SDLM, schedule, init rule and input coding, toward +-1 targets with the
# squared error (what the paper leaves open for them: REPRODUCING "The other networks of Fig. 9").
# Each with and without the distortion pool of `paper+distortions`; LeNet-5's own rows are
# `paper` and `paper+distortions`. K-NN and the pairwise classifier are not trained by
# back-propagation: experiments/fig9.py computes them.
_TARGETS = {"output": "targets", "loss": "mle"}
_FIG9_NETWORKS = [("linear", "the linear classifier: 784 -> 10 weighted sums + bias (Sec. III-C.1)", 12.0, None),
                  ("fc300", "28x28-300-10, fully connected (Sec. III-C.3)", 4.7, 3.6),
                  ("fc1000", "28x28-1000-10, fully connected", 4.5, 3.8),
                  ("fc300_100", "28x28-300-100-10, fully connected (Sec. III-C.4)", 3.05, 2.50),
                  ("fc500_150", "28x28-500-150-10, fully connected", 2.95, 2.45),
                  ("lenet1", "LeNet-1: 16x16 digits centred in 28x28, C1 4, S2, C3 12 (20 connections), S4, "
                             "10 outputs (Sec. III-C.6)", 1.7, None),
                  ("lenet4", "LeNet-4: 28x28, C1 4, S2 8 in pairs, C3 16 (7x7, 96 connections), S4, 120, 10 outputs "
                             "(Sec. III-C.7; the reading nearest its counts)", 1.1, None)]
# LeNet-4 on the distortion pool has no number in the paper: it is boosted LeNet-4's net 1 read
# as trained on distortions too (experiments/boosted.py --net1 net_lenet4+distortions).
_FIG9 = [v for network, what, error, distorted in _FIG9_NETWORKS for v in (
    [Variant(f"net_{network}", {"network": network, **_TARGETS}, what, paper_test_error=error)] +
    ([Variant(f"net_{network}+distortions", {"network": network, **_TARGETS, "distortions": "affine"},
              f"{what}, on the distortion pool", paper_test_error=distorted, base=f"net_{network}")]
     if distorted is not None or network == "lenet4" else []))]
_FIG9 = _in_family(_FIG9, "fig9", "paper")

# The seeds each family trains by default (`ablate --family NAME`; `--all` keeps 3 seeds); a
# variant's own `seeds` overrides its family's.
FAMILY_SEEDS = {"single": 10, "add_one_in": 10, "road": 5, "open_question": 5, "fingerprint": 10, "fig9": 5}

VARIANTS = {v.name: v for v in _TABLE + _ADD_ONE_IN + _ROAD + _OPEN + _FINGERPRINT + _FIG9}
# Today's single-factor grid: what `ablate --all`, the report, bench and timing cover.
GRID = {n: v for n, v in VARIANTS.items() if v.family == "single"}


def family(name: str) -> list:
    """The names of the variants of one family, in table order."""
    if name not in FAMILY_SEEDS:
        raise ValueError(f"unknown family {name!r}; valid: {list(FAMILY_SEEDS)}")
    return [n for n, v in VARIANTS.items() if v.family == name]


def budget(config: LeNetConfig, epochs: int, train_size: int) -> LeNetConfig:
    """The variant's config with the run's budget (passes and training-set size)."""
    return config.replace(epochs=epochs, train_size=train_size)


def label_of(config: LeNetConfig, default: str = "train") -> str:
    """The name of the variant whose config `config` is (at its own passes and training-set
    size, any seed), or `default`: what a run trained by `python -m experiments.train` is
    labelled, so that a run of `paper`'s config is `paper` whichever command trained it."""
    for name, variant in VARIANTS.items():
        if budget(variant.config, config.epochs, config.train_size).replace(seed=config.seed) == config:
            return name
    return default


def comparison_key(variant: str, base: str) -> tuple:
    """The configs a comparison of `variant` with `base` compares, named by the first variant (in
    definition order) of each config: two names of one config (a road step and a single-factor
    variant) make one comparison (experiments/comparisons.py)."""
    first = {}
    canonical = {name: first.setdefault(v.config, name) for name, v in VARIANTS.items()}
    return canonical[variant], canonical[base]
