"""Experiment analysis: exposures joined with user events by ``request_id``.

    cascade experiments report ranker-demo --bootstrap 127.0.0.1:9092
    cascade experiments report ranker-demo --exposures exposures.jsonl --events events.jsonl
    python -m cascade_pipelines.analysis ranker-demo --bootstrap 127.0.0.1:9092 --json

Inputs are the router's exposure events (topic ``exposures``, schema ``cascade.exposure.v1``) and the
storefront's user events (topic ``user-events``, ``docs/events.md``), from Kafka or from JSON-lines
files. A request is *clicked* / *carted* / *converted* when a ``click`` / ``add_to_cart`` /
``purchase`` event with its ``request_id`` names one of the items it showed. Forced (QA) exposures
and duplicate request ids are left out.

**A/B experiments** — per variant: exposures (requests), users, click-through rate (clicked
requests / exposures), add-to-cart rate and conversion rate, each with a Wilson score interval; each
treatment against the control: the difference with Newcombe's hybrid score interval, the relative
lift and a two-proportion z-test p-value. Intervals are at ``1 - alpha/m`` for ``m`` treatments
(Bonferroni). Unit: the request; randomisation is by user, so intervals are slightly narrow for
very heavy users.

**Peeking guard (fixed horizon)** — a verdict ("significant" when the interval excludes 0, else
"no significant difference") is given only once *every* variant has reached the planned number of
exposures (``planned_exposures_per_variant`` in the experiment config, or ``--planned``); before that
the report says ``not significant yet (n/planned)`` whatever the interim numbers, since stopping at
the first significant look inflates false positives. Without a plan the numbers are descriptive
(``underpowered: no planned sample size``).

**Sample-ratio mismatch** — distinct users per variant against the configured split (each exposure
carries its variant's ``traffic`` percent) with a chi-square test; ``p < 0.001`` is a warning that the
assignment or the logging is broken and the results are not trustworthy.

**Interleaving experiments** — every click on an interleaved list is credited to the arm (team)
that contributed the clicked item; a request is a win for the arm with more credited clicks, a tie
when both have the same non-zero count. Preference for B = (wins B + ties/2) / (wins + ties) - 0.5,
and an exact two-sided sign test on wins vs losses.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

ENGAGEMENTS = ("click", "add_to_cart", "purchase")
METRICS = {"click": "ctr", "add_to_cart": "add_to_cart_rate", "purchase": "conversion_rate"}
SRM_P_THRESHOLD = 0.001


# -- statistics (no scipy: small, exact enough, tested against known values) ------------------------
def z_for(confidence: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k/n`` ((0, 1) when n == 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff(k1: int, n1: int, k2: int, n2: int, z: float = 1.96) -> tuple[float, float, float]:
    """Difference ``p2 - p1`` with Newcombe's hybrid score interval (method 10): (diff, low, high)."""
    p1 = k1 / n1 if n1 else 0.0
    p2 = k2 / n2 if n2 else 0.0
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p2 - p1
    return d, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when undefined)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k2 / n2 - k1 / n1) / se
    return 2.0 * (1.0 - NormalDist().cdf(abs(z)))


