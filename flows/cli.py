"""The ``synth`` command line: demo, one-off runs, language ID, and the publishing/deployment commands.

Heavy imports (vLLM, Prefect, fastText) happen inside the commands that need them, so ``synth --help``
and ``synth lid`` start fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from synth.errors import SynthError

app = typer.Typer(
    name="synth",
    help=(
        "polysynth: multilingual training data with LLMs (SWIM-IR SAP queries, EntityCS code-switching, "
        "COD outline dialogues), run as Prefect flows over vLLM.\n\n"
        "Example: synth run sap --config data/configs/sap.yaml --limit 5 --languages de,hi"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
lexicon_app = typer.Typer(help="Entity lexicons for code-switching.\n\nExample: synth lexicon build latest-all.json.bz2 --out lexicon.parquet")
model_app = typer.Typer(help="The default model.\n\nExample: synth model prepare")
app.add_typer(lexicon_app, name="lexicon")
app.add_typer(model_app, name="model")
console = Console(stderr=True)


def _fail(error: Exception) -> None:
    from rich.markup import escape

    from flows.terminal import current_log_file

    log = current_log_file()
    where = f" [dim](log: {escape(str(log))})[/]" if log is not None else ""
    console.print(f"[bold red]error:[/] {escape(str(error))}{where}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _guard(fn):
    """Turn user-facing errors into one line on stderr and exit code 2, never a traceback."""

    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SynthError as error:
            _fail(error)
        except PermissionError as error:
            _fail(SynthError(f"permission denied: {error.filename}"))
        except KeyboardInterrupt:
            console.print("interrupted: rerun the same command to resume")
            raise typer.Exit(code=130)

    return wrapper


def _split_languages(value: Optional[str]) -> Optional[list[str]]:
    return [code.strip() for code in value.split(",") if code.strip()] if value else None


def print_summary(summary: dict[str, Any]) -> None:
    """A table of kept/rejected rows per language, printed to stdout."""
    table = Table(title=f"{summary['recipe']} → {summary['out']}")
    table.add_column("language")
    table.add_column("kept", justify="right")
    table.add_column("rejected", justify="right")
    for lang in sorted(set(summary["kept"]) | set(summary["rejected"])):
        table.add_row(lang, str(summary["kept"].get(lang, 0)), str(summary["rejected"].get(lang, 0)))
    out = Console()
    out.print(table)
    usage = summary["usage"]
    out.print(
        f"units generated {summary['units_generated']}/{summary['units_total']} · LLM calls {usage.get('calls', 0)} "
        f"{usage.get('per_step', {})} · reused {usage.get('reused', 0)} · wall {summary['wall_s']:.1f} s",
        highlight=False,
    )
    if summary["reject_reasons"]:
        out.print("reject reasons: " + ", ".join(f"{k} {v}" for k, v in summary["reject_reasons"].items()), highlight=False)


@app.command()
@_guard
def run(
    recipe: str = typer.Argument(..., help="A registered recipe: sap, entitycs, cod or an installed one (synth recipes)."),
    config: Path = typer.Option(..., "--config", "-c", help="Run config YAML (see data/configs/)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output directory (overrides output.dir)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Process at most N input records."),
    languages: Optional[str] = typer.Option(None, "--languages", "-l", help="Comma-separated ISO codes, e.g. de,hi,sw."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show Prefect's and vLLM's logs (always in OUT/logs/)."),
) -> None:
    """Run one recipe once, as a Prefect flow.

    Example: synth run sap --config data/configs/sap.yaml --limit 20 --languages de,hi,sw,zh
    """
    from synth.config_file import load_config

    from synth.recipes import recipe_class

    recipe_class(recipe)  # an unknown name fails here, naming the registered ones
    overrides = {"input.limit": limit, "languages": _split_languages(languages)}
    if out is not None:
        overrides["output.dir"] = out if "://" in out else str(Path(out).resolve())
    run_config = load_config(config, recipe=recipe, overrides=overrides)
    _preflight(run_config, config)
    print_summary(_run_watched(run_config, verbose))


def _run_watched(run_config: Any, verbose: bool) -> dict[str, Any]:
    """Run a recipe's flow with its logs in OUT/logs/ and its progress on stdout; returns the run summary."""
    from flows.terminal import ProgressDisplay, log_path_for, send_logs_to_file

    send_logs_to_file(log_path_for(run_config.output.dir), verbose)
    from flows.recipe import run_flow

    with ProgressDisplay(Console()):
        return run_flow(run_config)


