"""Looking into an output directory: its rows (``synth show``) and the state of its runs (``synth status``).

The reading functions (:func:`list_configs`, :func:`load_rows`, :func:`output_status`) return plain data read from
the output — ``manifest.json``, the committed shard files it lists, the ledger segments and the lock — without
taking the lock or writing anything; the ``render_*`` functions print that data with a rich Console. Config
names are the dataset card's (``synth.publish.card.config_name``): ``sap-de`` holds the kept rows of one language,
``sap-rejected`` the rejected rows of every language.

One write lives here, :func:`record_run_start`: the run record ``OUT/.polysynth/<recipe>/run.json``, written by
the driver once it holds the lock and knows its units. ``manifest.json`` is rewritten only at finalize and the
ledger does not know how many units a run wants, so without the record a live run's total is unknown (and
``synth status`` says so).

Example::

    from rich.console import Console
    from synth.report.browse import load_rows, output_status, render_rows, render_status

    render_rows(Console(), load_rows("out/demo", "sap-de", limit=3))
    render_status(Console(), output_status("out/demo"))
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc

from synth.errors import OutputError, SynthError
from synth.store.location import Location
from synth.store.manifest import MANIFEST, Manifest
from synth.store.segments import STORE_DIR, SUFFIX, SegmentStore
from synth.store.shards import REJECTED

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

RUN_RECORD = "run.json"
SUMMARY_CHARS = 80  # a SAP summary is a paragraph: the table shows its start
HIGHLIGHT = "bold magenta"  # switched entities (EntityCS) and slot values (COD)


class UnknownConfigError(SynthError):
    """``synth show`` was asked for a config the output does not have."""


class UnknownReasonError(SynthError):
    """``synth show --reason`` named a reject reason that no selected row has."""


def open_output(out: str | Path) -> tuple[Location, Manifest]:
    """The output's location and manifest; a one-line error when ``out`` holds no polysynth output."""
    location = Location(out)
    if not location.exists(MANIFEST):
        raise OutputError(
            f"no {MANIFEST}: not a polysynth output directory (synth run or synth demo writes one)",
            file=location.display(),
        )
    return location, Manifest(location)


# -- synth show: configs ----------------------------------------------------------------------------------------


@dataclass
class ConfigCount:
    """One ``<recipe>-<lang>`` config: its kept rows, and its language's rows in ``<recipe>-rejected``."""

    name: str
    lang: str
    kept: int
    rejected: int


@dataclass
class RecipeContents:
    """What one recipe of an output publishes, from the manifest of its last finalize."""

    recipe: str
    status: str
    configs: list[ConfigCount]
    reject_reasons: dict[str, int]

    @property
    def rejected_config(self) -> str:
        from synth.publish.card import config_name

        return config_name(self.recipe, REJECTED)

    @property
    def rejected(self) -> int:
        return sum(config.rejected for config in self.configs)

    def names(self) -> list[str]:
        """The configs a user may ask for: languages with kept rows, those with rejected rows only (marked), then
        the rejected config."""
        names = [config.name if config.kept else f"{config.name} (--rejected)" for config in self.configs]
        return names + ([self.rejected_config] if self.rejected else [])


def list_configs(out: str | Path) -> list[RecipeContents]:
    """Per recipe of ``out``, its configs with kept/rejected row counts and its reject reasons."""
    return _contents(open_output(out)[1])


def _contents(manifest: Manifest) -> list[RecipeContents]:
    from synth.publish.card import config_name

    contents = []
    for recipe, state in sorted(manifest.recipes.items()):
        totals = state.get("totals", {})
        kept, rejected = totals.get("kept", {}), totals.get("rejected", {})
        configs = [
            ConfigCount(config_name(recipe, lang), lang, kept.get(lang, 0), rejected.get(lang, 0))
            for lang in sorted(set(kept) | set(rejected))
        ]
        reasons = dict(totals.get("reject_reasons", {}))
        contents.append(RecipeContents(recipe, state.get("status", "unknown"), configs, reasons))
    return contents


def configs_json(contents: list[RecipeContents]) -> list[str]:
    """The config listing as JSON lines, one per ``<recipe>-<lang>`` config."""
    return [
        json.dumps(
            {"config": config.name, "recipe": recipe.recipe, "lang": config.lang, "kept": config.kept,
             "rejected": config.rejected},
            ensure_ascii=False,
        )
        for recipe in contents
        for config in recipe.configs
    ]


# -- synth show: rows -------------------------------------------------------------------------------------------


