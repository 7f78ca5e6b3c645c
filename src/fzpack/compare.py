"""`fzpack.compare`: one checkpoint, every representation actually produced and measured.

Each row is a file that was really written (in memory, or under ``keep``), its size is
``len(bytes)`` of that file, and every readable row is decoded again to decide *lossless* (bit
for bit) and to measure the max abs error when it is not. Below the rows: the masks' entropy
bounds next to what fzpack's mask streams cost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fzpack.baselines import Artifact, StateDict, Subject, state_dict_of
from fzpack.baselines.dense import dense_artifacts
from fzpack.baselines.fzp import fzp_artifacts
from fzpack.baselines.sparse import sparse_artifacts
from fzpack.baselines.zipnn_row import zipnn_artifacts, zipnn_available
from fzpack.checkpoint import frozen_info, load_checkpoint
from fzpack.codecs.mask import mask_entropy_bounds
from fzpack.container.file import read_container
from fzpack.container.layout import FLAG_MASK_FROM_SEED, FROZEN, MAGIC
from fzpack.equality import max_abs_difference, tree_differences
from fzpack.errors import CheckpointError, FzpackError
from fzpack.progress import bar_enabled
from fzpack.restore import restore

_NOT_PARAMS = ("running_mean", "running_var", "num_batches_tracked")
SCHEMA_VERSION = 1


@dataclass
class CompareRow:
    """One representation: its measured size and what decoding it gave back."""

    key: str
    representation: str
    bytes: int
    factor: float  # dense fp32 bytes / bytes
    bits_per_parameter: float
    bits_per_trained_parameter: float | None
    lossless: bool | None  # None: the bytes cannot be read back at all
    restorable: bool  # the bytes alone give back the network (bit for bit, or within a lossy codec's bound)
    max_abs_error: float | None  # when decoded but not lossless
    file: str | None = None
    note: str = ""


@dataclass
class CompareReport:
    """The table, the mask bounds and the notes of `fzpack compare` (``to_dict`` is its ``--json``)."""

    source: str
    method: str | None
    frozen: bool
    parameters: int
    trained_parameters: int
    dense_fp32_bytes: int
    rows: list[CompareRow] = field(default_factory=list)
    masks: list[dict[str, Any]] = field(default_factory=list)
    mask_totals: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, key: str) -> CompareRow:
        return next(r for r in self.rows if r.key == key)


def load_subject(src: str | os.PathLike | Mapping[str, Any]) -> tuple[Subject, list[str]]:
    """Read a `.pt` (weights_only) or `.fzp` (restored) checkpoint into a :class:`Subject`.

    Returns:
        The subject and notes about how it was read.
    """
    notes: list[str] = []
    if isinstance(src, Mapping):
        obj: Any = src
    else:
        with open(src, "rb") as f:
            is_fzp = f.read(len(MAGIC)) == MAGIC
        if is_fzp:
            obj = restore(src)
            notes.append("the source is a .fzp file: compared against the checkpoint it restores to")
        else:
            obj = load_checkpoint(src)
    try:
        info = frozen_info(obj)
    except CheckpointError as e:
        info = None
        notes.append(f"the 'fzpack' entry is not valid ({e}): generic rows only")
    sd = state_dict_of(obj)
    if not sd:
        raise CheckpointError("the checkpoint holds no tensors to compare")
    masks = {n: ft.mask.to("cpu", torch.bool) for n, ft in info.tensors.items() if n in sd} if info else {}
    pruned = bool(masks) and all(not bool((sd[n].detach().cpu()[~m] != 0).any()) for n, m in masks.items())
    if not masks:
        notes.append("no frozen tensors ('fzpack' entry): generic rows only")
    return Subject(obj=obj, state_dict=sd, masks=masks, method=info.method if info else None, pruned=pruned), notes


def _counts(subject: Subject) -> tuple[int, int, int]:
    """(parameters, trained parameters, dense fp32 bytes) of the state dict."""
    params = trained = dense = 0
    for n, v in subject.state_dict.items():
        params += v.numel()
        dense += v.numel() * (4 if v.is_floating_point() else v.element_size())
        if n in subject.masks:
            trained += int(subject.masks[n].sum())
        elif v.is_floating_point() and not n.endswith(_NOT_PARAMS):
            trained += v.numel()
    return params, trained, dense


def _builders() -> list[tuple[str, Callable[[Subject], list[Artifact]]]]:
    return [("dense", dense_artifacts), ("zipnn", zipnn_artifacts), ("sparse", sparse_artifacts), ("fzpack", fzp_artifacts)]


def compare(src: str | os.PathLike | Mapping[str, Any], *, keep: str | os.PathLike | None = None,
            progress: bool | None = False) -> CompareReport:
    """Produce every representation of a checkpoint, measure its bytes, decode it back.

    Args:
        src: a `.pt` checkpoint, a `.fzp` file, or an in-memory checkpoint object. A plain state
            dict (no `fzpack` entry) gets the generic rows only.
        keep: write every artifact into this directory (the row's ``file``); its size on disk
            is checked against the reported bytes.
        progress: a tqdm bar on stderr when producing the artifacts takes over a second: True /
            False force it on / off, None draws it on a terminal only.

    Returns:
        A :class:`CompareReport`.

    Example:
        >>> report = compare("model.pt", keep="artifacts")
        >>> report.row("fzpack").bytes == os.path.getsize("artifacts/model.fzp")
        True
    """
    t0 = time.perf_counter()
    subject, notes = load_subject(src)
    params, trained, dense = _counts(subject)
    report = CompareReport(source=str(src) if not isinstance(src, Mapping) else "<checkpoint object>", method=subject.method,
                           frozen=subject.frozen, parameters=params, trained_parameters=trained, dense_fp32_bytes=dense, notes=notes)
    keep_dir = Path(keep) if keep is not None else None
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
    if not zipnn_available():
        report.notes.append("ZipNN row skipped: zipnn is not installed (pip install 'fzpack[zipnn]')")
    steps = _builders()
    with tqdm(total=len(steps), desc="compare", unit="step", delay=1.0, disable=not bar_enabled(progress), leave=False) as bar:
        artifacts: list[Artifact] = []
        for name, build in steps:
            bar.set_postfix_str(name)
            made = build(subject)
            artifacts += made
            bar.total += len(made)
            bar.update(1)
        for a in artifacts:
            bar.set_postfix_str(a.key)
            report.rows.append(_row(a, subject, report, keep_dir))
            bar.update(1)
    for a in artifacts:
        if a.note and a.note not in report.notes:
            report.notes.append(a.note)
    if subject.frozen:
        fzp = next(a for a in artifacts if a.key == "fzpack")
        report.masks, report.mask_totals = mask_bounds(subject, fzp.data)
    report.seconds = time.perf_counter() - t0
    return report


def _row(a: Artifact, subject: Subject, report: CompareReport, keep_dir: Path | None) -> CompareRow:
    n = len(a.data)
    path = None
    if keep_dir is not None:
        p = keep_dir / a.filename
        p.write_bytes(a.data)
        if p.stat().st_size != n:
            raise FzpackError(f"{p}: wrote {p.stat().st_size} bytes, expected {n}")
        path = str(p)
    lossless, err = _check(a, subject.state_dict)
    restorable = bool(lossless) or (a.lossy_codec and err is not None)
    return CompareRow(
        key=a.key, representation=a.label, bytes=n, factor=report.dense_fp32_bytes / n if n else float("inf"),
        bits_per_parameter=8 * n / report.parameters if report.parameters else 0.0,
        bits_per_trained_parameter=8 * n / report.trained_parameters if report.trained_parameters else None,
        lossless=lossless, restorable=restorable, max_abs_error=None if lossless else err, file=path, note=a.note)


def _check(a: Artifact, reference: StateDict) -> tuple[bool | None, float | None]:
    """(lossless, max abs error) from decoding the artifact; (None, None) when it cannot be read back."""
    if a.decode is None:
        return None, None
    return difference(reference, a.decode(a.data))


def difference(reference: StateDict, back: StateDict) -> tuple[bool, float | None]:
    """(lossless, max abs error) of a decoded state dict; error None when keys, shapes or dtypes differ.

    Example:
        >>> difference({"w": torch.ones(2)}, {"w": torch.ones(2)})
        (True, 0.0)
    """
    if set(back) != set(reference) or any(back[k].shape != reference[k].shape or back[k].dtype != reference[k].dtype for k in reference):
        return False, None
    if not tree_differences(reference, {k: back[k] for k in reference}):
        return True, 0.0
    return False, max_abs_difference(reference, back)


def mask_bounds(subject: Subject, fzp_data: bytes) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per frozen tensor: fzpack's mask bytes beside the masks' entropy bounds (bytes, no side information).

    Bounds from :func:`fzpack.codecs.mask.mask_entropy_bounds`: per-layer i.i.d. ``n H(k/n)``,
    per-row, per-column, the better of the two, and row x column independence.
    """
    header, _ = read_container(fzp_data)
    coded = {t.name: (0 if t.flags & FLAG_MASK_FROM_SEED else t.mask_length) for t in header.tensors if t.kind == FROZEN}
    rows = []
    for name, m in subject.masks.items():
        b = mask_entropy_bounds(m.numpy())
        rows.append({"name": name, "numel": b["n"], "trained": b["k"], "fzpack_bytes": coded.get(name, 0),
                     "iid_bytes": b["iid_bits"] / 8, "row_bytes": b["row_bits"] / 8, "col_bytes": b["col_bits"] / 8,
                     "rowcol_bytes": b["rowcol_bits"] / 8, "independence_bytes": b["independence_bits"] / 8})
    keys = ("fzpack_bytes", "iid_bytes", "row_bytes", "col_bytes", "rowcol_bytes", "independence_bytes")
    return rows, {k: sum(r[k] for r in rows) for k in keys}
