"""NNCodec baseline row: optional (benchmarks/install_nncodec.sh); skipped cleanly without it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from fzpack.baselines import nncodec_row
from fzpack.models import create_model

FINE, COARSE = -38, -20


@pytest.fixture(scope="module")
def nnc() -> None:
    why = nncodec_row.available()
    if why is not None:
        pytest.skip(why)


@pytest.fixture(scope="module")
def lenet() -> dict[str, torch.Tensor]:
    return create_model("lenet-300-100").state_dict()


def _max_err(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], suffix: str = "") -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in b if k.endswith(suffix))


def test_importing_fzpack_does_not_import_nncodec() -> None:
    code = ("import sys, fzpack, fzpack.baselines, fzpack.baselines.nncodec_row; "
            "assert 'nncodec' not in sys.modules and 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_available_names_install_script_when_import_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nncodec", None)  # makes `from nncodec import nnc` fail
    monkeypatch.setitem(sys.modules, "nncodec.nnc", None)
    why = nncodec_row.available()
    assert isinstance(why, str) and "\n" not in why
    assert "benchmarks/install_nncodec.sh" in why


def test_roundtrip_fine_and_coarse(nnc: None, lenet: dict[str, torch.Tensor]) -> None:
    fine = nncodec_row.encode(lenet, FINE)
    coarse = nncodec_row.encode(lenet, COARSE)
    raw = sum(v.numel() * 4 for v in lenet.values())
    assert len(coarse) < len(fine) < raw
    for data in (fine, coarse):
        out = nncodec_row.decode(data, lenet)
        assert list(out) == list(lenet)
        for k, v in lenet.items():
            assert out[k].shape == v.shape and out[k].dtype == torch.float32
    # Step at qp -38 is 1.5 * 2**-10 ~ 1.46e-3; dependent quantization's trellis lands up to
    # ~1.8 steps away (2.6e-3 measured). Biases use nonweight_qp -75 (step ~2.4e-6).
    fine_out = nncodec_row.decode(fine, lenet)
    assert _max_err(fine_out, lenet, "weight") < 4e-3
    assert _max_err(fine_out, lenet, "bias") < 1e-5
    assert _max_err(nncodec_row.decode(coarse, lenet), lenet) > _max_err(fine_out, lenet)


def test_deterministic_and_leaves_global_rng_alone(nnc: None, lenet: dict[str, torch.Tensor]) -> None:
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = nncodec_row.encode(lenet, FINE)
    nncodec_row.decode(a, lenet)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert nncodec_row.encode(lenet, FINE) == a


def test_nonweight_qp_controls_biases(nnc: None, lenet: dict[str, torch.Tensor]) -> None:
    loose = nncodec_row.decode(nncodec_row.encode(lenet, FINE, nonweight_qp=-30), lenet)
    tight = nncodec_row.decode(nncodec_row.encode(lenet, FINE), lenet)
    assert _max_err(loose, lenet, "bias") > 10 * _max_err(tight, lenet, "bias")
    with pytest.raises(ValueError):
        nncodec_row.encode(lenet, FINE, nonweight_qp=0)


def test_non_float_entries_are_raw_and_exact(nnc: None) -> None:
    sd = {"conv.weight": torch.linspace(-1, 1, 4 * 3 * 3 * 3).reshape(4, 3, 3, 3),
          "bn.weight": torch.ones(4), "bn.running_mean": torch.zeros(4),
          "bn.num_batches_tracked": torch.tensor(123456789012, dtype=torch.int64),
          "scalar": torch.tensor(0.25, dtype=torch.float64)}
    floats = {k: v for k, v in sd.items() if v.is_floating_point()}
    data = nncodec_row.encode(sd, FINE)
    assert len(data) == len(nncodec_row.encode(floats, FINE)) + 8  # exactly the int64's bytes
    out = nncodec_row.decode(data, sd)
    assert list(out) == list(sd)
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    assert int(out["bn.num_batches_tracked"]) == 123456789012
    assert out["scalar"].shape == () and out["scalar"].dtype == torch.float32
    assert abs(float(out["scalar"]) - 0.25) < 1e-5
    with pytest.raises(ValueError):
        nncodec_row.encode({"n": torch.tensor(3)}, FINE)
