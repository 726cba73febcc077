r"""Training monitors: what the papers plot, recorded for your own runs.

A :class:`Monitor` watches a network (and optionally its loss) on sampled
training batches and appends one JSON record per sampled batch to
``OUT/monitor/<name>.jsonl``. Which layers it watches it finds by type:
every SpikingJelly ``BaseNode`` (the sj_ext neurons included) is a layer;
nothing depends on a recipe's names. The monitors (:data:`MONITORS`):

``firing_rate``
    per layer and time step, :math:`r_t = \mathrm{mean}(s_t)` over the batch
    and every neuron of the layer (``layers: {name: [r_0 .. r_{T-1}]}``).
``threshold``
    per layer and step, the threshold used in training :math:`V_{th}(t)`
    (``train``), the running threshold :math:`\bar V_{th}[t]` (``running``),
    :math:`\sigma_t = \mathrm{std}(h_t)` (``sigma``) and the surrogate width
    :math:`a_t` (``width``) of the sj_ext neurons
    (:class:`~sj_ext.neuron.RunningThresholdLIFBase`; per-channel values are
    averaged over channels); for other neurons the fixed ``v_threshold``.
``grad_reach``
    DS-ATGO's analysis: per layer and step, the fraction of neurons whose
    surrogate gradient is not (practically) zero,

    .. math::
        \rho_t = \mathrm{mean}\big(\, g'(z_t) > \varepsilon\, g'(0) \,\big),
        \qquad z_t = h_t - V_{th}(t),

    with :math:`g'` the layer's surrogate derivative
    (:func:`sj_ext.functional.adaptive_lif.surrogate_derivative`, the same
    function the backward pass uses) and :math:`\varepsilon` = ``reach_eps``
    (default 0.01, relative to the peak). For a surrogate of finite support,
    e.g. the rectangle :math:`g'(z) = \frac{1}{a_t}\mathbb 1[|z| < a_t/2]`, any
    :math:`\varepsilon \in (0, 1)` counts exactly the non-zero gradients,
    :math:`|h_t - V_{th}(t)| < a_t/2` (``reach_eps = 0``: exactly :math:`g' > 0`
    for any surrogate); for one of infinite support (sigmoid, atan) it counts
    the neurons whose gradient is at least that fraction of the peak. :math:`z_t` is read
    where the neuron calls its surrogate (a forward hook on the surrogate
    module); a SpikingJelly neuron whose fused kernel never calls it is re-run
    once, without gradient, through its own functional step with a recording
    surrogate (SpikingJelly's torch reference path); an sj_ext neuron run by
    the fused CuPy kernels is re-run through its torch functions.
``group_rate``
    for grouped neurons (anything with ``grid_for``/``groups``/``window``, e.g.
    :class:`~sj_ext.neuron.DilatedWindowLIF`): the firing rate of every group
    and step, ``rate [T][G]`` (groups in row-major grid order).
``curriculum``
    CL-SNN's analysis, from a loss exposing ``last_loss`` :math:`\ell_i`,
    ``last_sigma`` :math:`\sigma^*_i` and ``last_tau`` :math:`\tau`
    (:class:`~sj_ext.loss.ConfidenceAwareLoss`): the per-sample pairs, and the
    easy (:math:`\ell_i < \tau`, so :math:`\sigma^*_i > 1`) vs hard split:
    counts, mean :math:`\sigma^*` of each, and the share of the total weight
    on easy samples :math:`\sum_{easy}\sigma^*_i / \sum_i \sigma^*_i`. Per
    class (``classes``, from the targets and outputs the loss was called with):
    sample count, weight share :math:`\sum_{i \in c}\sigma^*_i / \sum_i
    \sigma^*_i`, that share over the class's sample share (``weight_ratio``; 1
    = what plain averaging gives), mean :math:`\sigma^*` and the batch accuracy.
    :meth:`Monitor.class_warnings` turns an epoch's samples into collapse
    warnings (:mod:`sj_ext.app.class_health`).
``energy``
    once per epoch, synaptic operations and energy per inference of the SNN
    beside the same network as an ANN (:func:`sj_ext.app.energy.estimate_energy`)
    on the first test samples; written by :meth:`Monitor.epoch_end`.

Records: ``{"epoch": e (1-based), "batch": i (0-based), "progress": e - 1 +
i / n_batches, "layers": {...}, "kinds": {layer: class name}}`` (``energy``:
``{"epoch": e, ...}``); layers are named as ``model.named_modules()`` names
them (``conv_fc.2``; ``""`` when the model is the neuron itself). Files
are append-only, one line per record, flushed and fsynced; a crash mid-line
leaves a partial last line that :func:`read_records` ignores (it skips any
other damaged line with a warning naming file and line), and
:meth:`Monitor.keep_epochs` (called on ``--resume``) rewrites each file
atomically without the records of epochs that will run again.

Cost: nothing when no :class:`Monitor` exists; hooks are attached only for
the sampled batches (every ``every``-th batch of an epoch, its first
included) and removed after them. Monitors read and never change the run:
a run with monitors trains to bit-identical weights.

Example::

    mon = Monitor(net, loss=criterion, every=10, out_dir="runs/x/monitor")
    for i, (x_seq, y) in enumerate(loader):
        with mon.sample(epoch, i, len(loader)):   # a no-op unless i % 10 == 0
            loss = criterion(net(x_seq), y)
            loss.backward()
        optimizer.step()
        functional.reset_net(net)
"""

from ..runfiles import MONITORS, MonitorFileWarning, read_records
from .hooks import Monitor

__all__ = ["MONITORS", "Monitor", "read_records", "MonitorFileWarning"]
