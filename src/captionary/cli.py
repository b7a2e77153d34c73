"""The `captionary` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import signal
import sqlite3
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from captionary.cli_items import add_items_command, dropped_note, existing_workspace
from captionary.errors import CaptionaryError, ConfigError, PipelineWarning, RunAborted, WorkspaceError

SHOWN_ERRORS = 20
HOST_HELP = "address the review app binds (default 127.0.0.1; 0.0.0.0: the LAN, token required)"
PORT_HELP = "port of the review app (default: 8765, or a free one if taken)"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `captionary steps | head`: the reader left
        sys.stderr.close()
        return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CaptionaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captionary", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a pipeline file")
    run.add_argument("pipeline", type=Path, help="pipeline YAML file")
    run.add_argument("--executor", default="local", help="where to run: local (default) or ray")
    _add_ray_arguments(run)
    run.add_argument("--workspace", type=Path, help="override the file's workspace folder")
    run.add_argument(
        "--max-errors",
        type=int,
        default=None,
        metavar="N",
        help="abort once more than N items have failed (default: never)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes for CPU-heavy steps (default: all cores; 0: none)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars or log lines")
    run.add_argument(
        "--overwrite-edited",
        action="store_true",
        help="let save steps replace output files changed by hand since captionary wrote them",
    )
    run.add_argument("--port", type=int, default=None, help=PORT_HELP)
    run.add_argument("--host", default="127.0.0.1", help=HOST_HELP)
    run.set_defaults(func=_run)

    recaption = commands.add_parser(
        "recaption",
        help="caption WebDataset shards with a VLM; write shards with the new caption beside the old",
    )
    recaption.add_argument(
        "shards",
        help="tar shards: a path, brace pattern, http(s) or fsspec URL (s3://, gs://, ...) or pipe: command",
    )
    recaption.add_argument(
        "--model", required=True, help="a preset name, Hugging Face id, local folder or API model"
    )
    recaption.add_argument(
        "--backend", help="transformers, vllm or openai (default: the preset's, or transformers)"
    )
    recaption.add_argument("--out", type=Path, required=True, help="output folder")
    recaption.add_argument("--format", choices=["webdataset", "parquet"], default="webdataset")
    recaption.add_argument(
        "--shard-size", type=int, default=1000, metavar="N", help="samples per output shard"
    )
    recaption.add_argument("--prompt", help="the captioning prompt (a template over the sample's properties)")
    recaption.add_argument("--max-tokens", type=int, help="longest caption, in tokens")
    recaption.add_argument("--batch-size", type=int, help="images per model call")
    recaption.add_argument("--base-url", help="the server of an openai backend")
    recaption.add_argument(
        "--target", default="recaption", help="the new caption's property (default: recaption)"
    )
    recaption.add_argument(
        "--workspace", type=Path, help="the cache that makes a re-run resume (default: OUT.workspace)"
    )
    recaption.add_argument(
        "--in-place", action="store_true", help="reference the input shards' images instead of copying them"
    )
    recaption.add_argument("--executor", default="local", help="local (default) or ray")
    _add_ray_arguments(recaption)
    recaption.add_argument("--no-progress", action="store_true", help="no progress bars or log lines")
    recaption.set_defaults(func=_recaption)

    push = commands.add_parser("push", help="upload an export folder to a Hugging Face dataset repo")
    push.add_argument("out", type=Path, help="the output folder of a save step")
    push.add_argument("repo_id", help="namespace/name of the dataset repo (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to upload to (default: main)")
    push.set_defaults(func=_push)

    status = commands.add_parser("status", help="per-step counts and errors of the last run")
    status.add_argument("workspace", type=Path)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    steps = commands.add_parser("steps", help="every step with its parameters")
    steps.add_argument("--json", action="store_true")
    steps.set_defaults(func=_steps)

    serve = commands.add_parser("serve", help="open the review app (tasks and browse) on a workspace")
    serve.add_argument("workspace", type=Path)
    serve.add_argument("--port", type=int, default=None, help=PORT_HELP)
    serve.add_argument("--host", default="127.0.0.1", help=HOST_HELP)
    serve.set_defaults(func=_serve)

    preview = commands.add_parser("preview", help="PNG grid of one augmented training batch + bucket stats")
    preview.add_argument("dataset", help="an exported dataset (folder, file, glob, URL) or a workspace")
    preview.add_argument("--format", help="the dataset's format (default: detected)")
    preview.add_argument(
        "--out", type=Path, help="the PNG to write (default: WORKSPACE/preview.png, or a temp folder's)"
    )
    preview.add_argument("--config", type=Path, help="loader settings (YAML: image, caption, buckets)")
    preview.add_argument("--resolution", type=int, help="bucket resolution (default 512, kohya's)")
    preview.add_argument("--batch-size", type=int, default=8)
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--epoch", type=int, default=0)
    preview.add_argument("--drop-last", action="store_true", help="leave out buckets' smaller last batches")
    preview.set_defaults(func=_preview)

    gc = commands.add_parser(
        "gc", help="free items that left the workspace, blobs nothing refers to, records of gone files"
    )
    gc.add_argument("workspace", type=Path)
    gc.add_argument(
        "--keep-runs",
        type=int,
        default=1,
        metavar="N",
        help="free an item once N complete runs in a row did not see it (default 1: the last run)",
    )
    gc.add_argument(
        "--keep-days", type=float, default=0.0, metavar="D", help="and only if it left at least D days ago"
    )
    gc.set_defaults(func=_gc)
    add_items_command(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    from captionary.core.workspace import Workspace
    from captionary.pipeline.yaml_loader import load_pipeline

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PipelineWarning)
        spec = load_pipeline(args.pipeline)  # every config error surfaces here, before any work
    for warning in caught:
        if issubclass(warning.category, PipelineWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    signal.signal(signal.SIGTERM, _interrupt)
    options = {"max_errors": args.max_errors, "workers": args.workers, "progress": not args.no_progress}
    options = {k: v for k, v in options.items() if v is not None} | _ray_options(args)
    if any(step.kind == "human" for step in spec.pipeline):
        options["review"] = {"host": args.host, "port": args.port}
    if args.overwrite_edited:
        for step in spec.pipeline:
            if hasattr(step, "overwrite_edited"):
                step.overwrite_edited = True
    folder = args.workspace or spec.workspace
    with _workspace_errors(folder), Workspace(folder, blobs=spec.blobs) as ws:
        try:
            summary = ws.run(spec.pipeline, executor=args.executor, **options)
            code = 0
        except RunAborted as exc:
            summary = exc.summary
            print(f"error: {exc}", file=sys.stderr)
            code = 130 if summary.status == "interrupted" else 1
    print(summary.table())
    _print_errors(summary.errors)
    note = dropped_note(ws.path)
    if note:
        print(note)
    print(f"{summary.status} in {summary.seconds:.2f} s; workspace: {ws.path}")
    return code


def _push(args: argparse.Namespace) -> int:
    from captionary.sinks.hub import push

    url = push(args.out, args.repo_id, private=args.private, revision=args.revision)
    print(f"uploaded {args.out} to {url}")
    return 0


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help="the Ray cluster to join (--executor ray; default: start a local one)"
    )
    parser.add_argument(
        "--model-actors",
        type=int,
        metavar="N",
        help="actors per model step (--executor ray; default: one per GPU in the cluster, or 1)",
    )
    parser.add_argument(
        "--gpus-per-model-actor",
        type=float,
        metavar="N",
        help="GPUs each model actor holds (--executor ray; default 1 with GPUs; e.g. 2 for "
        "tensor_parallel_size: 2)",
    )


def _ray_options(args: argparse.Namespace) -> dict:
    """The executor options of the Ray flags given; an error if they are given without `--executor ray`."""
    names = {"address": args.address, "model_actors": args.model_actors}
    names["gpus_per_model_actor"] = args.gpus_per_model_actor
    given = {name: value for name, value in names.items() if value is not None}
    if given and args.executor != "ray":
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(f"{flags} only apply with --executor ray")
    return given


def _recaption(args: argparse.Namespace) -> int:
    from captionary.recaption import recaption

    caption = {
        "backend": args.backend,
        "prompt": args.prompt,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size,
        "base_url": args.base_url,
    }
    executor_options: dict = {"progress": not args.no_progress} | _ray_options(args)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = recaption(
            args.shards,
            args.out,
            args.model,
            workspace=args.workspace,
            executor=args.executor,
            executor_options=executor_options,
            target=args.target,
            format=args.format,
            shard_size=args.shard_size,
            in_place=args.in_place,
            **{k: v for k, v in caption.items() if v is not None},
        )
        code = 0
    except RunAborted as exc:
        summary = exc.summary
        print(f"error: {exc}", file=sys.stderr)
        code = 130 if summary.status == "interrupted" else 1
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(summary.table())
    _print_errors(summary.errors)
    print(f"{summary.status} in {summary.seconds:.2f} s; output: {args.out}")
    return code


@contextlib.contextmanager
def _workspace_errors(folder: Path) -> Iterator[None]:
    """A database or file system failure while working in `folder` (a full disk, above all) as one
    line naming the path, instead of a traceback."""
    try:
        yield
    except (sqlite3.Error, OSError) as raised:
        if isinstance(raised, BrokenPipeError):
            raise
        exc: BaseException = raised
        while isinstance(exc.__context__, (sqlite3.Error, OSError)) and exc.__cause__ is None:
            exc = exc.__context__  # the first failure, not a later one while closing the workspace
        if isinstance(exc, sqlite3.Error):
            full = " (the disk under the workspace is full)" if "full" in str(exc) else ""
            raise WorkspaceError(f"{Path(folder) / 'captionary.db'}: {exc}{full}") from None
        assert isinstance(exc, OSError)
        where = exc.filename or folder
        full = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise WorkspaceError(f"{where}: {exc.strerror or exc}{full}") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_errors(errors: list[dict]) -> None:
    if not errors:
        return
    print(f"{len(errors)} item(s) failed:", file=sys.stderr)
    for error in errors[:SHOWN_ERRORS]:
        print(f"  {error['step']}: {error['source'] or error['item']}: {error['reason']}", file=sys.stderr)
    if len(errors) > SHOWN_ERRORS:
        print(f"  ... and {len(errors) - SHOWN_ERRORS} more (captionary status --json)", file=sys.stderr)


def _status(args: argparse.Namespace) -> int:
    from captionary.core.workspace import Workspace

    with Workspace(existing_workspace(args.workspace)) as ws:
        run = ws.last_run()
    if run is None:
        print("{}" if args.json else "no runs yet")
        return 0
    if args.json:
        print(json.dumps(run, indent=2))
        return 0
    from captionary.executors.summary import StepStats, stats_table

    print(f"run {run['run']}: {run['status']}")
    steps = [
        StepStats(
            s["name"],
            n_in=s["in"],
            n_out=s["out"],
            computed=s["computed"],
            cached=s["cached"],
            dropped=s["dropped"],
            failed=s["failed"],
            usage=s["usage"],
        )
        for s in run["steps"]
    ]
    print(stats_table(steps))
    _print_errors(run["errors"])
    return 0


def _steps(args: argparse.Namespace) -> int:
    from captionary.pipeline.registry import STEPS

    described = [
        {"name": name, "kind": cls.kind, "doc": cls.summary(), "params": cls.signature()}
        for name, cls in STEPS
    ]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for step in described:
        print(f"{step['name']} ({step['kind']}): {step['doc']}")
        for param in step["params"]:
            print(f"    {param}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from captionary.core.workspace import Workspace
    from captionary.review.serve import ReviewServer

    Workspace(existing_workspace(args.workspace)).close()  # brings the schema up to date
    server = ReviewServer(args.workspace, host=args.host, port=args.port)
    print(f"Review: {server.url}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def _preview(args: argparse.Namespace) -> int:
    from captionary.core.optional import require

    for module, package in (("torch", None), ("safetensors", None)):
        require(module, "loader", package=package, user="captionary preview")
    from captionary.loader.config import load_yaml
    from captionary.loader.preview import preview, preview_path

    options = load_yaml(args.config) if args.config else {}
    if args.resolution:
        buckets = {"max_bucket_reso": max(1024, args.resolution), **options.get("buckets", {})}
        options["buckets"] = {**buckets, "resolution": args.resolution}
    result = preview(
        args.dataset,
        args.out or preview_path(args.dataset),
        format=args.format,
        batch_size=args.batch_size,
        seed=args.seed,
        epoch=args.epoch,
        drop_last=args.drop_last,
        **options,
    )
    print(result.report)
    width, height = result.buckets[0]
    print(f"wrote {result.path}: {len(result.captions)} images of bucket {width}x{height}")
    for caption in result.captions:
        print(f"  {caption or '(empty caption)'}")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from captionary.core.workspace import Workspace

    if args.keep_runs < 1 or args.keep_days < 0:
        raise ConfigError("--keep-runs must be at least 1 and --keep-days at least 0")
    with Workspace(existing_workspace(args.workspace)) as ws:
        report = ws.gc(keep_runs=args.keep_runs, keep_days=args.keep_days)
    print(
        f"freed {report.items_freed} item(s) that left the workspace (kept {report.decisions_kept} human "
        f"decision(s) about them); removed {report.removed} blob(s), freed {report.freed_bytes / 1e6:.1f} MB "
        f"({report.freed_bytes:,} bytes); kept {report.kept}; pruned {report.pruned_sources} source "
        "record(s) of files that are gone"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
