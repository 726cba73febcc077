"""Quickstart: a DS-ATGO spiking CNN on scikit-learn's 8x8 digits (shipped with the package).

    python examples/quickstart_digits.py [--epochs 8] [--T 4]

Direct encoding (the image repeated T times), conv3x3-32 + BN + AdaptiveThresholdLIF,
max-pool, a linear read-out averaged over T, label-smoothed cross-entropy
(DS-ATGO's training loss). Runs in well under a minute on a laptop CPU.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from spikingjelly.activation_based import functional, layer

from sj_ext.neuron import AdaptiveThresholdLIF


def digits(seed: int):
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
    y = torch.tensor(data.target)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def build(channels: int = 32) -> nn.Module:
    net = nn.Sequential(
        layer.Conv2d(1, channels, 3, padding=1, bias=False),
        layer.BatchNorm2d(channels),
        AdaptiveThresholdLIF(tau=1.25, decay_input=False, learnable_tau=True),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Linear(channels * 16, 10),
    )
    functional.set_step_mode(net, "m")
    return net


def logits(net: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
    out = net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)  # [T, N, 10] -> [N, 10]
    functional.reset_net(net)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    x_train, x_test, y_train, y_test = digits(args.seed)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x_train))
        total = correct = 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i : i + args.batch_size]
            out = logits(net, x_train[idx], args.T)
            loss = F.cross_entropy(out, y_train[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += len(idx)
            correct += (out.argmax(1) == y_train[idx]).sum().item()
        net.eval()
        with torch.no_grad():
            test_acc = (logits(net, x_test, args.T).argmax(1) == y_test).float().mean().item()
        node = net[2]
        print(
            f"epoch {epoch + 1}: train acc {correct / total:.3f}  test acc {test_acc:.3f}  "
            f"running thresholds {[round(v, 3) for v in node.running_threshold.tolist()]}"
        )


if __name__ == "__main__":
    main()
