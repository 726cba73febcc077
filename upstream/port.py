"""Lay sj_ext's plugin into a copy of SpikingJelly's package, with its tests, generated.

    python upstream/port.py SPIKINGJELLY_DIR [--tests TEST_DIR]

``SPIKINGJELLY_DIR`` is a copy of the installed ``spikingjelly`` package (the folder
holding ``activation_based/``); never point it at the installed one. The port:

* copies the plugin's modules (:data:`PORTED`: the option lists, the surrogates,
  the torch functions, the neurons, the losses, the fused kernels and their
  sources) into ``activation_based/sj_methods/`` as they are: they import each
  other relatively, so nothing changes but SpikingJelly's own absolute imports
  (``from spikingjelly.activation_based import surrogate``), which become
  relative (``from .. import surrogate``);
* writes ``sj_methods/__init__.py`` (the public names) and, in ``TEST_DIR``
  (default: ``test/activation_based`` beside the package), the ported tests:
  ``test_sj_methods.py``, which compares the ported neurons, surrogate and loss
  against ``sj_methods_reference.pt`` -- outputs and gradients that sj_ext
  computed on the same inputs when the port was written -- and against
  SpikingJelly's own ``LIFNode`` / ``ParametricLIFNode`` where they coincide,
  plus a ``conftest.py`` that makes ``sj_ext`` unimportable, so the ported code
  is shown to stand alone.

One source of truth: the port is generated from the plugin's files every
time; nothing in it is kept by hand. ``tests/test_upstream_port.py`` runs it
into a temporary copy in CI.
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "sj_ext"
#: the plugin's files and folders that go upstream (the models, the application and the
#: package's ``__init__`` stay sj_ext's)
PORTED = ("options.py", "surrogate.py", "functional", "neuron", "loss", "fused_lif")
#: the subpackage of ``spikingjelly/activation_based`` the port lays them in
SUBPACKAGE = "sj_methods"
_SJ_IMPORT = re.compile(r"^(\s*)from spikingjelly\.activation_based(\.[\w.]+)? import ", re.M)

INIT = '''"""sj_ext's methods (DS-ATGO's adaptive threshold, multi-receptive-field grouping,
CL-SNN's curriculum loss, TET) ported from the sj_ext plugin by upstream/port.py."""

from .loss import ConfidenceAwareLoss, FiringRateMSE, TETLoss, TimeMeanCrossEntropy
from .neuron import AdaptiveThresholdLIF, DilatedWindowLIF, set_backend
from .surrogate import DynamicATan, DynamicRect, DynamicSigmoid
'''

CONFTEST = '''"""The ported tests run without sj_ext: importing it fails here."""

import sys


class _NoSjExt:
    def find_spec(self, name, path=None, target=None):
        if name == "sj_ext" or name.startswith("sj_ext."):
            raise ModuleNotFoundError(f"No module named {name!r} (the port stands alone)")
        return None


sys.meta_path.insert(0, _NoSjExt())
for _name in [n for n in sys.modules if n == "sj_ext" or n.startswith("sj_ext.")]:
    del sys.modules[_name]
'''

TESTS = '''"""The ported sj_ext methods inside SpikingJelly's tree (written by upstream/port.py).

Each case runs the ported module on the inputs of ``sj_methods_reference.pt``
and must give the outputs and gradients sj_ext gave on them; where the
methods reduce to SpikingJelly's own nodes, they must equal those.
"""

from pathlib import Path

import pytest
import torch

from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based import sj_methods

REFERENCE = torch.load(Path(__file__).with_name("sj_methods_reference.pt"), weights_only=True)


def test_sj_ext_is_not_importable_here():
    with pytest.raises(ImportError):
        import sj_ext  # noqa: F401


def test_the_port_lives_in_spikingjellys_tree():
    assert Path(sj_methods.__file__).parent.parent == Path(neuron.__file__).parent.parent


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_the_ported_methods_give_sj_exts_outputs_and_gradients(case):
    expected = REFERENCE[case]
    got = run_case(case, expected["x"])
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=f"{case}: {key}")


@pytest.mark.parametrize("learnable", [False, True])
def test_the_fixed_threshold_neuron_is_spikingjellys_lif_and_plif(learnable):
    kw = dict(v_reset=0.0, detach_reset=True, step_mode="m", surrogate_function=surrogate.ATan())
    ours = sj_methods.AdaptiveThresholdLIF(
        tau=2.0, threshold="fixed", learnable_tau=learnable, **kw
    )
    ref = neuron.ParametricLIFNode(init_tau=2.0, **kw) if learnable else neuron.LIFNode(2.0, **kw)
    x = torch.randn(5, 3, 20, generator=torch.Generator().manual_seed(1)) * 1.5
    assert torch.equal(ours(x), ref(x))
'''

RUN_CASE = '''

