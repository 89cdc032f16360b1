"""recipe.yaml: its schema (pydantic) and the loader that turns any problem into one line.

Relative paths inside a recipe are resolved against the recipe file's folder, so a recipe
and its data can move together.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from edgekit import formats as formats_table
from edgekit.check.budgets import CheckSpec
from edgekit.compress.spec import CompressEntry, unique_names
from edgekit.data import BUILTIN_DATASETS, FILE_SOURCES
from edgekit.errors import DeviceProfileError, RecipeError, did_you_mean, format_validation_error
from edgekit.formats import FORMATS, PRECISIONS
from edgekit.models import MODEL_TASKS, ZOO, check_params, models_for
from edgekit.recipe.reading import read_document
from edgekit.search.spec import SearchSpec
from edgekit.tasks import TASK_NAMES

#: the largest number a model.params value may hold: wider than any edge model needs, small
#: enough that one typo cannot ask TensorFlow for terabytes
MAX_PARAM = 100_000


def _check_path(value: Any) -> Any:
    # Caught here, the NUL byte and the over-long name get one line instead of an OSError later.
    text = str(value)
    if "\0" in text:
        raise ValueError("expected a file path, received a path with a NUL byte; remove it")
    if len(os.fsencode(text)) > 4096:
        raise ValueError(f"expected a file path of at most 4096 bytes, received {len(os.fsencode(text))} bytes")
    if long := next((part for part in Path(text).parts if len(os.fsencode(part)) > 255), None):
        raise ValueError(f"a path component is {len(os.fsencode(long))} bytes long ({long[:40]}...); "
                         "file systems allow 255: shorten the name")
    return value


#: a recipe path: checked for what no file system accepts, then resolved against the recipe
SafePath = Annotated[Path, BeforeValidator(_check_path)]
#: one side of data.image_size, in pixels (16384 x 16384 x 3 float32 is 3 GB per image)
ImageSide = Annotated[int, Field(gt=0, le=16_384)]


def _square(value: Any) -> Any:
    # data.image_size: 96 means [96, 96]
    if isinstance(value, (list, tuple)) and len(value) != 2:
        raise ValueError(f"expected [height, width] or one number (a square), received {list(value)}")
    return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value


def _check_param_values(value: Any, where: str) -> None:
    """Numbers in model.params are finite and at most MAX_PARAM in size (lists and dicts walked)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > MAX_PARAM:
            raise ValueError(f"params.{where}: expected a finite number of at most {MAX_PARAM:,}, received {value:.6g}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_param_values(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_param_values(item, f"{where}[{i}]")


class _Section(BaseModel):
    # Unknown keys are errors: a typo must never be silently ignored. NaN and infinity are
    # never valid settings (a NaN bound compares false both ways and would slip through).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataSpec(_Section):
    """Where the data comes from and how it is split."""

    source: str = Field("digits", description=f"a builtin dataset ({', '.join(BUILTIN_DATASETS)}) "
                                              f"or a file kind ({', '.join(FILE_SOURCES)})")
    path: SafePath | None = Field(None, description="the data file (npz, csv, text) or folder (images); relative to the recipe's folder "
                                  "(absolute and ../ paths are allowed and shown in the build log)")
    label_column: str | None = Field(None, description="csv: the column holding the label (default: the last column)")
    # text (edgekit.data.text): the tokenizer, fitted on the training split; vocab.txt and
    # tokenizer.json in the run directory record it
    text_column: str | None = Field(None, description="text: the column holding the raw text (default: the column named "
                                    "text, else the first column that is not the label; the label defaults to the column "
                                    "named label, else the last)")
    max_tokens: int = Field(10_000, ge=3, le=MAX_PARAM, description="text: the most ids in the vocabulary, padding (0) and "
                            "out-of-vocabulary (1) included: the model's embedding rows")
    min_count: int = Field(1, ge=1, le=1_000_000, description="text: tokens seen fewer times in the training split are out of vocabulary")
    sequence_length: int = Field(64, ge=1, le=4096, description="text: token ids per sample, the model's input length")
    lowercase: bool = Field(True, description="text: lower-case the text before splitting it into tokens")
    padding: Literal["pre", "post"] = Field("pre", description="text: zeros in front of (pre) or after (post) a short sequence")
    truncation: Literal["pre", "post"] = Field("pre", description="text: a long text loses tokens at its start (pre, keeps "
                                               "the end, like keras.datasets.imdb) or its end (post)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of the samples held out for the test split "
                                                              "(ignored when the npz file has its own test arrays)")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="share of the training samples held out for early stopping")
    normalize: Literal["none", "standard", "minmax"] = Field("none", description="feature scaling fitted on the training split only")
    normalize_per: Literal["feature", "channel"] = Field(
        "feature", description="normalize statistics per feature (every input position) or per channel (the last axis, "
        "shared over time or space: use it for sequences and images)")
    embed_normalization: bool = Field(
        True, description="put the fitted normalization in front of the model in every exported artifact, so "
        "artifacts take raw features (and int8 calibration sees raw features); false: export the bare model, which "
        "takes normalized features, and write the statistics and the formula to preprocess.json in the run directory")
    download: bool = Field(False, description="keras.datasets sources (mnist, fashion_mnist, cifar10, imdb): download into "
                           "the Keras cache when the file is not there (default: fail with the file to provide)")
    # images (edgekit.data.folders): load_recipe fills the unset ones from the model's input
    image_size: Annotated[tuple[ImageSide, ImageSide] | None, BeforeValidator(_square)] = Field(
        None, description="images: resize every image to [height, width] (a single number: square; bilinear, "
        "stretched); default: model.file's input size, else the images' own size when they all agree (when they "
        "differ: a zoo model's params.input_size, which it resizes to inside)")
    channels: Literal[1, 3, 4] | None = Field(
        None, description="images: 1 (grey), 3 (RGB) or 4 (RGBA); default: model.file's input channels, else 1 when "
        "every image is grey and 3 otherwise (alpha dropped, grey replicated)")
    # what load_recipe found of the model's input (edgekit.data.folders.fill_from_model)
    _model_input: dict | None = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        known = (*BUILTIN_DATASETS, *FILE_SOURCES)
        if value not in known:
            raise ValueError(f'unknown dataset "{value}"{did_you_mean(value, known)}; choose one of: {", ".join(known)}')
        return value

    @model_validator(mode="after")
    def _text_settings(self):
        text_only = ("text_column", "max_tokens", "min_count", "sequence_length", "lowercase", "padding", "truncation")
        if self.source != "text" and (given := [k for k in text_only if k in self.model_fields_set]):
            raise ValueError(f"{given[0]} applies to source text only: remove it or set source: text")
        if self.source == "text" and self.normalize != "none":
            raise ValueError(f"normalize: {self.normalize} would scale token ids, which index an embedding: "
                             "remove data.normalize for source text")
        return self

    @model_validator(mode="after")
    def _path_matches_source(self):
        if self.source == "images" and self.path is None:
            raise ValueError("source images needs a path: add data.path: my_images (a folder with one subfolder per class)")
        if self.source in FILE_SOURCES and self.path is None:
            raise ValueError(f"source {self.source} needs a path: add data.path: my_data.{self.source}")
        if self.source != "images" and (given := [k for k in ("image_size", "channels") if k in self.model_fields_set]):
            raise ValueError(f"data.{given[0]} applies to source images only: remove it or set source: images")
        if self.source not in FILE_SOURCES and self.path is not None:
            raise ValueError(f"builtin dataset {self.source} takes no path: remove data.path or set source to npz or csv")
        return self


