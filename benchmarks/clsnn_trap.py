"""The CL-SNN firing-rate trap, measured: per-class weight (sigma*) and accuracy over training.

    python benchmarks/clsnn_trap.py --root DATA [--logit-scale 1|10] [--loss clsnn|ce]

Trains SpikingJelly's PLIF MNISTNet (its voting layer outputs firing rates in [0, 1]) on a
fixed subset of the real MNIST (``sj-ext data mnist --root DATA`` writes it) with CL-SNN's
:class:`~sj_ext.loss.ConfidenceAwareLoss` (tau = log C, lambda = 1) or plain cross-entropy,
and records every ``--every`` steps the per-class mean sigma* and weight share of the batch.
Prints the final per-class test accuracy and the per-class sigma* relative to the batch mean,
and writes everything as JSON (default ``benchmarks/results/clsnn_trap_<loss>_s<scale>.json``).
See docs/methods.md, The firing-rate trap (MNIST).
"""

import argparse
import json
import time
from pathlib import Path

import torch
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import parametric_lif_net as plif
from torchvision import datasets

from sj_ext.loss import ConfidenceAwareLoss, TimeMeanCrossEntropy


def _images(root, train: bool, count: int, generator=None):
    split = datasets.MNIST(root, train=train)
    index = torch.randperm(len(split), generator=generator)[:count] if generator else slice(count)
    return split.data[index].float().div(255).unsqueeze(1), split.targets[index]


def _per_class(values, target, reduce):
    return [reduce(values[target == c]) if (target == c).any() else None for c in range(10)]


def _weights(loss_fn, y) -> dict:
    """Per class: mean sigma*, share of the batch's weight, mean sigma* over the batch mean."""
    sigma = loss_fn.last_sigma
    total, mean = float(sigma.sum()), float(sigma.mean())
    return {
        "loss_range": [float(loss_fn.last_loss.min()), float(loss_fn.last_loss.max())],
        "sigma": _per_class(sigma, y, lambda s: float(s.mean())),
        "share": _per_class(sigma, y, lambda s: float(s.sum()) / total),
        "sigma_over_mean": _per_class(sigma, y, lambda s: float(s.mean()) / mean),
    }


@torch.no_grad()
def _predict(net, x, T: int) -> torch.Tensor:
    net.eval()
    pred = []
    for i in range(0, len(x), 500):
        pred.append(net(x[i : i + 500].expand(T, -1, -1, -1, -1)).mean(0).argmax(1))
        functional.reset_net(net)
    return torch.cat(pred)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="folder holding MNIST/raw (torchvision's files)")
    p.add_argument("--loss", choices=("clsnn", "ce"), default="clsnn")
    p.add_argument("--logit-scale", type=float, default=1.0)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train", type=int, default=4800, help="training images (one pass)")
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    x_train, y_train = _images(a.root, True, a.train, torch.Generator().manual_seed(1234))
    x_test, y_test = _images(a.root, False, a.test)
    net = plif.MNISTNet(
        channels=a.channels,
        spiking_neuron=neuron.ParametricLIFNode,
        init_tau=2.0,
        decay_input=True,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(alpha=2.0),
    )
    functional.set_step_mode(net, "m")
    if a.loss == "clsnn":
        loss_fn = ConfidenceAwareLoss("ce", tau="fixed", lam=1.0, logit_scale=a.logit_scale)
    else:
        loss_fn = TimeMeanCrossEntropy(logit_scale=a.logit_scale)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    log, start = [], time.perf_counter()
    order = torch.randperm(len(x_train))
    for step, i in enumerate(range(0, len(x_train) - a.batch + 1, a.batch)):
        idx = order[i : i + a.batch]
        y = y_train[idx]
        loss = loss_fn(net(x_train[idx].expand(a.T, -1, -1, -1, -1)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
        if a.loss == "clsnn" and step % a.every == 0:
            log.append({"step": step, **_weights(loss_fn, y)})
    pred = _predict(net, x_test, a.T)
    per_class = _per_class((pred == y_test).float(), y_test, lambda v: float(v.mean()))
    acc = float((pred == y_test).float().mean())
    print(f"test acc {acc:.4f}; per class {[round(v, 3) for v in per_class]}")
    for record in log:
        ratios = [None if v is None else round(v, 2) for v in record["sigma_over_mean"]]
        print(f"step {record['step']}: sigma*/mean per class {ratios}")
    out = a.json or Path(f"benchmarks/results/clsnn_trap_{a.loss}_s{a.logit_scale:g}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"args": {k: str(v) for k, v in vars(a).items()}, "test_acc": acc}
    result.update(per_class_acc=per_class, seconds=time.perf_counter() - start, log=log)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
