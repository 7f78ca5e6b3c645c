"""fzpack: tiny files for neural networks trained with frozen random weights.

A FreezeNet-style checkpoint is stored as a 32-bit seed + an entropy-coded mask of the trained
entries + the trained values; the frozen weights are regenerated bit-exactly on any device.

Example:
    >>> import fzpack
    >>> report = fzpack.compress("model.pt")          # -> model.fzp
    >>> ckpt = fzpack.restore("model.fzp")            # bit-identical to torch.load("model.pt", weights_only=True)
"""

from fzpack.checkpoint import init_from_seed_, load_checkpoint, make_checkpoint, save_checkpoint
from fzpack.compress import compress
from fzpack.errors import CheckpointError, FormatError, FzpackError
from fzpack.generator import InitSpec, generate
from fzpack.inspect import inspect
from fzpack.loading import load_model
from fzpack.restore import restore
from fzpack.verify import verify

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "FormatError", "FzpackError", "InitSpec", "compress", "generate", "init_from_seed_",
    "inspect", "load_checkpoint", "load_model", "make_checkpoint", "restore", "save_checkpoint", "verify",
]
