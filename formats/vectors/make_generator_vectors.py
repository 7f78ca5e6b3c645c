"""Write formats/vectors/generator.json: test vectors of generator v1 (formats/generator-v1.md).

Values come from `fzpack.generator.reference` (pure-Python Philox, float32 emulated in float64,
octant-form angle), and every vector is cross-checked against the fast numpy path and the torch
path before it is written. Run from the repository root:

    PYTHONPATH=src python formats/vectors/make_generator_vectors.py [--markdown]

--markdown also prints the spec's test-vector tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from fzpack.generator import InitSpec, generate_numpy, random_mask, random_mask_rows, stream_key
from fzpack.generator import reference as ref
from fzpack.generator.constants import BANK, INIT, MASK, PURPOSES
from fzpack.generator.regen import _generate_torch

OUT = Path(__file__).with_name("generator.json")
N_VALUES = 8

# Random123 kat_vectors, philox4x64 10: counter[4] key[2] -> out[4]
PHILOX_KAT = [
    ([0, 0, 0, 0], [0, 0], [0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B]),
    (
        [0xFFFFFFFFFFFFFFFF] * 4,
        [0xFFFFFFFFFFFFFFFF] * 2,
        [0x87B092C3013FE90B, 0x438C3C67BE8D0224, 0x9CC7D7C69CD777B6, 0xA09CAEBF594F0BA0],
    ),
    (
        [0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89],
        [0x452821E638D01377, 0xBE5466CF34E90C6C],
        [0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6],
    ),
]

KEY_CASES = [(0, INIT, ""), (1, INIT, "fc.weight"), (0xFFFFFFFF, MASK, "conv1.weight"), (42, BANK, "bank0")]

# (seed, name, spec, start, banks)
VALUE_CASES: list[tuple[int, str, InitSpec, int, dict[str, int] | None]] = [
    (0, "fc.weight", InitSpec("normal", 0.0, 1.0), 0, None),
    (1, "features.0.weight", InitSpec("normal", 0.0, 0.0589), 0, None),
    (1, "features.0.weight", InitSpec("normal", 0.0, 0.0589), 5, None),
    (7, "classifier.weight", InitSpec("normal", 0.25, 0.02), 1000003, None),
    (7, "x", InitSpec("normal", -0.0, 2.0), 2**35 + 7, None),
    (0xFFFFFFFF, "层.权重", InitSpec("normal", 1.0, 0.5), 13, None),
    (3, "conv1.weight", InitSpec("uniform", -0.125, 0.125), 0, None),
    (3, "conv1.weight", InitSpec("uniform", -0.125, 0.125), 9, None),
    (3, "fc1.weight", InitSpec("uniform", 0.0, 1.0), 77, None),
    (3, "tiny", InitSpec("uniform", 1e-35, 2e-35), 0, None),
    (5, "fc2.weight", InitSpec("pm", 0.0625), 0, None),
    (5, "fc2.weight", InitSpec("pm", 0.0625), 2**33 + 1, None),
    (9, "lc.spatial.weight", InitSpec("bank", 0.1, bank="shared", offset=5), 30, {"shared": 37}),
    (9, "lc.spatial2.weight", InitSpec("bank", 0.5, bank="shared"), 0, {"shared": 37}),
    (9, "bn.weight", InitSpec("zeros"), 0, None),
]

# (seed, name, n, k)
MASK_CASES = [(0, "fc.weight", 64, 5), (1, "conv1.weight", 100, 37), (2, "empty", 10, 0), (3, "full", 7, 7)]

# dist "dct" (no stream): (shape, start). Starts straddle row 0 (constant 1/sqrt(N)) and row 1;
# (6, 6) element 13 is k = 2, n = 1: m = 6 = N, an exact zero.
DCT_CASES = [((10, 12), 6), ((12, 10), 8), ((8, 3, 3, 3), 25), ((20, 16, 5, 5), 4321), ((6, 6), 8)]

# random_mask_rows: (seed, name, shape, k). The 1-D case equals random_mask's first vector.
ROW_MASK_CASES = [
    (0, "conv1.weight", (4, 3, 2, 2), 10),
    (5, "fc.weight", (6, 10), 4),
    (3, "features.0.weight", (8, 3, 3, 3), 20),
    (0, "fc.weight", (64,), 5),
    (2, "full", (3, 4), 12),
]


def hex32(values: np.ndarray) -> list[str]:
    return [f"{int(b):08x}" for b in np.asarray(values, dtype=np.float32).view(np.uint32)]


def make() -> dict:
    kat = []
    for counter, key, expected in PHILOX_KAT:
        got = ref.philox_block(tuple(key), tuple(counter))
        assert list(got) == expected, "reference Philox fails the Random123 KAT"
        kat.append({"counter": [f"{c:016x}" for c in counter], "key": [f"{k:016x}" for k in key],
                    "out": [f"{o:016x}" for o in expected]})
    purpose_name = {v: k for k, v in PURPOSES.items()}
    keys = []
    for seed, purpose, name in KEY_CASES:
        k0, k1 = stream_key(seed, purpose, name)
        raw = ref.raw64((k0, k1), 0, 8)
        keys.append({"seed": seed, "purpose": purpose_name[purpose], "name": name,
                     "key": [f"{k0:016x}", f"{k1:016x}"], "r": [f"{int(x):016x}" for x in raw]})
    values = []
    for seed, name, spec, start, banks in VALUE_CASES:
        expected = ref.values(spec, seed, name, start, N_VALUES, banks)
        fast = generate_numpy(spec, seed, name, start, N_VALUES, banks)
        assert np.array_equal(expected.view(np.uint32), fast.view(np.uint32)), (name, spec, start)
        if start == 0:  # the torch path generates whole tensors
            t = _generate_torch(spec, seed, name, N_VALUES, torch.device("cpu"), banks).numpy()
            assert np.array_equal(expected.view(np.uint32), t.view(np.uint32)), (name, spec)
        values.append({"seed": seed, "name": name, "spec": spec.to_dict(), "start": start, "banks": banks,
                       "values": hex32(expected)})
    masks = []
    for seed, name, n, k in MASK_CASES:
        expected = ref.mask_indices(seed, name, n, k)
        got = np.flatnonzero(random_mask(seed, name, (n,), k).numpy()).tolist()
        assert got == expected, (name, n, k)
        masks.append({"seed": seed, "name": name, "n": n, "k": k, "indices": expected})
    dct = []
    for shape, start in DCT_CASES:
        numel = math.prod(shape)
        expected = ref.dct_values(shape, 0, numel)
        fast = generate_numpy(InitSpec("dct"), 0, "", 0, numel, shape=shape)
        t = _generate_torch(InitSpec("dct"), 0, "", numel, torch.device("cpu"), None, shape).numpy()
        assert np.array_equal(expected.view(np.uint32), fast.view(np.uint32)), shape
        assert np.array_equal(expected.view(np.uint32), t.view(np.uint32)), shape
        dct.append({"shape": list(shape), "start": start, "values": hex32(expected[start : start + N_VALUES]),
                    "sha256": hashlib.sha256(expected.astype("<f4").tobytes()).hexdigest()})
    row_masks = []
    for seed, name, shape, k in ROW_MASK_CASES:
        expected = ref.mask_rows_indices(seed, name, shape, k)
        for backend in ("numpy", "torch"):
            got = np.flatnonzero(random_mask_rows(seed, name, shape, k, backend=backend).numpy()).tolist()
            assert got == expected, (name, shape, k, backend)
        row_masks.append({"seed": seed, "name": name, "shape": list(shape), "k": k, "indices": expected})
    return {
        "format": "fzpack generator test vectors",
        "generator_version": 1,
        "philox4x64_10_kat": kat,
        "streams": keys,
        "values": values,
        "masks": masks,
        "dct": dct,
        "row_masks": row_masks,
    }


def markdown(data: dict) -> str:
    lines = ["| seed | purpose | name | spec | start | first 8 values (float32 bits, hex) |",
             "| ---: | --- | --- | --- | ---: | --- |"]
    for v in data["values"]:
        s = v["spec"]
        params = {"normal": f"normal({s['p0']!r}, {s['p1']!r})", "uniform": f"uniform({s['p0']!r}, {s['p1']!r})",
                  "pm": f"pm({s['p0']!r})", "zeros": "zeros",
                  "bank": f"bank({s['bank']!r}, L={v['banks'][s['bank']] if v['banks'] else '?'}, "
                          f"offset={s['offset']}, scale={s['p0']!r})"}[s["dist"]]
        lines.append(f"| {v['seed']} | INIT | `{v['name']}` | {params} | {v['start']} | "
                     f"`{' '.join(v['values'])}` |")
    lines += ["", "| seed | purpose | name | key (k0, k1) | r[0..3] |", "| ---: | --- | --- | --- | --- |"]
    for k in data["streams"]:
        lines.append(f"| {k['seed']} | {k['purpose']} | `{k['name']}` | `{' '.join(k['key'])}` | "
                     f"`{' '.join(k['r'][:4])}` |")
    lines += ["", "| seed | name | n | k | chosen indices |", "| ---: | --- | ---: | ---: | --- |"]
    for m in data["masks"]:
        lines.append(f"| {m['seed']} | `{m['name']}` | {m['n']} | {m['k']} | {m['indices']} |")
    lines += ["", "| shape | N | start | 8 values from start (float32 bits, hex) | SHA-256 of the whole tensor (float32 LE) |",
              "| --- | ---: | ---: | --- | --- |"]
    for d in data["dct"]:
        shape = d["shape"]
        big_n = max(shape[0], math.prod(shape[1:]))
        lines.append(f"| ({', '.join(map(str, shape))}) | {big_n} | {d['start']} | `{' '.join(d['values'])}` | "
                     f"`{d['sha256']}` |")
    lines += ["", "| seed | name | shape | k | chosen flat indices |", "| ---: | --- | --- | ---: | --- |"]
    for m in data["row_masks"]:
        lines.append(f"| {m['seed']} | `{m['name']}` | ({', '.join(map(str, m['shape']))}{',' if len(m['shape']) == 1 else ''}) | "
                     f"{m['k']} | {m['indices']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="also print the spec's vector tables")
    args = parser.parse_args()
    data = make()
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(data['values'])} value vectors)")
    if args.markdown:
        print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
