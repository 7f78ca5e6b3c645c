"""The fzpack trainer: FreezeNet, FreezeNet-WD, FreezeNet-reinit, SNIP, random-mask and dense runs.

Example:
    >>> from fzpack.train import TrainConfig, train
    >>> result = train(TrainConfig(method="freezenet", arch="lenet5-caffe", dataset="fashion-mnist",
    ...                            freeze_rate=0.99, epochs=2, seed=2026), "run/model.pt")
    >>> result.metrics["test_accuracy"], result.metrics["q_beta"]
"""

from fzpack.train.config import CONFIG_VERSION, INIT_SCHEMES, METHODS, TrainConfig, TrainError, derive_seed
from fzpack.train.loop import TrainResult, lr_at, train
from fzpack.train.metrics import EvalResult, evaluate

__all__ = ["CONFIG_VERSION", "INIT_SCHEMES", "METHODS", "EvalResult", "TrainConfig", "TrainError", "TrainResult",
           "derive_seed", "evaluate", "lr_at", "train"]
