import os
import subprocess
import sys

import pytest
import yaml
from helpers import QUICKSTART, ROOT

from sj_ext.app.cli import main
from sj_ext.app.recipe import RecipeError, apply_overrides, flatten, load_recipe, resolve


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
        (lambda r: r["data"].update(T=0), "data.T: must be >= 1 and at most MAX_T = 1024, got 0"),
        (
            lambda r: r["data"].update(T=100000),
            "data.T: must be >= 1 and at most MAX_T = 1024, got 100000",
        ),
        (lambda r: r["optim"].update(lr=0), "optim.lr: must be a finite number > 0, got 0"),
        (lambda r: r["optim"].update(lr=-0.1), "optim.lr: must be a finite number > 0, got -0.1"),
        (
            lambda r: r["optim"].update(lr=float("inf")),
            "optim.lr: must be a finite number > 0, got inf",
        ),
        (
            lambda r: r["optim"].update(lr=float("nan")),
            "optim.lr: must be a finite number > 0, got nan",
        ),
        (
            lambda r: r["train"].update(grad_clip=-1),
            "train.grad_clip: must be > 0 or null (no clipping), got -1",
        ),
        (lambda r: r.update(seed=-1), "seed: must lie in [0, 2**32), got -1"),
        (lambda r: r["data"].update(num_workers=-1), "data.num_workers: must be >= 0, got -1"),
        (
            lambda r: r["train"].update(limit_train_batches=-1),
            "train.limit_train_batches: must be >= 1 or null (all), got -1",
        ),
        (
            lambda r: r["train"].update(limit_eval_batches=0),
            "train.limit_eval_batches: must be >= 1 or null (all), got 0",
        ),
        (
            lambda r: r["data"]["args"].update(test_fraction=1.5),
            "data.args.test_fraction: must lie in (0, 1), got 1.5",
        ),
        (
            lambda r: r["data"].update(name="cifar10", args={"crop_padding": -4}),
            "data.args.crop_padding: must be null or >= 0",
        ),
        (
            lambda r: r["data"].update(name="nmnist", args={"split_by": "count"}),
            "data.args.split_by: must be one of ('number', 'time'), got 'count'",
        ),
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


def test_a_misspelt_required_key_is_one_problem_not_two(tmp_path, capsys):
    r = quickstart()
    r["data"]["batchsize"] = r["data"].pop("batch_size")
    r["train"]["epoch"] = r["train"].pop("epochs")
    assert main(["validate", str(write(tmp_path, r))]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines  # one line per misspelt key, no "missing" line beside it
    assert "data.batchsize: unknown key (did you mean 'batch_size'?)" in lines[0]
    assert "train.epoch: unknown key (did you mean 'epochs'?)" in lines[1]
    del r["data"]["batchsize"]  # gone, not misspelt: still missing
    assert main(["validate", str(write(tmp_path, r))]) == 2
    assert "data.batch_size: missing required key" in capsys.readouterr().err


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


def test_train_refuses_a_bad_value_before_touching_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(QUICKSTART), "--set", "train.grad_clip=-1", "--out", str(out)])
    assert code == 2
    assert "train.grad_clip: must be > 0 or null (no clipping), got -1" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- hostile YAML
