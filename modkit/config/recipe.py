"""The recipe: one YAML file that says what to train, validated before anything runs.

Sections whose contents depend on a plugin (a modality, the fusion, the sampler, the dataset)
are :class:`Component` objects: ``type`` picks the plugin, the other keys are that plugin's
options and are validated by the plugin's own pydantic ``Config`` (see :func:`component_config`).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic_core import PydanticCustomError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modkit.errors import RecipeError
from modkit.config.project import ProjectConfig


class RecipeLoader(yaml.SafeLoader):
    """YAML for recipes: no anchors or aliases (a few hundred bytes of nested aliases expand to gigabytes
    before any check runs), and a key given twice in one mapping is an error, not "the last one wins"."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            mark = self.peek_event().start_mark
            raise RecipeError("", f"line {mark.line + 1}: YAML anchors and aliases (&name, *name) are not allowed in a "
                                  "recipe; write the values out", source=_source_of(self))
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise RecipeError("", f"line {line}: key '{key}' is given twice in one mapping (first at line {seen[key]}); "
                                      "keep one", source=_source_of(self))
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep)


RecipeLoader.add_constructor("tag:yaml.org,2002:map", RecipeLoader.construct_yaml_map)


def _source_of(loader: yaml.SafeLoader) -> str | None:
    name = getattr(loader, "name", None)
    return name if name and not name.startswith("<") else None


def parse_yaml(text: str, source: str | None = None) -> Any:
    """A YAML document through :class:`RecipeLoader` (no aliases, no duplicate keys)."""
    loader = RecipeLoader(text)
    if source:
        loader.name = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # lr: .inf or nan is a mistake, never a setting


class Component(BaseModel):
    """``{type: NAME, ...options}``; a bare string is shorthand for ``{type: NAME}``."""

    model_config = ConfigDict(extra="allow")
    type: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModalitySpec(Component):
    """A modality: ``type`` is the plugin; ``weight`` is λ; ``field`` is the dataset column (default: the key)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    weight: float = Field(1.0, ge=0)
    field: str | None = None


class DataSpec(Strict):
    dataset: Component
    root: str | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    paired_fraction: float = Field(1.0, gt=0, le=1)
    #: what the unpaired rows of weak supervision become: "split" (MVAE: one row per modality alone), "drop"
    #: (train on the pairs only), or the modalities an unpaired row keeps (["image"]: image-only rows)
    unpaired: Literal["split", "drop"] | list[str] = "split"
    #: each training row this many times per epoch; "match": as many rows per epoch as ``unpaired: split``
    #: would give, so a pairs-only arm (``unpaired: drop``) takes as many optimiser steps as MVAE's protocol;
    #: "all": as many rows per epoch as the training split has scenes, so a fine-tuning on few labels takes
    #: as many optimiser steps as one on every label
    repeat: Annotated[int, Field(ge=1)] | Literal["match", "all"] = 1
    #: modalities the model has but training never sees (missing in every training row; rows left with nothing
    #: are dropped): LCMVAE's pre-training without the masks its fine-tuning predicts, an image-only arm of an
    #: image + caption recipe. The test split keeps them.
    withhold: list[str] = []
    batch_size: int = Field(64, ge=1)
    #: balanced batches: each training batch holds this many paired rows (every modality present: the labelled
    #: ones) and ``batch_size`` minus that many of the others; an epoch is one pass over the others, the paired
    #: rows cycling in their own shuffled order (M2's 8 labelled + 8 unlabelled). None: rows drawn at random
    paired_per_batch: int | None = Field(None, ge=1)
    #: where the run is measured: "test" (the test split) or "validation", rows carved from the training split
    #: (``validation_fraction`` of it, seeded by ``split_seed``) that training then never sees, so a setting can be
    #: tuned without looking at the test split
    evaluate_on: Literal["test", "validation"] = "test"
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    #: rows carved from the training split (this fraction of it, seeded by ``split_seed``) that training never
    #: sees and that are scored after every epoch (``monitor/*`` in metrics.jsonl: the joint ELBO and the
    #: cross-modal accuracies): a curve of how the model does on data it does not fit, which a rule for
    #: "still improving" can read instead of the training loss. 0: none
    monitor_fraction: float = Field(0.0, ge=0, lt=0.5)
    eval_batch_size: int = Field(512, ge=1)
    num_workers: int = Field(0, ge=0)
    on_bad_sample: Literal["error", "skip"] = "error"


class BetaSpec(Strict):
    """β rises linearly from ``start`` to ``end`` over ``anneal_epochs`` (0: ``end`` from the start)."""

    start: float = Field(0.0, ge=0)
    end: float = Field(1.0, ge=0)
    anneal_epochs: float = Field(0.0, ge=0)


class ModelSpec(Strict):
    latent_dim: int = Field(32, ge=1)
    fusion: Component = Component(type="poe")
    sampler: Component = Component(type="mvae")
    beta: BetaSpec = BetaSpec()


class SchedulerSpec(Strict):
    type: Literal["cosine", "step", "exponential"]
    step_epochs: int = Field(10, ge=1)
    gamma: float = Field(0.5, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0)


class DivergenceSpec(Strict):
    """The divergence guard: a step whose loss or gradient is not finite is always skipped and counted;
    after ``max_bad_steps`` such steps in a row the run rolls back to its last good checkpoint with the
    learning rate times ``lr_factor`` (at most ``max_rollbacks`` times), or stops (``action: stop``)."""

    max_bad_steps: int = Field(20, ge=1, description="non-finite steps in a row before acting")
    action: Literal["rollback", "stop"] = "rollback"
    lr_factor: float = Field(0.5, gt=0, lt=1, description="learning-rate multiplier applied on each rollback")
    max_rollbacks: int = Field(3, ge=0, description="rollbacks allowed before the run stops")


STAGE_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


class StageSpec(Strict):
    """One stage of multistage training (``train.stages``): its own epochs, the parameters it freezes, and the
    objective the fusion is told to use in it (docs/recipes.md, "Training in stages")."""

    name: str = Field(description="names the stage in the console, metrics.jsonl and the checkpoint")
    epochs: int = Field(ge=1, description="epochs this stage trains")
    freeze: list[str] = Field([], description="model parts frozen in this stage: dotted parameter-name prefixes whose "
                                              "components may be globs (fusion.joint, modalities.*.decoder)")
    objective: str | None = Field(None, description="the objective the fusion uses in this stage (default: the stage's name)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(STAGE_NAME, value):
            raise ValueError("may use letters, digits, '_' and '-' only, starting with a letter, at most 64")
        return value

    @field_validator("freeze")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or any(not part for part in pattern.split(".")):
                raise ValueError(f"'{pattern}' is not a dotted name such as fusion.joint or modalities.*.decoder")
        return value

    @property
    def goal(self) -> str:
        """The objective the fusion is told: ``objective``, or the stage's name."""
        return self.objective or self.name


