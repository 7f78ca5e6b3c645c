"""Frozen-weight layers: train K entries of a weight, regenerate the rest from the seed."""

from fzpack.layers.convert import convert_, decay_frozen_, dense_state_dict, frozen_entries, frozen_weights
from fzpack.layers.frozen import FrozenConv2d, FrozenLinear, FrozenWeight

__all__ = ["FrozenConv2d", "FrozenLinear", "FrozenWeight", "convert_", "decay_frozen_", "dense_state_dict",
           "frozen_entries", "frozen_weights"]