@dataclass
class RowSelection:
    """The first rows of one config (kept or rejected), how many rows match in all, and the reject reasons."""

    config: str
    recipe: str
    lang: str | None  # None: every language (the <recipe>-rejected config)
    rejected: bool
    reason: str | None
    rows: list[dict[str, Any]]
    matched: int
    reasons: dict[str, int]  # among the config's rejected rows, before --reason filters them


def load_rows(
    out: str | Path, config: str, *, limit: int = 5, rejected: bool = False, reason: str | None = None
) -> RowSelection:
    """The first ``limit`` rows of ``config`` (``sap-de``, ``sap-rejected``), read from the committed shards.

    ``rejected`` selects the config's rejected rows instead of its kept ones; ``reason`` keeps only rejected rows
    with that reject reason (and implies ``rejected``). Unknown configs and reasons raise a one-line error naming
    what the output has.
    """
    location, manifest = open_output(out)
    contents = {recipe.recipe: recipe for recipe in _contents(manifest)}
    recipe, _, lang_part = config.partition("-")
    recipe_contents = contents.get(recipe)
    available = [name for item in contents.values() for name in item.names()]
    if recipe_contents is None or not lang_part:
        raise UnknownConfigError(
            f"no config {config!r}; configs: {', '.join(available) or 'none (nothing published yet)'}",
            file=location.display(),
        )
    lang = None if config == recipe_contents.rejected_config else lang_part
    rejected = rejected or reason is not None or lang is None
    if lang is not None:
        counts = next((item for item in recipe_contents.configs if item.lang == lang), None)
        if counts is None or not (counts.rejected if rejected else counts.kept):
            raise UnknownConfigError(_missing_config(config, rejected, counts, available), file=location.display())
    group = REJECTED if rejected else lang
    shards = [shard for shard in manifest.recipes[recipe].get("shards", []) if shard["group"] == group]
    try:
        rows, matched, reasons = _scan(location, shards, lang, reason, limit)
    except FileNotFoundError:  # a finalize replaced the shard generation between reading the manifest and a shard
        raise OutputError(
            "the output changed while it was read (a run finalized); run the command again", file=location.display()
        ) from None
    if reason is not None and reason not in reasons:
        present = ", ".join(f"{name} ({count})" for name, count in reasons.items())
        raise UnknownReasonError(
            f"no rejected row of {config} has reason {reason!r}; reasons: {present}", file=location.display()
        )
    return RowSelection(config, recipe, lang, rejected, reason, rows, matched, reasons)


def _missing_config(config: str, rejected: bool, counts: ConfigCount | None, available: list[str]) -> str:
    """Why ``config`` has no rows of the kind asked for, and what to ask for instead."""
    if counts is None:
        return f"no config {config!r}; configs: {', '.join(available)}"
    if rejected:
        return f"{config} has no rejected rows ({counts.kept} kept: drop --rejected/--reason)"
    return f"{config} has no kept rows ({counts.rejected} rejected: add --rejected)"


def _scan(
    location: Location, shards: list[dict[str, Any]], lang: str | None, reason: str | None, limit: int
) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """The first ``limit`` matching rows of ``shards``, the number matching, and the reject reasons counted.

    Kept shards hold one language each, so every row matches; rejected shards hold every language and reason,
    so their rows are filtered by ``lang`` (None: any) and ``reason`` (None: any). Only the two filter columns are
    read for counting; whole rows are read only while fewer than ``limit`` have been collected.
    """
    rows: list[dict[str, Any]] = []
    matched = 0
    reasons: dict[str, int] = {}
    for shard in shards:
        if shard["group"] != REJECTED:
            matched += shard["rows"]
            if len(rows) < limit:
                rows += location.read_table(shard["path"]).slice(0, limit - len(rows)).to_pylist()
            continue
        keys = location.read_table(shard["path"], columns=["lang", "reject_reason"])
        # every row of a rejected shard has a reason, so "any language" is the all-true mask
        in_lang = pc.equal(keys["lang"], lang) if lang is not None else pc.is_valid(keys["reject_reason"])
        for entry in pc.value_counts(keys["reject_reason"].filter(in_lang)).to_pylist():
            reasons[entry["values"]] = reasons.get(entry["values"], 0) + entry["counts"]
        mask = pc.and_(in_lang, pc.equal(keys["reject_reason"], reason)) if reason is not None else in_lang
        count = pc.sum(mask).as_py() or 0
        matched += count
        if count and len(rows) < limit:
            rows += location.read_table(shard["path"]).filter(mask).slice(0, limit - len(rows)).to_pylist()
    return rows, matched, dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def row_json(row: dict[str, Any]) -> str:
    """One row as a JSON line (timestamps as ISO 8601)."""
    return json.dumps(row, ensure_ascii=False, default=lambda value: value.isoformat())


