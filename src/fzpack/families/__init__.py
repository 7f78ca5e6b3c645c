"""Families of frozen-weight networks, one module each, behind one registry (`registry.py`).

=============  ======================================  =======================================
family         methods (``--method``)                  config
=============  ======================================  =======================================
freezenet      freezenet, freezenet-wd,                `FreezeNetConfig`
               freezenet-reinit, snip, random-mask
dense          dense                                   `DenseConfig`
dctps          dctps, sparse-epl                       `DCTpSConfig`
lc             lc-frozen, lc-learnable                 `LCConfig`
=============  ======================================  =======================================
"""

from fzpack.families.registry import (
    Family, FamilyConfig, FrozenState, TrainDefaults, family_for, get_family, list_families, list_methods, register_family,
)

# Importing a family module registers it; one line per family, in --method listing order.
from fzpack.families.freezenet import FreezeNetConfig  # noqa: E402
from fzpack.families.dense import DenseConfig  # noqa: E402
from fzpack.families.dctps import DCTpSConfig  # noqa: E402
from fzpack.families.lc import LCConfig  # noqa: E402

__all__ = ["DCTpSConfig", "DenseConfig", "Family", "FamilyConfig", "FreezeNetConfig", "FrozenState", "LCConfig",
           "TrainDefaults", "family_for", "get_family", "list_families", "list_methods", "register_family"]
