"""Replay fuzz inputs under coverage.py and print the parser lines they reach, as JSON.

    python benchmarks/fuzz_coverage.py WORKDIR TARGET [TARGET ...]

Coverage starts before fzpack is imported, so a module's definitions count as reached like the
lines of the functions the inputs ran. Writer-only functions (encoders, the q8 grid fitting, the
mask model fitting, byte builders) are excluded: the denominator is the code a reader runs.
The inputs are each target's seeds plus what a run left in ``WORKDIR/corpus/TARGET``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import coverage

#: ``def``/``class`` lines of writer-only code; coverage.py excludes the whole block they open.
WRITER_ONLY = [
    r"def (encode\w*|_encode\w*|write\w*|_write\w*|append_varint|group_bytes|_zstd|_level|zstd_dict_compress)\(",
    r"def (kmeans_grid|_lloyd|uniform_grid|_candidates|_dequantize|nearest|measure)\(",
    r"def (check_values|check_mode|applies|_round|_as_mask|mask_entropy_bounds|_bern_bits|live_order|_hist|code_for_scale)\(",
    r"def (encode_update|_lossy_candidate|_u64|assemble|apply_update|values_digest|_as_values|restore_file|to_safetensors_bytes)\(",
    r"class (Writer|BitWriter|TreeEncoder|RestoreReport)\b",
    r"def (header|to_dict|lossy|digest)\(self",
]
PARSERS = ["fzpack.container.bytes_io", "fzpack.container.layout", "fzpack.container.file", "fzpack.container.tree",
           "fzpack.unpack", "fzpack.codecs.values", "fzpack.codecs.lossy", "fzpack.codecs.q8", "fzpack.codecs.q8_index",
           "fzpack.codecs.mask", "fzpack.codecs.mask_decode", "fzpack.codecs.mask_models", "fzpack.codecs.mask_ans",
           "fzpack.inspect", "fzpack.verify", "fzpack.restore", "fzpack.fl.payload"]


def main(workdir: Path, names: list[str]) -> dict:
    cov = coverage.Coverage(data_file=None, source_pkgs=["fzpack"])
    for pattern in WRITER_ONLY:
        cov.exclude(pattern)
    cov.start()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import importlib

    from fuzz_engine import Recorder, corpus_inputs
    from fuzz_targets import target

    wanted = sorted({m for n in names for m in target(n).modules})
    for name in names:
        rec = Recorder(name, Path("/tmp/fzpack-fuzz-coverage"))
        for data in corpus_inputs(name, workdir):
            rec.execute(target(name).run, data, timer=False)
    cov.stop()
    out: dict = {"modules": {}}
    for m in wanted:
        _, statements, _, missing, _ = cov.analysis2(importlib.import_module(m).__file__)
        out["modules"][m] = [len(statements) - len(missing), len(statements)]
    out["covered"] = sum(c for c, _ in out["modules"].values())
    out["statements"] = sum(s for _, s in out["modules"].values())
    out["percent"] = round(100 * out["covered"] / max(out["statements"], 1), 1)
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2:])))