class ModelSpec(_Section):
    """A zoo architecture, your own builder function, or an existing model file."""

    arch: str | None = Field(None, description=f"zoo model: {', '.join(ZOO)}")
    python: str | None = Field(
        None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="your builder, 'package.module:function', called with (input_shape, num_classes, **params) "
        "and returning a tf_keras model; modules next to the recipe are importable",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="builder parameters (see `edgekit models`); numbers "
                                   f"finite and at most {MAX_PARAM:,} in size")
    file: SafePath | None = Field(None, description="an existing .keras, .h5 or SavedModel folder instead of a zoo model; "
                                  "relative to the recipe's folder")
    safe_mode: bool = Field(True, description="refuse a model file (.keras, .h5 or SavedModel) that carries code: a Lambda "
                            "layer, a custom class, a foreign module; false loads it and runs that code: only for files you trust")
    input_shape: list[Annotated[int, Field(gt=0, le=1 << 20)]] | dict[str, list[Annotated[int, Field(gt=0, le=1 << 20)]]] | None = Field(
        None, description="the shape of one sample (no batch axis) for a model with free dimensions "
        "(Input((None, None, 3))): images from a folder are resized to it, and every artifact is converted at it; "
        "{input name: shape} for a model of several inputs. Default: the data's shape")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str | None) -> str | None:
        if value is not None and value not in ZOO:
            raise ValueError(f'unknown model "{value}"{did_you_mean(value, ZOO)}; choose one of: {", ".join(ZOO)}')
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.arch, self.python, self.file)) != 1:
            raise ValueError("give exactly one of model.arch (a zoo model), model.python (your builder) or model.file (an existing model)")
        if self.file is not None and self.params:
            raise ValueError("model.params apply to builders only: remove them when model.file is set")
        for key, value in self.params.items():
            _check_param_values(value, key)
        if self.arch is not None and (problem := check_params(self.arch, self.params)):
            raise ValueError(problem)
        return self

    @property
    def source(self) -> str:
        """What the model comes from, for logs and results.json."""
        return str(self.file or self.python or self.arch)