# -- synth show: rendering --------------------------------------------------------------------------------------


def render_configs(console: Console, out: str | Path, contents: list[RecipeContents]) -> None:
    """A table of the output's configs with kept/rejected counts, each recipe's reject reasons, and a hint."""
    from rich.table import Table

    table = Table(title=plain(f"configs of {out}"))
    for name, justify in (("config", "left"), ("kept", "right"), ("rejected", "right")):
        table.add_column(name, justify=justify)
    for recipe in contents:
        if not recipe.configs:
            table.add_row(plain(f"{recipe.recipe}-…"), "–", "–", end_section=True)
            continue
        for config in recipe.configs:
            table.add_row(plain(config.name), str(config.kept), str(config.rejected))
        table.add_row(plain(recipe.rejected_config), "", str(recipe.rejected), style="dim", end_section=True)
    console.print(table)
    for recipe in contents:
        if not recipe.configs:
            console.print(f"{recipe.recipe}: nothing published yet ({recipe.status})", markup=False, highlight=False)
        elif recipe.reject_reasons:
            reasons = ", ".join(f"{name} {count}" for name, count in recipe.reject_reasons.items())
            console.print(f"{recipe.recipe} reject reasons: {reasons}", markup=False, highlight=False)
    kept = [config.name for recipe in contents for config in recipe.configs if config.kept]
    examples = kept or [recipe.rejected_config for recipe in contents if recipe.rejected]
    if examples:
        console.print(
            f"show rows: synth show {out} {examples[0]} -n 5   (--rejected: rejected rows; --reason R: one reason; "
            "--json: JSON lines)",
            markup=False,
            highlight=False,
            style="dim",
        )


def render_rows(console: Console, selection: RowSelection) -> None:
    """The selected rows as their recipe shows them (``Recipe.show``)."""
    kind = "rejected " if selection.rejected and selection.lang is not None else ""
    reason = f" with reason {selection.reason}" if selection.reason else ""
    title = f"{selection.config}: {len(selection.rows)} of {selection.matched} {kind}rows{reason}"
    from synth.recipes import recipe_class

    recipe = recipe_class(selection.recipe)
    if recipe.show is not None:
        recipe.show(console, selection, title)
    else:
        show_view(console, selection, title, recipe.view)


def plain(value: Any) -> Text:
    """User text as a rich Text: never parsed as markup, so ``[bold]`` in a row prints as written."""
    from rich.text import Text

    return Text("" if value is None else str(value))


def score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def show_view(console: Console, selection: RowSelection, title: str, view: Any) -> None:
    """The rows as a table of their recipe's view (``synth.recipes.base.RecipeView``): language, generated text,
    source and detail, LID score, and the reject reason of rejected rows."""
    from rich.table import Table

    table = Table(title=plain(title), show_lines=True)
    for name in ("lang", "text", "source", "detail", "lid_score"):
        table.add_column(name, overflow="fold")
    if selection.rejected:
        table.add_column("reject_reason")
    for row in selection.rows:
        source = view.source(row)
        cells = [plain(row.get("lang")), plain(view.text(row)), plain(source[: SUMMARY_CHARS - 1] + "…" if len(source) > SUMMARY_CHARS else source),
                 plain(view.detail(row)), score(row.get("lid_score"))]
        if selection.rejected:
            cells.append(plain(row.get("reject_reason")))
        table.add_row(*cells)
    console.print(table)


def highlight_spans(text: str, spans: list[tuple[int, int]]) -> Text:
    """``text`` with the ``[start, end)`` character spans highlighted (spans index the text as Python does)."""
    rendered = plain(text)
    for start, end in spans:
        rendered.stylize(HIGHLIGHT, start, end)
    return rendered


# -- synth status -------------------------------------------------------------------------------------------------


def record_run_start(out: Location | Path | str, recipe: str, *, units_total: int, units_pending: int) -> None:
    """Write ``OUT/.polysynth/<recipe>/run.json``: who runs ``recipe`` since when, and how many units it wants.

    Called by the driver right after it has taken the lock and planned (``RecipeRun.__enter__``), so that
    ``synth status`` can report a live run's progress: units done = the units done before it started + the units
    of the ledger segments committed since. Overwritten by every run; ignored once the manifest says the run
    finished.
    """
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_ns": time.time_ns(),  # the clock ledger segment ids start with
        "units_total": units_total,
        "units_done_at_start": units_total - units_pending,
    }
    Location(out).write_bytes(f"{STORE_DIR}/{recipe}/{RUN_RECORD}", json.dumps(record, sort_keys=True).encode())


