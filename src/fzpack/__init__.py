"""fzpack: tiny files for neural networks trained with frozen random weights.

A FreezeNet, a DCT-plus-Sparse network or an LCResNet keeps most of its weights at their random
initial values. fzpack stores such a checkpoint as a 32-bit seed + an entropy-coded mask (or a
seeded support, or a seeded bank) + the trained values; the frozen weights are regenerated
bit-exactly on any device.

Example:
    >>> import fzpack
    >>> fzpack.freeze_(model, fzpack.FreezeNetConfig(rate=0.99, seed=1), batch=(x, y))
    >>> # ... train model.parameters() with any optimizer ...
    >>> fzpack.compress(model, "model.fzp")                  # or fzpack.save(model, "model.pt")
    >>> fzpack.load_into(MyNet(), "model.fzp")               # bit-identical weights
    >>> ckpt = fzpack.restore("model.fzp")                   # the checkpoint object, bit for bit
"""

from fzpack.compress import compress
from fzpack.errors import CheckpointError, FormatError, FzpackError
from fzpack.families import DCTpSConfig, DenseConfig, FreezeNetConfig, LCConfig
from fzpack.freeze import freeze_, save
from fzpack.inspect import inspect
from fzpack.loading import load_into, load_model
from fzpack.restore import restore
from fzpack.verify import verify

__version__ = "0.2.0"

__all__ = [
    "CheckpointError", "DCTpSConfig", "DenseConfig", "FormatError", "FreezeNetConfig", "FzpackError", "LCConfig", "compress",
    "freeze_", "inspect", "load_into", "load_model", "restore", "save", "verify",
]
