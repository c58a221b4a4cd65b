"""``nestbench leaderboard``: tables of finished runs, with seeds, intervals, paired tests,
the SUPERB-style score and costs.

Rows: one per (task, encoder, mode, configuration) where the configuration is everything the
result depends on except the seed; a task with two configurations of one encoder and mode shows
both rows, each labelled with the keys they differ in. The points a sweep's learning-rate search
did not choose (its ``lr_search.json``) are left out. Per task and eval split, each row gives the
mean and standard deviation of the primary metric over its seeds and a 95% interval: Student's t
over the seeds when there are two or more, the run's own bootstrap interval over test items when
there is one.

Paired tests (:func:`nestbench.metrics.paired.paired_bootstrap`): every two rows of a task and
split scored on the same items (the same data digest and per-item files), resampling the items
once for both. SUPERB-style score (``../shared/spec/METRICS.md``): each task's primary metric
rescaled between ``fbank`` frozen (0) and the task's best row (1), error metrics flipped, averaged
over the tasks a row covers, times 1000. Cost: encoder parameters and the real-time factor of
feature extraction (cache-fill seconds per second of audio, from the runs that filled a cache).

Everything that does not fit is reported in ``problems``, never merged silently: unreadable or
other-schema results, duplicate runs (the same run id twice: the latest kept), rows scored on
different data, missing cells of the encoders x modes x tasks grid, unequal seed counts.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nestbench.metrics.paired import items_file, paired_bootstrap, read_items
from nestbench.result import NON_RESULT_KEYS, ResultError, RunResult, drop_neutral

#: config keys that do not make two runs different rows: the seed, and what the run id ignores
IGNORED_KEYS = ("seed", *NON_RESULT_KEYS)
FLOOR_ENCODER = "fbank"
FORMATS = ("md", "csv", "json", "html")


@dataclass
class Run:
    result: RunResult
    path: Path

    @property
    def dir(self) -> Path:
        return self.path.parent


@dataclass
class Row:
    """The runs (seeds) of one (task, encoder, mode, configuration)."""

    task: str
    encoder: str
    mode: str
    variant: str
    runs: list[Run] = field(default_factory=list)
    label: str = ""  # the keys this row's configuration differs in from its siblings

    @property
    def name(self) -> str:
        return f"{self.encoder} {self.mode}" + (f" ({self.label})" if self.label else "")

    @property
    def seeds(self) -> list[int]:
        return sorted(r.result.seed for r in self.runs)

    @property
    def data(self) -> str:
        return str(self.runs[0].result.inputs.get("data", ""))

    @property
    def primary(self) -> str:
        return self.runs[0].result.primary_metric

    @property
    def lower_is_better(self) -> bool:
        return self.runs[0].result.lower_is_better

    @property
    def splits(self) -> list[str]:
        return list(self.runs[0].result.eval_splits)

    def values(self, split: str, metric: str | None = None) -> list[float]:
        metric = metric or self.primary
        return [float(r.result.metrics[split][metric]["value"]) for r in self.runs]

    def stats(self, split: str) -> dict:
        """mean, std (ddof 1; 0 for one seed), n and the 95% interval (see the module doc)."""
        v = np.asarray(self.values(split))
        n = v.size
        mean = float(v.mean())
        if n >= 2:
            from scipy import stats

            std = float(v.std(ddof=1))
            half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
            ci, kind = [mean - half, mean + half], "seeds"
        else:
            std = 0.0
            ci = self.runs[0].result.metrics[split][self.primary].get("ci95")
            kind = "items" if ci else ""
        return {"mean": mean, "std": std, "n": n, "ci95": ci, "ci_kind": kind}

    def parameters(self) -> int | None:
        p = self.runs[0].result.encoder_info.get("parameters")
        return None if p is None else int(p)

    def layer_weights(self) -> np.ndarray | None:
        """[seeds, layers] the learned softmax layer weights, or None (one layer)."""
        w = [r.result.layer_weights.get("final") for r in self.runs]
        if not all(w) or len(w[0]) < 2 or len({len(x) for x in w}) != 1:
            return None
        return np.asarray(w, dtype=float)


def _config_variant(r: RunResult) -> tuple[str, dict]:
    flat = drop_neutral(_flatten(r.config))
    for key in IGNORED_KEYS:
        flat.pop(key, None)
    flat["_inputs"] = json.dumps(r.inputs, sort_keys=True)
    digest = hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:10], flat


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict) and v:
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """``result.json`` files: given directly, in a run folder, or anywhere under a folder."""
    found = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / "result.json").is_file():
            found.append(p / "result.json")
        elif p.is_dir():
            found += sorted(p.rglob("result.json"))
        else:
            raise FileNotFoundError(f"leaderboard: no such result file or folder: {p}")
    return found


def _not_chosen(paths: Iterable[Path]) -> tuple[set[str], list[str]]:
    """Run ids of the learning-rate points a sweep under ``paths`` did not choose (by id, so
    moved or copied results still match)."""
    dropped: set[str] = set()
    notes = []
    for p in map(Path, paths):
        if not p.is_dir():
            continue
        for f in sorted(p.rglob("lr_search.json")):
            try:
                search = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                notes.append(f"{f}: unreadable, its points are not left out")
                continue
            for group, choice in search.items():
                for point in choice.get("points", []):
                    if point.get("run_dir") and point.get("lr") != choice.get("chosen"):
                        dropped.add(Path(point["run_dir"]).name)  # the run id
                if choice.get("chosen") is not None:
                    notes.append(
                        f"{group}: learning rate {choice['chosen']:g} chosen by the sweep's "
                        f"search of {len(choice.get('points', []))} points; the others are left out"
                    )
    return dropped, notes


@dataclass
class Leaderboard:
    rows: list[Row]
    problems: list[str]
    notes: list[str]
    n_resamples: int = 2000
    #: every run read (the left-out learning-rate points too: they filled caches)
    all_runs: list[Run] = field(default_factory=list)

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path], n_resamples: int = 2000) -> Leaderboard:
        paths = list(paths)
        problems: list[str] = []
        dropped, notes = _not_chosen(paths)
        by_id: dict[str, Run] = {}
        every: list[Run] = []
        for f in find_results(paths):
            try:
                r = RunResult.read(f)
            except ResultError as e:
                problems.append(f"left out: {e}")
                continue
            every.append(Run(r, f))
            if r.run_id in dropped:
                continue
            if r.run_id in by_id:
                old = by_id[r.run_id]
                keep, other = (old, Run(r, f))
                if r.finished_at > old.result.finished_at:
                    keep, other = other, keep
                problems.append(
                    f"duplicate run {r.run_id}: {keep.path} kept (newer), {other.path} left out"
                )
                by_id[r.run_id] = keep
            else:
                by_id[r.run_id] = Run(r, f)
        rows = _group(list(by_id.values()), problems)
        return cls(rows, problems, notes, n_resamples, every)

    # -- tables ----------------------------------------------------------------------------

    def tasks(self) -> list[str]:
        return sorted({r.task for r in self.rows})

    def task_rows(self, task: str) -> list[Row]:
        return [r for r in self.rows if r.task == task]

    def feature_rtf(self) -> dict[str, float]:
        """encoder -> median real-time factor of its cache fills (runs that computed features)."""
        out: dict[str, list[float]] = defaultdict(list)
        for run in self.all_runs or [r for row in self.rows for r in row.runs]:
            t = run.result.timings_s
            if t.get("cache_audio", 0) > 0:
                out[run.result.encoder].append(t["cache"] / t["cache_audio"])
        return {k: float(np.median(v)) for k, v in out.items()}

    def splits(self, task: str) -> list[str]:
        """The eval splits of a task's rows, in the order they first appear."""
        out: list[str] = []
        for row in self.task_rows(task):
            out += [s for s in row.splits if s not in out]
        return out

    def table(self, task: str, split: str) -> list[dict]:
        rtf = self.feature_rtf()
        out = []
        for row in self.task_rows(task):
            if split not in row.splits:
                self._problem(f"{task}: {row.name} has no {split} split")
                continue
            try:
                s = row.stats(split)
            except KeyError as e:
                self._problem(f"{task}/{split}: {row.name} lacks metric {e}; left out")
                continue
            out.append({
                "task": task,
                "split": split,
                "encoder": row.encoder,
                "mode": row.mode,
                "config": row.label,
                "metric": row.primary,
                "lower_is_better": row.lower_is_better,
                "seeds": row.seeds,
                **s,
                "parameters": row.parameters(),
                "feature_rtf": rtf.get(row.encoder),
            })  # fmt: skip
        sign = 1.0 if out and out[0]["lower_is_better"] else -1.0
        return sorted(out, key=lambda r: (not math.isfinite(r["mean"]), sign * r["mean"]))

    def pairs(self, task: str, split: str) -> list[dict]:
        """Paired bootstrap of every two rows of the task and split scored on the same items."""
        rows = [r for r in self.task_rows(task) if split in r.splits]
        items = {}
        for r in rows:
            try:
                items[id(r)] = self._items(r, split)
            except ValueError as e:  # a damaged or other-schema per-item file
                items[id(r)] = str(e)
        out = []
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                entry = {"a": a.name, "b": b.name, "metric": a.primary}
                ia, ib = items[id(a)], items[id(b)]
                if a.data != b.data:
                    entry["error"] = "scored on different data"
                elif isinstance(ia, str) or isinstance(ib, str):
                    entry["error"] = ia if isinstance(ia, str) else ib
                elif ia is None or ib is None:
                    entry["error"] = "no per-item file"
                else:
                    try:
                        test = paired_bootstrap(ia, ib, n_resamples=self.n_resamples)
                    except ValueError as e:
                        entry["error"] = str(e)
                    else:
                        entry |= test.to_dict()
                        entry["significant"] = test.significant(0.05)
                out.append(entry)
        return out

    @staticmethod
    def _items(row: Row, split: str):
        got = []
        for run in row.runs:
            path = run.dir / run.result.artifacts.get(f"{split}_items", items_file(split))
            if not path.is_file():
                return None
            items = read_items(path).get(row.primary)
            if items is None:
                return None
            got.append(items)
        return got

    def superb(self) -> list[dict]:
        """The SUPERB-style score of every (encoder, mode, configuration) row."""
        per_task: dict[str, dict[str, float]] = {}
        for task in self.tasks():
            rows = self.task_rows(task)
            floor = [r for r in rows if r.encoder == FLOOR_ENCODER and r.mode == "frozen"]
            if not floor:
                self._note(f"SUPERB score: task {task} has no fbank frozen row, not covered")
                continue
            if len(floor) > 1:
                self._note(
                    f"SUPERB score: task {task}: {len(floor)} fbank rows, the first is the floor"
                )
            split = floor[0].splits[0]  # the floor's first eval split
            means = {}
            for r in rows:
                try:
                    m = float(np.mean(r.values(split)))
                except KeyError:
                    continue
                if math.isfinite(m) and r.data == floor[0].data:
                    means[r.name] = m
            if floor[0].name not in means:
                self._note(f"SUPERB score: task {task}: the fbank row has no value, not covered")
                continue
            lower = floor[0].lower_is_better
            best = min(means.values()) if lower else max(means.values())
            f = means[floor[0].name]
            if best == f:
                self._note(f"SUPERB score: task {task}: fbank is the best row, not covered")
                continue
            per_task[task] = {n: (m - f) / (best - f) for n, m in means.items()}
        names = sorted({r.name for r in self.rows})
        out = []
        for n in names:
            covered = {t: s[n] for t, s in per_task.items() if n in s}
            score = 1000 * float(np.mean(list(covered.values()))) if covered else None
            out.append({
                "row": n,
                "score": score,
                "tasks": sorted(covered),
                "per_task": {t: 1000 * v for t, v in covered.items()},
                "covers_all": bool(per_task) and set(covered) == set(per_task),
            })  # fmt: skip
        return sorted(out, key=lambda r: -(r["score"] if r["score"] is not None else -1e9))

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def to_dict(self) -> dict:
        tables = {
            task: {
                split: {"rows": self.table(task, split), "pairs": self.pairs(task, split)}
                for split in self.splits(task)
            }
            for task in self.tasks()
        }
        superb = self.superb()
        return {
            "tables": tables,
            "superb": superb,
            "feature_rtf": self.feature_rtf(),
            "problems": self.problems,
            "notes": self.notes,
        }


