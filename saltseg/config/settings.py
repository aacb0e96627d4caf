"""``SETTINGS.json``: where the data, weights and predictions live.

Relative paths are resolved against the folder holding the settings file, so the scripts
work from any working directory. Unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from saltseg.core.errors import ConfigError

Profile = Literal["full", "cpu", "demo", "tiny"]
PROFILES: tuple[str, ...] = get_args(Profile)
"""The training profiles: the paper's recipe, a CPU model in 30 minutes, ``make demo``'s
small networks that learn its generated data in minutes, a smoke run."""

SETTINGS_ENV = "SALTSEG_SETTINGS"
"""Environment variable naming an alternative settings file."""


class Settings(BaseModel):
    """Validated contents of ``SETTINGS.json`` (keys as in the original solution's file)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    DATA_DIR: str = Field(
        "data", description="Kaggle TGS-format folder (train.csv, depths.csv, ...)"
    )
    NEW_TEST_IMAGES_DATA: str | None = Field(
        None, description="Folder of tiles to predict; null means DATA_DIR/test/images"
    )
    BES_WEIGHTS_DIR: str = Field("bes/weights", description="b.e.s. weights, one folder per stage")
    PHALANX_WEIGHTS_DIR: str = Field("phalanx/weights", description="phalanx weights")
    PREDICTIONS_DIR: str = Field("predictions", description="probabilities and the CSV")
    PROFILE: Profile = Field("full", description="training profile: full, cpu or tiny")

    # Set by load(); not a key of the file.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    def _resolve(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def data_dir(self) -> Path:
        return self._resolve(self.DATA_DIR)

    @property
    def test_images_dir(self) -> Path:
        if self.NEW_TEST_IMAGES_DATA:
            return self._resolve(self.NEW_TEST_IMAGES_DATA)
        return self.data_dir / "test" / "images"

    @property
    def bes_weights_dir(self) -> Path:
        return self._resolve(self.BES_WEIGHTS_DIR)

    @property
    def phalanx_weights_dir(self) -> Path:
        return self._resolve(self.PHALANX_WEIGHTS_DIR)

    def weights_dir(self, family: str) -> Path:
        """The weights folder of a registered family: its settings key (``BES_WEIGHTS_DIR``,
        ``PHALANX_WEIGHTS_DIR``), or its default folder for a family without a key here."""
        from saltseg.core.registry import get_family

        fam = get_family(family)
        if fam.weights_key in type(self).model_fields:
            return self._resolve(getattr(self, fam.weights_key))
        return self._resolve(fam.default_weights_dir)

    @property
    def predictions_dir(self) -> Path:
        return self._resolve(self.PREDICTIONS_DIR)

    def resolved(self) -> dict[str, str]:
        """Every setting with paths made absolute (for logs)."""
        return {
            "DATA_DIR": str(self.data_dir),
            "NEW_TEST_IMAGES_DATA": str(self.test_images_dir),
            "BES_WEIGHTS_DIR": str(self.bes_weights_dir),
            "PHALANX_WEIGHTS_DIR": str(self.phalanx_weights_dir),
            "PREDICTIONS_DIR": str(self.predictions_dir),
            "PROFILE": self.PROFILE,
        }


def _describe(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(k for k in Settings.model_fields if k != "base_dir")
            lines.append(f"{path}: unknown key {key!r} (allowed: {allowed})")
        else:
            lines.append(f"{path}: key {key!r}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def find_settings(path: str | os.PathLike[str] | None = None) -> Path:
    """The settings file: ``path``, else ``$SALTSEG_SETTINGS``, else ``./SETTINGS.json``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(SETTINGS_ENV)
    return Path(env) if env else Path("SETTINGS.json")


def read_json_file(p: Path, what: str) -> object:
    """A UTF-8 JSON file's contents; bad encoding or syntax is a :class:`ConfigError`."""
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: {what} file is not UTF-8 text (byte {exc.start}: {exc.object[exc.start]:#04x})"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the {what} file ({exc.strerror})") from None


def load_settings(path: str | os.PathLike[str] | None = None, required: bool = False) -> Settings:
    """Load and validate the settings file; defaults when it is absent and not ``required``."""
    p = find_settings(path)
    if not p.is_file():
        if p.exists():
            raise ConfigError(f"{p}: settings path is not a file")
        if required or path is not None:
            raise ConfigError(f"{p}: settings file not found")
        if os.environ.get(SETTINGS_ENV):
            raise ConfigError(f"{p}: settings file not found (named by ${SETTINGS_ENV})")
        return Settings(base_dir=Path.cwd())
    raw = read_json_file(p, "settings")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a JSON object of settings, got {type(raw).__name__}")
    if "base_dir" in raw:
        raise ConfigError(f"{p}: unknown key 'base_dir'")
    try:
        return Settings(**raw, base_dir=p.resolve().parent)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, p)) from None


def data_dir_for(data: str | os.PathLike[str] | None, settings: str | None = None) -> Path:
    """A command's TGS folder: ``data`` (its ``--data``) when given, else ``DATA_DIR`` of the
    settings file ``settings`` (default ``$SALTSEG_SETTINGS`` or ``./SETTINGS.json``)."""
    return Path(data) if data else load_settings(settings).data_dir


def write_settings(path: Path, **keys: str | None) -> Path:
    """Write a ``SETTINGS.json`` with ``keys`` (validated first, so a typo is an error)."""
    from saltseg.core.atomic import atomic_write_text

    Settings(**keys, base_dir=path.resolve().parent)
    atomic_write_text(path, json.dumps(keys, indent=2) + "\n")
    return path
