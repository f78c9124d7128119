"""The `cinesync` command: up, serve, demo, train, export, versions, promote, rollback, experiment, federated,
evaluate, evaluate-served, recommend."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cinesync import jobs
from cinesync.bundle import current_version
from cinesync.settings import Settings, get_settings
from cinesync.splits import SPLITS

if TYPE_CHECKING:
    from launcher.stack import Stack


def _say_to(json_mode: bool) -> Callable[[str], None]:
    """Progress goes to stderr when stdout is reserved for the JSON answer."""
    return (lambda line: click.echo(line, err=True)) if json_mode else click.echo


def pipeline_options(assignments: tuple[str, ...] | list[str], split: str = "auto") -> dict[str, Any]:
    """``kind.param=value`` pairs and the split -> the pipeline's settings (the worker checks the names)."""
    pairs = [assignment.partition("=") for assignment in assignments]
    bad = [a for a, (_, sep, _) in zip(assignments, pairs, strict=True) if not sep]
    try:
        if bad:
            raise ValueError(f"{bad[0]!r}: expected KIND.PARAM=VALUE")
        options = jobs.pipeline_options((key, value) for key, _, value in pairs)
    except ValueError as error:
        raise click.BadParameter(f"{error}, e.g. two_tower.epochs=5") from None
    return {**options, "split": split} if split != "auto" else options


def _settings(data: str | None) -> Settings:
    """Settings with --data applied; a data folder is made absolute, since workers may run elsewhere."""
    settings = get_settings()
    data = data or settings.data
    if Path(data).expanduser().is_dir():
        data = str(Path(data).expanduser().resolve())
    return settings.model_copy(update={"data": data})


