"""Reliability corpus, inputs: settings, recipes, command-line values, data folders, weights
and probability files, unexpected failures. Each bad input ends with a clear error (or a
warning saying what was done) naming the file, key or option, no traceback, and the
previous outputs byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from reliability_kit import (
    Project,
    assert_clear_error,
    assert_previous_intact,
    new_project,
    run_cli,
    tree_bytes,
)

from saltseg.config.recipe import load_stage
from saltseg.config.settings import Settings
from saltseg.core.errors import ConfigError
from saltseg.data import tiles as tiles_mod

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project with one finished prediction (the output every case must leave intact)."""
    p = new_project(tmp_path, monkeypatch)
    monkeypatch.setattr(tiles_mod, "_warned", set())
    return p


@pytest.fixture
def done(project: Project, capsys) -> Project:
    assert run_cli(capsys, *project.predict_args())[0] == 0
    return project


def _unchanged_after(p: Project, capsys, *args: str) -> tuple[int, str, str]:
    before = tree_bytes(p.predictions)
    res = run_cli(capsys, *args)
    assert_previous_intact(before, tree_bytes(p.predictions))
    return res


# --------------------------------------------------------------------------- settings


def _settings_case(p: Project, content: bytes) -> list[str]:
    p.settings.write_bytes(content)
    return p.predict_args()


SETTINGS_CASES = {
    "non-utf8": (b'{"PROFILE": "tiny\xff"}', ["not UTF-8", "byte 17"]),
    "bad-json": (b'{"PROFILE": ', ["not valid JSON"]),
    "wrong-type": (b'{"PROFILE": 3}', ["'PROFILE'"]),
    "unknown-key": (b'{"PROFIL": "tiny"}', ["'PROFIL'"]),
    "not-object": (b"[1, 2]", ["JSON object"]),
    "coerced-string": (b'{"DATA_DIR": 5}', ["'DATA_DIR'"]),
}


@pytest.mark.parametrize("case", sorted(SETTINGS_CASES))
def test_bad_settings_file(done: Project, capsys, case: str) -> None:
    content, words = SETTINGS_CASES[case]
    rc, _, err = _unchanged_after(done, capsys, *_settings_case(done, content))
    assert_clear_error(rc, err, str(done.settings), *words)


def test_settings_env_naming_a_missing_file(done: Project, capsys, monkeypatch) -> None:
    missing = done.root / "nope.json"
    monkeypatch.setenv("SALTSEG_SETTINGS", str(missing))
    rc, _, err = _unchanged_after(done, capsys, "settings")
    assert_clear_error(rc, err, str(missing), "SALTSEG_SETTINGS")


def test_settings_path_is_a_folder(done: Project, capsys) -> None:
    rc, _, err = _unchanged_after(done, capsys, "--settings", str(done.tiles), "settings")
    assert_clear_error(rc, err, str(done.tiles), "not a file")


# --------------------------------------------------------------------------- recipes