def _group(runs: list[Run], problems: list[str]) -> list[Row]:
    rows: dict[tuple, Row] = {}
    flats: dict[tuple, dict] = {}
    for run in runs:
        r = run.result
        variant, flat = _config_variant(r)
        key = (r.task, r.encoder, r.mode, variant)
        row = rows.setdefault(key, Row(r.task, r.encoder, r.mode, variant))
        flats[key] = flat
        if any(x.result.seed == r.seed for x in row.runs):
            problems.append(
                f"{r.task}/{r.encoder}/{r.mode}: seed {r.seed} twice with the same config "
                f"({run.path}); left out"
            )
            continue
        row.runs.append(run)
    # rows of one (task, encoder, mode) in several configurations: name what differs
    siblings: dict[tuple, list[tuple]] = defaultdict(list)
    for key in rows:
        siblings[key[:3]].append(key)
    for group, keys in siblings.items():
        if len(keys) < 2:
            continue
        differ = sorted(
            k
            for k in set().union(*(flats[x] for x in keys))
            if len({json.dumps(flats[x].get(k), default=str) for x in keys}) > 1
        )
        shown = [k for k in differ if k != "_inputs"] or ["inputs"]
        for key in keys:
            rows[key].label = (
                ", ".join(f"{k}={flats[key].get(k)}" for k in shown[:3] if k != "inputs")
                or f"inputs {key[3][:6]}"
            )
        problems.append(
            f"{'/'.join(group)}: {len(keys)} configurations (differing in {', '.join(shown[:5])}); "
            "shown as separate rows"
        )
    names: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows.values():
        names[(row.task, row.name)].append(row)
    for same in names.values():  # labels cut to 3 keys can collide: the digest tells apart
        if len(same) > 1:
            for row in same:
                row.label = f"{row.label}, config {row.variant[:6]}".lstrip(", ")
    _report_grid(list(rows.values()), problems)
    return sorted(rows.values(), key=lambda r: (r.task, r.encoder, r.mode, r.label))


