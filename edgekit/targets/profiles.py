"""Device profiles: devices/NAME.yaml, one per device. The file name is the target's name in
recipes; ``kind:`` (default ``ssh``) picks the target kind, whose ``profile_model`` is the
schema of the rest of the file."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import DeviceProfileError, did_you_mean, format_validation_error

#: the kind of a profile without ``kind:`` (every profile written before kinds existed)
DEFAULT_KIND = "ssh"


class ProfileBase(BaseModel):
    """The fields every kind's profile has; a kind's profile model subclasses it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN or infinity is never a valid setting

    kind: str = Field(DEFAULT_KIND, description="target kind: how edgekit reaches the device")
    description: str | None = None

    _name: str = ""
    _path: Path | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path | None:
        return self._path

    def describe(self) -> str:
        """One short line saying where the device is."""
        return self.name

    def listing(self) -> str:
        """What `edgekit devices list` says of the profile after its name and kind."""
        return self.describe()

    def resolve_paths(self, base: Path) -> None:
        """Make the profile's file paths absolute, relative ones against ``base`` (its folder)."""


def local_path(path: Path, base: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def search_dirs(recipe_path: Path | None = None) -> list[Path]:
    """Where profiles are looked up: devices/ next to the recipe, then ./devices."""
    dirs = []
    if recipe_path is not None:
        dirs.append(Path(recipe_path).resolve().parent / "devices")
    dirs.append(Path.cwd() / "devices")
    return list(dict.fromkeys(dirs))


def find_profiles(dirs: list[Path]) -> dict[str, Path]:
    """Device name -> profile file, first folder wins; the built-in targets (cpu, gpu) are never devices."""
    from edgekit.targets import builtin_names

    builtin = builtin_names()
    found: dict[str, Path] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            if path.stem not in builtin:
                found.setdefault(path.stem, path)
    return found


def load_profile(path: Path) -> ProfileBase:
    """Read and validate one profile with its kind's schema; relative paths are resolved
    against its folder.

    Raises:
        DeviceProfileError: one line naming the file, the field, what was expected and received.
    """
    from edgekit.targets import profile_kinds

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DeviceProfileError(f"{path}: cannot read device profile: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DeviceProfileError(f"{path}: a device profile must be UTF-8 text (YAML); this file is not") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise DeviceProfileError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(document, dict):
        raise DeviceProfileError(f"{path}: expected a mapping (host:, user:, runtimes:, ...), received {type(document).__name__}")
    kinds = profile_kinds()
    kind = document.get("kind", DEFAULT_KIND)
    if kind not in kinds:
        raise DeviceProfileError(f"{path}: kind: unknown target kind {kind!r}{did_you_mean(str(kind), kinds)}; "
                                 f"expected one of: {', '.join(kinds)}")
    model = kinds[kind].profile_model
    try:
        profile = model.model_validate(document)
    except ValidationError as exc:
        message = format_validation_error(exc, model)
        if "unknown key" in message:  # the recipe's helper lists recipe keys; list the profile's
            key = message.split(":", 1)[0]
            message = (f"{key}: unknown key{did_you_mean(key, model.model_fields)}; allowed keys: "
                       f"{', '.join(model.model_fields)}")
        raise DeviceProfileError(f"{path}: {message}") from None
    try:
        profile.resolve_paths(path.resolve().parent)
    except ValueError as exc:  # a path that resolves to nothing usable (a kind's own check)
        raise DeviceProfileError(f"{path}: {exc}") from None
    profile._name, profile._path = path.stem, path.resolve()
    return profile


def get_profile(name: str, dirs: list[Path]) -> ProfileBase:
    """The profile called ``name`` in ``dirs``.

    Raises:
        DeviceProfileError: no such profile (with the names there are), or an invalid one.
    """
    profiles = find_profiles(dirs)
    if name not in profiles:
        where = " or ".join(str(d) for d in dirs)
        known = ", ".join(profiles) or "none"
        raise DeviceProfileError(f'unknown device "{name}"{did_you_mean(name, profiles)}: no {name}.yaml in {where} '
                                 f"(devices there: {known})")
    return load_profile(profiles[name])


def save_profiles(names: list[str], dirs: list[Path], folder: Path) -> None:
    """Write the profiles of the device targets among ``names`` into ``folder`` (a run's
    devices/), with their paths made absolute: the run's recipe.yaml copy then validates and
    rebuilds from the run directory, and the run records what each device was."""
    from edgekit.targets.pool import find_pools

    profiles = find_profiles(dirs)
    pools = find_pools(dirs)
    # a pool of profiles (pool: NAME) is saved as its member profiles
    for name in [m for n in names for m in ([n] if n in profiles else pools.get(n, []))]:
        if name in profiles:
            folder.mkdir(parents=True, exist_ok=True)
            document = load_profile(profiles[name]).model_dump(mode="json", exclude_none=True)
            (folder / f"{name}.yaml").write_text(f"# copied from {profiles[name]}\n" + yaml.safe_dump(document, sort_keys=False))
