"""SNIP / FreezeNet selection: eq. (1) scores, exact global top-k, one-per-layer rule, q and q_beta."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fzpack.data import make_synthetic, normalize
from fzpack.errors import FzpackError
from fzpack.generator import random_mask
from fzpack.families.saliency import (
    freeze_rates,
    num_trainable,
    prunable_weights,
    saliency_scores,
    select_trainable,
)
from fzpack.models import create_model


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_synthetic(100, seed=7)  # SNIP / FreezeNet use one batch of 100 on MNIST
    return normalize(x, dataset="mnist"), y


@pytest.fixture(scope="module")
def lenet5_scores(batch) -> dict[str, torch.Tensor]:
    return saliency_scores(create_model("lenet5-caffe"), *batch)


class BNNet(nn.Module):
    """Conv with and without bias, BatchNorm, Dropout, a shared Linear: the awkward cases."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(F.relu(self.bn(self.conv(x)))).mean((2, 3))
        return self.head(self.fc(self.fc(x)))  # fc used twice: one weight, two uses


def bnnet() -> BNNet:
    with torch.no_grad():
        net = BNNet()
        for p in net.parameters():  # explicit generator, not the global RNG
            p.copy_(torch.randn(p.shape, generator=gen(p.numel())))
    return net


# --- prunable_weights ------------------------------------------------------------------------


def test_prunable_weights() -> None:
    assert prunable_weights(create_model("lenet5-caffe")) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert prunable_weights(create_model("lenet-300-100")) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert prunable_weights(bnnet()) == ["conv.weight", "fc.weight", "head.weight"]  # no bn, no biases
    shared = nn.Linear(2, 2)
    assert prunable_weights(nn.Sequential(shared, nn.ReLU(), shared)) == ["0.weight"]
    assert prunable_weights(nn.Linear(2, 2)) == ["weight"]


# --- saliency_scores -------------------------------------------------------------------------


def test_saliency_equals_hand_computed_single_layer() -> None:
    model = nn.Linear(3, 2, dtype=torch.float64)  # float64: the comparison can be tight
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]))
        model.bias.copy_(torch.tensor([0.1, -0.2]))
    x = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    # Cross-entropy by hand: dL/dlogits = (softmax - onehot) / batch, dL/dW = that^T x.
    w, b = model.weight.detach(), model.bias.detach()
    logits = x @ w.T + b
    p = logits.exp() / logits.exp().sum(1, keepdim=True)
    dlogits = (p - F.one_hot(y, 2).double()) / 2
    expected = (dlogits.T @ x * w).abs()
    scores = saliency_scores(model, x, y)
    assert list(scores) == ["weight"]
    torch.testing.assert_close(scores["weight"], expected, rtol=1e-12, atol=1e-14)


def test_saliency_equals_plain_autograd_on_lenet(batch) -> None:
    model = create_model("lenet5-caffe")
    scores = saliency_scores(model, *batch)
    reference = create_model("lenet5-caffe")
    F.cross_entropy(reference(batch[0]), batch[1]).backward()
    for name, score in scores.items():
        w = reference.get_parameter(name)
        torch.testing.assert_close(score, (w.grad * w).abs())
        assert score.shape == w.shape and not score.requires_grad


def test_model_untouched(batch) -> None:
    for model, x, y in (
        (create_model("lenet-300-100"), *batch),
        (bnnet(), torch.randn(8, 1, 6, 6, generator=gen(1)), torch.arange(8) % 3),
    ):
        model.train()
        if isinstance(model, BNNet):
            model.bn.eval()  # mixed flags must come back exactly
            model.bn.train()
            model.drop.eval()
        flags = [m.training for m in model.modules()]
        state = {k: v.clone() for k, v in model.state_dict().items()}
        requires = [p.requires_grad for p in model.parameters()]
        rng = torch.random.get_rng_state()
        saliency_scores(model, x, y)
        assert torch.equal(torch.random.get_rng_state(), rng)
        assert [m.training for m in model.modules()] == flags
        assert all(p.grad is None for p in model.parameters())
        assert [p.requires_grad for p in model.parameters()] == requires
        after = model.state_dict()
        assert all(torch.equal(state[k], after[k]) for k in state)  # incl. BN running stats


