"""What a claim of ``python -m reproductions`` is: its arms, its baseline, its metric and the verdict rule written
before anything runs (the catalogues: :mod:`reproductions.claims`, :mod:`reproductions.claims_shapes`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


#: the recipes only the claims use (those the docs present to users stay in the repository's recipes/)
RECIPES = Path(__file__).resolve().parent / "recipes"


def project_root() -> Path:
    """The modkit checkout this package lives in: its recipes/, docs/ and the report's default place."""
    return Path(__file__).resolve().parents[1]


def find_recipe(name: str, recipes_dir: Path | None = None) -> Path:
    """A recipe an arm names: an absolute path as it is; else from the claims' own recipes; else from
    ``recipes_dir`` if given, else a path relative to the working directory if there is one, else the
    checkout's recipes/."""
    path = Path(name)
    if path.is_absolute():
        return path
    if (RECIPES / name).is_file():
        return RECIPES / name
    if recipes_dir is not None:
        return Path(recipes_dir) / name
    return path if path.exists() else project_root() / "recipes" / name


#: the verdict rule every claim uses unless it says otherwise (written before the run)
GAP_RULE = ("At each x in the claim's region, gap = mean(subject) − mean(baseline) and "
            "se = √(sd_subject²/n_subject + sd_baseline²/n_baseline). **Reproduced** if gap > 2·se at some x of the "
            "region; **contradicted** if gap < −2·se at every x of the region; **reproduced in direction only** if "
            "gap > 0 at some x but nowhere by 2·se; otherwise **not reproduced**. With one seed (--quick) se is "
            "unknown and the verdict is **inconclusive**.")


#: what a cell of the setup table says where the paper does not state the setting
NOT_STATED = "not stated"


@dataclass(frozen=True)
class Setting:
    """One row of a claim's setup table: modkit's value is read from an arm's resolved recipe (never typed), the
    paper's is declared from the paper (``../shared/REFERENCE.md`` and the seed texts; :data:`NOT_STATED` when they
    say nothing).

    ``read``: a dotted key of the resolved recipe (``model.fusion.alpha``) or one of the readers of
    :mod:`reproductions.setups` written ``@name`` (``@train_rows``, ``@resolution``, ``@pairs``, ``@beta``, …).
    ``value``: the paper's value in the reader's terms (a number or a string), what "matching" compares; a
    *key* setting (``key=True``) that differs makes a failing claim "not reproduced at this scale" rather than
    "contradicted", so every key setting states a value. ``arm``: whose recipe is read (default the subject)."""
    name: str
    paper: str = NOT_STATED
    read: str = ""
    value: Any = None
    key: bool = False
    arm: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """What is known about why a claim does or does not reproduce, with the control that supports it: an arm of the
    same claim (``"poe-pairs-steps"``) or of another (``"claim-id/arm"``), or a whole claim (``"claim-id"``). A
    diagnosis whose control has no result is rendered as unsupported, not as a finding."""
    text: str
    control: str


@dataclass(frozen=True)
class Plateau:
    """The rule, fixed before the run, for "still improving": over the last ``window`` of the epochs (a fraction of
    them, at least 2), the mean over seeds of the per-epoch ``key`` (metrics.jsonl) must not improve on its best
    before them by more than ``tolerance`` of that best's size. Lower is better for a loss."""
    key: str = "train/loss"
    window: float = 0.2
    tolerance: float = 0.01
    lower_is_better: bool = True

    def text(self) -> str:
        way = "fall" if self.lower_is_better else "rise"
        return (f"an arm has plateaued when the mean over seeds of its per-epoch `{self.key}` does not {way} over the "
                f"last {self.window:.0%} of the epochs (at least 2) by more than {self.tolerance:.0%} of its best before them")


#: every claim's plateau rule unless it says otherwise: the training objective (a model still improving its training
#: loss has not converged). The claims' runs hold no rows out for a per-epoch score; a claim whose arms set
#: ``data.monitor_fraction`` can read the held-out joint ELBO instead: ``Plateau("monitor/elbo", lower_is_better=False)``
PLATEAU = Plateau()


@dataclass(frozen=True)
class PaperTier:
    """``--tier paper``: the paper's data and settings. ``sets`` are added to every arm's (after the arm's own),
    ``xs`` replace the claim's x values where given; ``data`` names the datasets the tier needs, each
    (dataset type, what it is), checked present locally before anything runs."""
    sets: tuple[str, ...] = ()
    xs: tuple[float, ...] = ()
    data: tuple[tuple[str, str], ...] = ()


#: the recipe key a two-stage arm's start is written to by default (LCMVAE's fine-tuning from its pre-training)
INIT_KEY = "model.fusion.downstream.init_from"


