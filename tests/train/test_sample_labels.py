"""``gantrix sample --labels`` takes the class names a run knows (an image folder's
sub-folders, sorted: its labels) as well as their indices, and an out-of-range or unknown
label is refused with the mapping (index: name)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def pets_run(cli, tmp_path, monkeypatch):
    """A conditional run (cgan) on a folder of two classes, ``cat`` and ``dog``."""
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for name in ("dog", "cat"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "pets" / name / f"{i}.png")
    out = tmp_path / "run"
    result = cli("train", "--recipe", "cgan", "--data", tmp_path / "pets", "--image-size", 8,
                 "--steps", 2, "--batch-size", 8, "--width", 8, "--sample-every", 0,
                 "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_labels_by_name_are_the_labels_by_index(cli, pets_run, tmp_path):
    drawn = {}
    for labels in ("dog,cat", "1,0", "dog, 0"):
        result = cli("sample", pets_run, "--n", 4, "--labels", labels,
                     "--out", tmp_path / "x.npy")
        assert result.exit_code == 0, result.output
        drawn[labels] = np.load(tmp_path / "x.npy")
    assert np.array_equal(drawn["dog,cat"], drawn["1,0"])
    assert np.array_equal(drawn["dog,cat"], drawn["dog, 0"])
    result = cli("sample", pets_run, "--n", 4, "--labels", "cat", "--out", tmp_path / "c.npy")
    assert result.exit_code == 0
    assert not np.array_equal(np.load(tmp_path / "c.npy"), drawn["dog,cat"])


@pytest.mark.parametrize("labels, message", [
    ("5", "label 5 is out of range; pets has classes 0 to 1 (0: cat, 1: dog)"),
    ("wolf", "label 'wolf' is not a class of pets, which has classes 0 to 1 (0: cat, 1: dog)"),
    (",", "no labels given; give one or more of pets's classes (classes 0 to 1 (0: cat, "
          "1: dog))"),
])
def test_a_label_the_run_does_not_know_is_refused_with_the_mapping(cli, pets_run, tmp_path,
                                                                   labels, message):
    result = cli("sample", pets_run, "--n", 4, "--labels", labels, "--out", tmp_path / "x.npy")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert message in result.stderr


def test_data_without_names_takes_indices_and_says_it_has_no_names():
    from gantrix import GantrixError
    from gantrix.sampling import check_labels

    assert check_labels(["3", 4], 2, 10, "mnist").tolist() == [3, 4]
    with pytest.raises(GantrixError, match="label 'seven' is not a class index; mnist has "
                                           "classes 0 to 9, without names"):
        check_labels("seven", 2, 10, "mnist")
    with pytest.raises(GantrixError, match="labels must be class indices"):
        check_labels(["99999999999999999999999"], 2, 10, "mnist")
    many = [f"c{i}" for i in range(30)]
    with pytest.raises(GantrixError, match=r"19: c19, \.\.\. \(30 in all\)"):
        check_labels([30], 2, 30, "many", many)
