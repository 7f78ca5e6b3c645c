"""fzpack's own rows: the lossless `.fzp` and one `.fzp` per opt-in lossy value codec."""

from __future__ import annotations

from fzpack.baselines import Artifact, StateDict, Subject, state_dict_of
from fzpack.codecs.lossy import BOUNDS
from fzpack.pack import pack
from fzpack.unpack import unpack

LOSSY_MODES = ("fp16", "bf16", "q8")


def _decode(blob: bytes) -> StateDict:
    return state_dict_of(unpack(blob).obj)


def fzp_artifacts(subject: Subject) -> list[Artifact]:
    """The whole checkpoint packed losslessly, then (frozen checkpoints only) with fp16, bf16, q8 values.

    The lossy files code only the trained values of frozen tensors; they are decoded like any
    other artifact and their measured error is reported beside the codec's documented bound.
    """
    out = [Artifact("fzpack", ".fzp (fzpack, lossless)", "model.fzp", pack(subject.obj).data, _decode)]
    if not subject.frozen:
        return out
    for mode in LOSSY_MODES:
        result = pack(subject.obj, mode)
        out.append(Artifact(f"fzpack-{mode}", f".fzp (fzpack, {mode} trained values)", f"model-{mode}.fzp", result.data,
                            _decode, lossy_codec=bool(result.lossy),
                            note=f"fzpack {mode}: LOSSY trained values only (bound {BOUNDS[mode]}); masks, biases and "
                                 "the rest are lossless" if result.lossy else ""))
    return out