def run_case(case: str, x: torch.Tensor) -> dict:
    """The ported module of ``case`` on ``x``: its outputs and gradients, by name."""
    torch.manual_seed(0)
    x = x.clone().requires_grad_(True)
    if case == "confidence_aware_loss":
        target = torch.arange(x.shape[1]) % x.shape[2]
        loss = sj_methods.ConfidenceAwareLoss(base="ce", tau="fixed")(x, target)
        return {"x": x.detach(), "loss": loss.detach(), "grad_x": torch.autograd.grad(loss, x)[0]}
    node = CASES[case]()
    functional.reset_net(node)
    spikes = node(x)
    weight = torch.linspace(-1, 1, spikes.numel()).view_as(spikes)
    params = [x, *node.parameters()]
    grads = torch.autograd.grad((spikes * weight).sum() + (node.v**2).sum(), params)
    out = {"x": x.detach(), "spikes": spikes.detach(), "v": node.v.detach()}
    out.update({f"grad_{i}": g for i, g in enumerate(grads)})
    out["threshold_seq"] = node.threshold_seq.detach()
    return out


CASES = {
    "adaptive_lif": lambda: sj_methods.AdaptiveThresholdLIF(learnable_tau=True, step_mode="m"),
    "adaptive_lif_atan_soft": lambda: sj_methods.AdaptiveThresholdLIF(
        v_reset=None, surrogate_function=sj_methods.DynamicATan(), step_mode="m"
    ),
    "dilated_window_lif_sine": lambda: sj_methods.DilatedWindowLIF(
        threshold="adaptive", learnable_tau=True, step_mode="m"
    ),
    "dilated_window_lif_block_add": lambda: sj_methods.DilatedWindowLIF(
        window="block", projection="add", step_mode="m"
    ),
}
#: the input shape of each case
SHAPES = {
    "adaptive_lif": (4, 2, 3, 6, 6),
    "adaptive_lif_atan_soft": (4, 2, 3, 6, 6),
    "dilated_window_lif_sine": (4, 2, 3, 6, 6),
    "dilated_window_lif_block_add": (4, 2, 3, 6, 6),
    "confidence_aware_loss": (4, 6, 10),
}
'''


def _relative(text: str, depth: int) -> str:
    """SpikingJelly's absolute ``activation_based`` imports made relative, ``depth`` folders
    below ``activation_based``."""

    def sub(match: re.Match) -> str:
        indent, rest = match.group(1), (match.group(2) or "")[1:]
        return f"{indent}from {'.' * (depth + 1)}{rest} import "

    return _SJ_IMPORT.sub(sub, text)


def port(spikingjelly_dir: Path, test_dir: Path | None = None) -> list[Path]:
    """Write the port into ``spikingjelly_dir`` (a copy) and its tests; the paths written."""
    spikingjelly_dir = Path(spikingjelly_dir)
    if not (spikingjelly_dir / "activation_based" / "neuron").is_dir():
        raise SystemExit(f"{spikingjelly_dir}: not a spikingjelly package (no activation_based/)")
    target = spikingjelly_dir / "activation_based" / SUBPACKAGE
    shutil.rmtree(target, ignore_errors=True)
    written = []
    for name in PORTED:
        source = PLUGIN / name
        files = [source] if source.is_file() else sorted(source.rglob("*"))
        for file in files:
            if file.is_dir() or "__pycache__" in file.parts:
                continue
            out = target / file.relative_to(PLUGIN)
            out.parent.mkdir(parents=True, exist_ok=True)
            if file.suffix == ".py":
                depth = len(file.relative_to(PLUGIN).parts)
                out.write_text(_relative(file.read_text(), depth))
            else:
                shutil.copyfile(file, out)
            written.append(out)
    (target / "__init__.py").write_text(INIT)
    written.append(target / "__init__.py")
    test_dir = Path(test_dir or spikingjelly_dir.parent / "test" / "activation_based")
    test_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("conftest.py", CONFTEST), ("test_sj_methods.py", TESTS + RUN_CASE)):
        (test_dir / name).write_text(text)
        written.append(test_dir / name)
    torch.save(reference(), test_dir / "sj_methods_reference.pt")
    written.append(test_dir / "sj_methods_reference.pt")
    return written


def reference() -> dict:
    """sj_ext's outputs and gradients of every ported test case, on fixed inputs: the same
    ``run_case`` as the ported tests, run with sj_ext's modules in place of the port's."""
    import sj_ext.loss
    import sj_ext.neuron
    import sj_ext.surrogate

    class SjExt:  # the names the ported tests take from sj_methods, from sj_ext
        AdaptiveThresholdLIF = sj_ext.neuron.AdaptiveThresholdLIF
        DilatedWindowLIF = sj_ext.neuron.DilatedWindowLIF
        DynamicATan = sj_ext.surrogate.DynamicATan
        ConfidenceAwareLoss = sj_ext.loss.ConfidenceAwareLoss

    from spikingjelly.activation_based import functional

    scope = {"torch": torch, "functional": functional, "sj_methods": SjExt}
    exec(RUN_CASE, scope)  # noqa: S102  (this module's own text: one definition of the cases)
    generator = torch.Generator().manual_seed(2026)
    cases = {}
    for case, shape in scope["SHAPES"].items():
        x = 1.5 * torch.randn(shape, generator=generator)
        cases[case] = scope["run_case"](case, x)
    return cases


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spikingjelly_dir", type=Path, help="a copy of the spikingjelly package")
    p.add_argument("--tests", type=Path, help="where the ported tests go")
    args = p.parse_args(argv)
    import spikingjelly

    if args.spikingjelly_dir.resolve() == Path(spikingjelly.__file__).parent.resolve():
        raise SystemExit("refusing to write into the installed spikingjelly: port into a copy")
    for path in port(args.spikingjelly_dir, args.tests):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
