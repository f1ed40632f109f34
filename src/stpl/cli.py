"""The `stpl` command: one add_<command>(sub) and run_<command>(args) pair per subcommand, with no logic of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from stpl import bench, estimation, workflows
from stpl.adapt import METHODS, uses_source
from stpl.command_config import load_config
from stpl.config import config_to_yaml
from stpl.data import SPLITS
from stpl.engine import distributed
from stpl.engine.interrupt import terminate_as_interrupt
from stpl.errors import Interrupted, StplError, error_line, file_error, os_error_message
from stpl.pretrained import resolve_checkpoint
from stpl.version import __version__


def add_command(sub: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose own --help opens with its one-line summary (`help`) unless a longer description is given."""
    summary = kwargs["help"]
    kwargs.setdefault("description", f"{summary}.")
    return sub.add_parser(name, **kwargs)


def add_config_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--config", type=Path, required=required, help="YAML file of overrides to the defaults, or a packaged config's "
        "name (toy, camvid-dusk, camvid-15hz-night, ...)",
    )  # fmt: skip
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set adapt.temperature=0.07 (repeatable)",
    )


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise file_error(path, what)
    return path


# -- subcommands -------------------------------------------------------------------------------------------


def add_train_source(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "train-source", help="supervised training on labelled source video (with flow)")
    add_config_options(parser)
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed if it holds an unfinished run)")
    parser.set_defaults(run=run_train_source)


def run_train_source(args: argparse.Namespace) -> None:
    path = workflows.train_supervised(load_config(args), args.out, split="source", kind="source")
    print(f"source model: {path}")


def add_adapt(sub: argparse._SubParsersAction) -> None:
    methods = "\n".join(f"  {name:<14} {entry.summary}" for name, entry in METHODS.items())
    parser = add_command(
        sub,
        "adapt",
        help="source-free STPL adaptation on unlabelled target video",
        epilog=f"methods (--method NAME or --set adapt.method=NAME):\n{methods}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(parser)
    parser.add_argument(
        "--source-ckpt",
        type=Path,
        required=True,
        help="the source model: a checkpoint file or a shipped model (camvid-day)",
    )
    parser.add_argument("--method", choices=[*METHODS, "auto"],
                        help="adaptation method (default stpl; list below); auto: adapt with adapt.auto_candidates, "
                        "keep the source model as one more, choose by the label-free estimate")  # fmt: skip
    parser.add_argument("--input", type=Path, help="your own video (a file OpenCV reads, e.g. clip.mp4) or "
                        "folder of frames to adapt on; without it, the data set of --config or of the source "
                        "checkpoint")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed if it holds an unfinished run)")
    parser.set_defaults(run=run_adapt)


def run_adapt(args: argparse.Namespace) -> None:
    if args.method and args.method != "auto":
        args.sets = [*args.sets, f"adapt.method={args.method}"]
    if args.input is not None:
        source_path = resolve_checkpoint(args.source_ckpt, "source checkpoint")
        args.sets = [*estimation.own_video_sets(args.input, source_path), *args.sets]
    config = load_config(args, args.source_ckpt)
    source = resolve_checkpoint(args.source_ckpt, "source checkpoint")
    if args.method == "auto":
        from stpl.selection import adapt_auto

        print(f"chosen model: {adapt_auto(config, source, args.out)}")
        return
    path = workflows.adapt(config, source, args.out)
    print(f"adapted model: {path}")


def add_estimate(sub: argparse._SubParsersAction) -> None:
    parser = add_command(
        sub,
        "estimate",
        help="label-free estimate of how well each checkpoint segments a video (no labels), best first",
        description="Scores each checkpoint on the same unlabelled frames: temporal consistency along the optical "
        "flow and agreement under augmentation, as class-mean IoUs over the source model's classes, times the share "
        "of those classes each model keeps (docs/label_free.md). Comparable between models on one video only.",
    )
    add_config_options(parser)
    parser.add_argument("--ckpt", type=Path, action="append", required=True,
                        help="a checkpoint or shipped model to score (repeat to compare several)")  # fmt: skip
    parser.add_argument("--input", type=Path,
                        help="your video (a file, or a folder of images sorted by name); without it, the adaptation "
                        "split of --config's data set")  # fmt: skip
    parser.add_argument("--source", type=Path,
                        help="the source model the classes are judged against (default: the one an adapted "
                        "checkpoint names, when that file exists)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write OUT/estimate.json")
    parser.set_defaults(run=run_estimate)


