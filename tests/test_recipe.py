import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sj_ext.cli import main
from sj_ext.recipe import RecipeError, apply_overrides, flatten, load_recipe, resolve

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "digits_quickstart.yaml"


def quickstart() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


def write(tmp_path, recipe, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_quickstart_resolves_with_defaults():
    r = load_recipe(QUICKSTART)
    assert r["data"]["root"] is None and r["train"]["limit_train_batches"] is None
    assert r["optim"]["weight_decay"] == 0.0 and r["train"]["amp"] is None
    assert r["neuron"]["backend"] == "torch"


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            lambda r: r["data"].update(batch_sise=3),
            "data.batch_sise: unknown key (did you mean 'batch_size'?)",
        ),
        (lambda r: r["train"].update(epochs="ten"), "train.epochs: expected int, got str 'ten'"),
        (lambda r: r["train"].update(epochs=True), "train.epochs: expected int, got bool"),
        (lambda r: r["data"].pop("T"), "data.T: missing required key"),
        (
            lambda r: r["data"].update(name="digitz"),
            "data.name: unknown dataset 'digitz' (did you mean 'digits'?)",
        ),
        (
            lambda r: r["model"].update(name="smal_cnn"),
            "model.name: unknown model 'smal_cnn' (did you mean 'small_cnn'?)",
        ),
        (
            lambda r: r["neuron"].update(name="adaptive_lf"),
            "neuron.name: unknown neuron 'adaptive_lf' (did you mean 'adaptive_lif'?)",
        ),
        (
            lambda r: r["loss"].update(name="confidence"),
            "loss.name: unknown loss 'confidence' (did you mean 'confidence_aware'?)",
        ),
        (
            lambda r: r["neuron"]["args"].update(tua=2.0),
            "neuron.args: neuron 'adaptive_lif' takes no argument 'tua' (did you mean 'tau'?)",
        ),
        (
            lambda r: r["train"].update(device="gpu"),
            "train.device: must be one of ['auto', 'cpu', 'cuda'], got 'gpu'",
        ),
        (lambda r: r["optim"].update(lr=None), "optim.lr: expected int or float, got NoneType"),
        (lambda r: r["data"].update(T=0), "data.T: must be >= 1, got 0"),
        (
            lambda r: r["neuron"].update(name="plif", args={}, backend="cupy"),
            "neuron.backend: neuron 'plif' has only the torch backend, got 'cupy'",
        ),
        (lambda r: r.update(optimiser={}), "optimiser: unknown key (did you mean 'optim'?)"),
        (
            lambda r: r["neuron"]["surrogate"].update(name="dynamic_rec"),
            "neuron.surrogate.name: unknown surrogate 'dynamic_rec' (did you mean 'dynamic_rect'?)",
        ),
    ],
)
def test_bad_recipes_name_file_key_and_problem(tmp_path, capsys, edit, expected):
    r = quickstart()
    edit(r)
    path = write(tmp_path, r)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {expected}" in err


def test_validate_good_recipe_and_every_problem_at_once(tmp_path, capsys):
    good = write(tmp_path, quickstart(), "good.yaml")
    r = quickstart()
    r["data"]["batch_sise"] = 3
    r["train"]["epochs"] = "x"
    bad = write(tmp_path, r, "bad.yaml")
    assert main(["validate", str(good)]) == 0
    assert f"{good}: ok" in capsys.readouterr().out
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "batch_sise" in err and "train.epochs" in err


def test_validate_exit_code_from_the_command_line(tmp_path):
    r = quickstart()
    r["model"]["name"] = "nope"
    path = write(tmp_path, r)
    out = subprocess.run(
        [sys.executable, "-m", "sj_ext", "validate", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "model.name: unknown model 'nope'" in out.stderr


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(tmp_path / "absent.yaml")


def test_set_overrides_parse_values_as_yaml():
    r = apply_overrides(
        quickstart(),
        [
            "train.epochs=3",
            "optim.lr=1e-2",
            "train.limit_train_batches=null",
            "neuron.args.stats=channel",
            "data.args={test_fraction: 0.3}",
            "train.device=cpu",
        ],
    )
    assert r["train"]["epochs"] == 3 and r["optim"]["lr"] == 0.01
    assert r["train"]["limit_train_batches"] is None
    assert r["neuron"]["args"]["stats"] == "channel" and r["neuron"]["args"]["tau"] == 1.25
    assert r["data"]["args"] == {"test_fraction": 0.3}
    resolve(r)


@pytest.mark.parametrize(
    "item,match",
    [
        ("train.epoch=3", r"--set train.epoch: unknown key \(did you mean 'epochs'\?\)"),
        ("train.epochs", "expected key.path=value"),
        ("train.epochs.x=1", "epochs is not a mapping"),
    ],
)
def test_bad_set_items(item, match):
    with pytest.raises(RecipeError, match=match):
        apply_overrides(quickstart(), [item])


def test_set_values_are_type_checked(tmp_path):
    with pytest.raises(RecipeError, match="train.epochs: expected int, got float 2.5"):
        load_recipe(QUICKSTART, ["train.epochs=2.5"])


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {}}, "d": 2}) == {"a.b": 1, "a.c": {}, "d": 2}
