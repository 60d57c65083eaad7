"""LRP z+ through zennit against closed forms, the residual split, and the model left as it was."""

import numpy as np
import pytest
import torch
from torch import nn
from zennit.layer import Sum

from notebookcarto.featvis import lrp_relevance
from notebookcarto.models import resnet20

EPS = 1e-5


def zplus(inputs: np.ndarray, weight: np.ndarray, relevance: np.ndarray, bias=None) -> np.ndarray:
    """Closed form of z+ for y = W x (+ b): R_i = sum_j (x_i w_ji)^+ / (sum_i' (x_i' w_ji')^+
    + b_j^+ + eps) R_j."""
    z = np.maximum(inputs[:, None, :] * weight[None, :, :], 0)  # (B, out, in)
    total = z.sum(2) + (np.maximum(bias, 0) if bias is not None else 0) + EPS
    return (z / total[:, :, None] * relevance[:, :, None]).sum(1)


def test_linear_model_matches_the_closed_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Linear(5, 4), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].bias.uniform_(-0.5, 0.5)
    x = torch.rand(3, 6)
    r = lrp_relevance(model, x, "2", 1, ["1", "0"], eps=EPS)
    w = [model[i].weight.detach().double().numpy() for i in range(3)]
    b1 = model[1].bias.detach().double().numpy()
    h0 = x.double().numpy() @ w[0].T
    h1 = h0 @ w[1].T + b1
    y = h1 @ w[2].T + model[2].bias.detach().double().numpy()
    start = np.zeros_like(y)
    start[:, 1] = y[:, 1]  # the target channel's value, all others zero
    r1 = zplus(h1, w[2], start, bias=model[2].bias.detach().double().numpy())
    r0 = zplus(h0, w[1], r1, bias=b1)
    np.testing.assert_allclose(r["1"].numpy(), r1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r["0"].numpy(), r0, rtol=1e-4, atol=1e-6)


class Residual(nn.Module):
    """y = x + W x, the sum already a zennit ``Sum`` (no canonizer needed), then a readout."""

    def __init__(self):
        super().__init__()
        self.main = nn.Linear(4, 4, bias=False)
        self.add = Sum()
        self.out = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.out(self.add(torch.stack([x, self.main(x)], dim=-1)))


def test_residual_relevance_is_split_by_magnitude():
    torch.manual_seed(1)
    model = Residual()
    x = torch.randn(2, 4)
    r = lrp_relevance(model, x, "out", 0, ["add", "main"], eps=EPS)
    main = x.double().numpy() @ model.main.weight.detach().double().numpy().T
    y = x.double().numpy() + main
    out = y @ model.out.weight.detach().double().numpy().T
    start = np.zeros_like(out)
    start[:, 0] = out[:, 0]
    r_sum = zplus(y, model.out.weight.detach().double().numpy(), start)
    share = np.abs(main) / (np.abs(main) + np.abs(x.double().numpy()) + EPS)
    np.testing.assert_allclose(r["add"].numpy(), r_sum, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r["main"].numpy(), share * r_sum, rtol=1e-4, atol=1e-6)


def test_resnet_relevance_is_conserved_and_the_model_restored():
    torch.manual_seed(2)
    model = resnet20().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    r = lrp_relevance(model, x, "layer2.2", 3, ["layer2.0", "layer1.2", "conv1"])
    with torch.no_grad():
        feats = {}
        handle = model.layer2[2].register_forward_hook(lambda m, i, o: feats.update(o=o))
        model(x)
        handle.remove()
    start = feats["o"][:, 3].sum().item()
    for name in ("layer2.0", "layer1.2", "conv1"):
        # z+ without biases (batch norms pass relevance on) conserves it, up to eps
        assert r[name].sum().item() == pytest.approx(start, rel=1e-3)
        assert (r[name] >= 0).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not hasattr(model.layer1[0], "featvis_sum") and "forward" not in vars(model.layer1[0])


def test_a_canonizer_that_changes_the_model_is_refused():
    from zennit.canonizers import AttributeCanonizer

    class Double(AttributeCanonizer):
        def __init__(self):
            super().__init__(lambda name, m: ({"forward": lambda x: 2 * nn.functional.linear(
                x, m.weight, m.bias)} if isinstance(m, nn.Linear) and name == "0" else None))

    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="canonizers change the outputs"):
        lrp_relevance(model, torch.rand(1, 3), "1", 0, ["0"], canonizers=[Double()])