def run_estimate(args: argparse.Namespace) -> None:
    from stpl.atomic import write_json

    paths = [resolve_checkpoint(path) for path in args.ckpt]
    reference = resolve_checkpoint(args.source, "source checkpoint") if args.source else None
    reference = reference or estimation.default_reference(paths)
    if args.input is not None:
        args.sets = [*args.sets, *estimation.own_video_sets(args.input, paths[0])]
    config = load_config(args, paths[0])
    if reference is None:
        print("[estimate] no source model (--source): every class counts, and swapped classes go unseen", flush=True)
    else:
        print(f"[estimate] classes judged against the source model {reference}", flush=True)
    result = estimation.estimate_checkpoints(paths, [str(path) for path in args.ckpt], config,
                                             workflows.setup_runtime(config), reference)  # fmt: skip
    best = result["models"][0]
    print(f"best by the label-free estimate: {best['name']} ({best['estimate']:.1f}) on {result['frames']} frames")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "estimate.json", result)


def add_eval(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "eval", help="mIoU on the target evaluation split; writes OUT/eval.json")
    add_config_options(parser)
    parser.add_argument(
        "--ckpt", type=Path, required=True, help="the checkpoint to score, or a shipped model (camvid-day)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for eval.json (mIoU and per-class IoU)")
    parser.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> None:
    config = load_config(args, args.ckpt)
    result = workflows.evaluate_checkpoint(resolve_checkpoint(args.ckpt), config, args.out)
    print(f"mIoU {result['mIoU']:.2f} on {result['num_frames']} frames -> {args.out / 'eval.json'}")


def add_demo(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "demo", help="synthetic benchmark: source model, STPL, oracle, one table")
    add_config_options(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="folder of the demo's runs and summary.json"
    )
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> None:
    workflows.demo(load_config(args), args.out)
    print(f"summary: {args.out / 'summary.json'}")


def add_show_config(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "show-config", help="print the resolved config")
    add_config_options(parser)
    parser.set_defaults(run=run_show_config)


def run_show_config(args: argparse.Namespace) -> None:
    print(config_to_yaml(load_config(args)), end="")


def add_flow(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "flow", help="precompute and cache optical flow for every frame pair a dataset uses")
    add_config_options(parser)
    parser.add_argument("--split", choices=SPLITS, action="append", help="split(s) to cover (default: all)")
    parser.add_argument("--clear-cache", action="store_true",
                        help="instead, delete the cached flow under flow.cache_dir (default ~/.cache/stpl/flow), "
                        "which every command that computes flow fills")  # fmt: skip
    parser.set_defaults(run=run_flow)


def run_flow(args: argparse.Namespace) -> None:
    config = load_config(args)
    if args.clear_cache:
        from stpl.flow.cache import FlowCache

        cache = FlowCache(config.flow.cache_dir)
        files, size = cache.clear()
        print(f"removed {files} files ({size / 2**20:.1f} MiB) of cached flow from {cache.directory}")
        return
    workflows.precompute_flow(config, args.split or list(SPLITS))


def add_bench(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "bench", help="a named protocol end to end: methods x seeds -> results.json/.md")
    parser.add_argument("--benchmark", required=True, help=f"one of: {', '.join(bench.BENCHMARKS)}")
    parser.add_argument("--data-root", help="the dataset folder (real-data benchmarks)")
    known = ", ".join(bench.known_methods())
    parser.add_argument("--methods", default="source-only,adabn,stpl,oracle", help=f"comma-separated, of: {known}")
    parser.add_argument("--seeds", default="0", help="comma-separated integer seeds")
    parser.add_argument("--out", type=Path, help="output folder (default runs/bench/<benchmark>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value in every run, e.g. --set threads=1 (repeatable)")  # fmt: skip
    parser.add_argument("--config", type=Path, help="YAML overrides applied over the benchmark's own config")
    parser.add_argument(
        "--reuse-source", type=Path, metavar="BENCH_DIR",
        help="use the finished source models of the same config in this bench folder, whatever code trained them",
    )  # fmt: skip
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> None:
    methods = bench.parse_list(args.methods, bench.known_methods())
    try:
        seeds = [int(seed) for seed in bench.parse_list(args.seeds, what="seed")]
    except ValueError:
        raise StplError(f"--seeds must be comma-separated integers, got '{args.seeds}'") from None
    out = args.out or Path("runs/bench") / args.benchmark
    bench.run_bench(args.benchmark, methods, seeds, out, args.data_root, args.sets, args.reuse_source, args.config)
    print(f"results: {out / 'results.json'}, {out / 'results.md'}")


