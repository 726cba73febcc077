"""Training-step images/s of ResNet19 and VGGSNN per neuron, backend, precision and layout.

    python benchmarks/bench_train.py [--device cuda] [--batch 64] [--steps 20] [--warmup 5]
        [--models resnet19 vggsnn] [--neurons adaptive_lif lif dilated_window_lif sj_lif]
        [--backends torch cupy] [--precisions float32 bfloat16]
        [--layouts contiguous channels_last] [--threads 0] [--compile] [--profile DIR]
        [--out benchmarks/results] [--tag NAME]

    python benchmarks/bench_train.py --device cpu --batch 8 --steps 3 --warmup 1 --tag cpu-2core

One training step is what the engine does per batch: ``reset_net``, forward,
cross-entropy of the time-mean output, backward, an SGD step (momentum 0.9),
on synthetic data of the paper shapes -- ResNet19 (DS-ATGO's CIFAR network)
``[T=2, N, 3, 32, 32]``, VGGSNN (TET's CIFAR10-DVS network) ``[T=10, N, 2,
48, 48]`` (``--T-resnet``, ``--T-vgg``). Neurons: sj_ext's
``adaptive_lif`` (DS-ATGO's AdaptiveThresholdLIF, its defaults), ``lif`` (the
same node with ``threshold='fixed'``: LIF with a fixed threshold),
``dilated_window_lif`` (DilatedWindowLIF, its defaults) and SpikingJelly's
``LIFNode`` (``sj_lif``, torch only: SpikingJelly 2.0's node has no backend
argument); backends ``torch`` and ``cupy`` (sj_ext's fused kernels), ``cupy``
only on CUDA with CuPy installed. Precision ``float32``, or ``bfloat16`` under
``torch.autocast``; layout contiguous or ``channels_last`` (model and input,
as ``train.channels_last``).

Per row: ``images_per_s`` (batch x timed steps / time of the timed steps after
``--warmup`` untimed ones; CUDA events on a GPU, ``time.perf_counter`` on the
CPU), ``step_ms``, ``peak_mem_mb`` (CUDA: ``max_memory_allocated`` over the
timed steps), ``neuron_dtype`` (the dtype the first neuron receives: what
autocast hands the neurons), and ``error`` where a case failed. Writes
``<out>/bench_train_<tag or device name>.json`` and prints a table.
``--compile`` times ``torch.compile(model)`` (default mode; the warm-up steps
compile). ``--profile DIR`` runs one more step per case under
``torch.profiler`` after the warm-up: ``DIR/profile_<case>.json`` (a Chrome
trace) and ``.txt`` (the 40 most expensive ops).
"""

import argparse
import importlib.util
import json
import platform
import re
import time
from itertools import product
from pathlib import Path

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, neuron

from sj_ext.app.components import MODELS
from sj_ext.models.layout import to_channels_last
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

#: model -> (input per step [C, H, W], default T, builder arguments)
NETS = {
    "resnet19": ((3, 32, 32), 2, {}),
    "vggsnn": ((2, 48, 48), 10, {"image_size": 48}),
}
NEURONS = {
    "adaptive_lif": lambda backend: AdaptiveThresholdLIF(step_mode="m", backend=backend),
    "lif": lambda backend: AdaptiveThresholdLIF(threshold="fixed", step_mode="m", backend=backend),
    "dilated_window_lif": lambda backend: DilatedWindowLIF(step_mode="m", backend=backend),
    "sj_lif": lambda backend: neuron.LIFNode(step_mode="m"),
}
#: SpikingJelly 2.0's LIFNode takes no backend argument: its torch code only
TORCH_ONLY = {"sj_lif"}
CLASSES = 10


