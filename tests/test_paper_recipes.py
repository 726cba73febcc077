"""Every experiment of the three papers is a recipe that validates and trains (a few steps here,
on small files in the real formats, network blocked) through the ``sj-ext`` command."""

import json

import pytest
from helpers import RECIPES, fixtures

from sj_ext.app.cli import main
from sj_ext.app.recipe import load_recipe

# no download, and torchvision accepts our random CIFAR files (fixtures of tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_network", "cifar_files_without_md5")


# recipe -> what the paper fixes: dataset, model, neuron, loss (and its threshold), T
PAPERS = {
    "clsnn_mnist": ("mnist", "parametric_lif_net", "plif", "confidence_aware", "fixed", 8),
    "clsnn_mnist_cpu_plif": ("mnist", "parametric_lif_net", "plif", "confidence_aware", "fixed", 4),
    "clsnn_mnist_cpu": (
        "mnist",
        "parametric_lif_net",
        "adaptive_lif",
        "confidence_aware",
        "fixed",
        4,
    ),
    "clsnn_mnist_cpu_c32": (
        "mnist",
        "parametric_lif_net",
        "adaptive_lif",
        "confidence_aware",
        "fixed",
        4,
    ),
    "clsnn_fashion_mnist": (
        "fashion_mnist",
        "parametric_lif_net",
        "plif",
        "confidence_aware",
        "fixed",
        8,
    ),
    "clsnn_cifar10": ("cifar10", "parametric_lif_net", "plif", "confidence_aware", "ema", 8),
    "clsnn_nmnist": ("nmnist", "parametric_lif_net", "plif", "confidence_aware", "ema", 10),
    "clsnn_cifar10dvs": (
        "cifar10dvs",
        "parametric_lif_net",
        "plif",
        "confidence_aware",
        "fixed",
        20,
    ),
    "clsnn_dvsgesture": (
        "dvsgesture",
        "parametric_lif_net",
        "plif",
        "confidence_aware",
        "ema",
        20,
    ),
    "dsatgo_cifar10": ("cifar10", "resnet19", "adaptive_lif", "ce", None, 2),
    "dsatgo_cifar100": ("cifar100", "resnet19", "adaptive_lif", "ce", None, 2),
    "dsatgo_cifar10dvs": ("cifar10dvs", "vggsnn", "adaptive_lif", "tet", None, 10),
    "dsatgo_imagenet": ("imagenet", "resnet18", "adaptive_lif", "ce", None, 4),
    "dsatgo_mnist_cpu": ("mnist", "sew_resnet_small", "adaptive_lif", "ce", None, 2),
    "grouping_cifar10": ("cifar10", "grouping_cnn", "dilated_window_lif", "ce", None, 1),
    "grouping_cifar100": ("cifar100", "grouping_cnn", "dilated_window_lif", "ce", None, 1),
    "grouping_mnist_cpu": ("mnist", "grouping_cnn", "dilated_window_lif", "ce", None, 1),
    "grouping_rnn_cifar100": ("cifar100", "grouping_rnn", "dilated_window_lif", "ce", None, 1),
    "grouping_tinyimagenet": (
        "tinyimagenet",
        "grouping_cnn",
        "dilated_window_lif",
        "ce",
        None,
        1,
    ),
}


def test_every_paper_experiment_has_a_recipe():
    found = {p.stem for p in RECIPES.glob("*.yaml")} - {"digits_quickstart"}
    assert found == set(PAPERS)


def test_the_30_minute_cpu_recipe_is_the_headline_at_32_channels():
    """recipes/clsnn_mnist_cpu_c32.yaml differs from the CPU headline in the conv width only,
    so its figure against the headline's is what halving the width costs."""
    narrow = load_recipe(RECIPES / "clsnn_mnist_cpu_c32.yaml")
    headline = load_recipe(RECIPES / "clsnn_mnist_cpu.yaml")
    assert (narrow["model"]["args"]["channels"], headline["model"]["args"]["channels"]) == (32, 64)
    assert narrow == load_recipe(RECIPES / "clsnn_mnist_cpu.yaml", ["model.args.channels=32"])


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_recipe_validates_and_carries_the_papers_settings(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    dataset, model, neuron, loss, tau, T = PAPERS[name]
    assert recipe["data"]["name"] == dataset and recipe["data"]["T"] == T
    assert recipe["model"]["name"] == model and recipe["neuron"]["name"] == neuron
    assert recipe["loss"]["name"] == loss and recipe["loss"]["args"].get("tau") == tau
    text = (RECIPES / f"{name}.yaml").read_text()
    assert "# Reported:" in text  # the paper's figure, or where it is missing


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("papers")
    fixtures.write_mnist(root, n_train=4, n_test=2)
    fixtures.write_mnist(root, "FashionMNIST", n_train=4, n_test=2)
    fixtures.write_cifar(root, 10, n_train=5, n_test=2)
    fixtures.write_cifar(root, 100, n_train=4, n_test=2)
    fixtures.write_tinyimagenet(root / "tinyimagenet", train_per_class=2, val_per_class=1)
    fixtures.write_imagenet(root / "imagenet", per_class=2)
    fixtures.write_nmnist(root, train_per_class=1, test_per_class=1)
    fixtures.write_dvsgesture(root, train_users=(1,), labels=(0, 1, 2, 3))
    fixtures.write_cifar10dvs(root)  # 9 + 1 recordings per class
    return root


# what every run shrinks: 2 batches of 2 samples, one test batch, at most 2 steps
SHORT = [
    "data.batch_size=2",
    "data.num_workers=0",
    "train.epochs=1",
    "train.limit_train_batches=2",
    "train.limit_eval_batches=1",
    "train.device=cpu",
]
# and smaller inputs or widths where the recipe's are large
SMALLER = {
    "dsatgo_imagenet": ["data.args.image_size=64", "data.args.resize=72"],
    "dsatgo_cifar10dvs": ["data.args.size=16", "model.args.image_size=16"],
    **{f"clsnn_{d}": ["model.args.channels=32"] for d in ("cifar10", "cifar10dvs", "dvsgesture")},
}


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_recipe_trains_a_few_steps(name, data_root, tmp_path, capsys):
    dataset, *_, T = PAPERS[name]
    root = data_root / dataset if dataset in ("tinyimagenet", "imagenet") else data_root
    sets = [*SHORT, *SMALLER.get(name, []), f"data.root={root}", f"data.T={min(T, 2)}"]
    out = tmp_path / "run"
    argv = ["train", str(RECIPES / f"{name}.yaml"), "--out", str(out)]
    status = main([*argv, *[a for s in sets for a in ("--set", s)]])
    assert status == 0, capsys.readouterr().err
    (epoch,) = json.loads((out / "metrics.json").read_text())["epochs"]
    assert epoch["train_samples"] == 4 and epoch["test_samples"] == 2
    assert 0 <= epoch["test_acc"] <= 1
