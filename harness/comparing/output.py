"""``bench compare``'s output: the verdict table for a terminal, a pull-request comment in
markdown, and one JSON object."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Sequence
from typing import Any

from harness.comparing.counts import ANY_INCREASE, DEFAULT_THRESHOLD
from harness.comparing.matching import MACHINE_FIELDS, Comparison, ResultSet
from harness.comparing.reproduce import reproduce_command, reproduce_lines, reproduce_markdown
from harness.comparing.verdicts import (
    ACCURACY,
    ALPHA,
    COUNT,
    IMPROVED,
    NOISE_LIMIT,
    NOISY,
    OK,
    SCORE,
    TIME,
    VERDICTS,
    Measurement,
    Row,
    Rules,
    default_threshold,
    pooled_change,
)
from harness.reporting.tables import markdown_table, plural


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def _value(m: Measurement, paired: bool = False) -> str:
    """A timing's median and its IQR relative to the median (the noise rule's measure), marked
    when contended (unless paired: its contended rounds were dropped); an accuracy's mean and
    standard deviation over seeds, in percent."""
    if m.kind == TIME:
        spread = f" (IQR {100 * m.relative_iqr:.0f}%)" if m.median > 0 and m.n > 1 else ""
        mark = " contended" if m.contended and not paired else ""
        return _seconds(m.median) + spread + mark
    if m.kind == SCORE:
        return f"{m.mean:.4g}" + (f" ± {m.std:.2g}" if m.n > 1 else "")
    if m.kind == COUNT:
        return f"{m.median:,.0f}"
    spread = f" ± {100 * m.std:.2f}" if m.n > 1 else ""
    return f"{100 * m.mean:.2f}{spread} %"


PAIRED_NOTE = (
    "change of interleaved rounds (given enough clean ones): the median over the clean rounds "
    "of each round's candidate median / baseline median, which the paired test judges; the "
    "baseline and candidate columns are medians of every round's samples pooled, so when the "
    "machine's speed drifted between rounds (or contended rounds were dropped) they can say "
    "otherwise, even in sign: the change of those medians then follows in parentheses"
)


def change_text(row: Row) -> str:
    """The change the verdict judged; for interleaved rounds, whenever the medians shown beside
    it say otherwise, theirs too (:data:`PAIRED_NOTE`)."""
    if row.kind == ACCURACY:
        return f"{row.change:+.2f} pp"
    if row.kind == COUNT:
        difference = f"{row.candidate.median - row.baseline.median:+,.0f}"
        return (
            difference if row.baseline.median == 0 else f"{difference} ({100 * row.change:+.1f}%)"
        )
    text = f"{100 * row.change:+.1f}%"
    if row.paired:
        medians = f"{100 * pooled_change(row.baseline, row.candidate):+.1f}%"
        if medians != text:
            return f"{text} (medians {medians})"
    return text


def _verdict_text(row: Row) -> str:
    text = f"{row.verdict} (noisy)" if row.noisy and row.verdict != NOISY else row.verdict
    return text if row.gated or row.verdict in (OK, IMPROVED) else f"{text} (not gated)"


def table_rows(rows: Iterable[Row]) -> list[dict[str, str]]:
    """The verdict table: metric, baseline, candidate, change, p-value or method, verdict."""
    return [
        {
            "run": row.config,
            "metric": row.metric,
            "baseline": _value(row.baseline, row.paired),
            "candidate": _value(row.candidate, row.paired),
            "change": change_text(row),
            "p-value / method": row.test,
            "verdict": _verdict_text(row),
        }
        for row in rows
    ]


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


def _describe(result_set: ResultSet) -> str:
    env = result_set.environment
    parts = [
        f"commit {(env.get('git_commit') or 'unknown')[:12]}",
        f"host {env.get('hostname')}",
        f"{env.get('device') or 'device ?'} ({env.get('device_name') or env.get('cpu')})",
        f"torch {env.get('torch')}",
        plural(env.get("threads"), "thread"),
    ]
    return ", ".join(parts)


def _warning(comparison: Comparison) -> str | None:
    if not comparison.differences:
        return None
    items = "; ".join(f"{name}: {b} vs {c}" for name, b, c in comparison.differences)
    return f"different machines or software, timings may not be comparable: {items}"


def summary(comparison: Comparison) -> str:
    """One line: the count of each verdict, and the exit code."""
    counts = collections.Counter(row.verdict for row in comparison.rows)
    parts = [f"{counts[name]} {name}" for name in VERDICTS if counts[name]]
    text = ", ".join(parts) or "no metric compared"
    ungated = sum(not row.gated and row.verdict not in (OK, IMPROVED) for row in comparison.rows)
    if ungated:
        text += f"; {ungated} not gated, reported only"
    return f"{text} (exit {comparison.exit_code})"


def rules_text(rules: Rules, interleaved: bool = False) -> str:
    def thresholds(kind: str) -> str:
        default = default_threshold(kind, interleaved)
        points = kind == ACCURACY
        text = f"{default:g} pp" if points else f"{100 * default:g}%"
        custom = [str(t) for t in rules.thresholds if (t.kind == ACCURACY) == points]
        return f"{text} (then {', '.join(custom)}: the last matching glob wins)" if custom else text

    test = (
        f"a one-sided Wilcoxon signed-rank test on the interleaved rounds gives p < {ALPHA}"
        if interleaved
        else f"a one-sided Mann-Whitney U test on the raw samples gives p < {ALPHA} (disjoint "
        "99% confidence intervals of the mean when the samples are too few for that test or "
        "were not saved)"
    )
    separated = (
        "3 rounds in 4 slower beyond the threshold"
        if interleaved
        else "the candidate's lower quartile above the baseline's upper quartile"
    )
    return (
        f"timings regress when the median is worse by > {thresholds(TIME)} and {test}; when a "
        f"side is noisy (IQR/median > {100 * NOISE_LIMIT:g}%) only if the distributions are "
        f"separated ({separated}){'; --strict: noisy ones too' if rules.strict else ''}; a "
        "verdict that contention on a side could have produced or hidden is no verdict (exit 3); "
        f"task metrics regress when the mean over seeds moves the wrong way (the task's "
        f"direction) by > {thresholds(ACCURACY)} (fractions) or > {thresholds(SCORE)} (other "
        "metrics) and by > 2 standard errors of the difference; counters are exact: a count "
        f"that grew by > {100 * DEFAULT_THRESHOLD:g}% (any growth of "
        f"{', '.join(ANY_INCREASE)})"
        + (f" (then {', '.join(map(str, rules.counters))})" if rules.counters else "")
        + " regresses, whatever the timing noise and contention"
        + (
            f"; only metrics matching {', '.join(rules.gate)} decide the exit code"
            if rules.gate
            else ""
        )
    )


def _listing(title: str, items: Sequence[str]) -> list[str]:
    return [f"{title} ({len(items)}): " + "; ".join(items)] if items else []


def contention_notes(rows: Iterable[Row]) -> list[str]:
    """One line per side measured under contention, with the evidence in words."""
    notes = []
    for row in rows:
        for side, m in (("baseline", row.baseline), ("candidate", row.candidate)):
            if m.contended:
                dropped = " (those rounds were dropped in pairs)" if row.paired else ""
                notes.append(f"{row.config} {row.metric}, {side}: {m.evidence}{dropped}")
    return notes


def _interleaving(comparison: Comparison) -> list[str]:
    if not comparison.interleaved:
        return []
    return [
        f"interleaved: both sides measured in alternating rounds by bench ab session "
        f"{comparison.baseline.session}"
    ]


MEASURED_APART = (
    "measured at different times: one side was timed after the other, so whatever changed on "
    "the machine in between (another process, a slower core or clock, a busy neighbour VM) is "
    "not separated from the change of the code; for a verdict that holds on a shared machine, "
    "measure both sides in alternating rounds with bench ab"
)
NO_CONTENTION_RECORD = (
    "no contention record: pytest-benchmark files do not say whether the machine was busy "
    "while they were measured, so a slowdown the machine caused reads as a regression of the "
    "code; bench ab over the same code, or both sides' benchmarks run alternately several "
    "times, give a verdict that holds"
)


def measured_apart(comparison: Comparison) -> bool:
    """Timings of two measurements taken at different times (not one ``bench ab`` session)."""
    return not comparison.interleaved and any(row.kind == TIME for row in comparison.rows)


def contention_recorded(comparison: Comparison) -> bool:
    return comparison.baseline.contention_recorded and comparison.candidate.contention_recorded


def caveats(comparison: Comparison) -> list[str]:
    """What the files cannot tell, whatever the verdict: that the machine changed between the
    two measurements, or that it was busy during one."""
    apart = [MEASURED_APART] if measured_apart(comparison) else []
    return apart + ([] if contention_recorded(comparison) else [NO_CONTENTION_RECORD])


def to_text(comparison: Comparison) -> str:
    """The verdict for a terminal: header, table, what did not match, problems, summary."""
    lines = [
        f"baseline:  {comparison.baseline.path}  ({_describe(comparison.baseline)})",
        f"candidate: {comparison.candidate.path}  ({_describe(comparison.candidate)})",
        *_interleaving(comparison),
    ]
    warning = _warning(comparison)
    if warning:
        lines.append(f"warning: {warning}")
    lines += ["", markdown_table(table_rows(comparison.rows)), ""]
    lines += reproduce_lines(comparison)
    lines += [f"contended: {note}" for note in contention_notes(comparison.rows)]
    lines += _listing("only in baseline", comparison.only_baseline)
    lines += _listing("only in candidate", comparison.only_candidate)
    lines += [f"problem: {problem}" for problem in comparison.problems]
    lines += [f"note: {PAIRED_NOTE}"] if any(row.paired for row in comparison.rows) else []
    lines += [f"caveat: {caveat}" for caveat in caveats(comparison)]
    lines += [f"settings: {comparison.rules.source}"] if comparison.rules.source else []
    lines += [
        f"rules: {rules_text(comparison.rules, comparison.interleaved)}",
        f"verdict: {summary(comparison)}",
    ]
    return "\n".join(lines) + "\n"


def to_markdown(comparison: Comparison) -> str:
    """A summary for a pull-request comment: verdict, environments, notable rows first, the
    full table folded."""
    base, cand = comparison.baseline, comparison.candidate
    title = {0: "no regression", 1: "regression", 3: "incomplete"}[comparison.exit_code]
    if comparison.exit_code == 3 and not comparison.problems:
        title = "no trustworthy verdict (contended measurements)"
    noisy = sum(row.verdict == NOISY for row in comparison.rows)
    if noisy and comparison.exit_code == 0:
        title += f" ({noisy} noisy, not failed)"
    environment = [
        {"": "file", "baseline": f"`{base.path}`", "candidate": f"`{cand.path}`"},
        *(
            {
                "": name,
                "baseline": _text(base.environment.get(name)),
                "candidate": _text(cand.environment.get(name)),
            }
            for name in ("git_commit", *MACHINE_FIELDS)
        ),
    ]
    parts = [
        f"## bench compare: {title}",
        f"**{summary(comparison)}**",
        *_interleaving(comparison),
        markdown_table(environment),
    ]
    warning = _warning(comparison)
    if warning:
        parts.append(f"> **Warning:** {warning}")
    parts += [f"> **Problem:** {problem}" for problem in comparison.problems]
    parts += [f"> **Contended:** {note}" for note in contention_notes(comparison.rows)]
    parts += [f"> **Caveat:** {caveat}" for caveat in caveats(comparison)]
    notable = [row for row in comparison.rows if row.verdict != OK]
    parts.append(
        "### Changes beyond the thresholds\n\n" + markdown_table(table_rows(notable))
        if notable
        else "No metric changed beyond its threshold."
    )
    parts += reproduce_markdown(comparison)
    parts.append(
        f"<details><summary>All {plural(len(comparison.rows), 'comparison')}</summary>\n\n"
        f"{markdown_table(table_rows(comparison.rows))}\n\n</details>"
    )
    parts += _listing("Only in baseline", comparison.only_baseline)
    parts += _listing("Only in candidate", comparison.only_candidate)
    if any(row.paired for row in comparison.rows):
        parts.append(f"_Note: {PAIRED_NOTE}._")
    parts += [f"_Settings: `{comparison.rules.source}`._"] if comparison.rules.source else []
    parts.append(f"_Rules: {rules_text(comparison.rules, comparison.interleaved)}._")
    return "\n\n".join(parts) + "\n"


def _measurement_dict(m: Measurement) -> dict[str, Any]:
    return {
        "n": m.n,
        "mean": m.mean,
        "std": m.std,
        "median": m.median,
        "iqr": m.iqr,
        "noisy": m.noisy,
        "contended": m.contended,
        "evidence": m.evidence,
        "rounds": len(m.rounds),
    }


def _settings_record(rules: Rules) -> dict[str, Any]:
    """The rules a verdict was judged by, as its JSON records them: the settings file they came
    from (null: none), thresholds in the order they apply (the last match wins; the defaults
    are not listed), --metric globs, gate globs (empty: every metric) and strictness."""
    return {
        "file": rules.source,
        "thresholds": [str(t) for t in rules.thresholds],
        "metrics": list(rules.metrics),
        "gate": list(rules.gate),
        "strict": rules.strict,
        "counter_thresholds": [str(t) for t in rules.counters],
    }


def to_json(comparison: Comparison, **settings: Any) -> str:
    """The comparison as one JSON object; ``settings`` (a command's own, such as ``bench ab``'s
    rounds) are recorded beside the rules."""
    document = {
        "exit_code": comparison.exit_code,
        "summary": summary(comparison),
        "settings": {**_settings_record(comparison.rules), **settings},
        "interleaved": comparison.interleaved,
        "measured_apart": measured_apart(comparison),
        "contention_recorded": contention_recorded(comparison),
        "caveats": caveats(comparison),
        "baseline": {
            "path": str(comparison.baseline.path),
            "environment": comparison.baseline.environment,
        },
        "candidate": {
            "path": str(comparison.candidate.path),
            "environment": comparison.candidate.environment,
        },
        "differences": [
            {"field": name, "baseline": b, "candidate": c} for name, b, c in comparison.differences
        ],
        "rows": [
            {
                "run": row.config,
                "metric": row.metric,
                "kind": row.kind,
                "baseline": _measurement_dict(row.baseline),
                "candidate": _measurement_dict(row.candidate),
                "change": row.change,
                "paired": row.paired,
                "medians_change": (
                    pooled_change(row.baseline, row.candidate) if row.kind == TIME else None
                ),
                "threshold": row.threshold,
                "test": row.test,
                "p_value": row.p_value,
                "verdict": row.verdict,
                "gated": row.gated,
                **({"operators": row.operators} if row.operators is not None else {}),
                "reproduce": reproduce_command(comparison, row),
            }
            for row in comparison.rows
        ],
        "only_in_baseline": comparison.only_baseline,
        "only_in_candidate": comparison.only_candidate,
        "problems": comparison.problems,
    }
    return json.dumps(document, indent=2, default=str) + "\n"