class TrainSpec(Strict):
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw"] = "adam"
    amsgrad: bool = False
    scheduler: SchedulerSpec | None = None
    grad_clip: float | None = Field(None, gt=0)
    device: str = "auto"
    log_every: int = Field(50, ge=1)
    checkpoint_every: int | None = Field(None, ge=1, description="also checkpoint every N steps")
    progress: bool = True
    divergence: DivergenceSpec = DivergenceSpec()
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="mixed precision of the forward (autocast); fusion math stays float32")
    compile: bool = Field(False, description="torch.compile the model's forward (the training step's objective)")
    # intra-op CPU threads (modkit/training/threads.py); auto: one unless the operators are large enough to gain from more
    threads: str | int = Field("auto", description="torch intra-op threads on the CPU: auto or a number")
    stages: list[StageSpec] | None = Field(None, min_length=1, description="train in stages, one after another in one run "
                                           "(default: the fusion's own stages, if it declares any; else one stage)")

    @model_validator(mode="after")
    def _stage_epochs(self) -> "TrainSpec":
        if self.stages:
            names = [stage.name for stage in self.stages]
            twice = next((n for n in names if names.count(n) > 1), None)
            if twice:
                raise PydanticCustomError("value_error", f"stage name '{twice}' is given twice; each stage needs its own name")
            total = sum(stage.epochs for stage in self.stages)
            if "epochs" in self.model_fields_set and self.epochs != total:
                raise PydanticCustomError("value_error", f"train.epochs is {self.epochs} but the stages' epochs add up to {total}; "
                                                    "give the epochs in the stages alone")
            self.epochs = total  # the run's length everywhere else (schedules, progress, the loop)
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu") and not value.startswith("cuda"):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: str | int) -> str | int:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"must be auto or a whole number of threads ≥ 1 (got {value!r})")


class EvalSpec(Strict):
    samples: int = Field(8, ge=1, le=64, description="test items shown in samples.png")
    coherence: bool = True
    latent_sampler: Component | None = Field(
        None, description="a latent sampler (gmm, maf, iaf, with its options) fitted to the training set when training ends, "
        "stored as samplers/NAME.safetensors for modkit sample --sampler NAME (docs/samplers.md)")
    judges: str | None = Field(None, description="a dataset judges file (safetensors) that scores coherence instead of the dataset's own")