@dataclass
class LockState:
    """Whether a live run holds the output lock, and its holder record (pid, host, acquired_at, command)."""

    held: bool
    holder: dict[str, Any]


@dataclass
class RecipeStatus:
    """What ``synth status`` says about one recipe of an output."""

    recipe: str
    state: str  # running, complete, incomplete or failed
    units_done: int | None  # None: not knowable from disk
    units_total: int | None
    kept: int | None
    rejected: int | None
    counts_scope: str  # what kept/rejected count: "published" or "this run so far"
    updated_at: datetime | None
    note: str


@dataclass
class OutputStatus:
    out: str
    lock: LockState
    recipes: list[RecipeStatus]


def lock_state(location: Location) -> LockState:
    """Probe the output lock without keeping it (``check()``: a shared flock taken and dropped at once, or the
    holder record on an object store); a held lock comes with what its holder recorded."""
    from synth.store.lock import HELD_FILE, LOCK_FILE, lock_for

    try:
        lock_for(location).check()
    except OutputError:
        for name in (LOCK_FILE, HELD_FILE):  # HELD_FILE: the record where the file system has no flock
            try:
                record = json.loads(location.read_bytes(name))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                return LockState(True, record)
        return LockState(True, {})
    return LockState(False, {})


def output_status(out: str | Path) -> OutputStatus:
    """Per recipe of ``out``: state, units done/total, kept/rejected, last update; and who holds the lock.

    The manifest says ``running`` from the moment a run takes the lock until it finalizes. A ``running`` recipe is
    running while a live process holds the lock and no other recipe's run record names that process; otherwise
    its run stopped before publishing (killed, or an error): failed.
    """
    location, manifest = open_output(out)
    lock = lock_state(location)
    runs = {recipe: _current_run_record(location, recipe, state) for recipe, state in manifest.recipes.items()}
    holder_recipes = [
        recipe for recipe, run in runs.items() if lock.held and run is not None and _holder_runs(lock.holder, run)
    ]
    statuses = []
    for recipe, state in sorted(manifest.recipes.items()):
        # No record names the holder while it plans (reads its input), or when its driver writes no record: then
        # any ``running`` recipe may be the one it runs.
        live = state.get("status") == "running" and lock.held and (not holder_recipes or recipe in holder_recipes)
        statuses.append(_recipe_status(location, recipe, state, runs[recipe], live, lock.holder))
    return OutputStatus(location.display(), lock, statuses)


def _recipe_status(
    location: Location,
    recipe: str,
    state: dict[str, Any],
    run: dict[str, Any] | None,
    live: bool,
    holder: dict[str, Any],
) -> RecipeStatus:
    totals = state.get("totals", {})
    kept_total, rejected_total = sum(totals.get("kept", {}).values()), sum(totals.get("rejected", {}).values())
    published = (kept_total, rejected_total) if totals else (None, None)
    store = SegmentStore(location, recipe)
    segments = store.segments()
    newest_segment = _segment_ns(segments[-1]) if segments else None
    last_change = _newest(_parse_time(state.get("finished_at")), _from_ns(newest_segment))
    if state.get("status") != "running":  # complete or incomplete: the manifest of its finalize says it all
        total, missing = state.get("units_total"), state.get("units_missing", 0)
        note = f"{missing} units not generated (engine errors); a rerun generates only them" if missing else ""
        done = None if total is None else total - missing
        status = state.get("status", "unknown")
        return RecipeStatus(recipe, status, done, total, *published, "published", last_change, note)
    stopped = "stopped before publishing (killed, or an error); rerun the same command to resume"
    if live and run is not None and not _holder_runs(holder, run):
        run = None  # an earlier stopped run's record: the live run has not written its own yet (it is planning)
    acquired = _parse_time(holder.get("acquired_at"))
    if run is not None:
        start_ns = run["started_ns"]
    elif live and acquired is not None:
        start_ns = int(acquired.timestamp()) * 10**9  # the lock is taken per run: its acquisition starts the run
    else:  # a stopped run that left no record: only what an earlier run published is known
        note = stopped + ("; the counts are an earlier run's" if totals else "")
        return RecipeStatus(recipe, "failed", None, None, *published, "published", last_change, note)
    units, kept, rejected = _committed_since(store, segments, start_ns)
    total = run["units_total"] if run is not None else None
    done = min(total, run["units_done_at_start"] + units) if run is not None else units
    updated = _newest(last_change, _from_ns(start_ns))
    if not live:
        return RecipeStatus(recipe, "failed", done, total, kept, rejected, "this run so far", updated, stopped)
    who = f"pid {holder['pid']}" if holder.get("pid") is not None else "holder unknown"
    note = f"a live run ({who}) holds the lock"
    if total is None:
        note += "; its unit total is not on disk yet"
    return RecipeStatus(recipe, "running", done, total, kept, rejected, "this run so far", updated, note)


