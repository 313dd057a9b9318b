"""Error statistics and leave-one-source-out cross-validation for ``benchmarks/published.py``.

* :func:`summary` — per category: rows, median |error|, p90 |error|, max |error|, signed median
  (bias: > 0 means the model predicts more than was measured) and the five worst rows.
* :func:`prediction_grid` — every row's prediction under every combination of the fitted
  constants' grids (``benchmarks/fitted.py``). A row is re-predicted only for the constants it
  depends on (found by setting each constant to its grid's two ends), so the grid costs a few
  passes over the table rather than one per combination.
* :func:`loso` — for each source, the fitted constants are chosen by grid search (:func:`fit`)
  minimising, summed over the constants, the median |error| over the *other* sources' rows that
  constant moves; the held-out source's rows are predicted with those values. Rows are grouped by
  :func:`source_key` (document, not commit or table).
* :func:`fit_split` — the constants declared ``split`` in ``benchmarks/fitted.py`` are chosen the
  same way (median |error|) over the rows of the declared fit split (``split`` column ``fit``),
  which no reported figure includes.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from fitted import LOSO_REGISTRY as REGISTRY
from fitted import SPLIT_REGISTRY, current, settings

Combo = tuple[float, ...]  # one value per leave-one-source-out constant (fitted.LOSO_REGISTRY), in order


SPLITS = ("", "fit")  # the ``split`` column: empty (a reported row) or ``fit`` (the declared fit split)


def split_of(row: dict) -> str:
    """A row's ``split``, normalised (a table without the column reports every row)."""
    return (row.get("split") or "").strip().lower()


def is_fit_row(row: dict) -> bool:
    """Whether a row belongs to the declared fit split (fits constants; never reported)."""
    return split_of(row) == "fit"


def fit_split(rows: list[dict], predict: Callable[[dict], object], fixed: Iterable[str] = ()) -> dict[str, float]:
    """Value of each fit-split constant (other than ``fixed`` ones): the grid value minimising the
    median |error| over the fit-split rows its value moves; the current value when no such row is
    given (e.g. ``--rows`` without them)."""
    fit_rows = [r for r in rows if is_fit_row(r)]
    out: dict[str, float] = {}
    for f in SPLIT_REGISTRY:
        if f.name in fixed:
            continue
        per = {}
        for value in f.grid:
            with settings({f.name: value}):
                per[value] = {r["id"]: predict(r) for r in fit_rows}
        moved = [i for i in (r["id"] for r in fit_rows) if _sensitive({v: per[v][i] for v in f.grid})]
        out[f.name] = min(f.grid, key=lambda v: _median_abs(per[v][i] for i in moved)) if moved else f.get()
    return out


def source_key(source: str) -> str:
    """The document a row comes from: its first two words (repository + file, or 'Author et al.')."""
    return " ".join(w.strip(",;'") for w in source.split()[:2]).lower()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class CategoryStats:
    rows: int
    median_abs: float
    p90_abs: float
    max_abs: float
    signed_median: float
    worst: tuple[tuple[str, float], ...]  # (row id, signed error), worst first

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "median_abs_pct": 100 * self.median_abs,
            "p90_abs_pct": 100 * self.p90_abs,
            "max_abs_pct": 100 * self.max_abs,
            "signed_median_pct": 100 * self.signed_median,
            "worst": [{"id": i, "error_pct": 100 * e} for i, e in self.worst],
        }


def summary(errors: Iterable[tuple[str, str, float]]) -> dict[str, CategoryStats]:
    """(row id, category, signed error) → per-category statistics."""
    by_cat: dict[str, list[tuple[str, float]]] = {}
    for row_id, cat, err in errors:
        by_cat.setdefault(cat, []).append((row_id, err))
    out = {}
    for cat, items in sorted(by_cat.items()):
        abse = [abs(e) for _, e in items]
        worst = tuple(sorted(items, key=lambda t: -abs(t[1]))[:5])
        out[cat] = CategoryStats(
            rows=len(items),
            median_abs=statistics.median(abse),
            p90_abs=percentile(abse, 90),
            max_abs=max(abse),
            signed_median=statistics.median(e for _, e in items),
            worst=worst,
        )
    return out


def _grids(fixed: Mapping[str, float] | None = None) -> list[tuple[float, ...]]:
    """The values searched per constant: its grid, or the one value ``fixed`` gives it (``--set``)."""
    fixed = fixed or {}
    return [(fixed[f.name],) if f.name in fixed else f.grid for f in REGISTRY]


def _combos(fixed: Mapping[str, float] | None = None) -> list[Combo]:
    return list(itertools.product(*_grids(fixed)))