@dataclass(frozen=True)
class Arm:
    name: str
    recipe: str = ""  # a file of reproductions/recipes/ or of the repository's recipes/ (find_recipe)
    sets: tuple[str, ...] = ()
    #: "model": trained over seeds at every x; "logreg": scikit-learn on the recipe's labelled pairs; "copy" and
    #: "ridge": a transform's floors (the source view itself, a ridge regression from it), no model (``pixel_floor``);
    #: "pretrain": trained over seeds once, at no x (the claim's x is a later stage's), only to start the arms
    #: that name it in ``after``: not a row of the tables; "best": trains nothing, at each x it is the arm of
    #: ``best_of`` (model arms listed before it) with the best mean there, by ``select_on``'s validation means where
    #: given (else on the test scenes); "tune": trained like a model arm but no column of the tables: a validation
    #: twin that only ``select_on`` reads
    #: "multivae": MultiVae's model ``peer`` trained on this recipe's rows, nets and budget in MultiVae's own venv
    #: (:mod:`reproductions.peer`)
    kind: str = "model"
    label: str = ""  # how tables name it
    #: two stages: the name of an earlier arm of the claim; each run of this arm starts from that arm's run of the
    #: same seed (and the same x, where that arm is swept over x), whose directory is written to ``init_key``
    after: str = ""
    init_key: str = INIT_KEY
    metric: str = ""  # the summary key this arm's number comes from, when not the claim's (e.g. another input)
    #: trained at this x alone, whatever the claim's x values: a reference shown at every x (e.g. all pairs aligned)
    at: float | None = None
    #: modules an optional extra installs (``pip install ".[lcmvae]"``): without them the arm, and every arm that
    #: starts from it, is reported as not run instead of failing the claim
    requires: tuple[str, ...] = ()
    #: a "best" arm's candidates: earlier arms of the claim, one network at different settings
    best_of: tuple[str, ...] = ()
    #: a "best" arm's judges: for each candidate of ``best_of`` (same order) the arm whose mean chooses it, the same
    #: network measured on a validation split carved from the training rows (``data.evaluate_on=validation``), so
    #: the choice never sees the test scenes; empty: the candidates' own means (on the test scenes)
    select_on: tuple[str, ...] = ()
    #: metrics this arm's model does not define (reported as —, even from runs trained before the code said so)
    not_applicable: tuple[str, ...] = ()
    #: a "multivae" arm's model in MultiVae 1.0.3 (MVAE, MoPoE), trained beside the modkit arm of the same recipe and sets
    peer: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    source: str  # paper and where in it
    statement: str  # what the paper claims
    paper_number: str  # what it reports, quoted
    metric: str  # a summary.json / eval.json summary key, or a pattern with * (the mean of the keys it matches); {x}: see x_in_metric
    metric_label: str
    arms: tuple[Arm, ...]
    subject: str
    baseline: str
    x_key: str | None = None
    #: x is no recipe key but part of the metric's key (``{x}`` in ``metric``, e.g. ``coherence/given_{x}``): every arm
    #: trains once per seed and is read at each x (``x_key`` then only names the axis)
    x_in_metric: bool = False
    xs: tuple[float, ...] = ()
    quick_xs: tuple[float, ...] = ()
    region: tuple[float, ...] = ()  # the xs the verdict looks at (default: all)
    quick_sets: tuple[str, ...] = ("train.epochs=1",)  # the quick tier checks the machinery: one epoch shows it
    evaluate: dict | None = None  # EvalSettings for arms whose metric comes from eval.json
    quick_evaluate: dict | None = None
    rule: str = GAP_RULE
    #: how the verdict is decided: "gap" (GAP_RULE), "not_worse" (the subject at least matches the baseline) or
    #: "no_divergence" (every seed of the subject finished without a skipped step or rollback)
    judge: str = "gap"
    lower_is_better: bool = False  # an error, not a score: the rule reads gap as baseline − subject
    #: facts about the setup a reader needs (rendered as notes, not findings: a finding is a ``diagnoses`` entry)
    diagnosis: str = ""
    #: findings about why it does or does not reproduce, each with the control that supports it
    diagnoses: tuple[Diagnosis, ...] = ()
    #: the setup table: each setting beside the paper's (rendered per claim; key settings decide "at this scale")
    setup: tuple[Setting, ...] = ()
    #: "paper": the paper's own question; "modkit": a question the paper did not pose (labelled so, never
    #: "contradicted" or "reproduced" of the paper)
    question: str = "paper"
    #: whether the arms still improve (None: not checked for this claim, e.g. a fixed-length stability run)
    plateau: Plateau | None = PLATEAU
    #: what x counts in absolute numbers (e.g. "aligned pairs"): the table shows round(x · training rows) beside x
    x_count: str = ""
    #: the paper's data and settings (``--tier paper``); None: no paper tier declared
    paper_tier: PaperTier | None = None
    #: further metrics reported beside the verdict's, each (summary key, label): no verdict, same arms and runs
    also: tuple[tuple[str, str], ...] = ()
    extra: dict = field(default_factory=dict)