class TrainSpec(_Section):
    """How the fp32 model is trained (ignored for model.file)."""

    epochs: int = Field(20, gt=0, le=10_000)
    batch_size: int = Field(32, gt=0, le=65_536)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    early_stopping_patience: int = Field(5, ge=0, le=10_000, description="epochs without val_loss improvement before stopping; 0 disables")
    threads: int | None = Field(None, gt=0, le=1024, description="TensorFlow intra-op threads for training and for "
                                "fine-tuning compressed models; null (the default): every core of this machine "
                                "(results.json train.threads records the number used)")

    def resolved_threads(self) -> int:
        """The intra-op threads training uses: ``threads``, or every core when it is null."""
        return self.threads or os.cpu_count() or 1


class QuantizeSpec(_Section):
    """Which precisions every format is exported at, and the calibration subset."""

    precisions: list[Literal[PRECISIONS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["fp32", "int8"], min_length=1,
        description="fp32; int8 (full-integer PTQ, int8 output, int8 input for float inputs: integer inputs keep their dtype); "
        "TFLite only: fp16, dynamic (int8 weights, "
        "float activations), int16x8 (int16 activations, int8 weights); OpenVINO only: bf16 (the fp32 IR at the CPU plugin's "
        "bf16; added by itself on AVX-512 BF16 / AMX CPUs, see export.openvino.auto_bf16; skipped on CPUs without them); "
        "int8-fast (every format: int8 with the layers whose int8 kernels are slower on this CPU kept float, chosen "
        "by measured op times and kept only where the whole model is faster; see edgekit/convert/fast.py)",
    )
    calibration_samples: int = Field(200, gt=0, le=100_000, description="samples drawn from the training split to calibrate int8 ranges")
    keep_float: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=10_000,
        description="Keras layer names whose ops stay float in every int8 artifact, through each format's own "
        "mechanism (TFLite denylisted nodes, onnxruntime nodes_to_exclude, NNCF ignored_scope); each int8 row "
        "says how many layers stayed float")
    max_drop: float | None = Field(
        None, gt=0, le=1e9,
        description="accuracy-aware mixed precision: each format with int8 gets an int8-mixed row that keeps the "
        "fewest of the layers losing most in float until the primary metric on the validation split is within "
        "this of the fp32 model's (in the metric's own units: 0.005 is half a point of accuracy)")

    @model_validator(mode="after")
    def _mixed_needs_budget(self):
        if "int8-mixed" in self.precisions and self.max_drop is None:
            raise ValueError("precision int8-mixed needs quantize.max_drop (the largest drop of the primary metric on "
                             "the validation split it may lose, e.g. max_drop: 0.005)")
        if len(set(self.keep_float)) != len(self.keep_float):
            raise ValueError("keep_float names a layer twice: list each layer once")
        return self


class _ExportBase(_Section):
    """Which deployable formats are produced, and each format's options."""

    formats: list[str] = Field(default_factory=lambda: list(FORMATS), min_length=1, description=f"any of: {', '.join(FORMATS)}")
    fold_input: bool = Field(True, description="fold an affine input scaling at the model's start (Rescaling, "
                             "Normalization, the [0, 1] -> [-1, 1] of Keras Applications) into the first convolution "
                             "or dense layer of every artifact (exactly; int8 artifacts then quantize the raw input), "
                             "so no artifact runs it as an op of its own; each row's settings.input_fold says what was "
                             "folded or why not")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in FORMATS:
                raise ValueError(f'unknown format "{name}"{did_you_mean(name, FORMATS)}; choose from: {", ".join(FORMATS)}')
        return list(dict.fromkeys(value))


