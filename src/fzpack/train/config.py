"""The trainer's configuration: one versioned dataclass that is saved with every run.

`TrainConfig` holds every knob of a run with the FreezeNet paper's defaults (supplementary S1.1:
SGD with momentum 0.9, lr 0.1 divided by 10 every 25k (MNIST-like) / 30k (CIFAR) steps, weight
decay 5e-4 on the trained parameters, batch 100 / 128, 9/1 train/validation split with early
stopping). It is stored in resume checkpoints and in ``metrics.json`` as a plain dict, with a
``version`` field (torchao-style) so that a later fzpack can read, migrate or refuse an old one.

Every random choice of a run derives from ``seed`` through `derive_seed`: the init and the mask
use ``seed`` itself (it is the checkpoint's seed, so the frozen weights regenerate from it), the
data order uses ``derive_seed(seed, "data")`` unless ``data_seed`` is given. PyTorch's global
RNG is never seeded, read or advanced.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fzpack.errors import FzpackError
from fzpack.families import get_family, list_methods
from fzpack.progress import is_progress_setting
from fzpack.seeds import derive_seed

__all__ = ["CONFIG_VERSION", "METHODS", "INIT_SCHEMES", "TrainConfig", "TrainError", "derive_seed"]

CONFIG_VERSION = 2  # 2: family options and optimiser choice; version 1 records still load (same meaning)

# How the trainable weights are chosen and what the others become: the family registry's methods.
METHODS = tuple(list_methods())
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("step", "cosine", "constant")
# Variance-scaling schemes the paper compares (section 4.5); any fzpack.generator scheme that
# needs no extra arguments would work, these are the ones we expose and test.
INIT_SCHEMES = ("xavier_normal", "kaiming_uniform", "pm_sigma", "torch_default")
DEVICES = ("auto", "cpu", "cuda")
AMP_DTYPES = ("float16", "bfloat16")


class TrainError(FzpackError):
    """A bad training configuration, an incompatible resume file, or a run that cannot start."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: each family's paper).

    Fields left at None take the family's paper value (`fzpack.families.TrainDefaults`):
    `resolve` fills them in, and the resolved config is what a run saves and resumes with.

    Attributes:
        version: schema version of this record (2; version 1 records load unchanged).
        method: a registered method (``fzpack.families.list_methods()``): freezenet |
            freezenet-wd | freezenet-reinit | snip | random-mask | dense | dctps | sparse-epl |
            lc-frozen | lc-learnable.
        arch: model registry name (``fzpack.models.registry.list_models()``).
        arch_config: constructor overrides; ``num_classes``/``in_channels``/``input_size`` are
            filled from the data set where the constructor takes them.
        dataset: data set registry name (``fzpack.data.list_datasets()``).
        data_dir: directory of the data files (None: the reader's default).
        synthetic_size: training images of the ``synthetic`` data set (None: registry size).
        synthetic_seed: which synthetic task (fixed per task, like a real data set; not the run seed).
        freeze_rate: q, the fraction of Linear/Conv weights that are not trained (FreezeNet family).
        density: dctps / sparse-epl: fraction of Linear/Conv weights that train (None: 1 - freeze_rate).
        allocation: dctps / sparse-epl: support allocation, epl (equal per layer) or epf (per filter).
        share: lc-frozen: weight sharing of the frozen spatial convs, none | global | recycled.
        bank_fraction: lc-frozen with recycled sharing: the bank is 1/R of the largest layer.
        l1: LC: L1 penalty on the 1x1 convs (the paper's lambda).
        prune_1x1: LC: fraction rho of the 1x1 weights pruned by magnitude after training.
        init: init scheme of the weights (None: the family's; FreezeNet: xavier_normal, the paper's
            default; kaiming_uniform; pm_sigma; the Sparse baseline: torch_default).
        reinit: freezenet-reinit only: scheme B of Algorithm S1 (None: same as ``init``).
        seed: 32-bit seed of the init, the mask and the checkpoint.
        data_seed: seed of split, order and augmentation (None: ``derive_seed(seed, "data")``).
        epochs: maximum number of epochs.
        max_steps: stop after this many optimizer steps in total (None: no limit). The epoch in
            which it stops ends there (validated, checkpointed); a resumption with a larger
            limit goes on with the next epoch.
        batch_size: global batch size (None: the data set's paper value, 100 or 128).
        eval_batch_size: batch size of validation and test passes.
        optimizer: sgd | adam (None: the family's).
        lr, momentum, weight_decay: weight decay applies to trained parameters only
            (freezenet-wd additionally decays the frozen weights, paper section 4.2). None: the family's.
        nesterov: SGD with Nesterov momentum (None: the family's; LC: yes).
        lr_schedule: step (drops below) | cosine (annealed to 0 over the run) | constant.
        label_smoothing: of the cross-entropy loss (None: the family's; LC: 0.1).
        lr_gamma: factor of each learning-rate drop (0.1 = divide by 10).
        lr_drop_every: steps between drops (None: paper's 25k for MNIST-like, 30k for CIFAR; 0: never).
        lr_drop_epochs, lr_drop_steps: explicit drop points; when any is given they replace
            ``lr_drop_every``. A drop "at epoch 30" applies from the first step of epoch index 30.
        val_split: fraction of the training split held out for validation (0.1 = 9/1, 0.05 = 19/1, 0 = none).
        patience: stop after this many epochs without a better validation accuracy (None: never).
        keep_best: end with the weights of the best validation epoch (the paper's early stopping).
        augment: random flips + 4-pixel translations (None: the data set's default, CIFAR only).
        device: auto (CUDA if available) | cpu | cuda.
        amp: mixed precision on CUDA (ignored, with a note, on CPU).
        amp_dtype: float16 (with gradient scaling) or bfloat16.
        mask_device: where the saliency pass runs; "cpu" makes masks independent of the GPU.
        save_every: write the resume checkpoint every this many epochs (0: never).
        progress: how rank 0 shows progress (`fzpack.progress`): True, None or "auto" (a bar when
            stderr is a terminal, else one plain line per epoch), "bar", "lines", or False/"off".
            Records written before the modes existed hold True/False and keep their meaning.
    """

    version: int = CONFIG_VERSION
    method: str = "freezenet"
    arch: str = "lenet5-caffe"
    arch_config: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    synthetic_size: int | None = None
    synthetic_seed: int = 0
    freeze_rate: float = 0.99
    density: float | None = None
    allocation: str = "epl"
    share: str = "none"
    bank_fraction: int = 16
    l1: float = 0.0
    prune_1x1: float = 0.0
    init: str | None = None
    reinit: str | None = None
    seed: int = 0
    data_seed: int | None = None
    epochs: int = 250
    max_steps: int | None = None
    batch_size: int | None = None
    eval_batch_size: int = 1000
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    lr_schedule: str | None = None
    label_smoothing: float | None = None
    lr_gamma: float = 0.1
    lr_drop_every: int | None = None
    lr_drop_epochs: tuple[int, ...] = ()
    lr_drop_steps: tuple[int, ...] = ()
    val_split: float = 0.1
    patience: int | None = None
    keep_best: bool = True
    augment: bool | None = None
    device: str = "auto"
    amp: bool = False
    amp_dtype: str = "float16"
    mask_device: str = "cpu"
    save_every: int = 1
    progress: bool | str | None = True

    def __post_init__(self) -> None:
        self.lr_drop_epochs = tuple(int(e) for e in self.lr_drop_epochs)
        self.lr_drop_steps = tuple(int(s) for s in self.lr_drop_steps)
        self.arch_config = dict(self.arch_config)

    # Fields that may change between a run and its resumption without changing its result
    # (they only say how long to go on, where and how visibly).
    RESUMABLE_CHANGES = ("epochs", "max_steps", "patience", "progress", "device", "save_every", "data_dir", "eval_batch_size")

    def validate(self) -> TrainConfig:
        """Check every field; raise `TrainError` with one line naming the bad one.

        Returns:
            ``self``, so ``TrainConfig(...).validate()`` chains.

        Example:
            >>> TrainConfig(method="snip", freeze_rate=0.9).validate().method
            'snip'
        """
        def bad(msg: str) -> TrainError:
            return TrainError(f"training config: {msg}")

        if self.version != CONFIG_VERSION:
            raise bad(f"version {self.version} is not supported (this fzpack writes version {CONFIG_VERSION})")
        if self.method not in list_methods():
            raise bad(f"unknown method {self.method!r}; expected one of {', '.join(list_methods())}")
        for name in ("init", "reinit"):
            if getattr(self, name) is not None and getattr(self, name) not in INIT_SCHEMES:
                raise bad(f"{name} scheme {getattr(self, name)!r} is not one of {', '.join(INIT_SCHEMES)}")
        if not isinstance(self.freeze_rate, (int, float)) or not 0.0 <= self.freeze_rate < 1.0:
            raise bad(f"freeze_rate must be in [0, 1), got {self.freeze_rate!r}")
        for name in ("seed", "synthetic_seed") + (("data_seed",) if self.data_seed is not None else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32:
                raise bad(f"{name} must be an integer in [0, 2**32), got {v!r}")
        for name, low in (("epochs", 0), ("eval_batch_size", 1), ("save_every", 0)):
            if int(getattr(self, name)) < low:
                raise bad(f"{name} must be >= {low}, got {getattr(self, name)!r}")
        for name, low in (("max_steps", 0), ("batch_size", 1), ("patience", 1), ("synthetic_size", 1), ("lr_drop_every", 0)):
            v = getattr(self, name)
            if v is not None and int(v) < low:
                raise bad(f"{name} must be >= {low} or unset, got {v!r}")
        for name in ("lr", "momentum", "weight_decay", "lr_gamma", "label_smoothing", "l1"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise bad(f"{name} must be a finite number >= 0, got {v!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise bad(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise bad(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.density is not None and not 0.0 < self.density <= 1.0:
            raise bad(f"density must be in (0, 1], got {self.density!r}")
        if self.label_smoothing is not None and self.label_smoothing >= 1.0:
            raise bad(f"label_smoothing must be < 1, got {self.label_smoothing!r}")
        try:  # the family checks its own options (allocation, share, bank fraction, prune rate ...)
            self.family_config()
        except FzpackError as e:
            raise bad(str(e)) from None
        if any(e < 0 for e in self.lr_drop_epochs + self.lr_drop_steps):
            raise bad("lr drop points must be >= 0")
        if not 0.0 <= self.val_split < 1.0:
            raise bad(f"val_split must be in [0, 1), got {self.val_split!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise bad(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {self.device!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise bad(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {self.amp_dtype!r}")
        if self.mask_device not in ("cpu", "train"):
            raise bad(f"mask_device must be 'cpu' or 'train', got {self.mask_device!r}")
        if not isinstance(self.arch_config, dict):
            raise bad("arch_config must be a dict")
        if not is_progress_setting(self.progress):
            raise bad(f"progress must be true, false, 'auto', 'bar', 'lines' or 'off', got {self.progress!r}")
        return self

    def family_config(self) -> Any:
        """The family config of this run (`FreezeNetConfig`, `DCTpSConfig`, `LCConfig`, `DenseConfig`)."""
        family = get_family(self.method)
        options = {"rate": self.freeze_rate, "seed": self.seed, "init": self.init, "reinit_init": self.reinit,  # None: family's
                   "density": self.density if self.density is not None else 1.0 - self.freeze_rate,
                   "allocation": self.allocation, "share": self.share, "bank_fraction": self.bank_fraction,
                   "l1": self.l1, "prune_1x1": self.prune_1x1}
        config = family.config_from_train(self.method, options)
        return config.validate() if hasattr(config, "validate") else config

    def resolve(self) -> TrainConfig:
        """A copy with every None optimiser field set to the family's paper value (`TrainDefaults`).

        Example:
            >>> TrainConfig(method="dctps").resolve().optimizer
            'adam'
        """
        defaults = get_family(self.method).train_defaults(self.family_config())
        out = TrainConfig.from_dict(self.to_dict())
        for name in ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "lr_schedule", "label_smoothing"):
            if getattr(out, name) is None:
                setattr(out, name, getattr(defaults, name))
        if out.batch_size is None and defaults.batch_size is not None:
            out.batch_size = defaults.batch_size
        if out.init is None:
            out.init = getattr(self.family_config(), "init", None)
        return out

    @property
    def resolved_data_seed(self) -> int:
        """The seed of the train/validation split, the batch order and the augmentation."""
        return self.data_seed if self.data_seed is not None else derive_seed(self.seed, "data")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of primitives and lists (JSON- and ``weights_only``-safe).

        Example:
            >>> TrainConfig().to_dict()["version"]
            1
        """
        d = asdict(self)
        d["lr_drop_epochs"] = list(self.lr_drop_epochs)
        d["lr_drop_steps"] = list(self.lr_drop_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild a config written by `to_dict`, refusing unknown keys and future versions.

        Args:
            d: a dict from `to_dict` (a resume checkpoint, ``metrics.json``).

        Returns:
            The validated config.

        Example:
            >>> TrainConfig.from_dict(TrainConfig(seed=3).to_dict()).seed
            3
        """
        if not isinstance(d, dict):
            raise TrainError("training config: expected a dict")
        version = d.get("version", CONFIG_VERSION)
        if not isinstance(version, int) or version > CONFIG_VERSION:
            raise TrainError(f"training config: version {version!r} is newer than this fzpack ({CONFIG_VERSION}); upgrade fzpack")
        d = {**d, "version": CONFIG_VERSION}  # version 1 has a subset of the fields, with the same meaning
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainError(f"training config: unknown keys {unknown}")
        return cls(**d).validate()

    def differences(self, other: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """Names of the fields whose values differ, except those in ``ignore``."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if k not in ignore and a[k] != b[k]]