def add_import_accel(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "import-accel", help="convert a DA-VSN / TPS ACCEL checkpoint into an stpl checkpoint")
    add_config_options(parser)
    parser.add_argument(
        "--weights", type=Path, required=True, help="a PyTorch state dict (.pth) saved by the DA-VSN or TPS code"
    )
    parser.add_argument("--out", type=Path, required=True, help="the stpl checkpoint (.safetensors) to write")
    parser.set_defaults(run=run_import_accel)


def run_import_accel(args: argparse.Namespace) -> None:
    path = workflows.import_accel(load_config(args), require_file(args.weights, "ACCEL checkpoint"), args.out)
    print(f"stpl checkpoint: {path}")


def add_analyze(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "analyze", help="analyses of checkpoints")
    analyses = parser.add_subparsers(dest="analysis", required=True)
    knn = add_command(analyses, "knn", help="share of each labelled pixel's k nearest feature neighbours of its class")
    add_config_options(knn)
    knn.add_argument("--ckpt", type=Path, action="append", required=True, help="checkpoint (repeat to compare)")
    knn.add_argument("--name", action="append", help="label per --ckpt in the outputs (default: its folder)")
    knn.add_argument("--k", type=int, default=10, help="neighbours per sampled pixel")
    knn.add_argument("--per-class", type=int, default=300, help="sampled pixels per class")
    knn.add_argument("--out", type=Path, required=True, help="folder for the tables and figure")
    knn.set_defaults(run=run_analyze_knn)


def run_analyze_knn(args: argparse.Namespace) -> None:
    if args.k < 1 or args.per_class < 1:
        raise StplError("--k and --per-class must be positive")
    checkpoints = [resolve_checkpoint(path) for path in args.ckpt]
    workflows.analyze_knn(checkpoints, load_config(args), args.k, args.out, args.per_class, args.name)
    print(f"k-NN analysis: {args.out / 'knn.json'}, {args.out / 'knn.png'}")


def add_predict(sub: argparse._SubParsersAction) -> None:
    parser = add_command(
        sub, "predict", help="class maps, overlays and an overlay video for a folder of images or a video file"
    )
    parser.add_argument(
        "--ckpt", type=Path, required=True, help="a source or adapted checkpoint, or a shipped model (camvid-day)"
    )
    parser.add_argument("--input", type=Path, required=True, help="a folder of images (sorted by name) or a video")
    parser.add_argument(
        "--out", type=Path, required=True, help="masks/, overlay/, overlay.mp4, predict.json (replaced as a whole)"
    )
    parser.add_argument("--stride", type=int, default=1, help="read every N-th frame")
    parser.add_argument("--start", type=int, default=0, help="first frame (index) to read")
    parser.add_argument("--end", type=int, help="stop before this frame index")
    parser.add_argument("--device", default="cpu", help="torch device to predict on, e.g. cpu or cuda")
    parser.add_argument("--flow-scale", type=float,
                        help="compute flow at this share of the model size (default: the checkpoint's flow.scale; "
                        "0.5 makes streaming cheaper, docs/speed.md)")  # fmt: skip
    parser.add_argument("--adapt", choices=["off", "online"], default="off",
                        help="online: adapt while predicting, frame t after updates on frames up to t")  # fmt: skip
    parser.add_argument("--fps", type=float,
                        help="with --adapt online: keep up with a camera of this frame rate, updating only on frames "
                        "whose update fits the time (adapt.online.fps; every frame is predicted)")  # fmt: skip
    parser.add_argument("--method", choices=[m for m, e in METHODS.items() if e.method and not uses_source(m)],
                        default="tent",
                        help="the online adaptation method")  # fmt: skip
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="settings over the checkpoint's, e.g. threads=1, flow.dis_preset=fast, or adapt.* "
                        "for --adapt online (adapt.online.window=4); unknown keys are refused")  # fmt: skip
    parser.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    from stpl.predict import load, load_online

    checkpoint = resolve_checkpoint(args.ckpt)
    if args.flow_scale is not None and not 0.0 < args.flow_scale <= 1.0:
        raise StplError(f"--flow-scale must be in (0, 1], got {args.flow_scale}")
    adaptation = [text for text in args.sets if text.strip().startswith("adapt.")]
    if adaptation and args.adapt != "online":  # they would be read by nothing
        raise StplError(f"--set {adaptation[0]}: adapt.* settings act only with --adapt online")
    if args.fps is not None and (args.adapt != "online" or not args.fps > 0):
        raise StplError(f"--fps {args.fps}: a frame rate above 0, for --adapt online (prediction alone takes none)")
    adapter = None
    if args.adapt == "online":
        sets = args.sets if args.flow_scale is None else [*args.sets, f"flow.scale={args.flow_scale}"]
        sets = sets if args.fps is None else [*sets, f"adapt.online.fps={args.fps}"]
        predictor, adapter = load_online(checkpoint, args.method, sets, args.device)
    else:
        predictor = load(checkpoint, device=args.device, flow_scale=args.flow_scale, sets=args.sets)
    summary = predictor.predict_video(args.input, args.out, args.stride, args.start, args.end, adapter)
    print(f"{summary['frames']} frames at {summary['frames_per_second']:.1f} frames/s: {args.out}")