def _report_grid(rows: list[Row], problems: list[str]) -> None:
    tasks = sorted({r.task for r in rows})
    pairs = sorted({(r.encoder, r.mode) for r in rows})
    have = {(r.task, r.encoder, r.mode) for r in rows}
    for enc, mode in pairs:
        lacking = [t for t in tasks if (t, enc, mode) not in have]
        if lacking:
            problems.append(f"missing: {enc} {mode} has no run of {', '.join(lacking)}")
    for task in tasks:
        trows = [r for r in rows if r.task == task]
        counts = {r.name: len(r.runs) for r in trows}
        if len(set(counts.values())) > 1:
            problems.append(
                f"{task}: unequal seeds ("
                + ", ".join(f"{n}: {c}" for n, c in sorted(counts.items()))
                + ")"
            )
        datas = {r.data for r in trows}
        if len(datas) > 1:
            problems.append(
                f"{task}: rows scored on {len(datas)} different data sets (data digests "
                f"{', '.join(sorted(d[:8] for d in datas))}); no paired test across them"
            )


# -- rendering ---------------------------------------------------------------------------------


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{v:.{digits}f}"


def _ci(row: dict) -> str:
    if not row["ci95"]:
        return ""
    return f"[{_fmt(row['ci95'][0])}, {_fmt(row['ci95'][1])}]" + (
        "ᵇ" if row["ci_kind"] == "items" else ""
    )


