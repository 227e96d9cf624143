import numpy as np
import pytest
import torch
from torch import nn

from fld_train.capture import HeadCapture, find_head, summarise
from fld_train.store import summarise_logits


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 10)  # out_features == num_classes but not the last one
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(10, 6))
        self.classifier = nn.Linear(6, 10)

    def forward(self, x):
        return self.classifier(self.body(self.stem(x)))


def test_finds_the_last_linear_with_num_classes_outputs():
    name, module = find_head(Net(), 10)
    assert name == "classifier" and module.out_features == 10


def test_named_head_overrides_the_search():
    assert find_head(Net(), 10, "body.1")[0] == "body.1"


def test_no_fitting_head_lists_the_candidates():
    with pytest.raises(ValueError) as err:
        find_head(Net(), 3)
    msg = str(err.value)
    assert "num_classes=3" in msg and "'body.1' (in=10, out=6)" in msg and "head=" in msg


def test_unknown_head_name_lists_the_candidates():
    with pytest.raises(ValueError, match="`head='fc'` is not a module of Net.*'classifier'"):
        find_head(Net(), 10, "fc")


def test_capture_records_embeddings_and_logits_only_when_armed():
    net = Net().train()
    cap = HeadCapture(net.classifier)
    x = torch.randn(5, 4)
    net(x)
    assert cap.take() is None  # not armed: ignored
    cap.arm(5)
    out = net(x)
    got = cap.take()
    assert got.logits.shape == (5, 10) and got.embeddings.shape == (5, 6)
    torch.testing.assert_close(got.logits, out.detach())
    torch.testing.assert_close(got.embeddings, net.body(net.stem(x)).detach())
    cap.remove()
    cap.arm(5)
    net(x)
    assert cap.take() is None


def test_capture_ignores_eval_mode_calls():
    net = Net().eval()
    cap = HeadCapture(net.classifier)
    cap.arm(3)
    net(torch.randn(3, 4))
    assert cap.take() is None


def test_gradient_weights_equal_a_weighted_loss():
    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.randint(0, 10, (6,))
    w = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.25, 1.0])

    hooked = Net().train()
    reference = Net().train()
    reference.load_state_dict(hooked.state_dict())

    cap = HeadCapture(hooked.classifier)
    cap.arm(6, w)
    nn.functional.cross_entropy(hooked(x), y).backward()
    cap.take()

    losses = nn.functional.cross_entropy(reference(x), y, reduction="none")
    (losses * w).mean().backward()
    for a, b in zip(hooked.parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_wrong_batch_size_is_ignored_with_one_warning():
    net = Net().train()
    cap = HeadCapture(net.classifier)
    cap.arm(7)
    with pytest.warns(UserWarning, match="batch of 7"):
        net(torch.randn(5, 4))
    assert cap.take() is None


def test_device_summary_equals_the_numpy_summary():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g) * 4
    logits[3, 2] = float("nan")
    emb = torch.randn(50, 5, generator=g) * 100
    idx, labels = torch.arange(50), torch.randint(0, 7, (50,), generator=g)
    given = (labels + 1) % 7
    dev = {k: v.numpy() for k, v in summarise(idx, labels, given, logits, emb, top_k=4).items()}
    ref = summarise_logits(idx.numpy(), labels.numpy(), given.numpy(), logits.double().numpy(),
                           emb.numpy(), top_k=4)
    np.testing.assert_array_equal(dev["finite"], ref.finite)
    ok = ref.finite
    for key in ("given_prob", "margin", "top_probs"):
        np.testing.assert_allclose(dev[key][ok], getattr(ref, key)[ok], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(dev["correct"][ok], ref.correct[ok])
    np.testing.assert_array_equal(np.sort(dev["top_classes"][ok], axis=1), np.sort(ref.top_classes[ok], axis=1))
    unit = dev["embeddings"].astype(np.float32)[ok]
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-3)


def test_device_summary_projects_embeddings():
    emb = torch.randn(8, 32)
    proj = torch.randn(32, 4)
    out = summarise(torch.arange(8), torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long),
                    torch.randn(8, 3), emb, top_k=2, projection=proj)
    expected = emb @ proj
    expected = expected / expected.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out["embeddings"].float(), expected, atol=2e-3, rtol=0)