def add_speed(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "speed", help="step, inference and flow timings and their ratios -> results.json/.md")
    add_config_options(parser)
    parser.add_argument("--out", type=Path, default=Path("results/speed"), help="folder for results.json/.md")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per figure (median)")
    parser.add_argument("--frames", type=int, default=20, help="frames per inference timing")
    parser.add_argument("--predict-ckpt", default="camvid-day", help="the model of the end-to-end predict row")
    parser.add_argument("--online", default="", metavar="METHODS",
                        help="also time `stpl predict --adapt online` with these methods (comma-separated, e.g. "
                        "tent,stpl), every frame updating and at --online-fps")  # fmt: skip
    parser.add_argument("--online-fps", type=float, default=15.0, help="the frame-rate target of the online rows")
    parser.set_defaults(run=run_speed)


def run_speed(args: argparse.Namespace) -> None:
    from stpl.speed import run_speed as measure
    from stpl.speed import speed_table

    if args.repeats < 1 or args.frames < 2:
        raise StplError("--repeats must be at least 1 and --frames at least 2")
    config = load_config(args)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    online = [name.strip() for name in args.online.split(",") if name.strip()]
    if not args.online_fps > 0:
        raise StplError(f"--online-fps must be above 0, got {args.online_fps}")
    result = measure(config, args.out, args.repeats, args.frames, args.predict_ckpt, online, args.online_fps)
    print(speed_table(result))
    print(f"results: {args.out / 'results.json'}, {args.out / 'results.md'}")


def add_export(sub: argparse._SubParsersAction) -> None:
    parser = add_command(
        sub,
        "export",
        help="a checkpoint as an ONNX file (single-frame, or two-frame with the flow as an input)",
        description="Inputs: float32 RGB frames [B,3,H,W] at the checkpoint's size, normalised as (pixel / 255 - "
        "mean) / std with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); with --temporal also "
        "the previous frame and the backward flow [B,2,H,W] in pixels (current -> previous). Output: logits "
        "[B,K,H,W] at the input size (argmax over axis 1: class ids). Class names and the normalisation are in the "
        "file's metadata. Needs pip install 'stpl[export]'.",
    )
    parser.add_argument(
        "--ckpt", type=Path, required=True, help="a source or adapted checkpoint, or a shipped model (camvid-day)"
    )
    parser.add_argument("--format", default="onnx", help="onnx (the only one so far)")
    parser.add_argument("--out", type=Path, required=True, help="the file to write, e.g. model.onnx")
    parser.add_argument("--temporal", action="store_true",
                        help="export the two-frame model: inputs current, previous, flow")  # fmt: skip
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    from stpl.export import export_checkpoint

    exported = export_checkpoint(resolve_checkpoint(args.ckpt), args.out, args.format, args.temporal)
    inputs = ", ".join(exported.inputs)
    print(f"{exported.path}: inputs {inputs} at {exported.size[0]}x{exported.size[1]}, output logits; "
          f"onnxruntime matches torch within {exported.max_difference:.1e}")  # fmt: skip


SUBCOMMANDS = (
    add_train_source, add_adapt, add_eval, add_estimate, add_predict, add_demo, add_flow, add_bench, add_analyze,
    add_import_accel, add_show_config, add_speed, add_export,
)  # fmt: skip


DESCRIPTION = """Source-free domain adaptation of video semantic segmentation (STPL, CVPR 2023, and baselines).

Segment a video with a model, adapt the model to your own unlabelled video (no labels, no source data), and
judge without labels whether adapting helped. To start:
  stpl predict --ckpt camvid-day --input clip.mp4 --out predictions
  stpl adapt --source-ckpt camvid-day --method auto --input clip.mp4 --out adapted
`stpl COMMAND --help` says more about each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stpl", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"stpl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():  # SIGTERM unwinds like Ctrl-C: cleanup runs, checkpoints are written
            args.run(args)
    except StplError as err:
        print(f"stpl: error: {error_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the command could not read or write: name it and the cause, no traceback
        print(f"stpl: error: {error_line(os_error_message(err))}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"stpl: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("stpl: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