def _params(p) -> str:
    if p is None:
        return ""
    return f"{p / 1e6:.2f} M" if p >= 1e4 else str(p)


TABLE_HEAD = ["encoder", "mode", "seeds", "mean", "± std", "95% CI", "params", "feature RTF"]


def _table_cells(r: dict) -> list[str]:
    name = r["encoder"] + (f" ({r['config']})" if r["config"] else "")
    return [
        name,
        r["mode"],
        str(r["n"]),
        _fmt(r["mean"]),
        _fmt(r["std"]) if r["n"] > 1 else "",  # no spread over one seed
        _ci(r),
        _params(r["parameters"]),
        _fmt(r["feature_rtf"], 4),
    ]


def _pair_cells(p: dict) -> list[str]:
    if "error" in p:
        return [p["a"], p["b"], "", "", f"not tested: {p['error']}"]
    sig = "**yes**" if p["significant"] else "no"
    return [p["a"], p["b"], f"{p['delta']:+.2f}", f"{p['p_value']:.3f}", sig]


def _sections(board: dict):
    """(split, title, table) of every task and eval split with rows, in board order."""
    for task, splits in board["tables"].items():
        for split, t in splits.items():
            if t["rows"]:
                r0 = t["rows"][0]
                arrow = "lower is better" if r0["lower_is_better"] else "higher is better"
                yield split, f"{task}: {r0['metric']} on {split} ({arrow})", t


