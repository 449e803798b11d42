"""`gantrix.ablation.plan_variants`: leave-one-out, --add and --swap variants, refusals as
rows, and pairing (a variant's seed s starts where the full composition's seed s does)."""
from __future__ import annotations

import pytest
import torch

from gantrix.ablation import Arguments, folder_name, plan_variants, variant_toml
from gantrix.errors import GantrixError, UnknownNameError
from gantrix.recipe import Recipe
from gantrix.trainer import Trainer


def _plan(**kwargs):
    lines = []
    variants = plan_variants(Arguments(**{"data": "ring8", **kwargs}), lines.append)
    return {v.name: v for v in variants}, lines


def test_leave_one_out_over_the_tricks_as_they_compose_on_the_data():
    variants, lines = _plan(recipe="wgan-gp")
    full = variants["full"]
    # wgan-gp's [points] table applies on 2-D data: its penalty weight, optimizer and decay
    assert full.tricks == ["wgan", "gradient-penalty:weight=0.1", "n-critic",
                           "adam:lr=0.001,beta2=0.9", "lr-decay"]
    assert full.train["steps"] == 4000 and "data" not in full.train
    assert list(variants) == ["full", "without-wgan", "without-gradient-penalty",
                              "without-n-critic", "without-adam", "without-lr-decay"]
    assert variants["without-n-critic"].tricks == [
        "wgan", "gradient-penalty:weight=0.1", "adam:lr=0.001,beta2=0.9", "lr-decay"]
    assert variants["without-n-critic"].label == "− n-critic"
    # the only loss removed: a row with the checker's words, not an abort
    refused = variants["without-wgan"]
    assert refused.refused.startswith("no loss: add exactly one of")
    assert lines == [f"− wgan: refused: {refused.refused}"]
    # the default optimizer steps in, and the checker says so
    assert any("default Adam" in n for n in variants["without-adam"].notes)


def test_kept_tricks_have_no_leave_one_out_variant():
    """--keep holds part of the setting fixed (an architecture the question is not about):
    its trick stays in every variant and gets no row of its own."""
    variants, _ = _plan(recipe="wgan-gp", keep=("adam", "lr-decay"), add=("ema",))
    assert list(variants) == ["full", "without-wgan", "without-gradient-penalty",
                              "without-n-critic", "add-ema"]
    assert all("lr-decay" in v.tricks for name, v in variants.items() if name != "without-wgan")


@pytest.mark.parametrize("keep, fragment", [
    ("adm", "did you mean adam?"),
    ("adam:lr=1", "name one by its name alone"),
    ("ema", "'ema': not a trick of the composition (wgan, gradient-penalty, n-critic, adam, "
            "lr-decay)"),
])
def test_keep_names_a_trick_of_the_composition(keep, fragment):
    with pytest.raises(GantrixError, match=None) as err:
        _plan(recipe="wgan-gp", keep=(keep,))
    assert fragment in str(err.value) and str(err.value).startswith(f"--keep {keep!r}")


def test_an_added_trick_wins_where_it_competes_as_trick_does_over_a_recipe():
    variants, _ = _plan(recipe="wgan-gp", add=("rasgan", "ema", "gradient-penalty:weight=1"))
    rasgan = variants["add-rasgan"]
    assert "rasgan" in rasgan.tricks and "wgan" not in rasgan.tricks
    assert any("rasgan replaces" in n for n in rasgan.notes)
    assert variants["add-ema"].tricks[-1] == "ema"
    # the same trick with other parameters: its parameters change, in place
    assert variants["add-gradient-penalty-weight-1"].tricks[1] == "gradient-penalty:weight=1.0"
    assert variants["add-gradient-penalty-weight-1"].label == "+ gradient-penalty:weight=1"


def test_swap_replaces_a_trick_in_its_place():
    variants, _ = _plan(recipe="wgan-gp", swap=("adam=rmsprop:lr=5e-5",))
    swapped = variants["swap-adam-rmsprop-lr-5e-5"]
    assert swapped.tricks[3].startswith("rmsprop") and "adam" not in " ".join(swapped.tricks)
    assert swapped.label == "adam → rmsprop:lr=5e-5"


@pytest.mark.parametrize("swap, fragment", [
    ("adam", "write OLD=NEW"),
    ("=rmsprop", "write OLD=NEW"),
    ("adma=rmsprop", "did you mean adam"),
    ("adam:lr=1=rmsprop", "by its name alone"),
])
def test_bad_swaps_are_user_errors(swap, fragment):
    with pytest.raises(GantrixError, match=fragment):
        _plan(recipe="wgan-gp", swap=(swap,))


def test_a_misspelt_added_trick_aborts_with_a_suggestion():
    with pytest.raises(UnknownNameError, match="ema"):
        _plan(recipe="wgan-gp", add=("emma",))


def test_a_composition_that_does_not_train_has_nothing_to_ablate():
    with pytest.raises(GantrixError, match="does not train"):
        _plan(tricks=("ema",))
    with pytest.raises(GantrixError, match="nothing to ablate"):
        _plan()


def test_folder_names_are_safe_and_distinct():
    assert folder_name("full", "") == "full"
    assert folder_name("add", "pac:2") == "add-pac-2"
    assert folder_name("swap", "adam=rmsprop:lr=5e-5,beta1=0") == "swap-adam-rmsprop-lr-5e-5-beta1-0"
    assert folder_name("add", "../../etc") == "add-etc"
    variants, _ = _plan(recipe="wgan-gp", add=("ema", "ema:decay=0.9"))
    assert "add-ema" in variants and "add-ema-decay-0.9" in variants


def _weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.models.generator.parameters()])


def test_the_full_variant_trains_exactly_what_the_recipe_trains(tmp_path):
    full, _ = _plan(recipe="wgan-gp")
    path = tmp_path / "recipe.toml"
    path.write_text(variant_toml(full["full"]))
    ours = Trainer(Recipe(config=path), "ring8", seed=3, steps=12, threads=1, progress=False).fit()
    theirs = Trainer("wgan-gp", "ring8", seed=3, steps=12, threads=1, progress=False).fit()
    assert torch.equal(_weights(ours), _weights(theirs))


def test_variants_are_paired_same_initial_weights_and_batches_on_a_seed(tmp_path):
    variants, _ = _plan(recipe="wgan-gp")
    trainers = {}
    for name in ("full", "without-lr-decay", "without-n-critic"):
        path = tmp_path / f"{name}.toml"
        path.write_text(variant_toml(variants[name]))
        trainers[name] = Trainer(Recipe(config=path), "ring8", seed=5, steps=1, threads=1,
                                 progress=False)
    first = {name: _weights(t) for name, t in trainers.items()}
    assert torch.equal(first["full"], first["without-lr-decay"])
    assert torch.equal(first["full"], first["without-n-critic"])
    # the batch stream is the seed's: the first batch drawn is the same in every variant
    drawn = {name: t._pull() for name, t in trainers.items()}
    ref = drawn["full"]
    for name, batch in drawn.items():
        assert torch.equal(batch[0], ref[0]), name