def _current_run_record(location: Location, recipe: str, state: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe's run record (see :func:`record_run_start`), unless the recipe finalized since it was written."""
    try:
        record = json.loads(location.read_bytes(f"{STORE_DIR}/{recipe}/{RUN_RECORD}"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("started_ns"), int):
        return None
    finished = _parse_time(state.get("finished_at"))
    if finished is not None and record["started_ns"] < int(finished.timestamp()) * 10**9:
        return None
    return record


def _holder_runs(holder: dict[str, Any], run: dict[str, Any]) -> bool:
    """Whether the lock holder is the process that wrote the run record, in its current hold of the lock.

    One process may run several recipes in turn (``synth demo``), each taking the lock anew, and a container's
    pid is reused after a restart: the record must also be no older than the lock's acquisition.
    """
    if not holder:
        return True  # a holder that recorded nothing: nothing contradicts the record
    acquired = _parse_time(holder.get("acquired_at"))
    return (
        holder.get("pid") == run.get("pid")
        and holder.get("host") == run.get("host")
        and (acquired is None or run.get("started_ns", 0) >= int(acquired.timestamp()) * 10**9)
    )


def _committed_since(store: SegmentStore, segments: list[str], start_ns: int) -> tuple[int, int, int]:
    """Units, kept rows and rejected rows of the ledger segments committed at or after ``start_ns``."""
    units = kept = rejected = 0
    for sid in segments:
        committed = _segment_ns(sid)
        if committed is None or committed < start_ns:
            continue
        try:
            units += len(store.unit_keys(sid))
            reasons = store.location.read_table(f"{store.folder}/{sid}{SUFFIX}", columns=["reject_reason"])
        except FileNotFoundError:  # merged away by a finalize's compaction meanwhile
            continue
        bad = pc.sum(pc.is_valid(reasons["reject_reason"])).as_py() or 0
        kept, rejected = kept + reasons.num_rows - bad, rejected + bad
    return units, kept, rejected


def _segment_ns(sid: str) -> int | None:
    """A segment's commit time: its id starts with ``time.time_ns()`` (``synth.store.segments.new_segment_id``)."""
    try:
        return int(sid.split("-", 1)[0])
    except ValueError:
        return None


def _from_ns(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, timezone.utc)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _newest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def _age(moment: datetime) -> str:
    seconds = max(0, int(time.time() - moment.timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def render_status(console: Console, status: OutputStatus) -> None:
    """A table per recipe (state, units, kept/rejected, last update, note) and a line on the lock."""
    from rich.table import Table
    from rich.text import Text

    colors = {"running": "yellow", "complete": "green", "incomplete": "magenta", "failed": "red"}
    table = Table(title=plain(f"status of {status.out}"))
    for name, justify in (("recipe", "left"), ("state", "left"), ("units", "right"), ("kept", "right"),
                          ("rejected", "right"), ("counted", "left"), ("last update", "left"), ("note", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for recipe in status.recipes:
        if recipe.units_done is None:
            units = "unknown"
        else:
            units = f"{recipe.units_done}/{'unknown' if recipe.units_total is None else recipe.units_total}"
        updated = (
            f"{_age(recipe.updated_at)} ({recipe.updated_at:%m-%d %H:%M} UTC)" if recipe.updated_at else "unknown"
        )
        table.add_row(
            plain(recipe.recipe),
            Text(recipe.state, style=colors.get(recipe.state, "")),
            units,
            "–" if recipe.kept is None else str(recipe.kept),
            "–" if recipe.rejected is None else str(recipe.rejected),
            recipe.counts_scope,
            updated,
            plain(recipe.note),
        )
    if status.recipes:
        console.print(table)
    else:
        console.print("no recipe has run into this output yet")
    console.print(plain(_describe_lock(status.lock)))


def _describe_lock(lock: LockState) -> str:
    if not lock.held:
        return "lock: not held (no live run is writing this output)"
    holder = lock.holder
    who = ", ".join(
        part
        for part in (
            f"pid {holder['pid']}" if holder.get("pid") is not None else "",
            f"host {holder['host']}" if holder.get("host") else "",
            f"since {holder['acquired_at']}" if holder.get("acquired_at") else "",
            f"command: {holder['command']}" if holder.get("command") else "",
        )
        if part
    )
    return f"lock: held by a live run ({who or 'holder not recorded'})"