def _superb_table(board: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the SUPERB-style score table."""
    tasks = sorted({t for s in board["superb"] for t in s["tasks"]})
    rows = [
        [s["row"], _fmt(s["score"], 0), *(_fmt(s["per_task"].get(t), 0) for t in tasks),
         "all" if s["covers_all"] else ", ".join(s["tasks"]) or "none"]
        for s in board["superb"]
    ]  # fmt: skip
    return ["row", "score", *tasks, "covers"], rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(board: dict, plots: dict[str, str] | None = None) -> str:
    out = ["# Leaderboard", ""]
    if any(s["score"] is not None for s in board["superb"]):
        out += ["## SUPERB-style score", ""]
        out.append(
            "Each task's primary metric rescaled between `fbank` frozen (0) and the task's best "
            "row (1), error metrics flipped, averaged over the tasks the row covers, x 1000."
        )
        out.append("")
        out += [_md_table(*_superb_table(board)), ""]
    for split, title, t in _sections(board):
        out += [f"## {title}", ""]
        out += [_md_table(TABLE_HEAD, [_table_cells(r) for r in t["rows"]]), ""]
        if t["pairs"]:
            out += [
                f"Paired bootstrap over the {split} items (significant: p < 0.05, each "
                "pair on its own, no correction for the number of pairs):",
                "",
            ]
            out += [
                _md_table(["A", "B", "A - B", "p", "significant"],
                          [_pair_cells(p) for p in t["pairs"]]),
                "",
            ]  # fmt: skip
    out += [
        "95% CI: Student's t over the seeds; ᵇ: one seed, the run's bootstrap interval over "
        "test items. Feature RTF: seconds of feature extraction per second of audio (cache "
        "fills; the device of the runs).",
        "",
    ]
    if plots:
        out += ["## Layer weights", ""]
        out += [f"![{name}]({path})" for name, path in plots.items()]
        out.append("")
    for title, items in (("Notes", board["notes"]), ("Problems", board["problems"])):
        if items:
            out += [f"## {title}", "", *(f"- {x}" for x in items), ""]
    return "\n".join(out)


def to_csv(board: dict) -> str:
    import pandas as pd

    rows = [
        {**{k: v for k, v in r.items() if k not in ("ci95", "seeds")},
         "ci_low": r["ci95"][0] if r["ci95"] else None,
         "ci_high": r["ci95"][1] if r["ci95"] else None,
         "seeds": " ".join(map(str, r["seeds"]))}
        for splits in board["tables"].values()
        for t in splits.values()
        for r in t["rows"]
    ]  # fmt: skip
    return pd.DataFrame(rows).to_csv(index=False)


def layer_plots(lb: Leaderboard, folder: Path) -> dict[str, Path]:
    """One PNG per (encoder, mode) row and task: the learned layer weights (mean +- std over
    seeds). Returns name -> path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for row in lb.rows:
        w = row.layer_weights()
        if w is None:
            continue
        name = f"{row.task} {row.name}"
        fig, ax = plt.subplots(figsize=(4.5, 2.6), dpi=100)
        x = np.arange(w.shape[1])
        layers = row.runs[0].result.layer_weights.get("layers") or list(x)
        ax.bar(x, w.mean(0), yerr=w.std(0) if len(w) > 1 else None, color="#4c72b0", capsize=2)
        ax.set_xlabel("layer (0: input of the first block)")
        ax.set_ylabel("softmax weight")
        ax.set_title(f"{row.task}: {row.name} ({len(w)} seed{'s' * (len(w) > 1)})", fontsize=9)
        ax.set_xticks(x, [str(i) for i in layers][: len(x)])
        fig.tight_layout()
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = folder / f"layers_{slug}.png"
        fig.savefig(path)
        plt.close(fig)
        out[name] = path
    return out


_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var i = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.dataset.order !== 'asc';
    th.parentNode.querySelectorAll('th').forEach(function (h) { delete h.dataset.order; });
    th.dataset.order = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[i].dataset.v || a.cells[i].textContent;
      var y = b.cells[i].dataset.v || b.cells[i].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _html_table(head: list[str], rows: list[list[str]], values: list[list] | None = None) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            v = values[i][j] if values and values[i][j] is not None else None
            attr = f' data-v="{v}"' if v is not None else ""
            cells.append(f"<td{attr}>{e(c).replace('**', '')}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable"><thead><tr>{th}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
    )


def to_html(board: dict, plots: dict[str, Path] | None = None) -> str:
    """A self-contained page: sortable tables (click a header) and the plots inlined."""
    e = html.escape
    parts = ["<h1>nestbench leaderboard</h1>"]
    if any(s["score"] is not None for s in board["superb"]):
        parts += [
            '<h2 id="superb">SUPERB-style score</h2>',
            _html_table(*_superb_table(board)),
        ]
    for split, title, t in _sections(board):
        parts.append(f"<h2>{e(title)}</h2>")
        values = [[None, None, r["n"], r["mean"], r["std"], None, r["parameters"],
                   r["feature_rtf"]] for r in t["rows"]]  # fmt: skip
        parts.append(_html_table(TABLE_HEAD, [_table_cells(r) for r in t["rows"]], values))
        if t["pairs"]:
            parts.append(f"<p>Paired bootstrap over the {e(split)} items (p &lt; 0.05):</p>")
            parts.append(
                _html_table(
                    ["A", "B", "A - B", "p", "significant"],
                    [_pair_cells(p) for p in t["pairs"]],
                )
            )
    if plots:
        parts.append("<h2>Layer weights</h2>")
        for name, path in plots.items():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(
                f'<figure><img alt="{e(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(name)}</figcaption></figure>"
            )
    for title, items in (("Notes", board["notes"]), ("Problems", board["problems"])):
        if items:
            parts.append(
                f"<h2>{title}</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in items) + "</ul>"
            )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}"
        "th{cursor:pointer;background:#f3f3f3}th[data-order=asc]::after{content:' ▲'}"
        "th[data-order=desc]::after{content:' ▼'}figure{display:inline-block;margin:.5em}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>nestbench leaderboard</title><style>{style}</style></head><body>"
        + "\n".join(parts)
        + f"<script>{_SORT_JS}</script></body></html>\n"
    )