# One optional options section per row of the format table: export.onnx, export.openvino, ...
# (kept in step with the live table by _follow_format_table, below Recipe)
ExportSpec = create_model(
    "ExportSpec",
    __base__=_ExportBase,
    **{
        name: (fmt.options, Field(default_factory=fmt.options, description=f"{name} options"))
        for name, fmt in FORMATS.items()
    },
)


class BenchmarkSpec(_Section):
    """The one timing loop's settings, shared by every variant."""

    warmup: int = Field(10, ge=0, le=1_000_000, description="untimed runs before timing")
    runs: int = Field(100, gt=0, le=10_000_000, description="minimum number of timed runs")
    min_time_s: float = Field(0.0, ge=0, le=3600, description="keep timing until at least this many seconds have passed (per row)")
    threads: int = Field(1, gt=0, le=1024, description="intra-op threads for every runtime")
    inputs: int = Field(16, gt=0, le=100_000, description="distinct test samples cycled through; the same for every variant")
    rounds: int = Field(5, gt=0, le=1000, description="rounds every row of a target is timed in, interleaved in a "
                        "shuffled order (runs and min_time_s are split over them): a slow phase of a shared machine "
                        "hits every row alike, and the rounds give each p50 and speedup a 95% interval")
    profile: bool = Field(True, description="per-op profile (op types, time shares, where each op ran) and peak "
                          "memory of every row on this machine, each measured in a fresh process before the timed "
                          "rounds (never during them); results.json profile and memory, profiles/<row id>.json")
    unstable_spread: float = Field(0.10, gt=0, le=10, description="a row whose round p50s disagree by more than "
                                   "this (robust spread: 1.4826 x median absolute deviation / median) is marked "
                                   "unstable: its target's rows are timed again (retime_unstable), and `edgekit check` "
                                   "fails a latency budget it cannot judge unless --allow-unjudged")
    retime_unstable: int = Field(2, ge=0, le=10, description="how many more times a target's rows are timed when one "
                                 "of them is unstable (the machine was busy), all together again; the attempt with the "
                                 "fewest unstable rows is kept (results.json retimed). 0: never")
    wait_below_c: float | None = Field(None, gt=-50, lt=200, description="before each timed round, wait until the "
                                       "hottest thermal zone (/sys/class/thermal) of the machine timing it is below "
                                       "this many degrees C (a device profile's own wait_below_c wins); the wait is "
                                       "recorded in timing.clocks.waits. null: never wait")
    wait_timeout_s: float = Field(300.0, gt=0, le=86400, description="longest one wait_below_c wait; past it the "
                                  "round starts anyway and the row gets a note")
    clock_change: float = Field(0.10, gt=0, le=10, description="a row during whose rounds a core's CPU frequency "
                                "moved more than this share ((max - min) / max, from /sys cpufreq) gets a note")


