"""A compiled C kernel for one per-pattern training step of a lockstep group of K replicas.

The C source (kernel.c beside this file) runs the group as blocks of 8 or 16 replicas, one SIMD
lane each, with the replica index innermost in every array (x[c][i][j][k], w[o][c][u][v][k]), the
last block padded with dummy lanes. The block width is the one this machine pays for: at the
first build both widths are built (-DKP=8: 256-bit registers; -DKP=16: 512-bit, AVX-512F) and a
short measurement of each (cached beside the builds, so it is measured once per machine,
compiler and source) gives each group the width that steps its K replicas fastest (`width_for`:
ceil(K / w) blocks of w lanes; LENET1998_KERNEL_WIDTH=8 or 16 forces one).
It is compiled at first use with the system C compiler into a cache folder ($LENET1998_CACHE,
default ~/.cache/lenet1998; the file name carries a hash of source, flags and compiler, and is
written atomically), and loaded with ctypes: no new
Python dependency. `available()` is False (and `reason()` says why) without a compiler or when
the build fails: callers then keep the torch engines.

Same arithmetic as the torch engine (lenet1998/engine/replicas.py): forward, the output (RBF
penalties or the logits of a linear layer), the criterion of each replica (MAP/MLE, or softmax
cross-entropy), backward, and w -= eps * g of every parameter, in float32; other rounding
(summation order, a float tanh of a few ulp, fused multiply-adds).

What it covers (`unsupported` says why a group does not fit): the paper's layer shapes, per-
pattern SDLM or SGD on the CPU; per replica any squashing of SQUASHING (scaled tanh, tanh,
ReLU), either C3 table, trainable S2/S4 averaging or summing, MAP or MLE; per group the S2/S4
kind (trainable, or parameter-free `avg_pool` / `max_pool` with no squashing after them; max
pooling routes the gradient to the first maximum of each window in row-major order, as
F.max_pool2d) and the output (`rbf`, or `linear` 84 -> 10 with bias + `cross_entropy`).

    if kernel.available():
        group = for_configs(configs)           # or KernelGroup(K, squashing, c3_masks, ...)
        group.load(stack(nets)); group.set_steps(eps)   # stacked {name: (K, *shape)} (replicas.stack)
        penalties, loss = group.step(x, y)     # x (K, 32, 32), y (K,)
        penalties, loss = group.steps(xs, ys)  # T steps at once: xs (T, K, 32, 32), ys (T, K)

Parameters cross the boundary in the "stacked" layout: the one-network parameter names and
shapes with a leading K (see STACKED_SHAPES; a group takes and returns only the parameters its
network has, `KernelGroup.names`), as lenet1998/engine/replicas.py `stack` / `unstack` make them.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import torch

SOURCE = resources.files(__package__) / "kernel.c"  # package data: found in a wheel as in the checkout
BLOCK = 8  # the default lanes per block (one 256-bit register of floats); K runs as ceil(K / width) blocks
WIDTHS = (8, 16)  # the block widths the kernel builds: 256-bit (AVX2) and 512-bit (AVX-512F) registers of floats
# No -ffast-math: the kernel needs no reassociation (every inner loop runs across replicas);
# -fno-trapping-math lets gcc if-convert (and so vectorise) the selects of the squashing.
FLAGS = ("-O3", "-march=native", "-std=c11", "-ffp-contract=fast", "-fno-trapping-math",
         "-fno-math-errno", "-fPIC", "-shared")

# The stacked layout (leading K omitted), in the order of the kernel's parameter ids.
STACKED_SHAPES = {
    "C1.weight": (6, 1, 5, 5), "C1.bias": (6,), "S2.coef": (6,), "S2.bias": (6,),
    "C3.weight": (16, 6, 5, 5), "C3.bias": (16,), "S4.coef": (16,), "S4.bias": (16,),
    "C5.weight": (120, 16, 5, 5), "C5.bias": (120,), "F6.weight": (84, 120), "F6.bias": (84,),
    "head.weight": (10, 84), "head.bias": (10,),
}
NAMES = list(STACKED_SHAPES)
SUBSAMPLING_NAMES = ("S2.coef", "S2.bias", "S4.coef", "S4.bias")  # trainable S2/S4 only
OUTPUT_NAMES = ("head.weight", "head.bias")  # linear output only
# The group-wide kinds, as kernel.c's POOL_* and OUT_* enums.
POOL_KINDS = {"trainable": 0, "avg_pool": 1, "max_pool": 2}
OUTPUT_KINDS = {"rbf": 0, "linear": 1}
SQUASHING = {"scaled_tanh": (1.7159, 2.0 / 3.0, 0.0), "tanh": (1.0, 1.0, 0.0), "relu": (1.0, 1.0, 1.0)}

# The stages of kernel.c's -DLK_PROFILE build (KernelGroup(..., profile=True).stage_times()).
PROFILE_STAGES = ("C1 forward", "C1 squashing", "S2 forward", "C3 forward", "C3 squashing, S4 forward",
                  "C5 forward", "F6, output forward", "loss, output backward", "F6 backward+update",
                  "C5 backward+update", "S4 backward+update", "C3 backward+update", "S2 backward+update",
                  "C1 backward+update")

_libs: dict = {}
_failure: str | None = None


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("LENET1998_CACHE") or Path.home() / ".cache" / "lenet1998")


def _machine() -> str:
    """What -march=native depends on: a cache shared by several machines keeps one build each."""
    text = platform.machine() + platform.processor()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        text += "".join(l for l in lines if l.startswith(("model name", "flags", "Features")))[:4000]
    except OSError:
        pass
    return text


def _build(extra=(), source=SOURCE) -> Path:
    """Compile `source` (kernel.c, or an Extension's: dense.c, convnet.c; cached by source,
    flags, compiler and machine); without -march=native if the compiler refuses it. extra: more
    flags (-DLK_PROFILE)."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (cc, gcc, clang or $CC)")
    errors = []
    for flags in (list(FLAGS) + list(extra), [f for f in FLAGS if f != "-march=native"] + list(extra)):
        key = _source_key(*flags, source=source)
        folder = _cache_dir()
        target = folder / f"lenet1998_{Path(source.name).stem}_{key}.so"
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)  # same folder: os.replace is atomic
        os.close(fd)
        try:
            with resources.as_file(source) as path:  # a real file for the compiler, wherever the package lies
                run = subprocess.run([cc, *flags, str(path), "-o", tmp, "-lm"], capture_output=True, text=True)
            if run.returncode == 0:
                os.replace(tmp, target)  # two processes building at once: the last one wins, whole
                return target
            errors.append(f"{cc} {' '.join(flags)}: {run.stderr.strip()[-1000:]}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("the build failed: " + " | ".join(errors))


def _lib(extra=(), width=None):
    width = width or lane_width()
    if width not in WIDTHS:
        raise ValueError(f"the kernel builds blocks of {list(WIDTHS)} lanes, not {width}")
    key = "lib" + "".join(extra) + f"-{width}"
    if key not in _libs:
        lib = ctypes.CDLL(str(_build((*extra, f"-DKP={width}"))))
        P, I, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        lib.lk_create.restype = P
        lib.lk_create.argtypes = [I, P, P, P, P, P, F, P, P, I, I]
        lib.lk_free.argtypes = [P]
        lib.lk_load.argtypes = [P, I, I, P]
        lib.lk_export.argtypes = [P, I, I, P]
        lib.lk_step.argtypes = [P, P, P, P, P]
        lib.lk_steps.argtypes = [P, P, P, P, P, I]
        lib.lk_forward.argtypes = [P, P, I, P]
        lib.lk_accumulate.argtypes = [P, I]
        lib.lk_peak.argtypes = [ctypes.c_long]
        lib.lk_peak.restype = F
        lib.lk_accumulate.restype = I
        lib.lk_kp.restype = I
        if lib.lk_kp() != width:
            raise RuntimeError(f"kernel built for blocks of {lib.lk_kp()} lanes, expected {width}")
        lib.lk_profile.argtypes = [P]
        _libs[key] = lib
    return _libs[key]


class Extension:
    """Another C source of this folder (dense.c, convnet.c: the other networks of Fig. 9), built
    and cached as kernel.c is and loaded on first use. signatures: {function: (argtypes, restype)}."""

    def __init__(self, filename: str, signatures: dict):
        self.source = resources.files(__package__) / filename
        self.signatures = signatures
        self._lib, self._failure = None, None

    def lib(self):
        if self._lib is None:
            lib = ctypes.CDLL(str(_build(source=self.source)))
            for name, (argtypes, restype) in self.signatures.items():
                getattr(lib, name).argtypes = argtypes
                getattr(lib, name).restype = restype
            self._lib = lib
        return self._lib

    def available(self) -> bool:
        """True if the source compiles and loads here; `reason()` says why not."""
        if self._failure is None:
            try:
                self.lib()
                self._failure = ""
            except Exception as e:  # no compiler, a failed build, a library that does not load
                self._failure = f"{type(e).__name__}: {e}"
        return not self._failure

    def reason(self) -> str:
        self.available()
        return self._failure or ""


def pointers(tensors):
    """A C array of the tensors' data pointers (float ** in the other kernels' signatures)."""
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class OneReplicaAtATime:
    """The group interface (steps, step, forward) of a kernel that runs one replica at a time
    through all the patterns of a call (dense.c, convnet.c): the replicas are independent, so
    the result is the group's in lockstep. A subclass gives K, `_inputs(x)` ((N, 32, 32) coded
    images -> its contiguous float32 input layer), and `_steps(k, x, y, pen, loss)` and
    `_forward(k, x, pen)` for replica k, each returning its C call's code (0: done)."""

    name = "the kernel"

    def steps(self, xs, ys):
        """B consecutive steps: xs (B, K, 32, 32), ys (B, K) -> penalties (B, K, 10) and loss
        (B, K) of each step's forward, before its update w -= eps g."""
        B = xs.shape[0]
        pen, loss = torch.zeros(self.K, B, 10), torch.zeros(self.K, B)
        ys = _labels(ys)
        for k in range(self.K):
            if self._steps(k, self._inputs(xs[:, k].cpu()), ys[:, k].contiguous(), pen[k], loss[k]):
                raise MemoryError(f"{self.name} could not allocate its activations")
        return pen.transpose(0, 1), loss.t()

    def step(self, x, y):
        """One pattern per replica: x (K, 32, 32), y (K,)."""
        out, loss = self.steps(x.unsqueeze(0), y.unsqueeze(0))
        return out[0], loss[0]

    @torch.no_grad()
    def forward(self, xs):
        """Penalties of every replica on its own patterns: xs (B, K, 32, 32) -> (B, K, 10)."""
        pen = torch.zeros(self.K, xs.shape[0], 10)
        for k in range(self.K):
            if self._forward(k, self._inputs(xs[:, k].cpu()), pen[k]):
                raise MemoryError(f"{self.name} could not allocate its activations")
        return pen.transpose(0, 1)


_measured: dict | None = None


def _forced_width() -> int | None:
    forced = os.environ.get("LENET1998_KERNEL_WIDTH")
    if not forced:
        return None
    if not forced.isdigit() or int(forced) not in WIDTHS:
        raise ValueError(f"LENET1998_KERNEL_WIDTH={forced!r}: the kernel builds blocks of {list(WIDTHS)} lanes")
    return int(forced)


def measured_speeds() -> dict:
    """{width: pattern-updates per second} of this machine at each width that builds, from a
    short measurement at the first build (`measure_widths`), cached with the builds."""
    global _measured
    if _measured is None:
        cache = _cache_dir() / f"lenet1998_kernel_width_{_source_key()}.json"
        try:
            _measured = {int(w): float(v) for w, v in json.loads(cache.read_text())["updates_per_s"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            _measured = measure_widths()
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".json", dir=cache.parent)
            with os.fdopen(fd, "w") as f:
                json.dump({"width": max(WIDTHS, key=lambda w: (_measured.get(w, 0.0), -w)),
                           "updates_per_s": {str(w): v for w, v in _measured.items()}, "cpu": _machine()[:200]}, f)
            os.replace(tmp, cache)
    return _measured


def lane_width() -> int:
    """The lanes per block this machine pays for in a full group: LENET1998_KERNEL_WIDTH if set,
    else the faster of WIDTHS per update (`measured_speeds`; a tie keeps 8). The grid plans its
    groups in multiples of it."""
    forced = _forced_width()
    if forced:
        return forced
    speeds = measured_speeds()
    return max(WIDTHS, key=lambda w: (speeds.get(w, 0.0), -w))


def width_for(K: int) -> int:
    """The block width that steps K replicas fastest here: the fewest seconds per step,
    ceil(K / w) blocks of w lanes at the measured updates per second of each width (a group of
    3 takes one 8-lane block, not half a 16-lane one). LENET1998_KERNEL_WIDTH forces one."""
    forced = _forced_width()
    if forced:
        return forced
    speeds = measured_speeds()
    return min(speeds, key=lambda w: (math.ceil(K / w) * w / speeds[w], w))


def _source_key(*flags, source=SOURCE) -> str:
    """A hash of the source, the flags, the compiler and its version, and the machine: what a build
    (with its flags) and the width measurement (without) depend on."""
    cc = _compiler() or ""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout if cc else ""
    return hashlib.sha256("\0".join([source.read_text(), *flags, cc, version, _machine()]).encode()).hexdigest()[:16]


def measure_widths(replicas: int = 16, steps: int = 150) -> dict:
    """{width: pattern-updates per second} of a group of `replicas` paper networks (random
    weights and patterns) at each width that builds here; a width that fails to build is left out."""
    import time

    speeds = {}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(steps, replicas, 32, 32, generator=g)
    y = torch.randint(0, 10, (steps, replicas), generator=g)
    params = {n: torch.randn(replicas, *shape, generator=g) * 0.1 for n, shape in STACKED_SHAPES.items()}
    for width in WIDTHS:
        try:
            group = KernelGroup(replicas, ["scaled_tanh"] * replicas, torch.ones(replicas, 16, 6), [0.25] * replicas,
                                [1.0] * replicas, 10.0, torch.zeros(10, 84), width=width)
        except Exception:  # no such build here
            continue
        group.load(params)
        group.set_steps({n: torch.full_like(t, 1e-4) for n, t in params.items()})
        group.steps(x[:10], y[:10])  # warm the caches
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            group.steps(x, y)
            best = min(best, time.perf_counter() - t0)
        speeds[width] = steps * replicas / best
    return speeds


def fma_peak(width: int, seconds: float = 0.3) -> float:
    """GFLOP/s of fused multiply-adds one core sustains at `width` lanes (kernel.c lk_peak: 12
    independent chains in registers, no memory traffic): the ceiling a benchmark's kernel rows
    are a share of. The best of three runs of about `seconds` each."""
    import time

    lib, n, best = _lib(width=width), 1_000_000, 0.0
    while True:
        t0 = time.perf_counter()
        lib.lk_peak(n)
        dt = time.perf_counter() - t0
        if dt > seconds / 4:
            break
        n *= 4
    for _ in range(3):
        t0 = time.perf_counter()
        lib.lk_peak(n)
        best = max(best, n * 12 * width * 2 / (time.perf_counter() - t0) / 1e9)
    return best


def available() -> bool:
    """True if the kernel compiles and loads here; else False. `reason()` says why not."""
    global _failure
    if _failure is None:
        try:
            _lib(width=BLOCK)  # the default build; the width measurement comes with the first group
            _failure = ""
        except Exception as e:  # no compiler, a failed build, a library that does not load
            _failure = f"{type(e).__name__}: {e}"
    return not _failure


def reason() -> str:
    """Why `available()` is False ('' when it is True)."""
    available()
    return _failure or ""


def _f32(t) -> torch.Tensor:
    """Contiguous float32 on the CPU: what the kernel's pointers may point at."""
    return torch.as_tensor(t).detach().to("cpu", torch.float32).contiguous()


def _labels(y) -> torch.Tensor:
    y = torch.as_tensor(y).to("cpu", torch.int64).contiguous()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > 9):
        raise ValueError("labels must be in 0..9")
    return y


class KernelGroup:
    """K replicas trained one pattern each per step by the compiled kernel.

    squashing: one of "scaled_tanh", "tanh", "relu" per replica; c3_masks (K, 16, 6) 0/1;
    subsampling_scale: 0.25 (trainable_average) or 1.0 (trainable_sum) per replica (read only
    with pool="trainable"); map_weight: 1 (MAP, Eq. 9) or 0 (MLE, Eq. 8) per replica; j: Eq.
    (9)'s constant; centres: (10, 84) RBF centres (map_weight, j, centres: read only with
    output="rbf"). pool: S2/S4 of the whole group, "trainable", "avg_pool" or "max_pool";
    output: "rbf" (MAP/MLE) or "linear" (softmax cross-entropy). profile: use a build that
    times each stage (`stage_times`). f6_units: the units of F6 the replicas have (84; 10 for
    the 2009 demo's head, lenet1998/layers.py TargetOutput): the kernel keeps its 84, the rows
    past f6_units are zero weights and biases with zero steps, and the centres are zero there,
    so those units output f(0) = 0, add (0 - 0)^2 to every penalty, pass no gradient to C5 and
    never move: the replicas train exactly as networks with f6_units units. width: lanes per
    block (WIDTHS; default: the fastest for K here, `width_for`).
    """

    def __init__(self, K, squashing, c3_masks, subsampling_scale, map_weight, j, centres, profile=False,
                 pool="trainable", output="rbf", f6_units=84, width=None):
        if not available():
            raise RuntimeError(f"the compiled kernel is not available: {reason()}")
        self.K = int(K)
        if not (len(squashing) == len(subsampling_scale) == len(map_weight) == self.K):
            raise ValueError(f"need one squashing, subsampling scale and map weight per replica (K={K})")
        if pool not in POOL_KINDS or output not in OUTPUT_KINDS:
            raise ValueError(f"pool must be one of {list(POOL_KINDS)} and output one of {list(OUTPUT_KINDS)}, "
                             f"got {pool!r}, {output!r}")
        self.pool, self.output, self.f6_units = pool, output, int(f6_units)
        if not 1 <= self.f6_units <= 84 or (output == "linear" and self.f6_units != 84):
            raise ValueError(f"f6_units must be in 1..84 (84 with the linear output), got {f6_units}")
        self.names = [n for n in NAMES if (pool == "trainable" or n not in SUBSAMPLING_NAMES)
                      and (output == "linear" or n not in OUTPUT_NAMES)]
        self.width = width or width_for(self.K)
        self._lib = _lib(("-DLK_PROFILE",) if profile else (), self.width)
        A, S, relu = (_f32([SQUASHING[s][i] for s in squashing]) for i in range(3))
        scale, mapw = _f32(subsampling_scale), _f32(map_weight)
        mask = _f32(c3_masks)
        if mask.shape != (self.K, 16, 6):
            raise ValueError(f"c3_masks must be (K, 16, 6), got {tuple(mask.shape)}")
        centres = _f32(centres)
        if centres.shape != (10, 84):
            raise ValueError(f"centres must be (10, 84), got {tuple(centres.shape)}")
        self._handle = self._lib.lk_create(self.K, A.data_ptr(), S.data_ptr(), relu.data_ptr(), scale.data_ptr(),
                                           mapw.data_ptr(), float(j), mask.data_ptr(), centres.data_ptr(),
                                           POOL_KINDS[pool], OUTPUT_KINDS[output])
        if not self._handle:
            raise MemoryError("lk_create failed")
        self._free = self._lib.lk_free
        self.c3_masks = mask
        self.accumulating = False

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle:
            self._free(handle)
            self._handle = None

    def shape(self, name: str) -> tuple:
        """The stacked shape of one parameter of this group's replicas (F6 with f6_units rows)."""
        shape = (self.K, *STACKED_SHAPES[name])
        return (self.K, self.f6_units, *shape[2:]) if name.startswith("F6.") else shape

    def _put(self, which: int, tensors: dict):
        for name in self.names:
            t = _f32(tensors[name])
            if t.shape != self.shape(name):
                raise ValueError(f"{name}: expected {self.shape(name)}, got {tuple(t.shape)}")
            if t.shape != (self.K, *STACKED_SHAPES[name]):  # F6 of fewer units: zero rows past them
                padded = torch.zeros((self.K, *STACKED_SHAPES[name]), dtype=torch.float32)
                padded[:, :self.f6_units] = t
                t = padded
            if name == "C3.weight" and which == 0:
                t = t * self.c3_masks[:, :, :, None, None]  # absent connections are exactly 0
            self._lib.lk_load(self._handle, which, NAMES.index(name), t.data_ptr())

    def load(self, params: dict):
        """Parameters in the stacked layout {name: (K, *shape)}, for every name in `names`."""
        self._put(0, params)

    def set_steps(self, eps: dict):
        """Per-parameter, per-replica steps in the stacked layout, fixed until the next call."""
        self._put(1, eps)

    def _get(self, which: int) -> dict:
        out = {}
        for name in self.names:
            t = torch.empty((self.K, *STACKED_SHAPES[name]), dtype=torch.float32)
            self._lib.lk_export(self._handle, which, NAMES.index(name), t.data_ptr())
            out[name] = t[:, :self.f6_units].contiguous() if name.startswith("F6.") else t
        return out

    def stage_times(self) -> dict:
        """{stage: CPU seconds} spent in each stage since the last call, summed over every
        group of the profiling build (its counters are per process)."""
        out = (ctypes.c_double * 16)()
        if not self._lib.lk_profile(out):
            raise RuntimeError("stage_times needs KernelGroup(..., profile=True)")
        return dict(zip(PROFILE_STAGES, out))

    def export(self) -> dict:
        """The parameters in the stacked layout (copies)."""
        return self._get(0)

    def export_steps(self) -> dict:
        """The steps in the stacked layout (copies)."""
        return self._get(1)

    def accumulate(self, on: bool = True):
        """on: from now on `step`/`steps` update nothing and add each step's gradient (at the
        unchanged parameters) to a sum per parameter, starting from zero; `gradient_sums` reads
        and restarts them (a minibatch's gradient for an optimizer outside: engine/minibatch.py).
        off: steps update again."""
        if self._lib.lk_accumulate(self._handle, int(bool(on))) != 0:
            raise MemoryError("lk_accumulate failed")
        self.accumulating = bool(on)

    def gradient_sums(self, restart: bool = True) -> dict:
        """The gradient sums since `accumulate` (or the last restart), stacked {name: (K, *shape)};
        an absent C3 connection's is 0. restart: zero them for the next minibatch."""
        if not self.accumulating:
            raise RuntimeError("gradient_sums needs accumulate() first")
        sums = self._get(2)
        if restart:
            self.accumulate(True)
        return sums

    def _input(self, x) -> torch.Tensor:
        return x if x.dtype == torch.float32 and x.is_contiguous() and x.device.type == "cpu" else _f32(x)

    def step(self, x: torch.Tensor, y: torch.Tensor):
        """x (K, 32, 32) float32, y (K,) int64 -> (penalties (K, 10), loss (K,)) of the forward
        pass before the update (a linear output: its logits in place of penalties); then every
        parameter is updated, w -= eps * g."""
        x = self._input(x)
        if x.shape != (self.K, 32, 32):
            raise ValueError(f"x must be (K, 32, 32), got {tuple(x.shape)}")
        y = _labels(y)
        if y.shape != (self.K,):
            raise ValueError(f"y must be (K,), got {tuple(y.shape)}")
        pen = torch.empty(self.K, 10)
        loss = torch.empty(self.K)
        self._lib.lk_step(self._handle, x.data_ptr(), y.data_ptr(), pen.data_ptr(), loss.data_ptr())
        return pen, loss

    def steps(self, x: torch.Tensor, y: torch.Tensor):
        """T consecutive steps: x (T, K, 32, 32), y (T, K) -> penalties (T, K, 10), loss (T, K).
        The same updates as T calls of `step` (replica k sees x[t, k] at step t), faster for K > 8:
        each block of 8 replicas runs all T steps while its weights are in cache."""
        x = self._input(x)
        if x.dim() != 4 or x.shape[1:] != (self.K, 32, 32):
            raise ValueError(f"x must be (T, K, 32, 32), got {tuple(x.shape)}")
        T = x.shape[0]
        y = _labels(y)
        if y.shape != (T, self.K):
            raise ValueError(f"y must be (T, K) = {(T, self.K)}, got {tuple(y.shape)}")
        pen = torch.empty(T, self.K, 10)
        loss = torch.empty(T, self.K)
        self._lib.lk_steps(self._handle, x.data_ptr(), y.data_ptr(), pen.data_ptr(), loss.data_ptr(), T)
        return pen, loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Penalties (or logits) without an update: x (N, K, 32, 32) (or (K, 32, 32)) -> (N, K, 10)
        (or (K, 10))."""
        single = x.dim() == 3
        x = self._input(x.unsqueeze(0) if single else x)
        if x.shape[1:] != (self.K, 32, 32):
            raise ValueError(f"x must be (N, K, 32, 32), got {tuple(x.shape)}")
        pen = torch.empty(x.shape[0], self.K, 10)
        self._lib.lk_forward(self._handle, x.data_ptr(), x.shape[0], pen.data_ptr())
        return pen[0] if single else pen


# ------------------------------------------------------------------------------------------
# A group of configs


def pool_kind(config) -> str:
    """The kernel's S2/S4 kind of a config: "trainable" (average or sum, per replica), or the
    parameter-free "avg_pool" / "max_pool"."""
    return "trainable" if config.subsampling in ("trainable_average", "trainable_sum") else config.subsampling


def unsupported(configs, device="cpu", minibatch: bool = False) -> str:
    """Why the kernel cannot train this group ('' if it can): it covers per-pattern SDLM/SGD
    on the CPU with the paper's layer shapes; the squashings of SQUASHING and either C3 table
    per replica; per group, trainable S2/S4 (average or sum per replica), avg_pool or max_pool,
    and the RBF output with MAP or MLE (per replica) or the linear output with cross-entropy.
    minibatch: the group's gradients only, summed over minibatches for an optimizer outside
    (`KernelGroup.accumulate`; engine/minibatch.py): any optimizer and batch size."""
    if str(device) != "cpu":
        return f"the kernel runs on the CPU, not {device}"
    for c in configs:
        if c.network != "lenet5":
            return f"the kernel covers LeNet-5's layer shapes only, not network={c.network!r}"
        if not ((c.output == "rbf" and c.loss in ("map", "mle")) or (c.output == "linear" and c.loss == "cross_entropy")
                or (c.output == "targets" and c.loss == "mle")):
            return ("the kernel covers the RBF output with the MAP or MLE criterion, the 2009 demo's +-1 targets "
                    "with its Euclidean cost, and the linear output with cross_entropy only")
        if pool_kind(c) not in POOL_KINDS:
            return f"the kernel covers S2/S4 {sorted(POOL_KINDS)} only, not {c.subsampling!r}"
        if c.squashing not in SQUASHING:
            return f"the kernel covers the squashings {list(SQUASHING)} only, not {c.squashing!r}"
        if not minibatch and (c.optimizer not in ("sdlm", "sgd") or c.batch_size != 1):
            return "the kernel covers per-pattern SDLM and SGD only"
    if len({(pool_kind(c), c.output) for c in configs}) > 1:
        return "the replicas of a kernel group share the S2/S4 kind (trainable, avg_pool or max_pool) and the output"
    if not available():
        return f"the kernel is not available here: {reason()}"
    return ""


def for_configs(configs, profile=False, width=None, minibatch: bool = False) -> KernelGroup:
    """A KernelGroup whose replica k follows configs[k] (steps zero until set_steps; minibatch:
    a group for gradient sums, see `unsupported`)."""
    from ..layers import C3_TABLES, OUTPUT, SUBSAMPLING, RBFOutput

    why = unsupported(configs, minibatch=minibatch)
    if why:
        raise ValueError(why)
    full = [[1] * 16 for _ in range(6)]
    masks = torch.stack([torch.tensor(C3_TABLES[c.c3_table] or full, dtype=torch.float32).t() for c in configs])  # (K, 16, 6)
    pool = pool_kind(configs[0])
    scales = [SUBSAMPLING[c.subsampling](1).scale if pool == "trainable" else 1.0 for c in configs]
    head = OUTPUT[configs[0].output]
    centres = torch.zeros(10, 84)  # the head's centres, zero past F6's units (KernelGroup f6_units)
    if issubclass(head, RBFOutput):
        centres[:, :head.inputs] = head().centres
    return KernelGroup(len(configs), [c.squashing for c in configs], masks, scales,
                       [1.0 if c.loss == "map" else 0.0 for c in configs], configs[0].map_j, centres,
                       profile=profile, pool=pool, output="linear" if head is OUTPUT["linear"] else "rbf",
                       f6_units=head.inputs, width=width)