class TrackingSpec(Strict):
    """Where a run is tracked besides its own files: TensorBoard event files, optionally MLflow (docs/tracking.md)."""

    tensorboard: bool = Field(True, description="TensorBoard event files in the run directory")
    mlflow: bool | str | None = Field(None, description="true: $MLFLOW_TRACKING_URI or RUNS_DIR/mlflow.db; or any MLflow tracking URI")
    experiment: str | None = Field(None, description="MLflow experiment (default: the recipe's name)")


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Recipe(Strict):
    name: str = Field("run", description="names the run directory RUNS_DIR/NAME-TIMESTAMP: letters, digits, '.', '_' "
                                         "and '-', at most 100, not starting with '.' (so it never leaves runs_dir)")
    seed: int = 0
    plugins: list[str] = []
    data: DataSpec
    modalities: dict[str, ModalitySpec]
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    tracking: TrackingSpec = TrackingSpec()  # where the run is tracked besides its own files

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(NAME_PATTERN, value):
            raise ValueError("may use letters, digits, '.', '_' and '-' only, at most 100 of them, and may not start with "
                             "'.', '_' or '-' (it names a folder inside runs_dir)")
        return value

    @field_validator("modalities")
    @classmethod
    def _some(cls, value: dict[str, ModalitySpec]) -> dict[str, ModalitySpec]:
        if not value:
            raise ValueError("needs at least one modality")
        for key in value:
            if not key.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"modality name '{key}' may use letters, digits, '_' and '-' only")
        return value

    def field_of(self, modality: str) -> str:
        return self.modalities[modality].field or modality


# -- loading ---------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a", "b", "c"], value parsed as YAML, so 1e-3, true, [1, 2] work)."""
    if "=" not in text:
        raise RecipeError("--set", f"'{text}' is not key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError("--set", f"'{key}' is not a dotted key such as train.lr")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i + 1 == len(parts) - 1 and parts[-1] != "type":
                child = {"type": child}  # fusion: poe  +  --set model.fusion.k=2
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise RecipeError(".".join(parts[: i + 1]), f"is {type(child).__name__}, cannot set '{parts[-1]}' inside it")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError("", "recipe file not found", source=str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError("", f"not UTF-8 text (byte {exc.start}); save the recipe as UTF-8", source=str(path)) from None
    except OSError as exc:
        raise RecipeError("", f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    try:
        raw = parse_yaml(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError("", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", source=str(path)) from None
    if not isinstance(raw, dict):
        raise RecipeError("", "a recipe must be a mapping of keys (name, data, modalities, model, train)", source=str(path))
    return raw


def format_validation_error(exc: ValidationError, source: str | None) -> RecipeError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "literal_error":
        msg = f"{msg} (got {_short(err.get('input'))})"
    elif err.get("input") is not None and err["type"] not in ("value_error",):
        msg = f"{msg} (got {_short(err.get('input'))})"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return RecipeError(loc, msg, source=source)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def validate_recipe(raw: dict[str, Any], source: str | None = None) -> Recipe:
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        error = format_validation_error(exc, source)
        # say what is allowed where a key is unknown
        err = exc.errors()[0]
        if err["type"] == "extra_forbidden":
            owner: type[BaseModel] = Recipe
            for part in err["loc"][:-1]:
                field = owner.model_fields.get(str(part)) if isinstance(part, str) else None
                ann = getattr(field, "annotation", None) if field else None
                candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
                if not candidates:
                    break
                owner = candidates[0]
            error = RecipeError(error.key, f"unknown key (allowed: {allowed_keys(owner)})", source=source)
        raise error from None
    return recipe


def load_recipe(path: Path | str, overrides: list[str] = (), project: ProjectConfig | None = None) -> tuple[Recipe, dict[str, Any]]:
    """Read, merge defaults and ``--set`` overrides, validate. Returns the recipe and its resolved dict."""
    path = Path(path)
    raw = read_yaml(path)
    return resolve_raw(raw, list(overrides), project, source=str(path))


def resolve_raw(raw: dict[str, Any], overrides: list[str], project: ProjectConfig | None, source: str | None) -> tuple[Recipe, dict[str, Any]]:
    raw = copy.deepcopy(raw)
    if project is not None:
        raw.setdefault("seed", project.seed)
        if project.plugins:
            raw["plugins"] = list(dict.fromkeys([*project.plugins, *raw.get("plugins", [])]))
        train = raw.setdefault("train", {})
        if isinstance(train, dict):
            train.setdefault("device", project.device)
        data = raw.get("data")
        if isinstance(data, dict):
            data.setdefault("root", str(project.data_dir))
        # modkit.toml's [modkit.tracking] are defaults the recipe's own tracking: keys override
        if project.tracking and isinstance(raw.get("tracking", {}), dict):
            raw["tracking"] = {**project.tracking, **raw.get("tracking", {})}
    raw = apply_overrides(raw, overrides)
    recipe = validate_recipe(raw, source)
    resolved = recipe.model_dump(mode="json", exclude_none=False)
    return recipe, resolved


def component_config(component: Component, config_cls: type[BaseModel], key: str, source: str | None = None) -> BaseModel:
    """Validate a component's options with its plugin's Config; errors name ``key.option``."""
    data = {"type": component.type, **component.options}
    if isinstance(component, ModalitySpec):
        data.update(weight=component.weight, field=component.field)
    try:
        return config_cls.model_validate(data)
    except ValidationError as exc:
        error = format_validation_error(exc, source)
        if exc.errors()[0]["type"] == "extra_forbidden":
            error = RecipeError(error.key, f"unknown option for {component.type} (allowed: {allowed_keys(config_cls)})", source)
        raise RecipeError(f"{key}.{error.key}" if error.key else key, error.message, source) from None
