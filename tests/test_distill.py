"""Knowledge distillation (Hinton et al. 2015): the loss against a hand computation, the stage on
real data keeping masks / sharing and leaving the teacher untouched, and the stage under
torchrun (2 gloo processes) ending with identical weights on both ranks."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from edgecv.checkpoint import save_checkpoint
from edgecv.compress import (Context, Distill, DistillConfig, DistillLoss, Finetune, FinetuneConfig, Prune,
                             PruneConfig, Share, ShareConfig, distillation_loss, parse_recipe)
from edgecv.compress.distill import resolve_weights
from edgecv.errors import UserError
from edgecv.models import create_model

Z = [[1.0, -0.5, 2.0], [0.3, 0.2, -1.0]]  # student logits
V = [[2.5, 0.0, 1.0], [-0.4, 1.5, 0.1]]  # teacher logits
Y = [2, 1]


def _softmax(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [x / sum(e) for x in e]


def hand_loss(t: float, alpha: float) -> float:
    """alpha * T^2 * mean_b(-sum_i p_i log q_i) + (1 - alpha) * mean_b(-log softmax(z)_y), in plain floats."""
    soft = sum(-sum(p * math.log(q) for p, q in zip(_softmax(v, t), _softmax(z, t))) for z, v in zip(Z, V)) / len(Z)
    hard = sum(-math.log(_softmax(z, 1.0)[y]) for z, y in zip(Z, Y)) / len(Z)
    return alpha * t * t * soft + (1 - alpha) * hard


@pytest.mark.parametrize("t,alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 1.0), (20.0, 0.3)])
def test_loss_matches_hand_computation(t, alpha):
    got = distillation_loss(torch.tensor(Z), torch.tensor(V), torch.tensor(Y), temperature=t, alpha=alpha)
    assert got.item() == pytest.approx(hand_loss(t, alpha), rel=1e-6)


def test_soft_term_is_t_squared_scaled_and_alpha_zero_is_plain_ce():
    z, v, y = torch.tensor(Z), torch.tensor(V), torch.tensor(Y)
    for t in (1.0, 3.0, 10.0):
        soft = distillation_loss(z, v, y, temperature=t, alpha=1.0).item()
        unscaled = -(F.softmax(v / t, 1) * F.log_softmax(z / t, 1)).sum(1).mean().item()
        assert soft == pytest.approx(t * t * unscaled, rel=1e-6)
        assert distillation_loss(z, v, y, temperature=t, alpha=0.0).item() == pytest.approx(
            F.cross_entropy(z, y).item(), rel=1e-7)
    # alpha weights the two terms linearly
    s, h = (distillation_loss(z, v, y, temperature=4.0, alpha=a).item() for a in (1.0, 0.0))
    assert distillation_loss(z, v, y, temperature=4.0, alpha=0.25).item() == pytest.approx(0.25 * s + 0.75 * h, rel=1e-6)


def test_soft_gradient_is_the_papers_equation():
    """Hinton et al. Eq. 2: dC/dz_i = (1/T)(q_i - p_i); with the T^2 factor and the batch mean,
    d(loss)/dz = T (q - p) / B."""
    t = 4.0
    z = torch.tensor(Z, requires_grad=True)
    v, y = torch.tensor(V), torch.tensor(Y)
    distillation_loss(z, v, y, temperature=t, alpha=1.0).backward()
    expected = t * (F.softmax(z.detach() / t, 1) - F.softmax(v / t, 1)) / len(Z)
    assert torch.allclose(z.grad, expected, atol=1e-6)


def test_config_validation():
    from edgecv.pipeline import _attach_teacher

    no_teacher = parse_recipe("stages:\n  - distill: {epochs: 1}\n")  # allowed: edgecv.compress(teacher=...) fills it
    with pytest.raises(UserError, match=r"<recipe>:2: distill has no teacher"):
        _attach_teacher(no_teacher, None)  # checked before any stage runs
    _attach_teacher(no_teacher, torch.nn.Linear(1, 1))
    assert no_teacher.stages[0].teacher_model is not None
    with pytest.raises(UserError, match="resnet56"):  # unknown zoo name: close matches
        DistillConfig(teacher="resnet_56x")
    with pytest.raises(UserError, match="alpha must be in"):
        DistillConfig(teacher="resnet56", alpha=1.5)
    with pytest.raises(UserError, match="temperature must be > 0"):
        DistillConfig(teacher="resnet56", temperature=0)
    with pytest.raises(UserError, match="not found"):
        resolve_weights("/nonexistent/teacher.th")
    r = parse_recipe("stages:\n  - prune: {keep: 0.5, finetune_epochs: 0}\n"
                     "  - distill: {teacher: resnet56, teacher_weights: 'shared:w.th', temperature: 3, alpha: 0.5}\n")
    assert isinstance(r.stages[1], Distill) and r.stages[1].config.temperature == 3.0
    with pytest.raises(UserError, match=r"<recipe>:2: .*unknown key 'temprature'"):
        parse_recipe("stages:\n  - distill: {teacher: resnet56, temprature: 3}\n")


def test_teacher_student_class_mismatch_is_a_user_error():
    loss = DistillLoss(torch.nn.Linear(4, 5), temperature=2.0, alpha=0.5)
    with pytest.raises(UserError, match="same classes"):
        loss(None, torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(2, 3))


def test_shared_teacher_weights_load_and_predict(shared):
    """``shared:`` paths resolve under the shared folder; the pretrained ResNet-56 loads strictly
    and is a real teacher on real CIFAR-10 test images (83.20% on the full JPEG test set)."""
    from edgecv.compress.distill import load_teacher
    from edgecv.data import load_dataset
    from edgecv.engine import evaluate

    path = resolve_weights("shared:weights/resnet-cifar10/resnet56-4bfd9763.th")
    assert path == shared / "weights/resnet-cifar10/resnet56-4bfd9763.th"
    teacher = load_teacher("resnet56", "shared:weights/resnet-cifar10/resnet56-4bfd9763.th")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    ds, _ = load_dataset("cifar10", "test", limit=200)
    assert evaluate(teacher, ds)["top1"] > 70.0


@pytest.fixture
def mnist_slice(shared):
    from edgecv.workflows import data_for_model

    ds, _ = data_for_model("lenet_300_100", "mnist", "train", train=True, limit=256)
    return ds


def _teacher_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(123)
    teacher = create_model("lenet_300_100")
    path = save_checkpoint(teacher, tmp_path / "teacher.safetensors")
    return path, {k: v.clone() for k, v in teacher.state_dict().items()}


def test_stage_keeps_masks_and_sharing_and_leaves_teacher_untouched(mnist_slice, tmp_path):
    path, before = _teacher_file(tmp_path)
    torch.manual_seed(0)
    model = create_model("lenet_300_100")
    ctx = Context(model_name="lenet_300_100", train_data=mnist_slice, seed=0)
    Prune(PruneConfig(keep={"ip1": 0.1, "ip2": 0.2}, finetune_epochs=0)).apply(model, ctx)
    Share(ShareConfig(bits={"ip3": 4}, finetune_epochs=0)).apply(model, ctx)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    teacher = create_model("lenet_300_100")
    teacher.load_state_dict(before)
    teacher.train()  # the stage must put it in eval mode
    stage = Distill(DistillConfig(teacher="lenet_300_100", teacher_weights=str(path), temperature=4.0, alpha=0.9,
                                  epochs=2, batch_size=64, lr=0.05), teacher_model=teacher)
    stage.apply(model, ctx)
    params = dict(model.named_parameters())
    for name, mask in ctx.masks.items():
        assert (params[name].detach()[~mask] == 0).all(), name
    for name, sw in ctx.shared.items():
        assert torch.equal(params[name].detach(), sw.codebook[sw.assign]), name
        assert sw.codebook.numel() <= 16
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items()), "the student did not train"
    assert ctx.report["distill"]["retrained"] and ctx.report["distill"]["teacher"] == "lenet_300_100"
    assert not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in teacher.parameters())


def test_stage_loads_teacher_file_is_deterministic_and_alpha_zero_equals_finetune(mnist_slice, tmp_path):
    path, _ = _teacher_file(tmp_path)
    opts = dict(epochs=1, batch_size=64, lr=0.05)

    def run(stage) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = create_model("lenet_300_100")
        ctx = Context(train_data=mnist_slice, seed=3)
        Prune(PruneConfig(keep=0.2, finetune_epochs=0)).apply(model, ctx)
        stage.apply(model, ctx)
        return model.state_dict()

    cfg = DistillConfig(teacher="lenet_300_100", teacher_weights=str(path), temperature=2.0, alpha=0.8, **opts)
    a, b = run(Distill(cfg)), run(Distill(cfg))
    assert all(torch.equal(a[k], b[k]) for k in a), "same inputs and seed -> same weights"
    plain = run(Finetune(FinetuneConfig(**opts)))
    assert any(not torch.equal(a[k], plain[k]) for k in a), "the teacher changed nothing"
    no_soft = run(Distill(DistillConfig(teacher="lenet_300_100", teacher_weights=str(path), alpha=0.0, **opts)))
    for k in plain:
        assert torch.allclose(no_soft[k], plain[k], atol=1e-6), k


def test_two_gloo_processes_distill_and_finetune_to_identical_weights(tmp_path: Path):
    _, teacher = _teacher_file(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("ddp_stage_worker.py")), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    masks = [k for k in a if k.startswith("mask.")]
    assert a.keys() == b.keys() and len(masks) == 3
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k in masks:
        w = a[k.removeprefix("mask.")]
        assert (w[a[k] == 0] == 0).all() and (w[a[k] == 1] != 0).any(), k
    torch.manual_seed(7)
    init = create_model("lenet_300_100").state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in init), "training moved the weights"
    assert not any(torch.equal(teacher[k], a[k]) for k in init)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_running_statistics_while_weights_learn(freeze):
    from torch.utils.data import TensorDataset

    from edgecv.engine import TrainConfig, train

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    stats = (net[1].running_mean.clone(), net[1].running_var.clone(), int(net[1].num_batches_tracked))
    w0, g0 = net[0].weight.detach().clone(), net[1].weight.detach().clone()
    data = TensorDataset(torch.randn(32, 3, 8, 8) * 3 + 1, torch.randint(0, 2, (32,)))
    train(net, data, TrainConfig(epochs=1, batch_size=8, lr=0.1, freeze_bn=freeze))
    same = torch.equal(net[1].running_mean, stats[0]) and torch.equal(net[1].running_var, stats[1]) \
        and int(net[1].num_batches_tracked) == stats[2]
    assert same is freeze
    assert not torch.equal(net[0].weight, w0) and not torch.equal(net[1].weight, g0)  # still trained