def test_eval_model_stays_eval_and_dropout_is_off() -> None:
    model = bnnet().eval()
    x, y = torch.randn(8, 1, 6, 6, generator=gen(2)), torch.arange(8) % 3
    a = saliency_scores(model, x, y)
    b = saliency_scores(model, x, y)
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(a[k], b[k]) for k in a)  # Dropout would make these differ
    c = saliency_scores(model, x, y, train_mode=False)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])  # batch vs running BN stats


def test_saliency_deterministic_and_custom_loss(batch) -> None:
    model = create_model("lenet-300-100")
    a = saliency_scores(model, *batch)
    b = saliency_scores(model, *batch)
    assert all(torch.equal(a[k], b[k]) for k in a)
    summed = saliency_scores(model, *batch, loss_fn=lambda o, t: F.cross_entropy(o, t, reduction="sum"))
    # The reduction changes only the backward pass, so the two scores of fc3 are the same sum
    # dW = sum_b delta_b h_b^T (delta = softmax - onehot, times 1/n for the mean; h = fc3's input)
    # computed twice by a float32 matmul whose summation order is the CPU kernel's. Reordering an
    # n-term sum moves it by at most gamma_n = n u (u = 2**-24) times the sum of |terms|, for each
    # of the two (Higham, Accuracy and Stability, section 3.1); delta of the mean takes <= 3 more
    # roundings (1/n, the product, the subtraction), |g * w| and 100 x one each: so
    # |summed - 100 mean| <= (2n + 10) u |w| (|delta| |h|), |delta| <= softmax + onehot.
    # Cancellation can make that bound larger than a score itself (one of fc3's 1000 differs
    # by 2.3e-4 relative on an AMD EPYC), which is why a relative tolerance is the wrong one.
    x, y = batch
    seen: dict[str, torch.Tensor] = {}
    hook = model.fc3.register_forward_hook(lambda m, i, o: seen.update(h=i[0].detach(), logits=o.detach()))
    with torch.no_grad():
        model(x)
    hook.remove()
    n = len(y)
    terms = (seen["logits"].double().softmax(1) + F.one_hot(y, 10).double()).T @ seen["h"].double().abs()
    bound = (2 * n + 10) * 2.0**-24 * terms * model.fc3.weight.detach().double().abs()
    expected = 100 * a["fc3.weight"].double()
    assert ((summed["fc3.weight"].double() - expected).abs() <= bound).all()
    # The bound has teeth: it is under 1% of the score for most entries (median 3e-5; the rest are
    # mostly dead ReLU inputs, where score and bound are both 0), so a mean where a sum belongs
    # (a factor of n), another loss or a dropped sample cannot pass.
    assert float((bound < 0.01 * expected.abs()).double().mean()) > 0.8
    with pytest.raises(FzpackError, match="scalar"):
        saliency_scores(model, *batch, loss_fn=lambda o, t: F.cross_entropy(o, t, reduction="none"))
    with pytest.raises(FzpackError, match="no Linear or Conv2d"):
        saliency_scores(nn.ReLU(), *batch)


def test_saliency_works_under_no_grad(batch) -> None:
    model = create_model("lenet-300-100")
    with torch.no_grad():
        scores = saliency_scores(model, *batch)
    assert scores["fc1.weight"].abs().sum() > 0


# --- num_trainable / select_trainable -----------------------------------------------------------


def test_num_trainable_is_exact_floor() -> None:
    assert num_trainable(430_500, 0.9) == 43_050  # naive float floor gives 43,049
    assert math.floor((1 - 0.9) * 430_500) == 43_049
    assert num_trainable(430_500, 0.99) == 4_305  # FreezeNet Table 2 / field notes
    assert num_trainable(430_500, 0.995) == 2_152
    assert num_trainable(430_500, 0.999) == 430
    assert num_trainable(10, 0) == 10 and num_trainable(10, 1) == 0 and num_trainable(7, 0.5) == 3
    assert num_trainable(3, Fraction(1, 3)) == 2
    for bad in (-0.1, 1.5, float("nan"), float("inf"), True, "0.9", None):
        with pytest.raises(FzpackError):
            num_trainable(10, bad)  # type: ignore[arg-type]


