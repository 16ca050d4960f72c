"""The configuration of one LeNet-5 training run: one frozen dataclass whose defaults are the paper.

Paper: LeCun, Bottou, Bengio & Haffner (1998), Sec. II-B, II-C, III-B and Appendices A and C.

Each paper choice is one field whose value names the choice. Where the paper is ambiguous or
silent the default is our best reading, and REPRODUCING.md lists it under "Open questions":
`subsampling` (sum or average, Sec. II-A vs II-B), `init` (2.4/F_i vs 2.4/sqrt(F_i)),
`loss` (which criterion produced 0.95%), `map_j` (no value in the paper) and
`sdlm_output_curvature` (the second derivative that seeds the h_kk recursion). Two fields
exist to measure readings beside ours: `distortion_scale` (the distortion ranges, which the
paper does not give, scaled around their identity values) and `sdlm_subsampling_h` (the S2/S4
coefficient's h_kk per connection, Eq. 23, or with its connections' cross terms kept). Three
fields hold readings of the authors' public code (SPEC.md section 15; REPRODUCING.md, "The
paper gap"): `subsampling_init` (the S2/S4 coefficient's constant start), `sdlm_output_seed`
(the exact second derivative of Eq. 9 at F6 in place of the constant seed) and
`sdlm_reestimate` (h_kk once or before every pass), `sdlm_sample` (a random h_kk sample or the
first patterns); the authors' `init`, `input_coding` and
`order` are entries of those registries ("lab", "lab", "file"). One exists for choosing
without the test set: `val_size` holds out the last patterns of the 60,000
as a validation split (0, the default, is the paper: every pattern trains).

Deviation: `init` defaults to "paper_sqrt" (U(+-2.4/sqrt(F_i))) and `subsampling` to
"trainable_average" (Sec. II-A). Read literally, U(+-2.4/F_i) leaves every SDLM step at the cap
eta/mu in the first passes and trains poorly (variant `literal_init`), and the Sec. II-B sum
costs about 2 points of test error (variant `sum_subsampling`); see REPRODUCING.md, "Open questions".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from .data import INPUT_CODING
from .init import BIAS_INIT, INIT, SUBSAMPLING_INIT
from .layers import C3_TABLES, OUTPUT, SQUASHING, SUBSAMPLING, SUBSAMPLING_H
from .loss import LOSSES, LOSSES_FOR_OUTPUT, OUTPUT_SEEDS
from .networks import NETWORKS
from .patterns import DISTORTIONS, HESSIAN_SAMPLE, ORDER
from .registry import ConfigError
from .sdlm import REESTIMATE, STEP_RULES

# distortion_scale at most this: every scale and squeeze factor stays positive (lenet1998/distortions.py).
MAX_DISTORTION_SCALE = 5.0

# MNIST's training set (Sec. III-A): train_size and val_size share it.
TRAIN_PATTERNS = 60000

# The paper's learning-rate schedule (Sec. III-B): (first pass of the stage, eta), passes from 1.
PAPER_ETA_SCHEDULE = ((1, 5e-4), (3, 2e-4), (6, 1e-4), (9, 5e-5), (13, 1e-5))

# The registry behind each choice field (declared beside its math); CHOICES lists the valid
# names of each, in the order error messages give them.
REGISTRIES = {
    "squashing": SQUASHING, "subsampling": SUBSAMPLING, "c3_table": C3_TABLES, "output": OUTPUT,
    "loss": LOSSES, "optimizer": STEP_RULES, "init": INIT, "bias_init": BIAS_INIT,
    "input_coding": INPUT_CODING, "order": ORDER, "distortions": DISTORTIONS,
    "sdlm_subsampling_h": SUBSAMPLING_H, "subsampling_init": SUBSAMPLING_INIT, "sdlm_output_seed": OUTPUT_SEEDS,
    "sdlm_reestimate": REESTIMATE, "sdlm_sample": HESSIAN_SAMPLE, "network": NETWORKS,
}
CHOICES = {name: tuple(registry) for name, registry in REGISTRIES.items()}

# The fields a run's identity (LeNetConfig.digest) was first computed over. A field added later
# enters the digest only when it differs from its default, so existing run folders keep their names.
DIGEST_FIELDS_V1 = (
    "squashing", "subsampling", "c3_table", "output", "loss", "map_j", "optimizer", "epochs",
    "eta_schedule", "sdlm_mu", "sdlm_samples", "sdlm_output_curvature", "lr", "batch_size", "order",
    "init", "bias_init", "input_coding", "train_size", "distortions", "seed",
)


@dataclass(frozen=True)
class LeNetConfig:
    """Every choice of one run. The defaults are the paper's LeNet-5 trained on MNIST."""

    # --- architecture (Sec. II-B) ---
    network: str = "lenet5"  # LeNet-5, or another network of Fig. 9 (lenet1998/networks.py)
    squashing: str = "scaled_tanh"  # f(a) = 1.7159 tanh(2/3 a) on C1..F6 (Eq. 6)
    subsampling: str = "trainable_average"  # S2/S4: coef * average(2x2) + bias, then f
    c3_table: str = "paper"  # Table I connection scheme
    output: str = "rbf"  # Euclidean RBF units with fixed 7x12 bitmaps (Eq. 7)
    # --- loss (Sec. II-C) ---
    loss: str = "map"  # Eq. (9)
    map_j: float = 10.0  # the constant j of Eq. (9); the paper gives no value
    # --- training (Sec. III-B, Appendix C) ---
    optimizer: str = "sdlm"
    epochs: int = 20
    eta_schedule: tuple = PAPER_ETA_SCHEDULE  # SDLM global learning rate per pass stage
    sdlm_mu: float = 0.02
    sdlm_samples: int = 500  # patterns used to re-estimate h_kk before each pass
    sdlm_output_curvature: float = 2.0  # d2E/dx_j^2 at the F6 outputs seeding Eq. (27)
    sdlm_subsampling_h: str = "per_connection"  # S2/S4 coefficient's h_kk: Eq. (23) per connection, or "shared_sum"
    sdlm_output_seed: str = "constant"  # the seed at F6: sdlm_output_curvature, or "map_exact" (Eq. 9's own)
    sdlm_reestimate: str = "every_pass"  # h_kk before every pass (Appendix C), or "once" (the Lush demo)
    sdlm_sample: str = "random"  # which sdlm_samples patterns: a random draw per pass, or the file's "first"
    lr: float = 0.0  # a constant step in place of the rule's own (0: SDLM/SGD follow eta_schedule, Adam 1e-3)
    batch_size: int = 1  # 1 = one update per pattern, as the paper
    order: str = "fixed"  # "a constant random order" (Appendix C)
    # --- initialisation (Appendix A) ---
    init: str = "paper_sqrt"
    bias_init: str = "fan_in"  # biases drawn like the unit's weights; the paper is silent
    subsampling_init: str = "fan_in"  # S2/S4 coefficient and bias drawn as weights, or "constant" (the authors' code)
    # --- data (Sec. II-B, III-A, III-C) ---
    input_coding: str = "paper"  # white -0.1, black 1.175, padded to 32x32 with -0.1
    train_size: int = 60000  # the first N training patterns (Fig. 6)
    val_size: int = 0  # the last N of the 60,000 held out as a validation split (0: none, the paper)
    distortions: str = "none"
    distortion_scale: float = 1.0  # every range of DISTORTION_RANGES scaled around its identity value
    seed: int = 0

    def __post_init__(self):
        # Lists (e.g. from JSON) become tuples so that the config stays hashable.
        schedule = tuple(tuple(stage) for stage in self.eta_schedule)
        object.__setattr__(self, "eta_schedule", schedule)
        validate(self)

    def replace(self, **changes) -> "LeNetConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid: {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eta_schedule"] = [list(stage) for stage in self.eta_schedule]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LeNetConfig":
        unknown = sorted(set(d) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid: {field_names()}")
        return cls(**d)

    def digest(self) -> str:
        """A stable hash of the resolved config: the identity of a run. Fields added after the
        first runs (not in DIGEST_FIELDS_V1) count only when they differ from their default."""
        d = self.to_dict()
        for f in dataclasses.fields(self):
            if f.name not in DIGEST_FIELDS_V1 and d[f.name] == f.default:
                del d[f.name]
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def step_size(self, pass_number: int) -> float:
        """The global step of a pass: SDLM's eta (Sec. III-B); SGD's step, eta / mu (SDLM with
        h_kk = 0); Adam's learning rate (1e-3). A nonzero `lr` replaces each of them."""
        eta = self.eta_schedule[0][1]
        for first_pass, value in self.eta_schedule:
            if pass_number >= first_pass:
                eta = value
        if self.lr:
            return self.lr
        if self.optimizer == "sdlm":
            return eta
        if self.optimizer == "sgd":
            return eta / self.sdlm_mu
        return 1e-3


def field_names() -> list:
    return [f.name for f in dataclasses.fields(LeNetConfig)]


def validate(c: LeNetConfig) -> None:
    """Raise ConfigError naming the valid options for any unknown value or bad combination."""
    for name, registry in REGISTRIES.items():
        registry[getattr(c, name)]  # ConfigError naming the valid values
    for name in ("map_j", "sdlm_mu", "sdlm_output_curvature", "lr", "distortion_scale"):
        if not math.isfinite(getattr(c, name)):
            raise ConfigError(f"{name} must be a finite number, got {getattr(c, name)}")
    if c.loss not in LOSSES_FOR_OUTPUT[c.output]:
        raise ConfigError(
            f"loss={c.loss!r} needs another output layer: output={c.output!r} works with "
            f"loss in {list(LOSSES_FOR_OUTPUT[c.output])}"
        )
    if c.network != "lenet5" and (c.output, c.loss) != ("targets", "mle"):
        raise ConfigError(f"network={c.network!r} ends in 10 units trained toward +-1 targets: it needs "
                          "output='targets' and loss='mle' (lenet1998/networks.py)")
    if c.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {c.epochs}")
    if c.batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {c.batch_size}")
    if c.optimizer == "sdlm" and c.batch_size != 1:
        raise ConfigError("optimizer='sdlm' updates after every pattern: batch_size must be 1")
    if not 1 <= c.train_size <= TRAIN_PATTERNS:
        raise ConfigError(f"train_size must be in 1..{TRAIN_PATTERNS}, got {c.train_size}")
    if not 0 <= c.val_size < TRAIN_PATTERNS:
        raise ConfigError(f"val_size must be in 0..{TRAIN_PATTERNS - 1}, got {c.val_size}")
    if c.train_size > TRAIN_PATTERNS - c.val_size:
        raise ConfigError(f"train_size={c.train_size} does not fit beside val_size={c.val_size}: the validation "
                          f"patterns are the last {c.val_size} of the {TRAIN_PATTERNS}, so train_size must be at "
                          f"most {TRAIN_PATTERNS - c.val_size} (set train_size={TRAIN_PATTERNS - c.val_size} to train on the rest)")
    if c.map_j <= 0:
        raise ConfigError(f"map_j must be positive (Eq. 9), got {c.map_j}")
    if c.sdlm_mu <= 0 or c.sdlm_samples < 1 or c.sdlm_output_curvature < 0:
        raise ConfigError("sdlm_mu must be > 0, sdlm_samples >= 1, sdlm_output_curvature >= 0")
    if c.lr < 0:
        raise ConfigError(f"lr must be >= 0, got {c.lr}")
    if not 0 <= c.distortion_scale <= MAX_DISTORTION_SCALE:
        raise ConfigError(f"distortion_scale must be in 0..{MAX_DISTORTION_SCALE}, got {c.distortion_scale}")
    if c.distortion_scale != 1.0 and DISTORTIONS[c.distortions] is None:
        raise ConfigError(f"distortion_scale={c.distortion_scale} needs a distortion pool (distortions='affine')")
    if c.sdlm_subsampling_h != "per_connection" and (c.optimizer != "sdlm" or c.subsampling not in ("trainable_average", "trainable_sum")):
        raise ConfigError(f"sdlm_subsampling_h={c.sdlm_subsampling_h!r} reads SDLM's h_kk of a trainable S2/S4 "
                          "coefficient: it needs optimizer='sdlm' and subsampling 'trainable_average' or 'trainable_sum'")
    if c.sdlm_output_seed != "constant" and (c.output != "rbf" or c.loss != "map"):  # Eq. 9 on the Fig. 3 codes
        raise ConfigError(f"sdlm_output_seed={c.sdlm_output_seed!r} is the second derivative of the MAP criterion "
                          "(Eq. 9): it needs output='rbf' and loss='map'")
    if (c.sdlm_reestimate != "every_pass" or c.sdlm_sample != "random") and c.optimizer != "sdlm":
        raise ConfigError(f"sdlm_reestimate={c.sdlm_reestimate!r} and sdlm_sample={c.sdlm_sample!r} say when and on "
                          "what SDLM estimates h_kk: they need optimizer='sdlm'")
    if c.subsampling_init != "fan_in" and c.subsampling not in ("trainable_average", "trainable_sum"):
        raise ConfigError(f"subsampling_init={c.subsampling_init!r} starts a trainable S2/S4 coefficient: it needs "
                          "subsampling 'trainable_average' or 'trainable_sum'")
    if not c.eta_schedule or c.eta_schedule[0][0] != 1:
        raise ConfigError("eta_schedule must be ((first_pass, eta), ...) starting at pass 1")
