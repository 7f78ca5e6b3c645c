"""`fzpack.inspect`: what a `.fzp` file holds and what each byte is spent on, without decoding it."""

from __future__ import annotations

import json
import os
from typing import Any

from fzpack.codecs.lossy import describe_lossy
from fzpack.codecs.values import CODEC_NAMES, LOSSY_CODECS
from fzpack.container.file import read_container
from fzpack.container.layout import (
    ALIAS, FLAG_ADDITIVE, FLAG_DENSE, FLAG_MASK_FROM_SEED, FLAG_MASK_PER_ROW, FLAG_SCALED, FROZEN, GENERATOR_NAMES, ROLE_MASKS,
    ROLE_NAMES, ROLE_VALUES,
)
from fzpack.errors import FormatError
from fzpack.restore import read_file
from fzpack.sizes import binary_entropy_bits, breakdown, dense_fp32_bytes, freeze_rates
from fzpack.unpack import _tree_json

KIND_NAMES = {0: "plain", 1: "frozen", 2: "alias"}


def inspect(path: str | os.PathLike | bytes) -> dict[str, Any]:
    """Describe a `.fzp` file: method, seed, tensors, streams, rates and bit costs.

    Checksums and the header are fully validated; streams are not decompressed. A file is
    ``lossy`` when any stream uses a lossy codec (formats/fzpack-v1.md §3.2.1); each such stream
    shows its codec, grid and documented error bound, read from its payload header.

    Returns:
        A JSON-serialisable dict (the CLI's ``--json`` output).

    Example:
        >>> info = fzpack.inspect("model.fzp")
        >>> info["q"], info["bits_per_trained_weight"]
    """
    data = path if isinstance(path, (bytes, bytearray)) else read_file(path)
    h, payloads = read_container(data)
    size = len(data)
    hbody = int.from_bytes(data[12:16], "little")
    parts = breakdown(h, hbody)
    rates = freeze_rates(h)
    try:
        tree = json.loads(_tree_json(h))
    except (ValueError, RecursionError) as e:
        raise FormatError(f"tree is not valid JSON: {str(e)[:120]}") from e
    fz = tree.get("fzpack") if isinstance(tree, dict) else None
    tensors = []
    iid_bits = 0.0
    for t in h.tensors:
        row: dict[str, Any] = {"name": t.name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                               "kind": KIND_NAMES[t.kind], "numel": t.numel}
        if t.kind == FROZEN:
            bound = binary_entropy_bits(t.numel, t.k)
            iid_bits += bound if not t.flags & FLAG_MASK_FROM_SEED else 0.0
            row.update({
                "init": {"dist": t.init.dist, "params": list(t.init.params), "scheme": h.schemes[t.init.scheme] if h.schemes else ""},
                "trained": t.k, "q": 1 - t.k / t.numel if t.numel else 0.0,
                "mask": _mask_rule(t.flags),
                "mask_bytes": 0 if t.flags & FLAG_MASK_FROM_SEED else t.mask_length,
                "mask_iid_bound_bytes": round(bound / 8, 1),
                "exceptions": t.n_exceptions, "stored_dense": bool(t.flags & FLAG_DENSE),
                "additive": bool(t.flags & FLAG_ADDITIVE),
            })
            if t.flags & FLAG_SCALED:
                row["scale"] = t.init.scale
            if t.init.dist == "bank":
                row["init"].update(bank=h.banks[t.init.bank][0], offset=t.init.offset)
        elif t.kind == ALIAS:
            row["alias_of"] = h.tensors[t.target].name
        tensors.append(row)
    params = sum(t.numel for t in h.tensors if t.kind != ALIAS)
    k = rates["trained_weights"]
    streams = _streams(h, payloads)
    lossy_values = sorted({s["lossy"]["values"] for s in streams if "lossy" in s})
    out = {
        "file_bytes": size,
        "format_version": f"{data[8]}.{data[9]}",
        "generator": GENERATOR_NAMES[h.generator],
        "seed": h.seed if h.generator else None,
        "method": fz.get("method") if isinstance(fz, dict) else None,
        "arch": fz.get("arch") if isinstance(fz, dict) else None,
        "dense_fp32_bytes": dense_fp32_bytes(h),
        "factor": dense_fp32_bytes(h) / size,
        **rates,
        "parameters": params,
        "bits_per_parameter": 8 * size / params if params else 0.0,
        "bits_per_trained_weight": 8 * size / k if k else None,
        "mask_bytes": parts["mask"],
        "mask_iid_bound_bytes": round(iid_bits / 8, 1),
        "breakdown": parts,
        "lossy": bool(lossy_values),
        "lossy_values": lossy_values,
        "streams": streams,
        "tensors": tensors,
        "banks": [{"name": n, "length": length} for n, length in h.banks],
        "metadata": fz.get("metadata") if isinstance(fz, dict) and isinstance(fz.get("metadata"), dict) else {},
    }
    out["family_lines"] = _family_lines(out)
    return out


def _mask_rule(flags: int) -> str:
    if flags & FLAG_MASK_PER_ROW:
        return "from seed, per row"
    return "from seed" if flags & FLAG_MASK_FROM_SEED else "coded"


def _family_lines(info: dict[str, Any]) -> list[str]:
    """The method's family describes its own parts (alphas, supports, banks, pruning), if known."""
    from fzpack.errors import FzpackError
    from fzpack.families import get_family

    try:
        family = get_family(info["method"]) if isinstance(info.get("method"), str) else None
    except FzpackError:
        return []
    return family.describe(info) if family is not None else []


def _streams(h: Any, payloads: list) -> list[dict[str, Any]]:
    """One row per stream: role, group (trained / other / mask / index), codec, sizes, lossy details."""
    group = {}
    for t in h.tensors:
        if t.kind != ALIAS:
            group.setdefault(t.stream, "trained" if t.kind == FROZEN else "other")
    rows = []
    for i, s in enumerate(h.streams):
        row: dict[str, Any] = {"index": i, "role": ROLE_NAMES[s.role],
                               "group": group.get(i, "other") if s.role == ROLE_VALUES else ROLE_NAMES[s.role],
                               "codec": CODEC_NAMES.get(s.codec, str(s.codec)) if s.role != ROLE_MASKS else "ans-mask",
                               "raw_bytes": s.raw_length, "stored_bytes": s.stored_length}
        if s.codec in LOSSY_CODECS and s.role == ROLE_VALUES:
            row["lossy"] = describe_lossy(s.codec, payloads[i])
        rows.append(row)
    return rows
