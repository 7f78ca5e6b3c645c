"""Portable counter-based generator: frozen random weights regenerated bit-exactly on any device.

A frozen tensor is stored as (InitSpec, seed, name). Its values come from Philox4x64-10 streams
keyed by (seed, purpose, name) and float32 samplers that use only IEEE +, -, *, / and sqrt in a
fixed order, so numpy on a CPU and torch on a GPU produce the same bits (dist "dct", the DCTpS
matrix, is a function of the shape alone, computed the same way in binary64). The normative
description is formats/generator-v1.md.
"""

from fzpack.generator.compiled import get_kernel, set_kernel
from fzpack.generator.constants import BANK, INIT, MASK
from fzpack.generator.regen import generate, generate_numpy, get_num_threads, set_num_threads
from fzpack.generator.mask import random_mask, random_mask_rows
from fzpack.generator.philox import philox4x64, stream_key
from fzpack.generator.schemes import SCHEMES, fans, init_spec, list_schemes
from fzpack.generator.spec import DISTS, InitSpec

GENERATOR_VERSION = 1

__all__ = [
    "BANK",
    "DISTS",
    "GENERATOR_VERSION",
    "INIT",
    "MASK",
    "SCHEMES",
    "InitSpec",
    "fans",
    "generate",
    "generate_numpy",
    "get_kernel",
    "get_num_threads",
    "init_spec",
    "list_schemes",
    "philox4x64",
    "random_mask",
    "random_mask_rows",
    "set_kernel",
    "set_num_threads",
    "stream_key",
]