HOSTILE = {  # what the file holds, what validate says
    "oversized": lambda: (b"seed: [" + b"1," * 150_000 + b"1]", "larger than 262144 bytes"),
    "many values": lambda: (
        ("seed: [" + ",".join(["1"] * 12_000) + "]").encode(),
        "more than 10000 values once aliases are expanded (near line 1)",
    ),
    "deep": lambda: (
        ("seed: " + "[" * 200 + "]" * 200).encode(),
        "nested more than 64 levels deep (line 1)",
    ),
    "not UTF-8": lambda: (b"seed: 0\ndata: \xff\xfe\n", "not UTF-8 text (byte 0xff at offset 14)"),
    "recursive": lambda: (
        b"seed: 0\ndata: &x [1, *x]\n",
        "alias *x at line 2 refers to a collection that contains it",
    ),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_yaml_is_refused_with_a_clear_message(tmp_path, capsys, kind):
    content, message = HOSTILE[kind]()
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 2
    assert f"{path}: refused: {message}" in capsys.readouterr().err


def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path, capsys):
    text = QUICKSTART.read_text().replace("  lr: 0.005\n", "  lr: 0.005\n  lr: 0.1\n")
    path, out = tmp_path / "twice.yaml", tmp_path / "run"
    path.write_text(text)
    line = text.splitlines().index("  lr: 0.005") + 1
    assert main(["train", str(path), "--set", "train.device=cpu", "--out", str(out)]) == 2
    expected = f"{path}: refused: duplicate key 'lr' at lines {line} and {line + 1}"
    assert expected in capsys.readouterr().err
    assert not out.exists()
    assert main(["validate", str(path), "--recipe-only"]) == 2
    assert expected in capsys.readouterr().err
    with pytest.raises(RecipeError, match="duplicate key 'a' twice at line 1"):
        apply_overrides(quickstart(), ["loss.args={a: 1, a: 2}"])


def test_a_grid_file_with_a_key_given_twice_exits_2(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("seeds: [0]\nconfigurations: []\nseeds: [1]\n")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "runs")]) == 2
    assert "duplicate key 'seeds' at lines 1 and 3" in capsys.readouterr().err


def test_merged_keys_may_be_overridden_as_yaml_intends():
    from sj_ext.app.safe_yaml import load

    texts = [  # the second merges a mapping before that mapping's own entries are read
        "base: &b {x: 1, y: 2}\nrun:\n  <<: *b\n  x: 3\nlater: {<<: *b}\n",
        "a: {inner: &b {<<: {x: 1}, x: 2}}\nd: {<<: *b, y: 3}\n",
    ]
    for text in texts:
        assert load(text) == yaml.safe_load(text)
    assert load(texts[0])["run"] == {"x": 3, "y": 2}


def alias_bomb(levels: int, width: int) -> str:
    """'Billion laughs': level i lists level i - 1 ``width`` times; width**levels leaves."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "seed: 0\ndata:\n" + "\n".join(f"  {line}" for line in lines) + "\n"


def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    """10**10 leaves once expanded. The parser runs under a 1 GiB address-space limit in a
    process without torch, so a guard that failed would end in MemoryError or in 'parsed'."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(10, 10))
    limited = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from sj_ext.app import safe_yaml; "
        "data = safe_yaml.load(safe_yaml.read_text(sys.argv[1])); "
        "print('parsed', len(str(data)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", limited, str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert "YamlInputError: more than 10000 values once aliases are expanded" in out.stderr
    assert "parsed" not in out.stdout