def render(
    paths: Iterable[str | Path],
    fmt: str = "md",
    out: Path | None = None,
    plots_dir: Path | None = None,
    n_resamples: int = 2000,
) -> tuple[str, Leaderboard]:
    """The leaderboard of the results under ``paths`` in ``fmt`` (written to ``out`` if given;
    layer-weight PNGs to ``plots_dir``, for md and html)."""
    from nestbench.data.manifest import atomic_write_text

    if fmt not in FORMATS:
        raise ValueError(f"leaderboard format {fmt!r}: expected one of {FORMATS}")
    lb = Leaderboard.from_paths(paths, n_resamples=n_resamples)
    if not lb.rows:
        raise ResultError(
            f"leaderboard: no readable result.json under {', '.join(map(str, paths))}"
        )
    board = lb.to_dict()
    plots = {}
    if plots_dir is not None and fmt in ("md", "html"):
        plots = layer_plots(lb, Path(plots_dir))
    if fmt == "md":
        base = Path(out).parent if out else Path.cwd()
        rel = {}
        for k, p in plots.items():
            try:
                rel[k] = str(Path(p).resolve().relative_to(base.resolve()))
            except ValueError:
                rel[k] = str(p)
        text = to_markdown(board, rel)
    elif fmt == "csv":
        text = to_csv(board)
    elif fmt == "json":
        text = json.dumps(board, indent=2, default=str) + "\n"
    else:
        text = to_html(board, plots)
    if out is not None:
        atomic_write_text(Path(out), text)
    return text, lb