def _gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (series / Lentz continued fraction)."""
    if x <= 0:
        return 1.0
    log_pre = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_pre))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_pre) * h)


def chi2_sf(x: float, df: int) -> float:
    """Survival function of the chi-square distribution."""
    if df < 1:
        raise ValueError(f"chi-square needs df >= 1, got {df}")
    return _gamma_q(df / 2.0, x / 2.0)


def chi_square_gof(observed: list[int], expected_share: list[float]) -> tuple[float, float]:
    """Goodness-of-fit statistic and p-value of counts against shares (renormalised to sum 1)."""
    total = sum(observed)
    norm = sum(expected_share)
    if total == 0 or norm <= 0 or len(observed) < 2:
        return 0.0, 1.0
    stat = 0.0
    for o, s in zip(observed, expected_share):
        e = total * s / norm
        if e <= 0:
            if o > 0:
                return math.inf, 0.0
            continue
        stat += (o - e) ** 2 / e
    return stat, chi2_sf(stat, len(observed) - 1)


def binom_two_sided(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test (sum of outcomes no more likely than ``k``); normal beyond 200k."""
    if n == 0:
        return 1.0
    if n > 200_000:
        z = (k - n * p) / math.sqrt(n * p * (1 - p))
        return 2.0 * (1.0 - NormalDist().cdf(abs(z)))
    i = np.arange(n + 1, dtype=np.float64)
    lg = np.vectorize(math.lgamma)
    logpmf = lg(n + 1.0) - lg(i + 1.0) - lg(n - i + 1.0) + i * math.log(p) + (n - i) * math.log1p(-p)
    pk = logpmf[k]
    return float(min(1.0, np.exp(logpmf[logpmf <= pk + 1e-7]).sum()))


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value."""
    a = np.sort(np.asarray(a, dtype=np.float64))
    b = np.sort(np.asarray(b, dtype=np.float64))
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    allv = np.concatenate([a, b])
    cdf1 = np.searchsorted(a, allv, side="right") / n1
    cdf2 = np.searchsorted(b, allv, side="right") / n2
    d = float(np.max(np.abs(cdf1 - cdf2)))
    en = math.sqrt(n1 * n2 / (n1 + n2))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return d, 1.0
    p = 2.0 * sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam) for j in range(1, 101))
    return d, float(min(1.0, max(0.0, p)))


# -- inputs ---------------------------------------------------------------------------------------
def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Objects of a JSON-lines file; a malformed line raises ValueError naming file and line."""
    out = []
    p = Path(path)
    with p.open() as f:
        for no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{no}: not JSON ({e.msg})") from None
            if isinstance(doc, dict):
                out.append(doc)
    return out


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0, **client: Any) -> list[dict[str, Any]]:
    """Every JSON object message of ``topic`` from the beginning up to its current end.

    Ends are the partitions' high watermarks as reported by fetch responses (exact on Kafka and on
    the Tansu broker, whose ListOffsets answers are approximate). Non-JSON messages are skipped.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=100, max_poll_records=5000,
        consumer_timeout_ms=1000, **client,
    )
    out: list[dict[str, Any]] = []
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout_s
        while parts is None and time.monotonic() < deadline:
            consumer.topics()  # refresh metadata
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                time.sleep(0.2)
        if not parts:
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} from {bootstrap} did not reach the end in {timeout_s}s")
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    try:
                        doc = json.loads(r.value)
                    except (TypeError, ValueError):
                        continue
                    if isinstance(doc, dict):
                        out.append(doc)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None and consumer.position(tp) >= hw:
                    done.add(tp)
    finally:
        consumer.close()
    return out


# -- the join -------------------------------------------------------------------------------------
@dataclass
class Joined:
    """Exposures of one experiment and, per request, the shown items each engagement type hit."""

    exposures: list[dict[str, Any]]
    hits: dict[str, dict[str, set[str]]]  # request_id -> event type -> items of the list it hit
    events_joined: int = 0
    events_outside_list: int = 0
    forced_left_out: int = 0
    duplicates_left_out: int = 0


def join(experiment: str, exposures: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]]) -> Joined:
    by_rid: dict[str, dict[str, Any]] = {}
    forced = dupes = 0
    for ex in exposures:
        if ex.get("experiment") != experiment:
            continue
        if ex.get("forced"):
            forced += 1
            continue
        rid = ex.get("request_id")
        if not rid:
            continue
        if rid in by_rid:
            dupes += 1
            continue
        by_rid[rid] = ex
    shown = {rid: set(ex.get("items") or ()) for rid, ex in by_rid.items()}
    hits: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    seen_events: set[str] = set()
    joined = outside = 0
    for ev in events:
        rid = ev.get("request_id")
        etype = ev.get("event_type")
        if rid not in shown or etype not in ENGAGEMENTS:
            continue
        eid = ev.get("event_id")
        if eid is not None:
            if eid in seen_events:
                continue
            seen_events.add(eid)
        item = str(ev.get("item_id"))
        if item not in shown[rid]:
            outside += 1
            continue
        joined += 1
        hits[rid][etype].add(item)
    return Joined(list(by_rid.values()), hits, joined, outside, forced, dupes)


# -- A/B report -----------------------------------------------------------------------------------
@dataclass
class Rate:
    successes: int
    n: int
    rate: float
    ci: tuple[float, float]


@dataclass
class VariantStats:
    name: str
    exposures: int
    users: int
    configured_traffic: float | None
    rates: dict[str, Rate]


@dataclass
class Comparison:
    metric: str
    treatment: str
    control: str
    diff: float
    ci: tuple[float, float]
    relative_lift: float | None
    p_value: float
    verdict: str


@dataclass
class SrmCheck:
    observed_users: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool
    note: str = ""


@dataclass
class AbReport:
    experiment: str
    kind: str
    control: str
    alpha: float
    confidence: float
    planned_per_variant: int | None
    horizon_reached: bool
    variants: list[VariantStats]
    comparisons: list[Comparison]
    srm: SrmCheck
    inputs: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def comparison(self, metric: str, treatment: str) -> Comparison:
        return next(c for c in self.comparisons if c.metric == metric and c.treatment == treatment)

    def variant(self, name: str) -> VariantStats:
        return next(v for v in self.variants if v.name == name)


def srm_check(
    users: dict[str, int], shares: dict[str, float | None], threshold: float = SRM_P_THRESHOLD
) -> SrmCheck:
    names = sorted(users)
    known = {n: s for n, s in shares.items() if s is not None}
    if len(names) < 2:
        return SrmCheck(users, dict(known), 0.0, 1.0, False, "fewer than 2 variants observed")
    if any(n not in known for n in names):
        return SrmCheck(users, dict(known), 0.0, 1.0, False, "configured split unknown for some variants")
    chi2, p = chi_square_gof([users[n] for n in names], [known[n] for n in names])
    total = sum(known[n] for n in names)
    expected = {n: known[n] / total for n in names}
    return SrmCheck(users, expected, chi2, p, p < threshold)


def analyze_ab(
    experiment: str,
    exposures: Iterable[dict[str, Any]],
    events: Iterable[dict[str, Any]],
    *,
    planned_per_variant: int | None = None,
    alpha: float = 0.05,
    control: str | None = None,
    expected_split: dict[str, float] | None = None,
) -> AbReport:
    """The A/B report of ``experiment`` (see the module docstring for every rule)."""
    j = join(experiment, exposures, events)
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in j.exposures:
        by_variant[str(ex.get("variant"))].append(ex)
    if not by_variant:
        raise ValueError(f"no (non-forced) exposures of experiment {experiment!r} in the input")
    names = sorted(by_variant)
    ctrl = control if control is not None else ("control" if "control" in by_variant else names[0])
    if ctrl not in by_variant:
        raise ValueError(f"control variant {ctrl!r} has no exposures (variants seen: {names})")
    treatments = [n for n in names if n != ctrl]
    m = max(1, len(treatments))
    confidence = 1.0 - alpha / m
    z = z_for(confidence)
    variants: list[VariantStats] = []
    counts: dict[str, dict[str, int]] = {}
    users: dict[str, int] = {}
    shares: dict[str, float | None] = {}
    warnings: list[str] = []
    user_variants: dict[str, set[str]] = defaultdict(set)
    for name in [ctrl, *treatments]:
        exs = by_variant[name]
        n = len(exs)
        c = {t: sum(1 for ex in exs if j.hits.get(ex["request_id"], {}).get(t)) for t in ENGAGEMENTS}
        counts[name] = c
        uids = {str(ex.get("user_id")) for ex in exs}
        for u in uids:
            user_variants[u].add(name)
        users[name] = len(uids)
        traffic = Counter(ex.get("traffic") for ex in exs).most_common()
        shares[name] = traffic[0][0] if traffic else None
        if len(traffic) > 1:
            warnings.append(f"variant {name}: configured traffic changed during the experiment {traffic}")
        variants.append(VariantStats(
            name, n, len(uids), shares[name],
            {METRICS[t]: Rate(c[t], n, c[t] / n if n else 0.0, wilson(c[t], n, z)) for t in ENGAGEMENTS},
        ))
    crossed = sum(1 for v in user_variants.values() if len(v) > 1)
    if crossed:
        warnings.append(f"{crossed} users were exposed to more than one variant (assignment not sticky?)")
    if expected_split:
        shares = {n: expected_split.get(n) for n in users}
    srm = srm_check(users, shares)
    if srm.mismatch:
        warnings.append(
            f"SAMPLE RATIO MISMATCH: users per variant {srm.observed_users} vs configured split "
            f"{ {k: round(v, 4) for k, v in srm.expected_share.items()} } (chi2 {srm.chi2:.1f}, "
            f"p {srm.p_value:.2g} < {SRM_P_THRESHOLD}): assignment or exposure logging is broken; "
            "do not trust these results"
        )
    reached = planned_per_variant is not None and all(
        len(by_variant[n]) >= planned_per_variant for n in names
    )
    comparisons = []
    for t in treatments:
        for etype in ENGAGEMENTS:
            k1, n1 = counts[ctrl][etype], len(by_variant[ctrl])
            k2, n2 = counts[t][etype], len(by_variant[t])
            d, lo, hi = newcombe_diff(k1, n1, k2, n2, z)
            p = two_proportion_p(k1, n1, k2, n2)
            base = k1 / n1 if n1 else 0.0
            if planned_per_variant is None:
                verdict = "underpowered: no planned sample size (descriptive only)"
            elif not reached:
                least = min(len(by_variant[n]) for n in names)
                verdict = f"not significant yet ({least}/{planned_per_variant} exposures per variant)"
            elif lo > 0 or hi < 0:
                verdict = f"significant ({'better' if d > 0 else 'worse'})"
            else:
                verdict = "no significant difference"
            if srm.mismatch and planned_per_variant is not None and reached:
                verdict += " [invalid: sample ratio mismatch]"
            comparisons.append(Comparison(
                METRICS[etype], t, ctrl, d, (lo, hi), (d / base) if base > 0 else None, p, verdict
            ))
    inputs = {
        "exposures": len(j.exposures), "events_joined": j.events_joined,
        "events_outside_list": j.events_outside_list, "forced_left_out": j.forced_left_out,
        "duplicate_requests_left_out": j.duplicates_left_out,
    }
    return AbReport(experiment, "ab", ctrl, alpha, confidence, planned_per_variant, reached, variants,
                    comparisons, srm, inputs, warnings)


# -- interleaving report ---------------------------------------------------------------------------
@dataclass
class InterleaveReport:
    experiment: str
    kind: str
    arms: list[str]
    arm_versions: dict[str, str]
    exposures: int
    requests_with_clicks: int
    wins: dict[str, int]
    ties: int
    clicks_credited: dict[str, int]
    preference: float  # for arms[1]: (wins B + ties/2) / (wins + ties) - 0.5
    win_rate_ci: tuple[float, float]  # Wilson interval of wins B / (wins A + wins B)
    p_value: float
    planned: int | None
    horizon_reached: bool
    verdict: str
    inputs: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def credit(exposure: dict[str, Any], clicked: set[str]) -> Counter:
    """Clicks per team of one interleaved exposure."""
    teams = exposure.get("teams") or []
    items = exposure.get("items") or []
    return Counter(team for item, team in zip(items, teams) if item in clicked)


def analyze_interleave(
    experiment: str,
    exposures: Iterable[dict[str, Any]],
    events: Iterable[dict[str, Any]],
    *,
    planned: int | None = None,
    alpha: float = 0.05,
) -> InterleaveReport:
    j = join(experiment, exposures, events)
    exs = [ex for ex in j.exposures if ex.get("teams")]
    if not exs:
        raise ValueError(f"no interleaved exposures of experiment {experiment!r} in the input")
    arms: list[str] = []
    versions: dict[str, str] = {}
    for ex in exs:
        for name, version in (ex.get("arms") or {}).items():
            if name not in arms:
                arms.append(name)
            versions.setdefault(name, str(version))
        for t in ex["teams"]:
            if t not in arms:
                arms.append(t)
    if len(arms) != 2:
        raise ValueError(f"interleaving needs exactly 2 arms, exposures name {arms}")
    a, b = arms
    wins = {a: 0, b: 0}
    clicks = {a: 0, b: 0}
    ties = with_clicks = 0
    for ex in exs:
        c = credit(ex, j.hits.get(ex["request_id"], {}).get("click", set()))
        ca, cb = c.get(a, 0), c.get(b, 0)
        clicks[a] += ca
        clicks[b] += cb
        if ca == cb == 0:
            continue
        with_clicks += 1
        if ca > cb:
            wins[a] += 1
        elif cb > ca:
            wins[b] += 1
        else:
            ties += 1
    decided = wins[a] + wins[b]
    pref = ((wins[b] + ties / 2) / (decided + ties) - 0.5) if decided + ties else 0.0
    p = binom_two_sided(wins[b], decided)
    reached = planned is not None and len(exs) >= planned
    if planned is None:
        verdict = "underpowered: no planned sample size (descriptive only)"
    elif not reached:
        verdict = f"not significant yet ({len(exs)}/{planned} interleaved requests)"
    elif p < alpha:
        verdict = f"significant: {b if wins[b] > wins[a] else a} preferred"
    else:
        verdict = "no significant preference"
    return InterleaveReport(
        experiment, "interleave", arms, versions, len(exs), with_clicks, wins, ties, clicks, pref,
        wilson(wins[b], decided, z_for(1 - alpha)), p, planned, reached, verdict,
        {"exposures": len(j.exposures), "events_joined": j.events_joined,
         "events_outside_list": j.events_outside_list, "forced_left_out": j.forced_left_out},
    )


def analyze(
    experiment: str,
    exposures: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    planned: int | None = None,
    alpha: float = 0.05,
    control: str | None = None,
    expected_split: dict[str, float] | None = None,
) -> AbReport | InterleaveReport:
    """A/B or interleaving report, by the kind the experiment's exposures carry."""
    kinds = Counter(ex.get("kind") for ex in exposures if ex.get("experiment") == experiment)
    if kinds.get("interleave", 0) > kinds.get("ab", 0):
        return analyze_interleave(experiment, exposures, events, planned=planned, alpha=alpha)
    return analyze_ab(experiment, exposures, events, planned_per_variant=planned, alpha=alpha,
                      control=control, expected_split=expected_split)


