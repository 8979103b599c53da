"""Experiment config (YAML) and sticky assignment: A/B tests, interleaving, holdout, forced variants.

Assignment of one request (no state: every router replica and every restart agrees):

1. **forced** — ``context["cascade.force_variant"]`` (QA; ``"<experiment>/<variant>"``, a variant name
   that is unique across experiments, ``"holdout"`` or ``"default"``), else ``forced_users[user_id]``.
   Forced requests are flagged in their exposure event and left out of the analysis.
2. **holdout** — ``bucket(holdout.salt, user_id) < holdout.percent``: served the default path (variant
   ``holdout``), never enters an experiment; measures the combined effect of everything shipped.
3. **experiment** — ``bucket(allocation_salt, user_id)`` picks at most one experiment (experiments own
   consecutive ranges of ``traffic`` percent, in file order, so they are mutually exclusive); users in
   no range get variant ``default``.
4. **variant** — inside an ``ab`` experiment ``bucket(experiment.salt, user_id)`` picks the variant
   (consecutive ranges sized by each variant's ``traffic``). An ``interleave`` experiment has exactly
   two arms and no split: every enrolled request is a team-draft interleaving of both rankers
   (variant ``interleave``, see :mod:`cascade_router.interleave`).

``bucket(salt, user_id) = int(sha256(f"{salt}:{user_id}")[:8]) mod 10000`` (0.01 % granularity).
Changing a salt reshuffles its users; an experiment's variant hash is independent of the allocation
and holdout hashes (different salts).

File format (``CASCADE_EXPERIMENTS_FILE``; see ``docs/experiments.md``)::

    holdout: {percent: 5, salt: holdout-2024}
    experiments:
      - name: ranker-ab
        type: ab                          # ab | interleave
        salt: ranker-ab-1                 # default: the name
        traffic: 100                      # percent of (non-holdout) users enrolled
        planned_exposures_per_variant: 20000   # fixed horizon of the analysis
        variants:
          - {name: control, traffic: 50}                       # ranker_version "" = ranking default
          - {name: treatment, ranker_version: latest, num_candidates: 300, traffic: 50}
    forced_users: {qa-alice: ranker-ab/treatment}
    shadow: {ranker_version: v2, sample_percent: 10}

The legacy single-experiment form (top-level ``name``/``salt``/``variants``) is still accepted.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from cascade_core.errors import InvalidArgumentError
from cascade_core.registry import VERSION_RE
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NUM_BUCKETS = 10_000
_BUCKETS_PER_PERCENT = NUM_BUCKETS // 100
FORCE_VARIANT_KEY = "cascade.force_variant"
DEFAULT_VARIANT = "default"
HOLDOUT = "holdout"
INTERLEAVE_VARIANT = "interleave"
RESERVED_NAMES = frozenset({DEFAULT_VARIANT, HOLDOUT, INTERLEAVE_VARIANT})
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _check_percent(value: float, what: str) -> None:
    if abs(value * _BUCKETS_PER_PERCENT - round(value * _BUCKETS_PER_PERCENT)) > 1e-6:
        raise ValueError(f"{what} {value} has more than 2 decimals (granularity is 0.01%)")


def _check_version(version: str, what: str) -> None:
    if version and not VERSION_RE.match(version):
        raise ValueError(
            f"{what} {version!r} is not a registry version id (letters, digits, '.', '_' or '-')"
        )


class Variant(BaseModel):
    """One arm: which ranker scores it and, optionally, how many candidates retrieval returns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    ranker_version: str = Field(
        "", description="Registry version of the ranker; '' or 'latest' = the ranking service's default."
    )
    traffic: float | None = Field(
        None, ge=0, le=100, description="Percent of the experiment's users (ab only; 0.01 granularity)."
    )
    num_candidates: int | None = Field(
        None, ge=1, le=2000, description="Candidates asked from retrieval (unset = CASCADE_NUM_CANDIDATES)."
    )

    @model_validator(mode="after")
    def _check(self) -> Variant:
        _check_version(self.ranker_version, "ranker_version")
        if self.traffic is not None:
            _check_percent(self.traffic, "traffic")
        return self


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["ab", "interleave"] = "ab"
    salt: str | None = Field(None, min_length=1, max_length=128)
    traffic: float = Field(100.0, ge=0, le=100, description="Percent of non-holdout users enrolled.")
    variants: tuple[Variant, ...] = Field(min_length=1)
    planned_exposures_per_variant: int | None = Field(
        None, ge=1, description="Fixed analysis horizon: no verdict before every variant reached it."
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Two-sided significance level of the analysis.")
    control: str | None = Field(None, description="Variant the others are compared with (default: first).")

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        _check_percent(self.traffic, "traffic")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variants: duplicate variant names {dupes}")
        reserved = sorted(set(names) & RESERVED_NAMES)
        if reserved:
            raise ValueError(f"variants: names {reserved} are reserved ({', '.join(sorted(RESERVED_NAMES))})")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control: {self.control!r} is not one of the variants {names}")
        if self.type == "ab":
            missing = [v.name for v in self.variants if v.traffic is None]
            if missing:
                raise ValueError(f"variants: traffic missing for {missing} (ab variants split the users)")
            total = sum(v.traffic or 0 for v in self.variants)
            if abs(total - 100.0) > 1e-6:
                raise ValueError(f"variants: traffic must sum to 100, got {total:g}")
        else:
            if len(self.variants) != 2:
                raise ValueError(f"variants: an interleave experiment has exactly 2 arms, got {len(names)}")
            bad = [v.name for v in self.variants if v.traffic is not None or v.num_candidates is not None]
            if bad:
                raise ValueError(
                    f"variants: interleave arms {bad} must not set traffic or num_candidates "
                    "(both rankers score the same candidates of every enrolled request)"
                )
        return self

    @property
    def effective_salt(self) -> str:
        return self.salt or self.name

    @property
    def control_name(self) -> str:
        return self.control or self.variants[0].name

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


class Holdout(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    percent: float = Field(ge=0, le=100, description="Percent of all users kept out of every experiment.")
    salt: str = Field("cascade-holdout", min_length=1, max_length=128)
    ranker_version: str = Field("", description="Ranker the holdout gets ('' = ranking default).")

    @model_validator(mode="after")
    def _check(self) -> Holdout:
        _check_percent(self.percent, "percent")
        _check_version(self.ranker_version, "ranker_version")
        return self


class Shadow(BaseModel):
    """A ranker version that scores the same candidates after the response is built (never served)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ranker_version: str = Field(min_length=1)
    sample_percent: float = Field(100.0, ge=0, le=100, description="Percent of requests shadowed.")
    timeout_s: float = Field(1.0, gt=0, le=30, description="Deadline of one shadow Rank call.")
    max_in_flight: int = Field(4, ge=1, le=256, description="More concurrent shadow calls are skipped.")

    @model_validator(mode="after")
    def _check(self) -> Shadow:
        _check_version(self.ranker_version, "ranker_version")
        return self


class ExperimentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allocation_salt: str = Field("cascade-allocation", min_length=1, max_length=128)
    holdout: Holdout | None = None
    experiments: tuple[Experiment, ...] = ()
    forced_users: dict[str, str] = Field(default_factory=dict, description="user_id -> experiment/variant.")
    allow_forced_variants: bool = Field(True, description=f"Honour context[{FORCE_VARIANT_KEY!r}].")
    shadow: Shadow | None = None

    @model_validator(mode="after")
    def _check(self) -> ExperimentsConfig:
        names = [e.name for e in self.experiments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"experiments: duplicate experiment names {dupes}")
        total = sum(e.traffic for e in self.experiments)
        if total > 100.0 + 1e-6:
            raise ValueError(f"experiments: traffic of all experiments must be at most 100, got {total:g}")
        for user, target in self.forced_users.items():
            try:
                resolve_forced(self, target)
            except ValueError as e:
                raise ValueError(f"forced_users.{user}: {e}") from None
        return self

    @classmethod
    def default(cls) -> ExperimentsConfig:
        """No experiment file: one experiment ``default`` whose only variant ``control`` gets everyone."""
        return cls.single("default", None, (Variant(name="control", traffic=100),))

    @classmethod
    def single(cls, name: str, salt: str | None, variants: tuple[Variant, ...]) -> ExperimentsConfig:
        return cls(experiments=(Experiment(name=_safe_name(name), salt=salt or name, variants=variants),))

    def experiment(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)

    def summary(self) -> str:
        parts = []
        if self.holdout:
            parts.append(f"holdout {self.holdout.percent:g}%")
        for e in self.experiments:
            arms = ", ".join(
                f"{v.name}" + (f"={v.traffic:g}%" if v.traffic is not None else "") for v in e.variants
            )
            parts.append(f"{e.name} [{e.type}, {e.traffic:g}%: {arms}]")
        if self.shadow:
            parts.append(f"shadow {self.shadow.ranker_version} @{self.shadow.sample_percent:g}%")
        return "; ".join(parts) or "no experiments"


def _safe_name(name: str) -> str:
    """Legacy experiment names allowed any characters; map them onto the name pattern."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-._")[:64] or "experiment"


def resolve_forced(config: ExperimentsConfig, target: str) -> tuple[Experiment | None, str]:
    """``"exp/variant"``, a unique variant name, ``"holdout"`` or ``"default"`` -> (experiment, variant).

    Raises ValueError naming the known choices.
    """
    if target in (DEFAULT_VARIANT, HOLDOUT):
        return None, target
    if "/" in target:
        exp_name, _, var_name = target.partition("/")
        exp = config.experiment(exp_name)
        if exp is None:
            known = [e.name for e in config.experiments]
            raise ValueError(f"unknown experiment {exp_name!r} (known: {known})")
        if var_name == INTERLEAVE_VARIANT and exp.type == "interleave":
            return exp, var_name
        if exp.variant(var_name) is None:
            raise ValueError(f"experiment {exp_name!r} has no variant {var_name!r}")
        return exp, var_name
    hits = [(e, target) for e in config.experiments if e.variant(target) is not None]
    if len(hits) == 1:
        return hits[0]
    choices = [f"{e.name}/{v.name}" for e in config.experiments for v in e.variants]
    if not hits:
        raise ValueError(f"unknown variant {target!r} (use one of {choices}, 'holdout' or 'default')")
    raise ValueError(f"variant {target!r} is ambiguous: name it as experiment/variant ({choices})")


class ExperimentConfigError(ValueError):
    """The experiment file is missing or invalid; the message names the file and the field."""


def parse_experiments(raw: Any, source: str = "<config>") -> ExperimentsConfig:
    """Validate a decoded YAML document (either form)."""
    if not isinstance(raw, dict):
        raise ExperimentConfigError(
            f"{source}: expected a mapping with 'experiments' (or legacy 'variants'), "
            f"got {type(raw).__name__}"
        )
    try:
        if "variants" in raw:  # legacy single-experiment form
            extra = sorted(set(raw) - {"name", "salt", "variants"})
            if extra:
                raise ExperimentConfigError(
                    f"{source}: the single-experiment form takes name, salt and variants only; "
                    f"move {extra} into the 'experiments:' form"
                )
            name = str(raw.get("name") or "default")
            legacy = Experiment.model_validate(
                {"name": _safe_name(name), "salt": raw.get("salt") or name, "variants": raw["variants"]}
            )
            return ExperimentsConfig(experiments=(legacy,))
        return ExperimentsConfig.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            problems.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
        raise ExperimentConfigError(f"{source}: invalid experiment config: " + "; ".join(problems)) from None


def parse_experiments_text(text: str, source: str = "<config>") -> ExperimentsConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ExperimentConfigError(f"{source}: not valid YAML: {e}") from None
    return parse_experiments(raw, source)


def load_experiments(path: Path | str) -> ExperimentsConfig:
    """Read and validate a YAML experiment file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ExperimentConfigError(f"{p}: cannot read experiment file: {e.strerror or e}") from None
    return parse_experiments_text(text, str(p))


def bucket(salt: str, user_id: str) -> int:
    """Stable bucket 0..9999 of ``user_id`` under ``salt``."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % NUM_BUCKETS


_DEFAULT = Variant(name=DEFAULT_VARIANT)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one request goes. ``experiment`` is "" for users in no experiment and for the holdout."""

    experiment: str
    variant: Variant
    kind: Literal["ab", "interleave", "holdout", "none"]
    forced: bool = False
    # interleave: the two arms (ranker versions) whose lists are interleaved.
    arms: tuple[Variant, Variant] | None = None
    # ab: the variant's configured share of the experiment's users, for the analysis' SRM check.
    traffic: float | None = None
    salt: str = ""

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def ranker_version(self) -> str:
        return self.variant.ranker_version


class _Ranges:
    """Consecutive bucket ranges sized by percentages, in order; zero-width entries never match."""

    def __init__(self, items: list[tuple[Any, float]]) -> None:
        self._bounds: list[int] = []
        self._items: list[Any] = []
        acc = 0
        for item, pct in items:
            width = round(pct * _BUCKETS_PER_PERCENT)
            if width == 0:
                continue
            acc += width
            self._bounds.append(acc)
            self._items.append(item)

    def pick(self, b: int) -> Any | None:
        i = bisect.bisect_right(self._bounds, b)
        return self._items[i] if i < len(self._items) else None


class Assigner:
    """Maps a request to its :class:`Assignment`.

    Ranges and the (immutable) non-forced assignments are built once per config, so a request costs
    one to three sha256 buckets and a bisect.
    """

    def __init__(self, config: ExperimentsConfig) -> None:
        self.config = config
        self._experiments = _Ranges([(e, e.traffic) for e in config.experiments])
        only = config.experiments[0] if len(config.experiments) == 1 else None
        self._only = only if only is not None and only.traffic >= 100 else None
        self._variants = {
            e.name: _Ranges([
                (Assignment(e.name, v, "ab", traffic=v.traffic, salt=e.effective_salt), v.traffic or 0.0)
                for v in e.variants
            ])
            for e in config.experiments
            if e.type == "ab"
        }
        self._interleaved = {
            e.name: self._interleave(e) for e in config.experiments if e.type == "interleave"
        }
        self._holdout_width = round(config.holdout.percent * _BUCKETS_PER_PERCENT) if config.holdout else 0
        self._holdout_assignment = self._holdout()
        self._none = Assignment("", _DEFAULT, "none")

    def assign(self, user_id: str, context: dict[str, str] | None = None) -> Assignment:
        if (context and FORCE_VARIANT_KEY in context) or user_id in self.config.forced_users:
            forced = self._forced_target(user_id, context)
            if forced is not None:
                return self._forced(forced)
        cfg = self.config
        holdout = cfg.holdout
        width = self._holdout_width
        if width and holdout is not None and bucket(holdout.salt, user_id) < width:
            return self._holdout_assignment
        exp: Experiment | None = self._only or self._experiments.pick(bucket(cfg.allocation_salt, user_id))
        if exp is None:
            return self._none
        if exp.type == "interleave":
            return self._interleaved[exp.name]
        assignment = self._variants[exp.name].pick(bucket(exp.effective_salt, user_id))
        assert assignment is not None  # ab traffic sums to 100
        return assignment

    def _forced_target(self, user_id: str, context: dict[str, str] | None) -> str | None:
        if context and FORCE_VARIANT_KEY in context:
            if not self.config.allow_forced_variants:
                raise InvalidArgumentError(
                    "context", f"{FORCE_VARIANT_KEY} is disabled (allow_forced_variants: false)"
                )
            return context[FORCE_VARIANT_KEY]
        return self.config.forced_users.get(user_id)

    def _forced(self, target: str) -> Assignment:
        try:
            exp, name = resolve_forced(self.config, target)
        except ValueError as e:
            raise InvalidArgumentError("context", f"{FORCE_VARIANT_KEY}: {e}") from None
        if exp is None:
            if name == HOLDOUT:
                return self._holdout(forced=True)
            return Assignment("", _DEFAULT, "none", forced=True)
        if exp.type == "interleave" and name == INTERLEAVE_VARIANT:
            return self._interleave(exp, forced=True)
        variant = exp.variant(name)
        assert variant is not None
        # An interleave arm forced alone is served as a plain list of that ranker (QA).
        return Assignment(
            exp.name, variant, "ab", forced=True, traffic=variant.traffic, salt=exp.effective_salt
        )

    def _holdout(self, forced: bool = False) -> Assignment:
        h = self.config.holdout
        variant = Variant(name=HOLDOUT, ranker_version=h.ranker_version if h else "")
        return Assignment("", variant, "holdout", forced=forced, salt=h.salt if h else "")

    def _interleave(self, exp: Experiment, forced: bool = False) -> Assignment:
        a, b = exp.variants
        return Assignment(
            exp.name, Variant(name=INTERLEAVE_VARIANT, ranker_version=a.ranker_version), "interleave",
            forced=forced, arms=(a, b), salt=exp.effective_salt,
        )