def random_scores(seed: int = 0) -> dict[str, torch.Tensor]:
    g = gen(seed)
    return {"a": torch.rand(30, 20, generator=g), "b": torch.rand(5, 3, 2, 2, generator=g), "c": torch.rand(10, generator=g)}


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.9, 0.99, 0.999, 1.0])
def test_exact_k_is_the_global_top_k(rate: float) -> None:
    scores = random_scores()
    masks = select_trainable(scores, rate, seed=1)
    assert list(masks) == list(scores)
    assert all(m.dtype == torch.bool and m.shape == scores[n].shape for n, m in masks.items())
    total = sum(s.numel() for s in scores.values())
    k = num_trainable(total, rate)
    flat_s = torch.cat([s.flatten() for s in scores.values()])
    top = torch.zeros(total, dtype=torch.bool)
    top[torch.argsort(flat_s, descending=True)[:k]] = True  # no ties in continuous scores
    flat_m = torch.cat([m.flatten() for m in masks.values()])
    # Everything in the top k is selected; anything else is a one-per-layer addition.
    assert bool(flat_m[top].all())
    extras = flat_m & ~top
    empty_layers = [n for n, s in scores.items() if not top[_span(scores, n)].any()]
    assert int(extras.sum()) == len(empty_layers)
    for n in empty_layers:
        assert int(masks[n].sum()) == 1
    assert int(flat_m.sum()) == k + len(empty_layers)


def _span(scores: dict[str, torch.Tensor], name: str) -> slice:
    start = 0
    for n, s in scores.items():
        if n == name:
            return slice(start, start + s.numel())
        start += s.numel()
    raise KeyError(name)


def test_empty_layer_gets_exactly_one_from_the_seed() -> None:
    g = gen(3)
    scores = {
        "big": torch.rand(40, 50, generator=g) + 1.0,  # all of k lands here
        "starved": torch.rand(20, 30, generator=g) * 1e-3,
        "tiny": torch.zeros(4),
    }
    masks = select_trainable(scores, 0.9, seed=42)
    assert int(masks["big"].sum()) == num_trainable(2000 + 600 + 4, 0.9)
    for name in ("starved", "tiny"):
        assert int(masks[name].sum()) == 1
        assert torch.equal(masks[name], random_mask(42, name, tuple(scores[name].shape), 1))
    again = select_trainable(scores, 0.9, seed=42)
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    positions = {int(select_trainable(scores, 0.9, seed=s)["starved"].flatten().nonzero()) for s in range(6)}
    assert len(positions) > 1  # the seed, not a fixed rule, picks the weight


def test_ties_broken_by_position() -> None:
    scores = {"a": torch.ones(2, 3), "b": torch.ones(4)}
    masks = select_trainable(scores, 0.5, seed=0)  # k = 5 of 10 equal scores
    flat = torch.cat([m.flatten() for m in masks.values()])
    # First five positions in (layer order, row-major) order; b got none, so the rule adds one.
    assert flat[:5].all() and int(flat[6:].sum()) == 1
    assert torch.equal(masks["b"], random_mask(0, "b", (4,), 1))
    mixed = {"a": torch.tensor([0.1, 0.5, 0.5, 0.9]), "b": torch.tensor([0.5, 0.2])}
    m = select_trainable(mixed, 0.5, seed=0)  # k = 3: 0.9 then the first two of the three 0.5s
    assert m["a"].tolist() == [False, True, True, True]
    assert int(m["b"].sum()) == 1  # rule, not the tied 0.5


def test_rate_one_and_zero() -> None:
    scores = random_scores(1)
    none = select_trainable(scores, 1.0, seed=9)
    assert all(int(m.sum()) == 1 for m in none.values())
    everything = select_trainable(scores, 0.0, seed=9)
    assert all(bool(m.all()) for m in everything.values())