class Recipe(_Section):
    """A whole edgekit build."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100, description="run name; runs go to runs/<name>/")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds weights, shuffling, splits and calibration (0 to 2^32-1)")
    task: Literal[TASK_NAMES] = Field("classification", description="classification | regression | anomaly | segmentation | "  # type: ignore[valid-type]
                                      "fidelity; decides the labels, loss, metrics and the primary metric. fidelity: "
                                      "label-free (x only): a model.file (or a zoo model that trains itself: dcgan) "
                                      "whose every artifact is scored against its Keras fp32 outputs (snr_db)")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    quantize: QuantizeSpec = Field(default_factory=QuantizeSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    targets: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1, max_length=64,
                               description="cpu (this machine), gpu (the fp32 baseline on a GPU), or device names (devices/NAME.yaml)")
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)
    check: CheckSpec = Field(default_factory=CheckSpec)
    compress: list[CompressEntry] = Field(default_factory=list, max_length=256,
                                          description="compressed models to build (see edgekit/compress/spec.py)")
    outputs: dict[str, Literal["classification", "regression", "segmentation"]] = Field(
        default_factory=dict, max_length=256,
        description="a model of several outputs: the task of each labelled output whose task is not `task` "
        "({output name: classification | regression | segmentation}); its labels are the data's y_train_<output> arrays. "
        "An output without labels is scored against the Keras model's outputs (snr_db)")

    search: SearchSpec | None = Field(None, description="the space of compression and quantization settings that "
                                      "`edgekit search` tries, its objective and constraints (edgekit/search/spec.py); "
                                      "`edgekit build` builds the recipe as written and leaves it alone")

    @model_validator(mode="after")
    def _search_fits(self):
        if self.search is None:
            return self
        space = self.search.space
        for name in space.format or []:
            if name not in FORMATS:
                raise ValueError(f'search.space.format: unknown format "{name}"{did_you_mean(name, FORMATS)}; '
                                 f"choose from: {', '.join(FORMATS)}")
        for name in space.precision or []:
            if name not in PRECISIONS:
                raise ValueError(f'search.space.precision: unknown precision "{name}"{did_you_mean(name, PRECISIONS)}; '
                                 f"choose from: {', '.join(PRECISIONS)}")
        if self.search.target not in self.targets:
            raise ValueError(f"search.target: {self.search.target!r} is not among the recipe's targets "
                             f"({', '.join(self.targets)}); add it to targets or choose one of them")
        return self

    @model_validator(mode="after")
    def _compress_fits_quantize(self):
        unique_names(self.compress)
        for i, entry in enumerate(self.compress):
            precisions = entry.precisions or self.quantize.precisions
            if unknown := [p for p in precisions if p not in PRECISIONS]:
                raise ValueError(f"compress[{i}].precisions: unknown precision {unknown[0]!r}; choose from {', '.join(PRECISIONS)}")
            if entry.qat and "int8" not in precisions:
                raise ValueError(f"compress[{i}] ({entry.name}) is quantization-aware and exports int8 only, "
                                 "but its precisions have no int8: add int8")
        return self

    @model_validator(mode="after")
    def _task_fits_data_and_model(self):
        builtin = BUILTIN_DATASETS.get(self.data.source)
        if self.task == "fidelity":
            _check_label_free(self)
        elif builtin is not None and builtin.task != self.task:
            raise ValueError(f"data.source {self.data.source} is a {builtin.task} dataset but task is {self.task}: "
                             f"set task: {builtin.task} or choose a {self.task} dataset")
        if self.model.arch is not None and self.task not in MODEL_TASKS[self.model.arch]:
            raise ValueError(f"model.arch {self.model.arch} fits {', '.join(MODEL_TASKS[self.model.arch])}, not task {self.task}; "
                             f"models for {self.task}: {', '.join(models_for(self.task))}")
        return self

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # Besides cpu and gpu, a target is a device profile: devices/NAME.yaml next to the
        # recipe (load_recipe passes the recipe file as context), else in ./devices.
        from edgekit.targets import builtin_names
        from edgekit.targets import profiles as device_profiles
        from edgekit.targets.pool import find_pools

        dirs = device_profiles.search_dirs((info.context or {}).get("recipe_file"))
        profiles = device_profiles.find_profiles(dirs)
        pools = {name: members for name, members in find_pools(dirs).items() if name not in profiles}
        known = (*builtin_names(), *profiles, *pools)
        for name in value:
            if name not in known:
                raise ValueError(f'unknown target "{name}"{did_you_mean(name, known)}; choose from: {", ".join(known)} '
                                 f"(a device needs a profile devices/{name}.yaml next to the recipe)")
            for member in [name] if name in profiles else pools.get(name, []):
                try:
                    device_profiles.load_profile(profiles[member])
                except DeviceProfileError as exc:
                    raise ValueError(f'device "{member}"{f" of pool {name}" if member != name else ""}: {exc.message}') from None
        return list(dict.fromkeys(value))

    # Filled in by load_recipe, not part of the YAML.
    _path: Path | None = None
    _sha256: str | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def sha256(self) -> str | None:
        return self._sha256


def _check_label_free(recipe: Recipe) -> None:
    """Task fidelity has no labels: nothing may train or fine-tune on a task loss, and nothing
    may be scored on labelled validation samples. One line for the first thing that would."""
    if recipe.model.python is not None:
        raise ValueError("task fidelity has no labels to train model.python's model on: give a trained model as "
                         "model.file, or a zoo model that trains itself (dcgan)")
    if recipe.model.arch is not None and "fidelity" not in MODEL_TASKS[recipe.model.arch]:
        raise ValueError(f"task fidelity has no labels to train model.arch {recipe.model.arch} on: give the trained model "
                         f"as model.file, or use a zoo model that trains itself ({', '.join(models_for('fidelity'))})")
    if recipe.compress:
        raise ValueError(f"compress[0] ({recipe.compress[0].name}) fine-tunes on the task loss, which needs labels; "
                         "task fidelity has none: remove the compress section (int8 and the other precisions stay)")
    if recipe.quantize.max_drop is not None or "int8-mixed" in recipe.quantize.precisions:
        raise ValueError("quantize.max_drop / int8-mixed search layers by the primary metric on labelled validation "
                         "samples; task fidelity has none: remove them and keep layers float with quantize.keep_float")


def _follow_format_table(table: dict) -> None:
    """Give ``export`` one section per row of the live format table: a format registered after
    this module was imported (``formats.register``) is then set and validated like the built-in
    ones (errors name ``export.<format>.<option>``), and an unregistered one is refused again."""
    from pydantic.fields import FieldInfo

    fields = ExportSpec.model_fields
    for name in [n for n in fields if n != "formats" and n not in table]:
        del fields[name]
    for name, fmt in table.items():
        if name not in fields or fields[name].annotation is not fmt.options:
            fields[name] = FieldInfo(annotation=fmt.options, default_factory=fmt.options, description=f"{name} options")
    fields["formats"].description = f"any of: {', '.join(table)}"
    # Pydantic builds validators when a class is made: rebuild the section and the model around it.
    ExportSpec.model_rebuild(force=True)
    Recipe.model_rebuild(force=True)


formats_table.on_change(_follow_format_table)


def load_recipe(path: str | Path) -> Recipe:
    """Read, parse and validate a recipe file.

    Raises:
        RecipeError: with a one-line message naming the file, the field path, what was
            expected and what was received.
    """
    path = Path(path)
    document, raw = read_document(path)
    if not isinstance(document, dict):
        raise RecipeError(f"{path}: expected a mapping of sections (name:, data:, model:, ...), received {type(document).__name__}")
    try:
        recipe = Recipe.model_validate(document, context={"recipe_file": path})
    except ValidationError as exc:
        raise RecipeError(f"{path}: {format_validation_error(exc, Recipe)}") from None
    _resolve_paths(recipe, path.parent)
    if recipe.data.source == "images":  # the model's input size, which load_dataset cannot see
        from edgekit.data.folders import fill_from_model

        fill_from_model(recipe.data, recipe.model)
    _check_compressible(recipe, path)
    recipe._path = path.resolve()
    recipe._sha256 = hashlib.sha256(raw).hexdigest()
    return recipe


def _resolve_paths(recipe: Recipe, base: Path) -> None:
    if recipe.data.path is not None and not recipe.data.path.is_absolute():
        recipe.data.path = (base / recipe.data.path).resolve()
    if recipe.model.file is not None and not recipe.model.file.is_absolute():
        recipe.model.file = (base / recipe.model.file).resolve()
    weights = recipe.model.params.get("weights")  # a weights file (zoo applications), like data.path
    if isinstance(weights, str) and weights.lower() not in ("none", "imagenet"):
        file = Path(weights).expanduser()
        recipe.model.params["weights"] = str(file if file.is_absolute() else (base / file).resolve())


def _check_compressible(recipe: Recipe, path: Path) -> None:
    """tensorflow-model-optimization needs Keras 2 (tf_keras): refuse Keras 3 files up front."""
    file = recipe.model.file
    if not (recipe.compress and file is not None and file.suffix == ".keras" and file.is_file()):
        return
    import json
    import zipfile

    try:
        with zipfile.ZipFile(file) as archive:
            version = json.loads(archive.read("metadata.json")).get("keras_version", "")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return  # an unreadable file gets its own clear error when the model is loaded
    if version.startswith("3"):
        raise RecipeError(
            f"{path}: compress: {file.name} is a Keras {version} model, and pruning, clustering and QAT "
            "(tensorflow-model-optimization) work only on Keras 2 (tf_keras) models; remove the compress "
            "section (PTQ still works) or rebuild the model with `import tf_keras as keras`"
        )