RECIPE_CASES = {
    "string-number": (("    batch_size: 18\n", '    batch_size: "18"\n'), "batch_size"),
    "float-epochs": (("cycle_epochs: 1\n", "cycle_epochs: 1.5\n"), "cycle_epochs"),
    "bool-as-string": (("train_black_tiles: true", 'train_black_tiles: "yes"'), "train_black"),
    "negative-size": (("    batch_size: 8\n", "    batch_size: -8\n"), "batch_size"),
    "non-utf8": (("description: U", "description: \udcff"), "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(RECIPE_CASES))
def test_bad_recipe(done: Project, capsys, case: str) -> None:
    (old, new), word = RECIPE_CASES[case]
    text = (ROOT / "phalanx/configs/stage1.yaml").read_text()
    assert old in text
    recipe = done.root / "r.yaml"
    recipe.write_bytes(text.replace(old, new).encode("utf-8", "surrogateescape"))
    args = [a for a in done.predict_args() if a not in ("--family", "phalanx", "--stage")]
    args.remove("stage1")
    rc, _, err = _unchanged_after(done, capsys, *args, "--recipe", str(recipe))
    assert_clear_error(rc, err, str(recipe), word)


def test_good_recipe_file_is_accepted(done: Project, capsys) -> None:
    recipe = done.root / "r.yaml"
    recipe.write_text((ROOT / "phalanx/configs/stage1.yaml").read_text())
    args = [a for a in done.predict_args() if a not in ("--family", "phalanx", "--stage")]
    args.remove("stage1")
    rc, out, err = run_cli(capsys, *args, "--recipe", str(recipe))
    assert rc == 0 and "up to date" in out, err


# --------------------------------------------------------------------------- option values


OPTION_CASES = {
    "train --budget-minutes -3": ["train", "--family", "phalanx", "--stage", "stage1"],
    "train --budget-minutes nan": ["train", "--family", "phalanx", "--stage", "stage1"],
    "train --fold -1": ["train", "--family", "phalanx", "--stage", "stage1"],
    "predict --batch-size 0": ["predict", "--family", "phalanx", "--stage", "stage1"],
    "predict --chunk 0": ["predict", "--family", "phalanx", "--stage", "stage1"],
    "predict --chunk 2.5": ["predict", "--family", "phalanx", "--stage", "stage1"],
    "ensemble --threshold 2": ["ensemble", "x.h5"],
    "ensemble --weights -1": ["ensemble", "x.h5"],
    "pseudo --min-tiles -5": ["pseudo", "x.h5", "--rule", "all", "--out", "o"],
    "folds --n-folds 0": ["folds"],
    "synth --n-train 0": ["synth", "--out", "o"],
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_value(done: Project, capsys, case: str) -> None:
    option, value = case.split()[1:]
    args = ["--settings", str(done.settings), *OPTION_CASES[case], option, value]
    rc, _, err = _unchanged_after(done, capsys, *args)
    assert_clear_error(rc, err, option, repr(value))


def test_negative_budget_refused_by_the_library(done: Project) -> None:
    from saltseg.train.stage import train_stage

    settings = Settings(PHALANX_WEIGHTS_DIR=str(done.root / "w"), base_dir=done.root)
    with pytest.raises(ConfigError, match="budget_minutes"):
        train_stage(load_stage("phalanx", "stage1", "tiny"), settings, budget_minutes=-3)
    assert not (done.root / "w").exists()


@pytest.mark.parametrize("key", ["batch_size", "chunk"])
def test_zero_sizes_refused_by_the_library(done: Project, key: str) -> None:
    from saltseg.infer.stage import predict_test

    sizes = {"batch_size": 4, "chunk": 4, key: 0}
    with pytest.raises(ConfigError, match=key):
        predict_test(
            load_stage("phalanx", "stage1", "tiny"),
            done.weights,
            done.tiles,
            done.root / "o.h5",
            "tiny",
            **sizes,
        )


# --------------------------------------------------------------------------- data folders


def _bad_tile(p: Project, name: str, image: np.ndarray | bytes) -> Path:
    path = p.tiles / name
    if isinstance(image, bytes):
        path.write_bytes(image)
    else:
        cv2.imwrite(str(path), image)
    return path


TILE_ERRORS = {
    "upper-case extension": ("X.PNG", np.zeros((101, 101), np.uint8), "lowercase .png"),
    "space in id": ("a b.png", np.zeros((101, 101), np.uint8), "RLE CSV"),
    "comma in id": ("a,b.png", np.zeros((101, 101), np.uint8), "RLE CSV"),
    "non-ascii id": ("caf\u00e9.png", np.zeros((101, 101), np.uint8), "RLE CSV"),
    "truncated png": ("t9.png", b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt"),
    "empty file": ("t9.png", b"", "corrupt"),
    "wrong size": ("t9.png", np.zeros((64, 101), np.uint8), "101x64"),
    "not an image": ("t9.png", b"not an image at all", "corrupt"),
}


@pytest.mark.parametrize("case", sorted(TILE_ERRORS))
def test_bad_tile_is_refused_before_any_work(done: Project, capsys, case: str) -> None:
    name, image, word = TILE_ERRORS[case]
    path = _bad_tile(done, name, image)
    rc, _, err = _unchanged_after(done, capsys, *done.predict_args())
    assert_clear_error(rc, err, str(path), word)


TILE_WARNINGS = {
    "16-bit": (np.full((101, 101), 40000, np.uint16), "16-bit tile; reduced to 8 bits"),
    "alpha": (np.full((101, 101, 4), 90, np.uint8), "tile has an alpha channel; it is ignored"),
    "colour": (
        np.dstack([np.full((101, 101), v, np.uint8) for v in (10, 90, 200)]),
        "colour tile; converted to grey",
    ),
}


@pytest.mark.parametrize("case", sorted(TILE_WARNINGS))
def test_unusual_tile_is_read_with_a_warning(project: Project, capsys, case: str) -> None:
    image, words = TILE_WARNINGS[case]
    path = _bad_tile(project, "t9.png", image)
    rc, _, err = run_cli(capsys, *project.predict_args())
    assert rc == 0 and "Traceback" not in err
    assert f"warning: {path}: {words}" in err


def test_mask_of_one_odd_value_gets_a_warning(tgs_dir, capsys, monkeypatch) -> None:
    monkeypatch.setattr(tiles_mod, "_warned", set())
    root, _ = tgs_dir
    victim = sorted((root / "train/masks").iterdir())[3]
    cv2.imwrite(str(victim), np.full((101, 101), 7, np.uint8))
    rc, _, err = run_cli(capsys, "check", str(root))
    # the RLE of train.csv no longer matches: an error naming the mask; the warning first
    assert f"warning: {victim}: mask every pixel is 7" in err
    assert_clear_error(rc, err, victim.stem)


def test_mask_of_three_values_is_an_error(tgs_dir, capsys) -> None:
    root, _ = tgs_dir
    victim = sorted((root / "train/masks").iterdir())[2]
    cv2.imwrite(str(victim), np.tile(np.array([0, 7, 255], np.uint8), (101, 34))[:, :101])
    rc, _, err = run_cli(capsys, "check", str(root))
    assert_clear_error(rc, err, str(victim), "not binary")


def test_empty_tile_folder(done: Project, capsys) -> None:
    for f in done.tiles.iterdir():
        f.unlink()
    rc, _, err = _unchanged_after(done, capsys, *done.predict_args())
    assert_clear_error(rc, err, str(done.tiles), "no .png tiles")


# --------------------------------------------------------------------------- weights, probabilities


def test_unfinished_phase(done: Project, capsys) -> None:
    phase = done.weights / "fold_0" / "cycles"
    (phase / "DONE.json").unlink()
    rc, _, err = _unchanged_after(done, capsys, *done.predict_args())
    assert_clear_error(rc, err, str(phase), "not finished")


def test_missing_weights_files(done: Project, capsys) -> None:
    phase = done.weights / "fold_0" / "cycles"
    for f in phase.glob("*.weights.h5"):
        f.unlink()
    rc, _, err = _unchanged_after(done, capsys, *done.predict_args())
    assert_clear_error(rc, err, str(phase), "no snapshots weights")


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x89HDF\r\n\x1a\n" + b"\0" * 64])
def test_bad_probability_file_for_ensemble(done: Project, capsys, content: bytes) -> None:
    bad = done.root / "bad.h5"
    bad.write_bytes(content)
    rc, _, err = _unchanged_after(
        done, capsys, "--settings", str(done.settings), "ensemble", str(bad), "--out", "x.csv"
    )
    assert_clear_error(rc, err, str(bad), "not a saltseg probability file")


def test_ensemble_runs_without_a_data_folder(done: Project, capsys) -> None:
    json_settings = json.loads(done.settings.read_text())
    json_settings["DATA_DIR"] = "no-such-folder"
    done.settings.write_text(json.dumps(json_settings))
    out = done.root / "sub.csv"
    args = ["--settings", str(done.settings), "ensemble", str(done.probs), "--out", str(out)]
    rc, _, err = run_cli(capsys, *args)
    assert rc == 0, err
    assert out.read_text().startswith("id,rle_mask\n")


# --------------------------------------------------------------------------- unexpected errors


def _boom(*args: object, **kwargs: object) -> None:
    raise FileNotFoundError(2, "No such file or directory", "/some/where/t3.png")


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_error_is_one_line_unless_debug(done: Project, capsys, monkeypatch, debug):
    (done.tiles / "t0.png").write_bytes((done.tiles / "t1.png").read_bytes())  # recompute
    monkeypatch.setattr("saltseg.infer.stage.read_images", _boom)
    args = (["--debug"] if debug else []) + done.predict_args()
    rc, _, err = _unchanged_after(done, capsys, *args)
    assert rc == 3
    assert "error: saltseg predict: unexpected FileNotFoundError" in err
    assert "(file: /some/where/t3.png)" in err
    if debug:
        assert "Traceback" in err
    else:
        assert "Traceback" not in err and "--debug" in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("tid", ["a b", "a,b", "caf\u00e9", 'q"x', ""])
def test_submission_refuses_ids_that_cannot_round_trip(tmp_path: Path, tid: str) -> None:
    from saltseg.core.errors import DataError
    from saltseg.data.submission import write_rle_csv

    out = tmp_path / "sub.csv"
    out.write_text("id,rle_mask\nold,\n")
    with pytest.raises(DataError, match="cannot be written to an RLE CSV"):
        write_rle_csv(out, ["ok", tid], np.zeros((2, 101, 101), bool))
    assert out.read_text() == "id,rle_mask\nold,\n"
