"""Seconds per CPU training step of a recipe under variants of it, interleaved.

    python benchmarks/bench_recipe_step.py [--recipe recipes/clsnn_mnist_cpu_plif.yaml]
        [--case NAME KEY=VALUE ...] ... [--steps 10] [--rounds 5] [--threads 2]
        [--floor] [--json benchmarks/results/recipe_step_cpu.json]

Every ``--case`` is the recipe with its ``--set`` overrides (none: the recipe
as it is). Each case's model, loss and optimizer are built as the engine
builds them (``build_run``) on one fixed random batch of the recipe's batch
size, with freed memory kept in the process as ``sj-ext train`` does on a CPU
(and compiled as the engine compiles it where a case sets ``train.compile``);
after 3 untimed steps, every round times ``--steps`` optimizer steps (forward,
loss, backward, step, ``reset_net``) of each case in turn, and a case's figure
is its least mean over the rounds: a noisy machine slows every case alike.
Default cases: the CPU CL-SNN headline with SpikingJelly's ``ParametricLIFNode``
(``recipes/clsnn_mnist_cpu_plif.yaml`` as it stands) and with its equivalent on the
fused CPU backend, what ``recipes/clsnn_mnist_cpu.yaml`` runs (``adaptive_lif`` with a
fixed threshold and a learnable tau, ``backend: cpu``; equal values and gradients:
tests/test_fused_lif_cpu.py).

``--floor`` adds the first case with every spiking neuron replaced by
``nn.Identity``: not a network anyone trains, but the least a step of this
net can take with the neurons free (the convolutions, BatchNorm, the fully
connected layers, pooling, dropout, the loss and the optimizer do the same
work on real-valued inputs as on spikes), which bounds what any neuron
backend can gain.
"""

import argparse
import json
import os
import platform
import time

import torch
from spikingjelly.activation_based.functional import reset_net
from spikingjelly.activation_based.neuron import BaseNode

from sj_ext.app.engine.build import build_run, time_major_input
from sj_ext.app.engine.compiled import compile_model
from sj_ext.app.engine.host_memory import keep_freed_memory
from sj_ext.app.recipe import load_recipe

#: the headline's PLIF options, as ``adaptive_lif`` takes them
PLIF_ON_CPU = [
    "neuron.name=adaptive_lif",
    "neuron.backend=cpu",
    "neuron.args={tau: 2.0, threshold: fixed, learnable_tau: true, decay_input: true, "
    "v_reset: 0.0, detach_reset: true}",
]
DEFAULT_CASES = [
    ["sj.ParametricLIFNode"],
    ["PLIF-equivalent[cpu]", *PLIF_ON_CPU],
    ["sj.ParametricLIFNode, compiled", "train.compile=inductor"],
    ["PLIF-equivalent[cpu], compiled", *PLIF_ON_CPU, "train.compile=inductor"],
]


def free_neurons(model: torch.nn.Module) -> None:
    """Replace every spiking neuron of ``model`` by ``nn.Identity`` (``--floor``)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseNode):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, torch.nn.Identity())


def build(recipe_path: str, overrides: list[str], floor: bool = False):
    """The run's step function on a fixed batch (``floor``: with the neurons free)."""
    recipe = load_recipe(recipe_path, overrides)
    torch.manual_seed(0)
    run = build_run(recipe, torch.device("cpu"))
    if floor:
        free_neurons(run.model)
    run.model.train()
    d = recipe["data"]
    x = torch.rand(d["batch_size"], run.data.in_channels, 28, 28)
    y = torch.randint(0, run.data.num_classes, (d["batch_size"],))
    model = run.model
    if recipe["train"]["compile"]:  # as the engine compiles it: whole, before the steps
        example = time_major_input(x, recipe, run.data)
        model, seconds = compile_model(model, recipe["train"]["compile"], example, reset_net)
        print(f"{overrides}: compiled in {seconds:.0f} s", flush=True)

    def step():
        loss = run.loss(model(time_major_input(x, recipe, run.data)), y)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        reset_net(run.model)

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/clsnn_mnist_cpu_plif.yaml")
    p.add_argument("--case", nargs="+", action="append", metavar="NAME [KEY=VALUE]")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--floor", action="store_true", help="add the first case, neurons free")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()
    specs = args.case or DEFAULT_CASES
    cases = {name: build(args.recipe, overrides) for name, *overrides in specs}
    if args.floor:
        name, *overrides = specs[0]
        specs = [*specs, [f"{name}, neurons free (floor)", *overrides]]
        cases[specs[-1][0]] = build(args.recipe, overrides, floor=True)
    for step in cases.values():
        for _ in range(3):
            step()
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, step in cases.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
    first = next(iter(best.values()))
    for name, seconds in best.items():
        print(f"{name:30s} {seconds:.3f} s/step  x{seconds / first:.2f}", flush=True)
    if args.json:
        result = {
            "recipe": args.recipe,
            "cases": {name: overrides for name, *overrides in specs},
            "seconds_per_step": best,
            "threads": args.threads,
            "load_average": os.getloadavg(),
            "steps": args.steps,
            "rounds": args.rounds,
            "keep_freed_memory": kept,
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