def _run_pipeline(
    settings: Settings, pipeline: dict[str, Any], say: Callable[[str], None], *, publish: bool = True,
    serve: str = "all",
) -> dict[str, Any]:
    from cinesync.jobs import JobFailed
    from launcher.jobs import follow
    from workers.tasks import training_pipeline

    say(f"Training on {settings.data} (Celery queue {settings.job_queue}):")
    started = time.monotonic()
    chain = training_pipeline(settings.data, pipeline, publish_model=publish, serve=serve)
    try:
        result = follow(chain.apply_async(queue=settings.job_queue), say=say)
    except JobFailed as error:
        raise click.ClickException(str(error)) from None
    say(f"  done in {time.monotonic() - started:.0f} s · run {result['run_dir']}")
    say("  test split:")
    for model, values in result.get("metrics", {}).items():
        say(f"  {model:<12} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "users"))
    for exported in result.get("onnx", []):
        say(f"  onnx {exported['name']:<11} parity max abs error {exported['max_abs_error']:.2e}")
    return result


def _sample_user(settings: Settings, version: int) -> str:
    users = json.loads((settings.serving_dir / str(version) / "users.json").read_text())
    return str(users[0])


DEMO_EXPERIMENT = "ranked-vs-retrieval"


def _start_demo_experiment(stack: Stack, version: int) -> None:
    """An experiment on ``version``, Triton ranking against retrieval order, unless one exists: what
    the console's experiment pages show from the start."""
    from cinesync.v1 import admin_pb2 as admin
    from launcher.client import admin_call

    token = stack.settings.admin_token_list()[0]
    if admin_call(stack.grpc_address, "ListExperiments", admin.ListExperimentsRequest(), token=token).experiments:
        return
    admin_call(stack.grpc_address, "CreateExperiment", admin.Experiment(name=DEMO_EXPERIMENT, variants=[
        admin.Variant(name="ranked", weight=0.5, retrieval_version=version, ranking_version=version),
        admin.Variant(name="retrieval", weight=0.5, retrieval_version=version, ranking_version=0)]), token=token)
    stack.say(f"Experiment {DEMO_EXPERIMENT} started (Triton ranking against retrieval order, half the users "
              f"each); `cinesync experiment report {DEMO_EXPERIMENT}` or the console; `cinesync experiment stop "
              f"{DEMO_EXPERIMENT}` ends it.")


def _serve_and_show(data: str | None, split: str, assignments: tuple[str, ...], user: str | None,
                    as_json: bool, keep_serving: bool, replicas: int = 1, demo_experiment: bool = False) -> None:
    from launcher.client import VersionTimeout, format_table, recommend, record_feedback, wait_for_version
    from launcher.client import as_json as response_json
    from launcher.stack import Stack

    settings = _settings(data)
    say = _say_to(as_json)
    started = time.monotonic()
    with Stack(settings, say=say) as stack:
        stack.start_all(replicas=replicas)
        result = _run_pipeline(settings, pipeline_options(assignments, split), say)
        version = int(result["version"])
        user_id = user or _sample_user(settings, version)
        late: VersionTimeout | None = None
        try:
            response = wait_for_version(stack.grpc_address, user_id, version)
            say(f"Serving model version {version} · first recommendation after {time.monotonic() - started:.0f} s")
        except VersionTimeout as timeout:  # show what it serves, and say why it is not what was asked
            response, late = timeout.last, timeout
            say(f"warning: {late}; see the logs in {settings.home / 'logs'}")
        say(format_table(response, user_id))
        if late is None and response.items:  # what a watch does: the next answer, with no retraining
            watched = response.items[0]
            record_feedback(stack.grpc_address, response.request_id, user_id, watched.item_id)
            say(f"\n{user_id} watches {watched.title!r} (RecordFeedback WATCH); the next answer, no retraining:")
            say(format_table(recommend(stack.grpc_address, user_id), user_id))
        if as_json:
            click.echo(json.dumps(response_json(response, user_id)))
        if late is not None and not keep_serving:
            raise click.ClickException(str(late))  # exit 1: the answer shown is not the one asked for
        if keep_serving:
            if demo_experiment and late is None:
                _start_demo_experiment(stack, version)
            say(f"\nServing on {stack.grpc_address}; try `cinesync recommend {user_id} --address "
                f"{stack.grpc_address}`. Operator console: {stack.addresses['console']}. "
                "Ctrl-C stops everything started here.")
            _supervise_until_stopped(stack)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_stopped(signum: int, frame: object) -> None:
    """The first stop signal raises Stopped; until Stack.stop takes the signals over, later ones
    are ignored, so none can interrupt the way to the orderly stop."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP stop the command alike, so every process it started is stopped."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stopped)


def _supervise_until_stopped(stack: Stack) -> None:
    """Keep the stack's processes running until Ctrl-C, SIGTERM or SIGHUP."""
    try:
        stack.supervise(threading.Event())
    except KeyboardInterrupt as stop:
        stack.say(f"\nStopping ({stop or 'Ctrl-C'}):")


def _training_options(command: Callable[..., None]) -> Callable[..., None]:
    """--data, --split and --set, shared by the commands that train."""
    for option in reversed([
        click.option("--data", default=None, help="Data set: 'synthetic[:opts]' or a folder (MovieLens, anime)."),
        click.option("--split", type=click.Choice(SPLITS), default="auto", show_default=True,
                     help="auto: the data set's fixed split, else leave-one-out by time, else a seeded random item; "
                     "loo-time: leave-one-out by time (refused without timestamps; ml-1m reads its ratings file); "
                     "movie-to-tv, tv-to-movie: cross-domain, test users keep only their source-domain items."),
        click.option("--set", "assignments", multiple=True, metavar="KIND.PARAM=VALUE",
                     help="A model kind's hyper-parameter, e.g. two_tower.epochs=5 (repeatable)."),
    ]):
        command = option(command)
    return command


_user = click.option("--user", default=None, help="User to recommend for (default: the first one).")
_replicas = click.option("--replicas", type=click.IntRange(1, 16), default=1, show_default=True,
                         help="Control-plane processes sharing Redis, Triton and the bundles, served as one target "
                         "(ipv4:host:port,host:port) that clients balance round robin.")


@click.group()
def main() -> None:
    """CineSync: movie and TV recommendations served over gRPC."""
    _stop_on_signals()


@main.command()
@_replicas
def serve(replicas: int) -> None:
    """Start what is missing and serve the current published version until Ctrl-C (no training)."""
    from launcher.stack import Stack

    settings = get_settings()
    with Stack(settings, say=click.echo) as stack:
        stack.start_all(replicas=replicas)
        stack.say(f"Serving on {stack.grpc_address} (version {current_version(settings.serving_dir) or 'none yet'}); "
                  f"operator console {stack.addresses['console']}. Ctrl-C stops everything started here.")
        _supervise_until_stopped(stack)


@main.command()
@_training_options
@_user
@_replicas
@click.option("--demo-experiment/--no-demo-experiment", default=True, show_default=True,
              help=f"Start experiment {DEMO_EXPERIMENT!r} on the new version when none exists.")
def up(data: str | None, split: str, assignments: tuple[str, ...], user: str | None, replicas: int,
       demo_experiment: bool) -> None:
    """Start what is missing, train, export, serve, show a recommendation, and serve until Ctrl-C."""
    _serve_and_show(data, split, assignments, user, as_json=False, keep_serving=True, replicas=replicas,
                    demo_experiment=demo_experiment)


@main.command()
@_training_options
@_user
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def demo(data: str | None, split: str, assignments: tuple[str, ...], user: str | None, as_json: bool) -> None:
    """The whole path once: start, train, export, serve, call Recommend over gRPC, stop."""
    _serve_and_show(data, split, assignments, user, as_json=as_json, keep_serving=False)


def with_configuration(settings: Settings, name: str | None, pipeline: dict[str, Any]) -> dict[str, Any]:
    """``pipeline`` over configuration ``name`` (a finished `cinesync tune` study's best trial): its
    options, split and history length, unless the command line sets them; recorded in the manifest."""
    if not name:
        return pipeline
    from cinesync.tuning import UnknownConfig, load_config

    try:
        config = load_config(settings, name)
    except UnknownConfig as error:
        raise click.BadParameter(str(error), param_hint="--config") from None
    options = {kind: dict(values) for kind, values in config["options"].items()}
    for kind, values in pipeline.get("options", {}).items():
        options.setdefault(kind, {}).update(values)
    target = config["target"]
    defaults = {"split": target["split"]} if target["split"] != "auto" else {}
    return {**defaults, "history_length": target["history_length"], **pipeline, "options": options,
            "configuration": {"name": name, "study": config["study"], "trial": config["trial"],
                              "validation": config["value"]}}


@main.command()
@click.argument("name")
@click.option("--data", default=None, help="Data set: 'synthetic[:opts]' or a folder (MovieLens, anime).")
@click.option("--split", type=click.Choice(SPLITS), default="auto", show_default=True, help="As for `train`.")
@click.option("--kind", required=True, help="The member kind to tune (its Params declare the search space).")
@click.option("--trials", type=int, default=30, show_default=True, help="The study's budget of trials.")
@click.option("--space", "spaces", multiple=True, metavar="KIND.PARAM=LOW:HIGH[:log]|A|B",
              help="Search this parameter over this range instead of the declared one (repeatable).")
@click.option("--history-length", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="The most recent history items the kind reads (0: 200 where histories are in time order, "
              "the whole history where the data has none).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=24 * 3600.0, help="Stop following after this many seconds.")
def tune(name: str, data: str | None, split: str, kind: str, trials: int, spaces: tuple[str, ...],
         history_length: int, seed: int, timeout_s: float) -> None:
    """Tune KIND as Optuna study NAME: one Celery task per trial (every worker on the queue takes
    them; one is started if none serves it), pruned on each epoch's validation NDCG@10; the best
    trial becomes configuration NAME (`cinesync train --config NAME`). Running it again resumes."""
    from cinesync.jobs import celery_app
    from launcher.stack import Stack
    from launcher.tuning import follow, queue_trials
    from recsys.kinds import UnknownOption
    from recsys.kinds.space import from_text
    from recsys.studies import StudyRefused, create_or_resume, finish
    from recsys.tuning import Target, checked_space

    settings = _settings(data)
    overrides = {}
    for text in spaces:
        key, _, value = text.partition("=")
        owner, _, param = key.partition(".")
        if owner != kind or not param or not value:
            raise click.BadParameter(f"{text!r}: expected {kind}.PARAM=RANGE", param_hint="--space")
        try:
            overrides[param] = from_text(value)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--space") from None
    try:
        space = checked_space(kind, overrides)
        target = Target(data=settings.data, kind=kind, split=split, history_length=history_length, seed=seed)
        with Stack(settings, say=click.echo) as stack:
            stack.ensure_redis()
            remaining = create_or_resume(settings, name, target, space, trials)
            stack.ensure_worker()
            click.echo(f"Study {name}: {kind} on {settings.data} ({split}), {trials} trials, {remaining} to run, "
                       f"over {', '.join(space)}")
            queue_trials(celery_app(settings), name, remaining)
            follow(settings, name, click.echo, timeout_s=timeout_s)
            written = finish(settings, name)
    except (UnknownOption, StudyRefused, TimeoutError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Best: trial {written['trial']}, validation ndcg@10 {written['value']:.4f}, "
               f"{written['options'][kind]}")
    click.echo(f"Configuration {name}: {written['config']} (`cinesync train --config {name}`); plots: "
               f"{', '.join(written['plots'])}")


@main.command(name="tune-dashboard")
@click.option("--port", type=int, default=8091, show_default=True)
def tune_dashboard(port: int) -> None:
    """optuna-dashboard on every study, from the same storage (the stack's Redis) until Ctrl-C."""
    from optuna_dashboard import run_server

    from cinesync.tuning import storage

    settings = get_settings()
    click.echo(f"optuna-dashboard on http://{settings.host}:{port}")
    run_server(storage(settings), host=settings.host, port=port)


@main.command()
@_training_options
@click.option("--config", "config_name", default=None, help="A configuration `cinesync tune` wrote (its best trial).")
@click.option("--publish/--no-publish", default=False, help="Also export and publish a new model version.")
@click.option("--serve", type=click.Choice(["all", "train"]), default="all", show_default=True,
              help="Publish members refit on every interaction (all), or the evaluated fit (train), whose "
              "served answers `cinesync evaluate-served` can score.")
@click.option("--json", "as_json", is_flag=True, help="Print the test metrics as one JSON object, the last line.")
def train(data: str | None, split: str, assignments: tuple[str, ...], config_name: str | None, publish: bool,
          serve: str, as_json: bool) -> None:
    """Train and evaluate through a Celery worker (one is started if none serves the queue)."""
    from launcher.stack import Stack

    settings = _settings(data)
    pipeline = with_configuration(settings, config_name, pipeline_options(assignments, split))
    say = _say_to(as_json)
    with Stack(settings, say=say) as stack:
        stack.ensure_redis()
        if publish:
            stack.ensure_triton()  # the worker checks the new version in it before making it current
        stack.ensure_worker()
        result = _run_pipeline(settings, pipeline, say, publish=publish, serve=serve)
        if publish:
            say(f"  published model version {result['version']}")
    if as_json:
        click.echo(json.dumps(_metrics_summary(result)))


def _metrics_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The test-split figures of a finished pipeline, keyed by kind, with the served one named."""
    manifest = json.loads((Path(result["run_dir"]) / "manifest.json").read_text())
    wanted = ("ndcg@10", "recall@10", "recall@20", "mrr@10", "hr@10", "coverage@10", "novelty@10")
    return {
        "data": result["data"],
        "split": manifest["split"]["test"],
        "metrics": {name: {k: round(v[k], 5) for k in wanted} for name, v in result["metrics"].items()},
        "served": result["served"],
        "run_dir": result["run_dir"],
    }


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def export(run_dir: Path) -> None:
    """Export a finished run to ONNX and publish it as a new Triton model version."""
    from launcher.jobs import follow
    from launcher.stack import Stack
    from workers.tasks import export as export_task
    from workers.tasks import publish

    settings = get_settings()
    with Stack(settings) as stack:
        stack.ensure_redis()
        stack.ensure_triton()
        stack.ensure_worker()
        steps = export_task.s({"run_dir": str(run_dir.resolve())}) | publish.s()
        result = follow(steps.apply_async(queue=settings.job_queue), say=click.echo)
        click.echo(json.dumps(result, indent=2))


@main.command(name="add-titles")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("titles_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--serve", type=click.Choice(["all", "train"]), default=None,
              help="Which fit of the run to publish (default: the one refit on everything, where it exists).")
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Export and publish the grown run as a new current model version.")
@click.option("--json", "as_json", is_flag=True, help="Print the job's result as one JSON object, the last line.")
def add_titles(run_dir: Path, titles_file: Path, serve: str | None, publish: bool, as_json: bool) -> None:
    """Add new titles (TITLES_FILE: tab-separated item_id, title, genres joined by |, year, domain, with
    that header) to the trained run RUN_DIR without retraining: every model kind maps each title's
    content into its own parameters, and the grown run is exported and published through a worker."""
    from cinesync.jobs import JobFailed, catalog_update
    from launcher.jobs import follow
    from launcher.stack import Stack
    from workers.celery_app import app

    settings = get_settings()
    say = _say_to(as_json)
    with Stack(settings, say=say) as stack:
        stack.ensure_redis()
        if publish:
            stack.ensure_triton()
        stack.ensure_worker()
        steps = catalog_update(app, str(run_dir.resolve()), str(titles_file.resolve()), serve=serve, publish=publish)
        try:
            result = follow(steps.apply_async(queue=settings.job_queue), say=say)
        except JobFailed as error:
            raise click.ClickException(str(error)) from None
    say(f"  run {result['run_dir']}" + (f" · published model version {result['version']}" if publish else ""))
    if as_json:
        click.echo(json.dumps({key: result[key] for key in ("run_dir", "parent_run_dir", "fitted_on", "version")
                               if key in result}))


@main.command()
def versions() -> None:
    """List the published versions on disk, the current one marked."""
    from cinesync import bundle
    from cinesync.versions import whole_versions

    settings = get_settings()
    current = current_version(settings.serving_dir)
    for version in whole_versions(settings.model_repository, settings.serving_dir):
        manifest = json.loads((settings.serving_dir / str(version) / bundle.MANIFEST).read_text())
        served = manifest.get("served_metrics") or {}
        click.echo(f"{'*' if version == current else ' '} {version:>4}  {manifest.get('published', '')}  "
                   f"{manifest.get('dataset', '')}  fitted on {manifest.get('fitted_on', '?')}  "
                   f"ndcg@10 {served.get('ndcg@10', float('nan')):.4f}  run {manifest.get('run_id', '')}")


@main.command()
@click.argument("version", type=int)
def promote(version: int) -> None:
    """Make a retained VERSION current; a running control plane switches to it within its poll time."""
    from cinesync.versions import UnknownVersion
    from cinesync.versions import promote as promote_version

    settings = get_settings()
    try:
        previous = promote_version(settings.model_repository, settings.serving_dir, version)
    except UnknownVersion as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"current version: {version} (was {previous})")


@main.command()
def rollback() -> None:
    """Make the newest retained version older than the current one current."""
    from cinesync.versions import UnknownVersion
    from cinesync.versions import rollback as roll_back

    settings = get_settings()
    try:
        previous, version = roll_back(settings.model_repository, settings.serving_dir)
    except UnknownVersion as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"current version: {version} (was {previous})")


@main.group()
def experiment() -> None:
    """A/B experiments on a running control plane (AdminService; the token comes from the settings
    or <home>/admin-token)."""


_address = click.option("--address", default=None, help="Control plane host:port (default: CINESYNC_HOST:CINESYNC_GRPC_PORT).")


def admin_reply(address: str | None, method: str, request: Any) -> Any:
    """AdminService.``method``'s reply; its refusal as a ClickException."""
    import grpc

    from launcher.client import NoAdminToken, admin_request

    try:
        return admin_request(address, method, request)
    except NoAdminToken as error:
        raise click.ClickException(str(error)) from None
    except grpc.RpcError as error:
        raise click.ClickException(f"{error.code().name}: {error.details()}") from None


def _admin(address: str | None, method: str, request: Any) -> Any:
    from google.protobuf.json_format import MessageToDict

    click.echo(json.dumps(MessageToDict(admin_reply(address, method, request), preserving_proto_field_name=True),
                          indent=2))


def _variant(text: str) -> Any:
    from cinesync.v1 import admin_pb2 as admin

    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise click.BadParameter(f"{text!r}: expected NAME:WEIGHT:RETRIEVAL_VERSION[:RANKING_VERSION]")
    try:
        return admin.Variant(name=parts[0], weight=float(parts[1]), retrieval_version=int(parts[2]),
                             ranking_version=int(parts[3]) if len(parts) == 4 else int(parts[2]))
    except ValueError:
        raise click.BadParameter(f"{text!r}: weight is a number, versions are integers") from None


@experiment.command(name="create")
@click.argument("name")
@click.option("--variant", "variants", multiple=True, required=True,
              metavar="NAME:WEIGHT:RETRIEVAL[:RANKING]", help="A variant; RANKING 0 serves retrieval order.")
@click.option("--holdout", default=0.0, show_default=True, help="Share of users kept on the current version.")
@click.option("--salt", default="", help="Assignment salt (default: the name).")
@click.option("--domain", "domains", multiple=True, type=click.Choice(["movie", "tv"]), help="Only these domains.")
@click.option("--override", "overrides", multiple=True, metavar="USER=VARIANT", help="Pin a user to a variant.")
@click.option("--analysis", type=click.Choice(["fixed", "sequential"]), default="fixed", show_default=True,
              help="sequential: always-valid intervals, safe to read at any time and stop early.")
@click.option("--covariate-window-days", type=float, default=14.0, show_default=True,
              help="CUPED: each user's watches this many days before their first exposure (0: off).")
@click.option("--update", is_flag=True, help="Change an existing experiment instead.")
@_address
def experiment_create(name: str, variants: tuple[str, ...], holdout: float, salt: str, domains: tuple[str, ...],
                      overrides: tuple[str, ...], analysis: str, covariate_window_days: float, update: bool,
                      address: str | None) -> None:
    """Create (or --update) experiment NAME."""
    from cinesync.v1 import admin_pb2 as admin

    pinned = dict(o.split("=", 1) for o in overrides)
    request = admin.Experiment(name=name, salt=salt, variants=[_variant(v) for v in variants], holdout=holdout,
                               domains=list(domains), overrides=pinned, analysis=analysis,
                               covariate_window_days=covariate_window_days)
    _admin(address, "UpdateExperiment" if update else "CreateExperiment", request)


@experiment.command(name="list")
@_address
def experiment_list(address: str | None) -> None:
    """List the experiments."""
    from cinesync.v1 import admin_pb2 as admin

    _admin(address, "ListExperiments", admin.ListExperimentsRequest())


@experiment.command(name="stop")
@click.argument("name")
@_address
def experiment_stop(name: str, address: str | None) -> None:
    """Stop experiment NAME (its versions are no longer kept for it)."""
    from cinesync.v1 import admin_pb2 as admin

    _admin(address, "StopExperiment", admin.ExperimentRequest(name=name))


@experiment.command(name="report")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The report message as JSON instead of a table.")
@_address
def experiment_report(name: str, as_json: bool, address: str | None) -> None:
    """Per user: watch and click rates, share of users who watch, watches per user, each arm against
    the control with 95 % intervals, Holm-corrected p-values, CUPED beside them, the minimum
    detectable effect, and the sample-ratio check."""
    from cinesync.v1 import admin_pb2 as admin
    from launcher.experiment_table import format_experiment_report

    request = admin.ExperimentRequest(name=name)
    if as_json:
        _admin(address, "GetExperimentReport", request)
    else:
        click.echo(format_experiment_report(admin_reply(address, "GetExperimentReport", request)))


@main.command(name="jobs")
@_address
def jobs_command(address: str | None) -> None:
    """The training jobs started through the admin API, newest first, with their state."""
    from cinesync.v1 import admin_pb2 as admin

    _admin(address, "ListJobs", admin.ListJobsRequest())


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object instead of tables.")
def evaluate(run_dir: Path, as_json: bool) -> None:
    """Accuracy and beyond (coverage, novelty, diversity, Gini of exposure, popularity bias) of every
    kind of RUN_DIR and of the served cascade on its test split: for all users, per domain of the
    held-out items, and for users with short histories. Also written to RUN_DIR/report.json."""
    from launcher.report_table import format_report
    from recsys.pipeline import beyond_accuracy_report

    try:
        reports = beyond_accuracy_report(run_dir)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(reports) if as_json else format_report(reports))


@main.command(name="evaluate-served")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--address", default=None, help="Control plane host:port (default: CINESYNC_HOST:CINESYNC_GRPC_PORT).")
@click.option("--send-histories", is_flag=True,
              help="Send each user's training history in the request instead of the stored one.")
def evaluate_served_command(run_dir: Path, address: str | None, send_histories: bool) -> None:
    """Recommend for every test user of RUN_DIR over gRPC and print the test metrics of the answers.

    Serve that run published with `--serve train`, so histories are what evaluation excluded.
    """
    from launcher.served_eval import evaluate_served

    settings = get_settings()
    result = evaluate_served(address or f"{settings.host}:{settings.grpc_port}", run_dir,
                             send_histories=send_histories)
    offline = json.loads((run_dir / "metrics.json").read_text()).get("cascade", {})
    click.echo(json.dumps({"served": result.metrics, "offline": offline, "ranked_by": result.ranked_by,
                           "versions": result.versions}))


@main.command()
@click.argument("user_id")
@click.option("-k", "k", default=10, show_default=True, help="Number of items.")
@click.option("--domain", type=click.Choice(["any", "movie", "tv"]), default="any", show_default=True)
@click.option("--include-seen", is_flag=True, help="Do not leave out items the user has seen.")
@click.option("--address", default=None, help="Control plane host:port (default: CINESYNC_HOST:CINESYNC_GRPC_PORT).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def recommend(user_id: str, k: int, domain: str, include_seen: bool, address: str | None, as_json: bool) -> None:
    """Ask a running control plane for recommendations."""
    import grpc

    from launcher.client import as_json as response_json
    from launcher.client import format_table
    from launcher.client import recommend as call

    settings = get_settings()
    address = address or f"{settings.host}:{settings.grpc_port}"
    try:
        response = call(address, user_id, k=k, domain=domain, exclude_seen=not include_seen)
    except grpc.RpcError as error:
        raise click.ClickException(f"{error.code().name}: {error.details()}") from None
    click.echo(json.dumps(response_json(response, user_id)) if as_json else format_table(response, user_id))


@main.group()
def federated() -> None:
    """Federated rounds on Flower, through a running control plane (AdminService)."""


def _federated_request(*, kind: str, strategy: str, params: tuple[str, ...], rounds: int, min_clients: int | None,
                       fraction: float, local_epochs: int, local_batch_size: int | None, start_from: str, base_run: Path | None, dp_noise: float,
                       dp_clip: float, dp_delta: float, max_epsilon: float, publish_on_budget: bool,
                       max_update_norm: float, publish: bool, round_timeout: float, secagg: bool) -> Any:
    """The StartFederatedRun request, its strategy checked here first."""
    from cinesync.v1 import admin_pb2 as admin
    from federated.strategies import UnknownStrategy, strategy_kind

    try:
        strategy_params = {key: float(value) for key, _, value in (p.partition("=") for p in params)}
        strategy_kind(strategy, strategy_params)
    except (UnknownStrategy, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="--strategy/--param") from None
    return admin.FederatedRunRequest(
        kind=kind, strategy=strategy, strategy_params=strategy_params, rounds=rounds,
        **{name: value for name, value in (("min_clients", min_clients), ("local_batch_size", local_batch_size))
           if value is not None},
        fraction_train=fraction, local_epochs=local_epochs, start_from=start_from,
        base_run=str(base_run.resolve()) if base_run else "", dp_noise_multiplier=dp_noise, dp_clipping_norm=dp_clip,
        dp_delta=dp_delta, dp_max_epsilon=max_epsilon, publish_on_budget=publish_on_budget,
        max_update_norm=max_update_norm, publish=publish, round_timeout_s=round_timeout,
        mode="secagg" if secagg else "strategy")


def _run_options(command: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option("--kind", default="two_tower", show_default=True, help="The federated kind."),
        click.option("--strategy", default="fedavg", show_default=True,
                     help="fedavg, fedprox, median, trimmed_mean, krum or multikrum."),
        click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                     help="A strategy parameter, e.g. proximal_mu=0.01, beta=0.1, byzantine=2."),
        click.option("--rounds", default=10, show_default=True),
        click.option("--min-clients", type=int, default=None,
                     help="Clients every round needs (default: 2; simulate: --clients)."),
        click.option("--fraction", default=1.0, show_default=True, help="Share of connected clients trained per round."),
        click.option("--local-epochs", default=1, show_default=True),
        click.option("--local-batch-size", type=int, default=None,
                     help="The clients' minibatch (default: 128; 0: the base run's own)."),
        click.option("--from", "start_from", type=click.Choice(["base", "scratch"]), default="base", show_default=True,
                     help="Start from the base run's weights of the kind, or from fresh ones."),
        click.option("--base-run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                     help="Training run for the catalog and starting weights (default: the served version's run)."),
        click.option("--dp-noise", default=0.0, show_default=True, help="> 0: DP noise multiplier (server-side clipping)."),
        click.option("--dp-clip", default=1.0, show_default=True, help="DP clipping norm of each update."),
        click.option("--dp-delta", default=1e-5, show_default=True),
        click.option("--max-epsilon", default=0.0, show_default=True, help="> 0: stop before spending more."),
        click.option("--publish-on-budget", is_flag=True, help="Publish the last accepted model when the budget stops the run."),
        click.option("--max-update-norm", default=1e4, show_default=True, help="Larger updates are rejected."),
        click.option("--publish/--no-publish", default=True, show_default=True,
                     help="Register, export and publish the global model (not current) when done."),
        click.option("--round-timeout", default=600.0, show_default=True, help="Seconds a round waits for replies."),
        click.option("--secagg", is_flag=True, help="Flower's SecAgg+ workflow: the server sees only the sum of masked "
                     "updates (FedAvg only; no reply screening, robust strategies or DP)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _rounds_table(status: dict[str, Any]) -> str:
    lines = [f"{status['run_id']}: {status['state']}  {status.get('detail', '')}",
             (f"{'round':>5} {'seconds':>8} {'sampled':>7} {'replied':>7} {'failed':>6} {'rejected':>8} "
             f"{'val ndcg@10':>11} {'epsilon':>8}")]
    for r in status.get("rounds", []):
        epsilon = f"{r['epsilon']:.3f}" if r.get("epsilon") is not None else "-"
        lines.append(f"{r['round']:>5} {r['seconds']:>8.1f} {r['sampled']:>7} {r['replied']:>7} {r['failed']:>6} "
                     f"{r['rejected']:>8} {r['validation'].get('ndcg@10', 0.0):>11.4f} {epsilon:>8}")
    if status.get("test"):
        lines.append(f"kept round {status['best_round']}: test ndcg@10 {status['test']['ndcg@10']:.4f}"
                     + (f", version {status['version']}" if status.get("version") else ""))
    return "\n".join(lines)


def _follow_run(address: str | None, run_id: str, *, interval: float = 2.0) -> dict[str, Any]:
    from cinesync.federation import State
    from cinesync.v1 import admin_pb2 as admin

    shown = -1
    while True:
        status = json.loads(admin_reply(address, "GetFederatedRun", admin.FederatedRunId(run_id=run_id)).status_json)
        rounds = len(status.get("rounds", []))
        if rounds != shown:
            shown = rounds
            last = status["rounds"][-1] if rounds else None
            click.echo(f"  {status['state']}: {status.get('detail', '')}"
                       + (f" (validation ndcg@10 {last['validation'].get('ndcg@10', 0.0):.4f})" if last else ""))
        waiting_for_version = status["state"] == State.COMPLETED and status.get("publish_job") and \
            not status.get("version") and not status.get("publish_error")
        if status["state"] not in State.OPEN and not waiting_for_version:
            return status
        time.sleep(interval)


@federated.command(name="start")
@_run_options
@click.option("--follow", is_flag=True, help="Print each round until the run ends (and its version is published).")
@_address
def federated_start(follow: bool, address: str | None, **settings: Any) -> None:
    """Open a federated run (one at a time)."""
    reply = admin_reply(address, "StartFederatedRun", _federated_request(**settings))
    click.echo(f"started federated run {reply.run_id}")
    if follow:
        click.echo(_rounds_table(_follow_run(address, reply.run_id)))


@federated.command(name="status")
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status file(s) as JSON.")
@_address
def federated_status(run_id: str | None, as_json: bool, address: str | None) -> None:
    """A run's state and round history (every run without RUN_ID)."""
    from cinesync.v1 import admin_pb2 as admin

    if run_id:
        statuses = [json.loads(admin_reply(address, "GetFederatedRun", admin.FederatedRunId(run_id=run_id)).status_json)]
    else:
        runs = admin_reply(address, "ListFederatedRuns", admin.ListFederatedRunsRequest()).runs
        statuses = [json.loads(run.status_json) for run in runs]
    click.echo(json.dumps(statuses if not run_id else statuses[0], indent=2) if as_json
               else "\n\n".join(_rounds_table(s) for s in statuses) or "no federated runs")


@federated.command(name="stop")
@click.argument("run_id")
@_address
def federated_stop(run_id: str, address: str | None) -> None:
    """Stop an open run."""
    from cinesync.v1 import admin_pb2 as admin

    reply = admin_reply(address, "StopFederatedRun", admin.FederatedRunId(run_id=run_id))
    click.echo(f"{reply.run_id}: {reply.state} ({reply.detail})")


def _base_run_of(settings: Settings, data: str) -> Path:
    """The newest finished run of ``data`` holding a two-tower."""
    runs = sorted(settings.runs_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for manifest_path in runs:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("data") == data and "federated" not in manifest and \
                any(kind["kind"] == "two_tower" for kind in manifest.get("kinds", [])):
            return manifest_path.parent
    raise click.ClickException(f"no training run of {data} with a two_tower under {settings.runs_dir}: "
                               f"train one first (cinesync train --data {data} --publish)")


@federated.command(name="simulate")
@click.option("--clients", default=10, show_default=True, help="SuperNodes to start, one per share of the users.")
@click.option("--data", default=None, help="Data set whose newest run (with a two_tower) gives the users and split "
              "(default: the served version's run).")
@click.option("--partition", type=click.Choice(["iid", "genre", "domain"]), default="iid", show_default=True)
@click.option("--byzantine", default=0, show_default=True, help="Clients that send sign-flipped, scaled updates.")
@click.option("--byzantine-scale", default=3.0, show_default=True)
@_run_options
@_address
def federated_simulate(clients: int, data: str | None, partition: str, byzantine: int, byzantine_scale: float,
                       address: str | None, **run: Any) -> None:
    """Cut a data set's users across CLIENTS SuperNodes on loopback (each runs the ClientApp on its own
    users' histories only), run a federated round set on the running stack, then stop the SuperNodes."""
    from cinesync.v1 import admin_pb2 as admin
    from federated.devices import write_devices
    from launcher.stack import Stack

    settings = get_settings()
    if run["base_run"] is None:
        if data is not None:
            run["base_run"] = _base_run_of(settings, data)
        else:
            version = current_version(settings.serving_dir)
            if version is None:
                raise click.ClickException("nothing is served yet: pass --data or --base-run")
            served = json.loads((settings.serving_dir / str(version) / "manifest.json").read_text())
            run["base_run"] = settings.runs_dir / served["run_id"]
    if not 0 <= byzantine <= clients:
        raise click.BadParameter(f"must be between 0 and --clients ({clients})", param_hint="--byzantine")
    request = _federated_request(**{**run, "min_clients": clients if run["min_clients"] is None else run["min_clients"]})
    devices_dir = settings.home.resolve() / "federated" / f"devices-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        devices = write_devices(run["base_run"], devices_dir, clients=clients, partition=partition)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    superlink = settings.superlink_address or f"{settings.host}:{settings.superlink_port}"
    click.echo(f"{clients} clients ({partition}, {byzantine} Byzantine) from {run['base_run']} on the SuperLink at {superlink}")
    _stop_on_signals()
    with Stack(settings.model_copy(update={"superlink_address": superlink}), say=click.echo) as stack:
        stack.superlink_address = superlink
        stack.start_supernodes([{"device": str(folder), "partition-id": index,
                                 **({"byzantine-scale": byzantine_scale} if index < byzantine else {})}
                                for index, folder in enumerate(devices)])
        reply = admin_reply(address, "StartFederatedRun", request)
        click.echo(f"started federated run {reply.run_id}")
        status = _follow_run(address, reply.run_id)
        if status["state"] in ("starting", "running"):
            admin_reply(address, "StopFederatedRun", admin.FederatedRunId(run_id=reply.run_id))
    click.echo(_rounds_table(status))


if __name__ == "__main__":
    main()