# -- rendering ------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def render(report: AbReport | InterleaveReport) -> str:
    lines = [f"experiment {report.experiment} ({report.kind})"]
    if isinstance(report, InterleaveReport):
        a, b = report.arms
        lines += [
            f"  arms: {a}={report.arm_versions.get(a, '?')}  {b}={report.arm_versions.get(b, '?')}",
            f"  interleaved requests {report.exposures}, with clicks {report.requests_with_clicks}",
            f"  credited clicks: {a} {report.clicks_credited[a]}, {b} {report.clicks_credited[b]}",
            f"  wins: {a} {report.wins[a]}, {b} {report.wins[b]}, ties {report.ties}",
            f"  preference for {b}: {report.preference:+.3f}; {b} win rate CI "
            f"[{_pct(report.win_rate_ci[0])}, {_pct(report.win_rate_ci[1])}]; "
            f"sign test p {report.p_value:.3g}",
            f"  verdict: {report.verdict}",
        ]
    else:
        lines.append(
            f"  control {report.control}; alpha {report.alpha:g}, intervals at {100 * report.confidence:.1f}%"
            f"; planned {report.planned_per_variant or '-'} exposures/variant"
            f" ({'reached' if report.horizon_reached else 'not reached'})"
        )
        srm = report.srm
        lines.append(
            f"  SRM: users {srm.observed_users} vs split "
            f"{ {k: round(v, 3) for k, v in srm.expected_share.items()} }: "
            f"chi2 {srm.chi2:.2f}, p {srm.p_value:.3g}"
            + (" MISMATCH" if srm.mismatch else " ok") + (f" ({srm.note})" if srm.note else "")
        )
        lines.append(f"  {'variant':<14}{'exposures':>10}{'users':>8}  " + "  ".join(
            f"{m:<26}" for m in METRICS.values()))
        for v in report.variants:
            cells = "  ".join(
                f"{_pct(r.rate):>7} [{_pct(r.ci[0])},{_pct(r.ci[1])}]".ljust(26) for r in v.rates.values()
            )
            lines.append(f"  {v.name:<14}{v.exposures:>10}{v.users:>8}  {cells}")
        for c in report.comparisons:
            lift = f"{c.relative_lift:+.1%}" if c.relative_lift is not None else "n/a"
            lines.append(
                f"  {c.metric:<17} {c.treatment} - {c.control}: {100 * c.diff:+.2f}pp "
                f"[{100 * c.ci[0]:+.2f}, {100 * c.ci[1]:+.2f}] lift {lift} p {c.p_value:.3g} -> {c.verdict}"
            )
    lines.append("  inputs: " + ", ".join(f"{k} {v}" for k, v in report.inputs.items()))
    for w in report.warnings:
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (as in the config and the exposure events)")
    src = p.add_argument_group("inputs (Kafka or JSON-lines files)")
    src.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (host:port[,...])")
    src.add_argument("--exposures-topic", default="exposures")
    src.add_argument("--events-topic", default="user-events")
    src.add_argument("--exposures", type=Path, default=None, help="exposures JSON-lines file")
    src.add_argument("--events", type=Path, default=None, help="user events JSON-lines file")
    src.add_argument("--timeout", type=float, default=120.0, help="seconds to read each topic to its end")
    p.add_argument("--config", type=Path, default=None,
                   help="experiment YAML: planned_exposures_per_variant, alpha, control and the split")
    p.add_argument("--planned", type=int, default=None, help="planned exposures per variant (overrides)")
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--control", default=None)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _config_defaults(path: Path, experiment: str) -> dict[str, Any]:
    try:
        from cascade_router.experiments import load_experiments
    except ImportError:
        raise ValueError("--config needs cascade-router installed (it owns the config format)") from None
    cfg = load_experiments(path)
    exp = cfg.experiment(experiment)
    if exp is None:
        raise ValueError(f"{path}: no experiment {experiment!r} (has {[e.name for e in cfg.experiments]})")
    split = {v.name: float(v.traffic) for v in exp.variants if v.traffic is not None} or None
    return {"planned": exp.planned_exposures_per_variant, "alpha": exp.alpha, "control": exp.control_name,
            "expected_split": split}


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``cascade experiments report`` and ``python -m cascade_pipelines.analysis``."""
    try:
        if args.bootstrap:
            exposures = read_topic(args.bootstrap, args.exposures_topic, args.timeout)
            events = read_topic(args.bootstrap, args.events_topic, args.timeout)
        elif args.exposures and args.events:
            exposures, events = read_jsonl(args.exposures), read_jsonl(args.events)
        else:
            raise ValueError("give --bootstrap (Kafka) or both --exposures and --events (JSON-lines files)")
        opts: dict[str, Any] = {"planned": None, "alpha": 0.05, "control": None, "expected_split": None}
        if args.config:
            opts.update(_config_defaults(args.config, args.experiment))
        for key in ("planned", "alpha", "control"):
            if getattr(args, key) is not None:
                opts[key] = getattr(args, key)
        report = analyze(args.experiment, exposures, events, **opts)
    except (ValueError, OSError, TimeoutError) as e:
        print(f"cascade experiments report: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else render(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cascade_pipelines.analysis", description=__doc__.split("\n")[0]
    )
    add_arguments(p)
    return run(p.parse_args(argv))


def iter_lines(docs: Iterable[dict[str, Any]]) -> Iterator[str]:
    """JSON lines of ``docs`` (for writing exposure/event files)."""
    for d in docs:
        yield json.dumps(d, separators=(",", ":")) + "\n"


if __name__ == "__main__":
    sys.exit(main())
