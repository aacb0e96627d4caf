from __future__ import annotations

import json
from pathlib import Path

import pytest

from saltseg.cli.main import main
from saltseg.config.settings import Settings, load_settings
from saltseg.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, content) -> Path:
    p = tmp_path / "SETTINGS.json"
    p.write_text(json.dumps(content))
    return p


def test_repo_settings_file_is_valid() -> None:
    s = load_settings(ROOT / "SETTINGS.json")
    assert s.data_dir == ROOT / "data"
    assert s.test_images_dir == ROOT / "data" / "test" / "images"


def test_relative_paths_resolve_against_the_file(tmp_path: Path, monkeypatch) -> None:
    p = _write(tmp_path, {"DATA_DIR": "d", "NEW_TEST_IMAGES_DATA": "/abs/tiles", "PROFILE": "tiny"})
    monkeypatch.chdir("/")
    s = load_settings(p)
    assert s.data_dir == tmp_path / "d"
    assert s.test_images_dir == Path("/abs/tiles")
    assert s.predictions_dir == tmp_path / "predictions"
    assert s.PROFILE == "tiny"


def test_env_variable(tmp_path: Path, monkeypatch) -> None:
    p = _write(tmp_path, {"DATA_DIR": "elsewhere"})
    monkeypatch.setenv("SALTSEG_SETTINGS", str(p))
    assert load_settings().data_dir == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"DATA_DIRR": "x"}, "unknown key 'DATA_DIRR'"),
        ({"DATA_DIR": 5}, "key 'DATA_DIR'"),
        ({"PROFILE": "huge"}, "key 'PROFILE'"),
        ({"NEW_TEST_IMAGES_DATA": ["a"]}, "key 'NEW_TEST_IMAGES_DATA'"),
        ({"base_dir": "/"}, "unknown key 'base_dir'"),
        (["DATA_DIR"], "expected a JSON object"),
    ],
)
def test_bad_settings(tmp_path: Path, content, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, content))


def test_invalid_json(tmp_path: Path) -> None:
    p = tmp_path / "SETTINGS.json"
    p.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(p)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.json")


def test_defaults_without_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SALTSEG_SETTINGS", raising=False)
    assert load_settings() == Settings(base_dir=tmp_path)


def test_cli_settings(tmp_path: Path, capsys) -> None:
    p = _write(tmp_path, {"PROFILE": "cpu"})
    assert main(["--settings", str(p), "settings"]) == 0
    assert "PROFILE: cpu" in capsys.readouterr().out
    bad = _write(tmp_path, {"PROFIL": "cpu"})
    assert main(["--settings", str(bad), "settings"]) == 2
    assert "unknown key 'PROFIL'" in capsys.readouterr().err