def test_selection_input_checks() -> None:
    with pytest.raises(FzpackError, match="NaN"):
        select_trainable({"a": torch.tensor([0.1, float("nan")])}, 0.5, seed=0)
    for bad in (-1, 2**32, 1.5, None, True):
        with pytest.raises(FzpackError, match="seed"):
            select_trainable(random_scores(), 0.5, seed=bad)  # type: ignore[arg-type]
    with pytest.raises(FzpackError, match="no score"):
        select_trainable({}, 0.5, seed=0)
    with pytest.raises(FzpackError, match="freezing rate"):
        select_trainable(random_scores(), 1.01, seed=0)
    ints = select_trainable({"a": torch.tensor([3, 1, 2])}, Fraction(2, 3), seed=0)
    assert ints["a"].tolist() == [True, False, False]


def test_pipeline_determinism(batch) -> None:
    masks = [select_trainable(saliency_scores(create_model("lenet5-caffe"), *batch), 0.99, seed=123) for _ in range(2)]
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])


# --- freeze_rates ----------------------------------------------------------------------------


def test_freeze_rates_formula() -> None:
    model = create_model("lenet-300-100")
    masks = {n: torch.zeros_like(model.get_parameter(n), dtype=torch.bool) for n in prunable_weights(model)}
    masks["fc1.weight"][0, :100] = True
    masks["fc3.weight"][:, 0] = True
    q, q_beta = freeze_rates(masks, model)
    n_w, n_b, trained = 266_200, 410, 110
    assert q == pytest.approx(1 - trained / n_w, abs=1e-15)
    assert q_beta == pytest.approx(1 - (trained + n_b) / (n_w + n_b), abs=1e-15)
    float_masks = {n: m.float() for n, m in masks.items()}
    assert freeze_rates(float_masks, model) == (q, q_beta)


def test_freeze_rates_counts_batchnorm_as_b() -> None:
    model = bnnet()
    masks = {n: torch.ones_like(model.get_parameter(n), dtype=torch.bool) for n in prunable_weights(model)}
    q, q_beta = freeze_rates(masks, model)
    assert q == 0.0 and q_beta == 0.0
    masks = {n: torch.zeros_like(m) for n, m in masks.items()}
    q, q_beta = freeze_rates(masks, model)
    n_w = 4 * 9 + 16 + 12
    n_b = 8 + 4 + 3  # BN weight+bias, fc.bias, head.bias (conv has none)
    assert q == 1.0 and q_beta == pytest.approx(1 - n_b / (n_w + n_b))


def test_freeze_rates_rejects_mismatch() -> None:
    model = create_model("lenet-300-100")
    masks = {n: torch.ones_like(model.get_parameter(n), dtype=torch.bool) for n in prunable_weights(model)}
    with pytest.raises(FzpackError, match="missing"):
        freeze_rates({k: v for k, v in masks.items() if k != "fc2.weight"}, model)
    with pytest.raises(FzpackError, match="unexpected"):
        freeze_rates({**masks, "fc1.bias": torch.ones(300, dtype=torch.bool)}, model)
    with pytest.raises(FzpackError, match="shape"):
        freeze_rates({**masks, "fc3.weight": torch.ones(10, 99, dtype=torch.bool)}, model)


@pytest.mark.parametrize(("q", "q_beta_paper"), [(0.9, 0.899), (0.99, 0.989), (0.995, 0.994), (0.999, 0.998)])
def test_lenet5_matches_freezenet_table_2(lenet5_scores, q: float, q_beta_paper: float) -> None:
    model = create_model("lenet5-caffe", device="meta")
    masks = select_trainable(lenet5_scores, q, seed=2024)
    trained = sum(int(m.sum()) for m in masks.values())
    k = num_trainable(430_500, q)
    assert k <= trained <= k + 4  # "adds at most ... 4 for LeNet-5-Caffe" (section 4)
    assert all(int(m.sum()) >= 1 for m in masks.values())
    rate, rate_beta = freeze_rates(masks, model)
    assert rate == pytest.approx(q, abs=4 / 430_500 + 1e-12)
    assert round(rate_beta, 3) == q_beta_paper