def _preflight(run_config: Any, config_path: Path) -> None:
    """Check config, output and input before Prefect starts, so that a bad run fails with one line.

    A recipe's config errors name no file of their own: they are about the config file, so it is named.
    """
    from synth.errors import ConfigError
    from synth.pipeline import RecipeRun

    try:
        RecipeRun(run_config).check()
    except ConfigError as error:
        if error.file is not None:
            raise
        raise ConfigError(error.message, file=str(config_path), row=error.row, field=error.field) from None


@app.command()
@_guard
def recipes() -> None:
    """List the registered recipes (polysynth's and installed packages'), with the class each name loads.

    Example: synth recipes
    """
    from rich.table import Table

    from synth.recipes import recipe_class, recipe_names

    table = Table("recipe", "what it makes", "class")
    for name in recipe_names():
        cls = recipe_class(name)
        table.add_row(name, cls.card.title, f"{cls.__module__}.{cls.__qualname__}")
    Console().print(table)


@app.command()
@_guard
def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", "-o", help="Output directory."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show Prefect's and vLLM's logs (always in OUT/logs/)."),
) -> None:
    """Run all three recipes on the shipped sample data with the default CPU model, then write a report.

    Sizes come from data/configs/demo.yaml (small, so it finishes in minutes on 2 CPU cores).

    Example: synth demo --out out/demo
    """
    import yaml

    from synth.config_file import load_config
    from synth.paths import DATA_DIR

    plan = yaml.safe_load((DATA_DIR / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    for recipe, overrides in plan["recipes"].items():
        overrides = dict(overrides or {}, **{"output.dir": str(out.resolve())})
        config = load_config(DATA_DIR / "configs" / f"{recipe}.yaml", recipe=recipe, overrides=overrides)
        console.print(f"[bold]demo:[/] {recipe} …")
        print_summary(_run_watched(config, verbose))
    from synth.report.html import write_report

    report = write_report(out)
    Console().print(f"\nOutput: {out.resolve()}  (manifest.json, README.md, report: {report})", highlight=False)


@app.command()
@_guard
def lid(
    file: str = typer.Argument("-", help="Text file, one text per line; '-' reads stdin."),
    mode: str = typer.Option("cascade", help="fasttext, cascade or agree (as in the run config)."),
) -> None:
    """Identify the language of each line; prints one JSON object per line: {"lang", "score", "agree"}.

    "agree" says whether langdetect agrees with fastText (null when langdetect was not consulted in cascade
    mode because fastText was confident).

    Example: printf 'Guten Morgen, wie geht es?\\n' | synth lid -
    """
    from synth.config import LidConfig
    from synth.filters.lid import LanguageIdentifier

    handle = sys.stdin if file == "-" else open(file, encoding="utf-8", errors="replace")
    try:
        lines = [line.rstrip("\n") for line in handle]
    finally:
        if handle is not sys.stdin:
            handle.close()
    identifier = LanguageIdentifier(LidConfig(mode=mode))
    for text, (lang, score, agree) in zip(lines, identifier.describe(lines)):
        print(json.dumps({"lang": lang, "score": round(score, 4), "agree": agree}, ensure_ascii=False))


@app.command()
@_guard
def report(out: Path = typer.Argument(..., help="An output directory written by synth run/demo.")) -> None:
    """Write OUT/report/index.html, one page that opens offline: sample kept and rejected rows (text, source,
    LID score), output tokens per kept row, and figures of rows per language, reject reasons, LID scores, lengths.

    Example: synth report out/demo
    """
    from synth.report.html import write_report

    print(write_report(out))


@app.command()
@_guard
def show(
    out: str = typer.Argument(..., help="An output directory written by synth run/demo."),
    config: Optional[str] = typer.Argument(
        None, help="A config as the output's README.md names it (sap-de, entitycs-hi, cod-ru, sap-rejected); omit to list them."
    ),
    rows: int = typer.Option(5, "--rows", "-n", min=1, help="How many rows to print."),
    rejected: bool = typer.Option(False, "--rejected", help="The config's rejected rows, with their reject reason."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Only rejected rows with this reject reason (implies --rejected)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines (every column of a row per line) instead of a table."),
) -> None:
    """Print the first rows of one config of an output directory, or, without CONFIG, list its configs.

    SAP rows print as a table of queries, EntityCS rows with the switched entities highlighted, COD rows as
    dialogue transcripts with the slot values highlighted.

    Example: synth show out/demo sap-de -n 3
    """
    from synth.report.browse import configs_json, list_configs, load_rows, render_configs, render_rows, row_json

    if config is None:
        contents = list_configs(out)
        if as_json:
            for line in configs_json(contents):
                print(line)
        else:
            render_configs(Console(), out, contents)
        return
    selection = load_rows(out, config, limit=rows, rejected=rejected, reason=reason)
    if as_json:
        for row in selection.rows:
            print(row_json(row))
    else:
        render_rows(Console(), selection)


@app.command()
@_guard
def status(out: str = typer.Argument(..., help="An output directory written by synth run/demo.")) -> None:
    """Say per recipe whether its run is running, complete, incomplete or failed, how far it got, and whether a
    live run holds the output lock (probed without taking it).

    Example: synth status out/demo
    """
    from synth.report.browse import output_status, render_status

    render_status(Console(), output_status(out))


@app.command("push")
@_guard
def push_command(
    out: Path = typer.Argument(..., help="Output directory to publish (the one holding manifest.json)."),
    repo_id: str = typer.Option(..., "--repo-id", help="Target dataset repo, ORG/NAME; created if missing."),
    private: bool = typer.Option(False, "--private", help="Create the repo private (an existing repo keeps its visibility)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to (created from main if missing)."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead of committing to the branch."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, write the card to OUT/.push/README.md; no network."),
    include_rejected: bool = typer.Option(False, "--include-rejected", help="Also publish the <recipe>-rejected configs."),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Publish finished recipes even if another is not."),
) -> None:
    """Publish an output directory to the Hugging Face Hub as a dataset repo.

    Uploads the shards, a dataset card for the pushed configs and the provenance manifest; a rerun sends only
    what changed and resumes an interrupted push. Authenticates with HF_TOKEN or `hf auth login` (a --dry-run
    needs neither).

    Example: synth push out/demo --repo-id my-org/polysynth-demo --private
    """
    from synth.publish.hub import PushOptions, push

    options = PushOptions(
        repo_id=repo_id,
        private=private,
        revision=revision,
        create_pr=create_pr,
        include_rejected=include_rejected,
        allow_incomplete=allow_incomplete,
        dry_run=dry_run,
    )
    print(push(out, options).describe(files=dry_run))


@lexicon_app.command("build")
@_guard
def lexicon_build(
    dump: Path = typer.Argument(..., help="Wikidata JSON dump (latest-all.json.gz or .bz2), streamed."),
    out: Path = typer.Option(..., "--out", "-o", help="Lexicon Parquet to write."),
    languages: Optional[str] = typer.Option(None, "--languages", "-l", help="Keep labels of these ISO codes only."),
    redirects: Optional[Path] = typer.Option(None, help="enwiki pages-articles XML dump or TSV of title→target."),
    skip_bad_lines: bool = typer.Option(False, help="Skip (and count) dump lines that are not JSON."),
    part_rows: int = typer.Option(100_000, min=1, help="Rows per part file (the unit a rerun resumes from)."),
) -> None:
    """Build an entity lexicon from a Wikidata JSON dump, streaming; rerun the same command to resume.

    Example: synth lexicon build latest-all.json.bz2 --out lexicon.parquet --languages de,hi,sw
    """
    from synth.recipes.entitycs.wikidata import build_from_wikidata_dump

    codes = set(_split_languages(languages)) if languages else None
    stats = build_from_wikidata_dump(dump, out, codes, redirects, skip_bad_lines=skip_bad_lines, part_rows=part_rows)
    print(json.dumps(stats))


@lexicon_app.command("cldr")
@_guard
def lexicon_cldr(
    out: Path = typer.Option(..., "--out", "-o", help="Lexicon Parquet to write."),
    languages: Optional[str] = typer.Option(None, "--languages", "-l", help="ISO codes; default: the shipped set."),
) -> None:
    """Build the offline CLDR lexicon (countries, languages, currencies, cities) through babel.

    Example: synth lexicon cldr --out my-lexicon.parquet --languages de,fr,hi
    """
    from synth.recipes.entitycs.cldr import build_cldr_lexicon

    stats = build_cldr_lexicon(out, _split_languages(languages)) if languages else build_cldr_lexicon(out)
    print(json.dumps(stats))


@model_app.command("prepare")
@_guard
def model_prepare() -> None:
    """Convert the shipped default model (Gemma 3 270M GGUF) once to a checkpoint vLLM loads.

    Example: synth model prepare
    """
    from synth.llm.model import default_model_path

    print(default_model_path())


@app.command("serve-model")
@_guard
def serve_model(
    model: Optional[str] = typer.Option(None, help="Model path or name; default: the shipped model."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
) -> None:
    """Start an OpenAI-compatible `vllm serve` for the default model (runs in the foreground).

    Example: synth serve-model --port 8000  # then engine: {backend: openai, base_urls: [http://127.0.0.1:8000/v1]}
    """
    from synth.llm.model import serve_model_command
    from synth.llm.device import cpu_environment, cuda_available

    argv = serve_model_command(model, host, port)
    console.print(" ".join(argv), highlight=False)
    env = dict(os.environ) if cuda_available() else {**os.environ, **cpu_environment(in_process=False)}
    os.execvpe(argv[0], argv, env)


@app.command()
@_guard
def deploy(
    schedule: Optional[str] = typer.Option(
        None, "--schedule", help='Cron schedule (UTC) for the recipe deployments, e.g. "0 3 * * *"; default: inactive.'
    ),
    pool: str = typer.Option("polysynth", "--pool", "-p", help="Work pool; created as a process pool if missing."),
) -> None:
    """Register the Prefect deployments of prefect.yaml (one per recipe, plus publishing) with the Prefect server.

    Needs a running server (PREFECT_API_URL). Runs then execute on the pool's workers:
    prefect worker start --pool polysynth

    Example: synth deploy --schedule "0 3 * * *" --pool polysynth
    """
    from flows.deploy import deploy as deploy_flows
    from synth.paths import PROJECT_ROOT

    for name in deploy_flows(schedule, pool, PROJECT_ROOT):
        print(name)
    console.print(f"start a worker: prefect worker start --pool {pool}", highlight=False)


@app.command()
@_guard
def serve(
    recipe: Optional[list[str]] = typer.Option(
        None, "--recipe", "-r", help="Recipe to serve (repeat the option for several); default: all three."
    ),
    schedule: Optional[str] = typer.Option(None, "--schedule", help='Cron schedule (UTC), e.g. "0 3 * * *".'),
) -> None:
    """Serve the recipe flows from this process (one machine, no work pool), configs from data/configs/.

    Each recipe becomes the deployment polysynth-<recipe>/serve; start a run with
    `prefect deployment run polysynth-sap/serve` or let the schedule do it. Ctrl-C stops serving.

    Example: synth serve --recipe sap --recipe entitycs --schedule "0 3 * * *"
    """
    from flows.deploy import serve as serve_flows

    serve_flows(recipe or [], schedule)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
