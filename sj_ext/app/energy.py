r"""Synaptic operations and energy per inference: an SNN beside the same network as an ANN.

The counts come from SpikingJelly 2.0's operation counters
(``spikingjelly.activation_based.op_counter``), run once on a time-major input
``[T, N, *]``, without gradient, in evaluation mode:

* :math:`\mathrm{MAC}_{SNN}`: multiply-accumulates of the matrix products and
  convolutions whose operands are both non-binary (``MACCounter``): the
  encoding layer fed with real values, and any layer fed with non-binary
  values (e.g. average-pooled spikes);
* :math:`\mathrm{AC}_{SNN}`: synaptic operations (``SynOpCounter``): when an
  operand is binary (spikes), one accumulate per spike and per synapse it
  reaches (spikes x fan-out, padding respected);
* spikes: every spike emitted by a spiking neuron (SpikingJelly ``BaseNode``)
  over the :math:`T` steps;
* :math:`\mathrm{MAC}_{ANN}`: the same layers as an ANN (spiking neurons
  replaced by ReLU, one pass instead of :math:`T`): every matrix product and
  convolution counted densely (output elements x fan-in, whatever the
  values), divided by :math:`T`.

Everything is per inference (divided by :math:`N`), and

.. math::
    E_{SNN} = E_{MAC}\,\mathrm{MAC}_{SNN} + E_{AC}\,\mathrm{AC}_{SNN}, \qquad
    E_{ANN} = E_{MAC}\,\mathrm{MAC}_{ANN}.

Assumptions (written with every estimate): 45 nm CMOS, 32-bit floating point
(Horowitz, ISSCC 2014): :math:`E_{MAC} = 4.6` pJ, :math:`E_{AC} = 0.9` pJ
(other costs can be passed); batch normalisation folded into the preceding layer
(not counted); neuron state updates, bias additions and memory access not
counted (SpikingJelly's ``estimate_simple_energy`` models memory traffic).
"""

import math

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron import BaseNode
from spikingjelly.activation_based.op_counter import (
    BaseCounter,
    DispatchCounterMode,
    MACCounter,
    SynOpCounter,
)

__all__ = ["E_MAC_PJ", "E_AC_PJ", "ASSUMPTIONS", "estimate_energy"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
HOROWITZ = " (45 nm CMOS, 32-bit float: Horowitz, ISSCC 2014)"
ASSUMPTIONS = (
    "SNN: MAC for real-valued operands, one AC per spike and synapse (SpikingJelly op_counter)",
    "ANN: the same layers with ReLU for the spiking neurons, one pass, every MAC counted",
    "batch normalisation folded into the preceding layer; neuron updates, biases and "
    "memory access not counted",
)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_aten = torch.ops.aten


def _dense_matmul(args, kwargs, out):
    """``x @ y`` (``mm``/``bmm``): output elements x inner size."""
    return out.numel() * args[0].shape[-1]


def _dense_addmatmul(args, kwargs, out):
    """``bias + x @ y`` (``addmm``/``baddbmm``): the bias is not counted."""
    return out.numel() * args[1].shape[-1]


def _dense_convolution(args, kwargs, out):
    """Weight ``[c_out, c_in / g, *k]`` (``[c_in, c_out / g, *k]`` transposed): each output
    (each input, transposed) element meets ``prod(w.shape[1:])`` weights."""
    x, w, transposed = args[0], args[1], args[6]
    return (x if transposed else out).numel() * math.prod(w.shape[1:])


class _DenseMACCounter(BaseCounter):
    """Multiply-accumulates of every matrix product and convolution, binary operands or not."""

    def __init__(self, ignore_modules):
        super().__init__()
        self.rules = {
            _aten.mm.default: _dense_matmul,
            _aten.bmm.default: _dense_matmul,
            _aten.addmm.default: _dense_addmatmul,
            _aten.baddbmm.default: _dense_addmatmul,
            _aten.convolution.default: _dense_convolution,
        }
        self.ignore_modules = list(ignore_modules)


def _count(model: nn.Module, x_seq: torch.Tensor):
    """``(MAC, SynOp, dense MAC counters, spikes per node)`` of one evaluation-mode run of
    ``model`` on ``x_seq`` without gradient (its training flag restored, its neurons reset
    before and after)."""
    mac, synop, dense = (
        MACCounter(extra_ignore_modules=list(_NORMS)),
        SynOpCounter(extra_ignore_modules=list(_NORMS)),
        _DenseMACCounter(_NORMS),
    )
    spikes = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: spikes.append(float(out.sum())))
        for m in model.modules()
        if isinstance(m, BaseNode)
    ]
    was_training = model.training
    model.eval()
    functional.reset_net(model)
    try:
        with torch.no_grad(), DispatchCounterMode([mac, synop, dense]):
            model(x_seq)
    finally:
        for hook in hooks:
            hook.remove()
        functional.reset_net(model)
        model.train(was_training)
    return mac, synop, dense, spikes


def estimate_energy(
    model: nn.Module, x_seq: torch.Tensor, e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ
) -> dict:
    r"""Operations and energy per inference of ``model`` on ``x_seq`` (``[T, N, *]``).

    The model runs once in evaluation mode without gradient (its training
    flag is restored, ``reset_net`` is called before and after).

    :return: ``{"samples": N, "T": T, "e_mac_pj", "e_ac_pj", "assumptions": [...],
        "snn": {"mac", "ac", "energy_pj", "spikes"}, "ann": {"mac", "energy_pj"},
        "ann_over_snn": E_ANN / E_SNN, "layers": {name: {"snn_mac", "snn_ac", "ann_mac"}}}``;
        counts per inference, ``layers`` the leaf modules with a count
        (names as in ``model.named_modules()``)
    """
    if x_seq.dim() < 2:
        raise ValueError(f"x_seq must be [T, N, *], got shape {tuple(x_seq.shape)}")
    T, N = x_seq.shape[:2]
    mac, synop, dense, spikes = _count(model, x_seq)

    def total(counter, scope="Global"):
        return sum(counter.records[scope].values()) if scope in counter.records else 0

    root = type(model).__name__
    layers = {}
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            scope = f"{root}.{name}"
            counts = (total(mac, scope) / N, total(synop, scope) / N, total(dense, scope) / (T * N))
            if any(counts):
                layers[name] = dict(zip(("snn_mac", "snn_ac", "ann_mac"), counts, strict=True))
    snn_mac, snn_ac, ann_mac = total(mac) / N, total(synop) / N, total(dense) / (T * N)
    e_snn = e_mac_pj * snn_mac + e_ac_pj * snn_ac
    e_ann = e_mac_pj * ann_mac
    return {
        "samples": N,
        "T": T,
        "e_mac_pj": e_mac_pj,
        "e_ac_pj": e_ac_pj,
        "assumptions": [
            f"{e_mac_pj} pJ per MAC, {e_ac_pj} pJ per AC"
            + (HOROWITZ if (e_mac_pj, e_ac_pj) == (E_MAC_PJ, E_AC_PJ) else ""),
            *ASSUMPTIONS,
        ],
        "snn": {"mac": snn_mac, "ac": snn_ac, "energy_pj": e_snn, "spikes": sum(spikes) / N},
        "ann": {"mac": ann_mac, "energy_pj": e_ann},
        "ann_over_snn": e_ann / e_snn if e_snn > 0 else None,
        "layers": layers,
    }
