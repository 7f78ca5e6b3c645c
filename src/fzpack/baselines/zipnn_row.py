"""ZipNN (optional extra ``zipnn``): lossless exponent-aware coding of the safetensors bytes."""

from __future__ import annotations

from safetensors.torch import load as st_load

from fzpack.baselines import Artifact, Subject
from fzpack.baselines.dense import safetensors_bytes


def zipnn_available() -> bool:
    try:
        import zipnn  # noqa: F401
    except Exception:  # an optional extra: any import failure means "not installed here"
        return False
    return True


def zipnn_artifacts(subject: Subject) -> list[Artifact]:
    """ZipNN of the safetensors file (float32 byte layout), with a decoder for the round-trip check.

    ZipNN 0.5.4's ``compress`` overwrites its input buffer in place (FIELD.md §5): it gets a
    private copy, never the bytes other rows use.
    """
    if not zipnn_available():
        return []
    import zipnn

    st = safetensors_bytes(subject.state_dict)

    def codec() -> object:
        return zipnn.ZipNN(input_format="byte", bytearray_dtype="float32")

    data = bytes(codec().compress(bytearray(st)))

    def decode(blob: bytes) -> dict:
        return st_load(bytes(codec().decompress(bytearray(blob))))

    return [Artifact("zipnn", "ZipNN (safetensors bytes)", "dense.safetensors.znn", data, decode)]
