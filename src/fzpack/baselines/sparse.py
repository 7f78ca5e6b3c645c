"""What a pruning user would store: sparse COO / CSR `torch.save`, bitmask + values, the paper's count.

For a SNIP checkpoint (untrained entries are zero) the sparse tensors hold the pruned weights and
restore the network exactly. For a FreezeNet the untrained entries are random values that only
the seed regenerates: the sparse tensors hold the trained values at their positions, and no
sparse format alone restores the checkpoint (the comparison measures how far off it is).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from fzpack.baselines import Artifact, StateDict, Subject
from fzpack.tensor_bits import from_bytes, to_numpy_bytes

FREEZENET_NOTE = ("a sparse format holds only the trained values: the frozen weights come from the seed, so it alone "
                  "cannot restore a FreezeNet")


def _sparse_source(subject: Subject, name: str) -> torch.Tensor:
    """The sparse COO tensor of a frozen tensor: ``w.to_sparse()`` when pruned, else the trained entries."""
    w, m = subject.state_dict[name], subject.masks[name]
    if subject.pruned:
        return w.to_sparse()
    return torch.sparse_coo_tensor(m.nonzero().T, w[m], w.shape).coalesce()


def _save(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _load(data: bytes) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "sparse support is beta" notices
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def coo_artifact(subject: Subject) -> Artifact:
    """`torch.save` of the state dict with each frozen tensor as sparse COO (int64 indices)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sd = {n: (_sparse_source(subject, n) if n in subject.masks else v) for n, v in subject.state_dict.items()}
        data = _save(sd)

    def decode(blob: bytes) -> StateDict:
        return {n: (v.to_dense() if v.layout != torch.strided else v) for n, v in _load(blob).items()}

    return Artifact("sparse-coo", "sparse COO torch.save", "sparse_coo.pt", data, decode,
                    note="" if subject.pruned else FREEZENET_NOTE)


def csr_artifact(subject: Subject) -> Artifact:
    """`torch.save` with each frozen tensor as CSR over (dim 0, the other dims flattened), int64 indices.

    CSR is 2-D: conv weights are reshaped, and their shapes are saved beside the tensors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensors, shapes = {}, {}
        for n, v in subject.state_dict.items():
            if n in subject.masks:
                coo = _sparse_source(subject, n).coalesce()
                flat = torch.sparse_coo_tensor(_flat_indices(coo, v.shape), coo.values(), _two_d(v.shape)).coalesce()
                tensors[n] = flat.to_sparse_csr()
                shapes[n] = list(v.shape)
            else:
                tensors[n] = v
        data = _save({"state_dict": tensors, "shapes": shapes})

    def decode(blob: bytes) -> StateDict:
        obj = _load(blob)
        return {n: (v.to_dense().reshape(obj["shapes"][n]) if v.layout != torch.strided else v) for n, v in obj["state_dict"].items()}

    return Artifact("sparse-csr", "sparse CSR torch.save", "sparse_csr.pt", data, decode,
                    note="" if subject.pruned else FREEZENET_NOTE)


def _two_d(shape: torch.Size) -> tuple[int, int]:
    rows = shape[0] if len(shape) else 1
    return rows, (int(np.prod(shape[1:])) if len(shape) > 1 else 1)


def _flat_indices(coo: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """COO indices of an N-D tensor -> (row, flattened column) indices of its 2-D view."""
    idx = coo.indices()
    cols = _two_d(shape)[1]
    flat = torch.zeros(idx.shape[1], dtype=torch.int64)
    for d in range(idx.shape[0]):  # Horner: C-order linear index
        flat = flat * shape[d] + idx[d]
    return torch.stack([flat // cols, flat % cols])


def bitmask_artifact(subject: Subject) -> Artifact:
    """A raw byte blob, no header: per tensor in state-dict order, a frozen tensor is its mask
    packed 8 entries per byte (C order, LSB first) + its trained values in its dtype; any other
    tensor its raw bytes. Names, shapes and dtypes come from the model definition."""
    parts = []
    for n, v in subject.state_dict.items():
        if n in subject.masks:
            m = subject.masks[n].reshape(-1).numpy()
            parts.append(np.packbits(m, bitorder="little").tobytes())
            parts.append(to_numpy_bytes(v.reshape(-1)[torch.from_numpy(m)]))
        else:
            parts.append(to_numpy_bytes(v))
    ref = {n: (v.shape, v.dtype) for n, v in subject.state_dict.items()}

    def decode(blob: bytes) -> StateDict:
        out, pos = {}, 0
        for n, (shape, dtype) in ref.items():
            size = torch.empty((), dtype=dtype).element_size()
            numel = int(np.prod(shape)) if len(shape) else 1
            if n in subject.masks:
                nb = (numel + 7) // 8
                m = np.unpackbits(np.frombuffer(blob[pos : pos + nb], np.uint8), bitorder="little")[:numel].astype(bool)
                pos += nb
                k = int(m.sum())
                vals = from_bytes(blob[pos : pos + k * size], dtype, (k,))
                pos += k * size
                t = torch.zeros(numel, dtype=dtype)
                t[torch.from_numpy(m)] = vals
                out[n] = t.reshape(shape)
            else:
                out[n] = from_bytes(blob[pos : pos + numel * size], dtype, tuple(shape))
                pos += numel * size
        return out

    return Artifact("bitmask-values", "bitmask + trained values (raw blob)", "bitmask_values.bin", b"".join(parts), decode,
                    note=("bitmask + values: a raw blob, no header (shapes from the model): packbits(mask) + the trained "
                          "values per frozen tensor, raw bytes of the others"))


def paper_artifact(subject: Subject) -> Artifact:
    """The FreezeNet paper's size convention: trained values and all other tensors at 4 bytes, no mask.

    Produced as that raw float32 blob; it cannot be read back into the checkpoint.
    """
    parts = []
    for n, v in subject.state_dict.items():
        vals = v[subject.masks[n]] if n in subject.masks else v
        parts.append(vals.detach().reshape(-1).to(torch.float32).numpy().astype("<f4").tobytes())
    return Artifact("paper", "paper convention (trained fp32, no mask)", "paper_convention.bin", b"".join(parts), None,
                    note="paper convention: the FreezeNet paper's network size (trained values + biases as fp32, mask and "
                         "seed not counted); not restorable")


def sparse_artifacts(subject: Subject) -> list[Artifact]:
    """The pruning user's rows; none for a checkpoint without frozen tensors."""
    if not subject.frozen:
        return []
    return [coo_artifact(subject), csr_artifact(subject), bitmask_artifact(subject), paper_artifact(subject)]