class Clock:
    """Seconds from ``start()`` to ``stop()``: CUDA events on a GPU, else ``perf_counter``."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def start(self):
        if self.cuda:
            self.begin, self.end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            self.begin.record()
        else:
            self.begin = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            return self.begin.elapsed_time(self.end) / 1e3
        return time.perf_counter() - self.begin


def build_case(model_name, neuron_name, backend, layout, device, T, batch):
    """Model, optimizer and one synthetic batch ``([T, N, C, H, W], labels)``."""
    shape, _, args = NETS[model_name]
    torch.manual_seed(0)
    model = MODELS.get(model_name)(
        num_classes=CLASSES,
        in_channels=shape[0],
        spiking_neuron=lambda **kw: NEURONS[neuron_name](backend),
        **args,
    )
    functional.set_step_mode(model, "m")
    model.to(device)
    x = torch.rand(T, batch, *shape, device=device)
    if layout == "channels_last":
        model, x = to_channels_last(model), to_channels_last(x)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, optimizer, x, y


def neuron_input_dtype(model):
    """``(seen, handle)``: ``seen`` gets the input dtype of the first spiking neuron per forward."""
    first = next(m for m in model.modules() if isinstance(m, neuron.BaseNode))
    seen = []
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    return seen, handle


def run_case(model_name, neuron_name, backend, precision, layout, args, device) -> dict:
    T = args.T_resnet if model_name == "resnet19" else args.T_vgg
    model, optimizer, x, y = build_case(
        model_name, neuron_name, backend, layout, device, T, args.batch
    )
    seen, hook = neuron_input_dtype(model)
    if args.compile:
        model = torch.compile(model)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")

    def step():
        functional.reset_net(model)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = model(x)
            loss = F.cross_entropy(out.mean(0).float(), y)
        loss.backward()
        optimizer.step()

    step()
    hook.remove()
    for _ in range(args.warmup - 1):
        step()
    if args.profile:
        profile_step(step, Path(args.profile), model_name, neuron_name, backend, precision, layout)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    clock = Clock(device)
    clock.start()
    for _ in range(args.steps):
        step()
    seconds = clock.stop()
    row = {
        "images_per_s": args.batch * args.steps / seconds,
        "step_ms": 1e3 * seconds / args.steps,
        "neuron_dtype": str(seen[0]).replace("torch.", ""),
    }
    if device.type == "cuda":
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return {"T": T, **row}


def profile_step(step, out: Path, *case):
    """One more (untimed) step under ``torch.profiler``: a Chrome trace and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    name = "profile_" + "_".join(case)
    out.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(out / f"{name}.json"))
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=40)
    (out / f"{name}.txt").write_text(table)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per case")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (at least 1)")
    p.add_argument("--T-resnet", type=int, default=NETS["resnet19"][1])
    p.add_argument("--T-vgg", type=int, default=NETS["vggsnn"][1])
    p.add_argument("--models", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--neurons", nargs="+", default=list(NEURONS), choices=list(NEURONS))
    p.add_argument("--backends", nargs="+", default=["torch", "cupy"], choices=["torch", "cupy"])
    p.add_argument(
        "--precisions", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"]
    )
    p.add_argument(
        "--layouts",
        nargs="+",
        default=["contiguous", "channels_last"],
        choices=["contiguous", "channels_last"],
    )
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default mode)")
    p.add_argument(
        "--profile", metavar="DIR", help="profile one step per case into DIR (trace + table)"
    )
    p.add_argument("--out", default=str(Path(__file__).with_name("results")))
    p.add_argument("--tag", default=None, help="file name tag (default: the device name)")
    args = p.parse_args()
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1")
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def backends_here(wanted, device) -> tuple[list[str], dict]:
    """The backends that can run on ``device``, and why the others are skipped."""
    skipped = {}
    if "cupy" in wanted and device.type != "cuda":
        skipped["cupy"] = "needs a CUDA device"
    elif "cupy" in wanted and importlib.util.find_spec("cupy") is None:
        skipped["cupy"] = "CuPy is not installed"
    return [b for b in wanted if b not in skipped], skipped


def run_grid(args, device, backends, save):
    """Every case of the grid in turn: print its row, ``save(rows)`` after each."""
    rows = []
    header = f"{'model':9s} {'neuron':19s} {'backend':7s} {'precision':9s} {'layout':13s}"
    print(f"{header} {'img/s':>9s} {'ms/step':>9s} {'MiB':>8s}  neuron dtype")
    grid = product(args.models, args.neurons, backends, args.precisions, args.layouts)
    for values in grid:
        case = dict(zip(("model", "neuron", "backend", "precision", "layout"), values, strict=True))
        if case["backend"] != "torch" and case["neuron"] in TORCH_ONLY:
            continue
        try:
            case.update(run_case(*values, args=args, device=device))
        except Exception as e:  # a failing case is recorded, the others run
            case["error"] = f"{type(e).__name__}: {e}"
        rows.append(case)
        print_row(case)
        save(rows)  # what ran is kept if the run is stopped later
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = device_name(device)
    backends, skipped = backends_here(args.backends, device)
    print(f"{name}; batch {args.batch}, {args.steps} timed steps after {args.warmup}")
    for backend, why in skipped.items():
        print(f"skipping backend {backend}: {why}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    path = out / f"bench_train_{tag}.json"
    meta = {
        "device": name,
        "torch": torch.__version__,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "skipped_backends": skipped,
    }
    run_grid(
        args,
        device,
        backends,
        lambda rows: path.write_text(json.dumps({**meta, "rows": rows}, indent=1)),
    )
    print(f"wrote {path}")


def print_row(case: dict):
    head = (
        f"{case['model']:9s} {case['neuron']:19s} {case['backend']:7s} "
        f"{case['precision']:9s} {case['layout']:13s}"
    )
    if "error" in case:
        print(f"{head} FAILED {case['error'][:200]}", flush=True)
        return
    mem = f"{case['peak_mem_mb']:8.0f}" if "peak_mem_mb" in case else f"{'-':>8s}"
    print(
        f"{head} {case['images_per_s']:9.1f} {case['step_ms']:9.1f} {mem}  {case['neuron_dtype']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