def prediction_grid(rows: list[dict], predict: Callable[[dict], object],
                    fixed: Mapping[str, float] | None = None) -> dict[str, dict[Combo, object]]:
    """Row id → {combination of fitted values → prediction result}; a constant ``fixed`` names keeps
    that value in every combination, so the leave-one-source-out folds do not refit it."""
    names = [f.name for f in REGISTRY]
    grids = _grids(fixed)
    base = {r["id"]: predict(r) for r in rows}
    deps: dict[str, list[int]] = {r["id"]: [] for r in rows}
    for k, f in enumerate(REGISTRY):
        if len(grids[k]) == 1:
            continue
        for value in (grids[k][0], grids[k][-1]):
            with settings({f.name: value}):
                for r in rows:
                    if k not in deps[r["id"]] and _differs(predict(r), base[r["id"]]):
                        deps[r["id"]].append(k)
    defaults = current()
    combos = _combos(fixed)
    grid: dict[str, dict[Combo, object]] = {}
    for r in rows:
        d = sorted(deps[r["id"]])
        per: dict[tuple, object] = {}
        for values in itertools.product(*(grids[k] for k in d)):
            with settings({names[k]: v for k, v in zip(d, values)}):
                per[values] = predict(r) if d else base[r["id"]]
        grid[r["id"]] = {c: per[tuple(c[k] for k in d)] for c in combos}
    assert all(defaults[n] == v for n, v in current().items())
    return grid


def _differs(a, b) -> bool:
    pa, pb = getattr(a, "predicted", None), getattr(b, "predicted", None)
    if pa is None or pb is None:
        return (pa is None) != (pb is None)
    return abs(pa - pb) > 1e-9 * max(abs(pa), abs(pb), 1e-30)


def _median_abs(results: Iterable[object]) -> float:
    errs = [abs(r.error) for r in results if r.error is not None]
    return statistics.median(errs) if errs else math.inf


def _sensitive(per_row: dict[Combo, object]) -> bool:
    """Whether a row's prediction depends on the fitted constants at all."""
    return len({getattr(r, "predicted", None) for r in per_row.values()}) > 1


def moved_by(per_row: dict[Combo, object]) -> frozenset[int]:
    """Indices (in ``REGISTRY``) of the fitted constants that move a row's prediction: those for
    which two combinations differing in that constant alone predict differently (beyond rounding)."""
    out = set()
    for k in range(len(REGISTRY)):
        seen: dict[Combo, object] = {}
        for combo, result in per_row.items():
            rest = combo[:k] + combo[k + 1:]
            if rest in seen and _differs(seen[rest], result):
                out.add(k)
                break
            seen.setdefault(rest, result)
    return frozenset(out)


def fit(grid: dict[str, dict[Combo, object]], row_ids: list[str],
        moves: dict[str, frozenset[int]] | None = None) -> Combo:
    """The combination minimising the sum, over the fitted constants, of the median |error| over
    the rows of ``row_ids`` that constant moves (first one on ties). Each constant is judged by its
    own rows: pooled, rows that one constant moves would shift the median that decides another
    (adding a phone row could flip the host time per eager kernel), and rows no constant moves
    would only shift the median's position. A constant that none of ``row_ids`` moves keeps its
    current value (a fold without the rows that inform it cannot fit it)."""
    combos = list(next(iter(grid.values()))) if grid else _combos()
    now = tuple(f.get() for f in REGISTRY)
    moves = moves if moves is not None else {i: moved_by(grid[i]) for i in row_ids}
    per_constant = [[i for i in row_ids if k in moves[i]] for k in range(len(REGISTRY))]
    for k, ids in enumerate(per_constant):
        if not ids and any(c[k] == now[k] for c in combos):
            combos = [c for c in combos if c[k] == now[k]]
    if not any(per_constant):
        return min(combos, key=lambda c: _median_abs(grid[i][c] for i in row_ids)) if row_ids else combos[0]
    return min(combos, key=lambda c: sum(_median_abs(grid[i][c] for i in ids) for ids in per_constant if ids))


def loso(rows: list[dict], grid: dict[str, dict[Combo, object]],
         moves: dict[str, frozenset[int]] | None = None) -> tuple[dict[str, object], dict[str, Combo]]:
    """Held-out prediction of every row, and the constants chosen for each held-out source."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(source_key(r["source"]), []).append(r["id"])
    held: dict[str, object] = {}
    chosen: dict[str, Combo] = {}
    moves = moves if moves is not None else {r["id"]: moved_by(grid[r["id"]]) for r in rows}
    for src, ids in groups.items():
        train = [r["id"] for r in rows if source_key(r["source"]) != src]
        best = fit(grid, train, moves)
        chosen[src] = best
        for i in ids:
            held[i] = grid[i][best]
    return held, chosen


def combo_dict(combo: Combo) -> dict[str, float]:
    return {f.name: v for f, v in zip(REGISTRY, combo)}


def regressions(baseline: dict[str, float | None], now: dict[str, float | None], tolerance: float = 0.05) -> list[str]:
    """Rows whose |error| grew by more than ``tolerance`` (absolute, 0.05 = 5 points) against the
    baseline, or that the baseline predicted and that are no longer predicted."""
    out = []
    for row_id, base in baseline.items():
        if base is None:
            continue
        cur = now.get(row_id)
        if cur is None:
            out.append(f"{row_id}: predicted in the baseline ({100 * base:+.1f}%), not predicted now")
        elif abs(cur) - abs(base) > tolerance:
            out.append(f"{row_id}: {100 * base:+.1f}% in the baseline, {100 * cur:+.1f}% now")
    return out