def test_validate_refuses_an_alias_bomb(tmp_path, capsys):
    """12**5 = 248,832 values: over the limit, yet harmless should the guard fail."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(5, 12))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: refused: more than 10000 values once aliases are expanded (near line" in err


def test_an_override_value_is_bounded_too():
    with pytest.raises(RecipeError, match="--set seed: cannot parse value .* nested more than 64"):
        apply_overrides(quickstart(), ["seed=" + "[" * 100 + "]" * 100])


# ----------------------------------------------------------------- command line, machine
def test_version(capsys):
    from sj_ext import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"sj-ext {__version__}\n"


@pytest.mark.parametrize("how", ["a file in the way", "read-only"])
def test_an_unwritable_out_folder_is_named(tmp_path, capsys, monkeypatch, how):
    import errno
    import tempfile

    out = tmp_path / "run"
    if how == "a file in the way":
        (tmp_path / "file").write_text("")
        out, reason = tmp_path / "file" / "run", "Not a directory"
    else:  # a real read-only folder cannot be made here (root writes anywhere): the OS's error

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
        reason = os.strerror(errno.EROFS)
    code = main(["train", str(QUICKSTART), "--set", "train.device=cpu", "--out", str(out)])
    assert code == 2
    assert f"sj-ext train: cannot write into the folder {out}: {reason}" in capsys.readouterr().err


def test_validate_names_what_this_machine_lacks(tmp_path, capsys, monkeypatch):
    import importlib.util

    import torch

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "cupy" else real_find_spec(n, *a)
    )
    sets = ["--set", "train.device=cuda", "--set", "neuron.backend=cupy"]
    assert main(["validate", "--strict", str(QUICKSTART), *sets]) == 2
    err = capsys.readouterr().err
    assert f"{QUICKSTART}: train.device: 'cuda', but this machine has no CUDA device" in err
    assert f"{QUICKSTART}: neuron.backend: 'cupy' needs CuPy, not installed here: pip" in err
    assert f"{QUICKSTART}: neuron.backend: 'cupy' runs on CUDA only" in err
    assert main(["validate", str(QUICKSTART), *sets, "--recipe-only"]) == 0
    assert f"{QUICKSTART}: ok" in capsys.readouterr().out


def test_validate_says_the_dataset_files_are_missing_as_the_builder_would(tmp_path, capsys):
    from sj_ext.app.components import DATASETS
    from sj_ext.app.data.files import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError) as built:
        DATASETS.build("mnist", root=str(tmp_path), T=1)
    sets = ["--set", "data.name=mnist", "--set", "data.args={}", "--set", f"data.root={tmp_path}"]
    assert main(["validate", "--strict", str(QUICKSTART), *sets]) == 2
    err = capsys.readouterr().err
    assert f"{QUICKSTART}: data.root: {built.value}" in err
    assert "missing MNIST/raw/train-images-idx3-ubyte" in err
    for name in ("train", "t10k"):  # the files in place: validate passes without reading them
        for kind in ("images-idx3", "labels-idx1"):
            file = tmp_path / "MNIST" / "raw" / f"{name}-{kind}-ubyte"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(b"")
    assert main(["validate", str(QUICKSTART), *sets]) == 0
    fetch = ["--set", f"data.root={tmp_path / 'empty'}", "--set", "data.args.download=true"]
    assert main(["validate", str(QUICKSTART), *sets[:4], *fetch]) == 0  # train will fetch them


REGISTERED = {
    "DATASETS": [
        "cifar10",
        "cifar100",
        "cifar10dvs",
        "digits",
        "dvsgesture",
        "fashion_mnist",
        "imagenet",
        "mnist",
        "nmnist",
        "tinyimagenet",
    ],
    "MODELS": [
        "grouping_cnn",
        "grouping_rnn",
        "parametric_lif_net",
        "resnet18",
        "resnet19",
        "resnet34",
        "sew_resnet_small",
        "small_cnn",
        "vggsnn",
    ],
    "NEURONS": ["adaptive_lif", "dilated_window_lif", "lif", "plif"],
    "SURROGATES": [
        "atan",
        "dynamic_atan",
        "dynamic_rect",
        "dynamic_sigmoid",
        "piecewise_quadratic",
        "rect",
        "sigmoid",
    ],
    "LOSSES": ["ce", "confidence_aware", "mse", "tet"],
    "OPTIMIZERS": ["adam", "adamw", "sgd"],
    "SCHEDULES": ["constant", "cosine"],
}


@pytest.mark.parametrize("module", ["sj_ext.app.engine", "sj_ext.app.recipe"])
def test_importing_the_engine_or_the_recipes_fills_every_registry(module, run_python):
    code = (
        f"import json, {module}\n"
        "from sj_ext.app import registry\n"
        f"print(json.dumps({{n: getattr(registry, n).names() for n in {list(REGISTERED)}}}))"
    )
    assert yaml.safe_load(run_python(code)) == REGISTERED
