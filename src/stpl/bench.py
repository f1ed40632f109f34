"""`stpl bench`: a named protocol end to end over methods and seeds, with results files and skipping of done runs.

Layout of the output folder:
    source/seed<s>-<key>/    source model per seed, keyed by its config and the source code (reused when both match)
    runs/<method>/seed<s>-<code>/   one run per method and seed, with eval.json once complete
    results.json, results.md
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from stpl import estimation, online_run, selection, workflows
from stpl.adapt import METHODS as ADAPT_METHODS
from stpl.adapt import uses_source, with_method_defaults
from stpl.atomic import write_json, write_text
from stpl.bench_report import REFERENCE_METHODS, markdown_table, summarise, write_plots
from stpl.config import Config, build_config, config_to_dict, with_overrides
from stpl.config.files import environment_sets, packaged_config_dir
from stpl.errors import StplError

# benchmark name -> its packaged config file under src/stpl/configs/ (None = the defaults, i.e. the synthetic benchmark)
BENCHMARKS: dict[str, str | None] = {
    "synthetic": None,
    "camvid-dusk": "camvid_dusk/base.yaml",
    "camvid-15hz-night": "camvid_15hz_night/base.yaml",
    "camvid-15hz-adverse": "camvid_15hz_adverse/base.yaml",
    "camvid-15hz-continual": "camvid_15hz_continual/base.yaml",
    "synthetic-temporal": "synthetic_temporal/base.yaml",
}
# STPL ablations and controls: name -> overrides applied on top of the benchmark config (method stpl)
VARIANTS: dict[str, tuple[str, ...]] = {
    "stpl-notemporal": ("model.temporal=false",),  # same network and schedule, earlier frame := current frame
    "stpl-concat": ("model.fusion=concat",),
    "stpl-add": ("model.fusion=add",),
    "stpl-conv": ("model.fusion=conv",),
    "stpl-attention": ("model.fusion=attention",),
    "stpl-seed": ("adapt.loss_form=seed",),
    "stpl-infonce": ("adapt.loss_form=infonce",),
    "stpl-no-pl": ("adapt.lambda_pl=0",),  # contrast only
    "stpl-cross-frame": ("adapt.cross_frame_keys=true",),
}
# what `stpl bench --methods` accepts: the source model as it is, every adaptation method, the references, variants
# Online test-time adaptation over the evaluation split in order (online.py): name -> the method that adapts
ONLINE: dict[str, str] = {"stpl-online": "stpl", "tent-online": "tent", "self-training-online": "self-training",
                          "norm-online": "norm-ema", "cotta-online": "cotta", "auto-online": "stpl"}  # fmt: skip
# online rows that are another row with settings of their own: auto-online is the safe online choice, stpl-online
# under the label-free guard (online.EstimateGuard: back to the starting weights, with the better normalisation)
ONLINE_SETTINGS: dict[str, tuple[str, ...]] = {"auto-online": ("adapt.online.guard=true",)}


# --method auto (selection.py): adapts with adapt.auto_candidates (reusing this bench's runs of them) and keeps the
# source model as one more candidate, chosen by the label-free estimate
AUTO = "auto"


def known_methods() -> tuple[str, ...]:
    """What `stpl bench --methods` accepts: the source model as it is, every adaptation method (registered ones
    included), the references, the STPL variants, the online methods and auto."""
    return ("source-only", *ADAPT_METHODS, *REFERENCE_METHODS, *VARIANTS, *ONLINE, AUTO)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, check=True
    ).stdout.strip()


def git_commit() -> str:
    """The commit the results were produced at (for the tables), "+dirty" with uncommitted tracked changes."""
    try:
        commit, dirty = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def code_version() -> str:
    """What finished runs are keyed by: the git tree of the package source only, so that commits touching docs,
    tests or configs (configs are compared separately) do not invalidate hours of finished runs."""
    try:
        tree = _git("rev-parse", "HEAD:src")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", str(Path(__file__).parents[1]))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{tree}+dirty" if dirty else tree


def benchmark_config(name: str, data_root: str | None, sets: list[str], user_config: Path | None = None) -> Config:
    if name not in BENCHMARKS:
        raise StplError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    relative = BENCHMARKS[name]
    config_file = None
    if relative is not None:
        config_file = packaged_config_dir() / relative
        if not config_file.is_file():
            raise StplError(f"benchmark config missing: {config_file}")
    root_set = environment_sets()  # STPL_DATA, beaten by --data-root and --set
    if data_root:
        config = build_config(config_file, sets)
        if config.data.dataset == "synthetic":
            raise StplError(f"benchmark '{name}' is generated; --data-root does not apply")
        root_set = [*root_set, f"data.{config.data.dataset}.root={data_root}"]
    config = build_config(config_file, [*root_set, *sets])
    if user_config is not None:  # the user's overrides over the benchmark's own config, then --set again
        config = build_config(user_config, [*root_set, *sets], base=config_to_dict(config))
    return config


def parse_list(text: str, allowed: tuple[str, ...] | None = None, what: str = "method") -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise StplError(f"no {what}s given")
    for item in items:
        if allowed is not None and item not in allowed:
            raise StplError(f"unknown {what} '{item}' (known: {', '.join(allowed)})")
    return items


def check_seeds(seeds: list[int]) -> None:
    """Seeds are distinct and non-negative: a repeated seed would count one run twice (a spread of ±0.0)."""
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise StplError(f"--seeds repeats {', '.join(map(str, repeated))}: each seed is one run, give each once")
    negative = [seed for seed in seeds if seed < 0]
    if negative:
        raise StplError(f"--seeds must be non-negative integers, got {', '.join(map(str, negative))}")


def run_key(identity: dict[str, Any], code: str) -> str:
    """Folder key of a bench run: what its result depends on (a config identity, see `workflows.run_identity`) and
    the code (`code_version`). A changed setting gets a new folder; a finished run is never overwritten."""
    return hashlib.sha1((json.dumps(identity, sort_keys=True) + code).encode()).hexdigest()[:12]


def method_config(method: str, config: Config) -> Config:
    """The config a method runs and is evaluated with (a variant's overrides included)."""
    if method in ("source-only", AUTO) or method in REFERENCE_METHODS:  # auto: candidates in adapt.auto_candidates
        return config
    if method in VARIANTS:
        return with_overrides(config, sets=["adapt.method=stpl", *VARIANTS[method]])
    if method in ONLINE:
        return with_overrides(config, sets=[f"adapt.method={ONLINE[method]}", *ONLINE_SETTINGS.get(method, ())])
    return with_method_defaults(with_overrides(config, sets=[f"adapt.method={method}"]))


def run_method(
    method: str, config: Config, source: Path, run_dir: Path, finished: dict[str, Path] | None = None
) -> tuple[Path, float]:
    """Returns the checkpoint to evaluate and the seconds spent adapting (0 for source-only); `finished`: this
    seed's finished runs by method, which auto reuses as candidates."""
    started = time.perf_counter()
    if method == "source-only":
        return source, 0.0
    if method == AUTO:
        return selection.adapt_auto(config, source, run_dir, finished), time.perf_counter() - started
    if method in REFERENCE_METHODS:
        init = source if method == "oracle" else None
        checkpoint = workflows.train_supervised(config, run_dir, split="adapt", kind=method, init_checkpoint=init)
    else:
        checkpoint = workflows.adapt(config, source, run_dir)
    return checkpoint, time.perf_counter() - started


def label_free_figures(checkpoint: Path, config: Config, source: Path, run_dir: Path) -> dict[str, Any]:
    """The label-free estimate of a checkpoint on the adaptation frames (labels withheld, the source model as the
    reference), and its mIoU on the labelled adaptation frames: held-out frames that the estimate's settings are
    chosen on (never the evaluation split). The estimate `stpl adapt` or auto already wrote in `run_dir` (the same
    frames and reference) is taken as it is."""
    device = workflows.setup_runtime(config)
    estimate = stored_estimate(run_dir) or estimation.estimate_checkpoint(checkpoint, config, device, reference=source)
    adapt_split = with_overrides(config, {"eval": {"split": "adapt"}})
    return {"estimate": estimate, "adapt_split_mIoU": workflows.evaluate_checkpoint(checkpoint, adapt_split)["mIoU"]}


def stored_estimate(run_dir: Path) -> dict[str, Any] | None:
    """The run's model's estimate from its estimate.json (an adaptation) or choice.json (auto), if either is there."""
    if (run_dir / estimation.ESTIMATE_FILE).is_file():
        return json.loads((run_dir / estimation.ESTIMATE_FILE).read_text())["adapted"]
    if (run_dir / selection.CHOICE_FILE).is_file():
        choice = json.loads((run_dir / selection.CHOICE_FILE).read_text())
        return {k: v for k, v in choice["candidates"][choice["chosen"]].items() if k != "checkpoint"}
    return None


def auto_choice(run_dir: Path) -> dict[str, Any]:
    """The candidate auto chose, why, and each candidate's estimate (from its choice.json)."""
    choice = json.loads((run_dir / selection.CHOICE_FILE).read_text())
    estimates = {name: row["estimate"] for name, row in choice["candidates"].items()}
    return {"chosen": choice["chosen"], "reason": choice["reason"], "estimates": estimates}


def find_source_model(bench_dir: Path, seed: int, identity: dict[str, Any]) -> Path | None:
    """A finished source model of this seed and config in another bench folder (any code version), or None."""
    for candidate in sorted((bench_dir / "source").glob(f"seed{seed}-*")):
        if workflows.finished(candidate, identity):
            print(f"[bench] seed {seed}: reusing the source model in {candidate}", flush=True)
            return candidate
    return None


def run_bench(
    benchmark: str,
    methods: list[str],
    seeds: list[int],
    out_dir: Path,
    data_root: str | None = None,
    sets: list[str] | None = None,
    reuse_source: Path | None = None,
    config_file: Path | None = None,
) -> dict[str, Any]:
    """Run `methods` x `seeds` on a named protocol into `out_dir` (finished runs are skipped). With `reuse_source`,
    a finished source model of the same config found in that bench folder is used whatever code trained it."""
    check_seeds(seeds)
    if reuse_source is not None and not (Path(reuse_source) / "source").is_dir():
        raise StplError(
            f"--reuse-source {reuse_source}: no bench folder with source models there (expected {reuse_source}/source)"
        )
    base = benchmark_config(benchmark, data_root, sets or [], config_file)
    out_dir = Path(out_dir)
    workflows.check_out_dir(out_dir)
    commit, code = git_commit(), code_version()
    runs: list[dict[str, Any]] = []
    classes: list[str] = []
    for seed in seeds:
        seed_config = with_overrides(base, {"seed": seed})
        source_identity = workflows.supervised_identity(seed_config, "source")
        source_dir = out_dir / "source" / f"seed{seed}-{run_key(source_identity, code)}"
        if reuse_source is not None and not workflows.finished(source_dir, source_identity):
            source_dir = find_source_model(Path(reuse_source), seed, source_identity) or source_dir
        source = workflows.train_supervised(seed_config, source_dir, split="source", kind="source")
        finished: dict[str, Path] = {}  # this seed's adapted checkpoints by method, for auto
        spent: dict[str, float] = {}  # and the seconds each took
        for method in methods:
            config = method_config(method, seed_config)
            if method in REFERENCE_METHODS:
                identity = workflows.supervised_identity(config, "adapt")
            else:
                identity = workflows.run_identity(config)
            if method != "oracle-scratch":  # every other run starts from the source model, trained here or reused
                identity["source_run"] = source_dir.name
            if method == AUTO:  # not in a single run's identity, but what auto's choice depends on
                identity["auto"] = [list(config.adapt.auto_candidates), config.adapt.auto_margin]
            key = run_key({**identity, "eval": config_to_dict(config)["eval"]}, code)  # the score depends on eval too
            run_dir = out_dir / "runs" / method / f"seed{seed}-{key}"
            record_path = run_dir / "record.json"
            if record_path.is_file():
                record = json.loads(record_path.read_text())
                if record.get("key") == key:
                    print(f"[bench] {method} seed {seed}: done before, skipped", flush=True)
                    finished[method] = Path(record["checkpoint"])
                    spent[method] = record.get("adapt_seconds") or 0.0
                    runs.append(record)
                    classes = list(record["per_class"])
                    continue
            print(f"[bench] {method} seed {seed}", flush=True)
            if method in ONLINE:  # adapted while it predicts the evaluation split: scored in the same pass
                started = time.perf_counter()
                result = online_run.online_evaluate(config, source, run_dir)
                checkpoint, seconds = Path(result["checkpoint"]), time.perf_counter() - started
            else:
                checkpoint, seconds = run_method(method, config, source, run_dir, finished)
                if method == AUTO:  # what auto costs a user: the candidates it reused were adapted for it too
                    seconds += sum(spent.get(name, 0.0) for name in config.adapt.auto_candidates)
                result = workflows.evaluate_checkpoint(checkpoint, config, run_dir)
                result.update(label_free_figures(checkpoint, config, source, run_dir))
            finished[method], spent[method] = checkpoint, seconds
            record = {
                "method": method, "seed": seed, "mIoU": result["mIoU"], "per_class": result["per_class"],
                "adapt_seconds": seconds, "eval_frames": result.get("num_frames"),
                "pass_seconds": result.get("pass_seconds"), "collapsed": bool(result.get("collapsed", False)),
                "uses_source": method not in ("source-only", *REFERENCE_METHODS) and uses_source(config.adapt.method),
                "health": result.get("health"),  # online runs: the predictions' label-free signals
                # label-free estimate on the unlabelled adaptation frames (online: over the stream as predicted)
                "estimate": result.get("estimate"),
                "adapt_split_mIoU": result.get("adapt_split_mIoU"),  # for fitting the estimate; never a result
                "continual": result.get("continual"),  # a continual stream's scores per round and shift
                "auto_choice": auto_choice(run_dir) if method == AUTO else None,  # what auto chose, and why
                "checkpoint": str(checkpoint), "source": str(source),
                "commit": commit, "code": code,
                "key": key, "config": config_to_dict(config),
            }  # fmt: skip
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(record_path, record)
            runs.append(record)
            classes = result["classes"]
            print(f"[bench] {method} seed {seed}: mIoU {result['mIoU']:.2f}", flush=True)
    summary = summarise(runs, classes)
    results = {"benchmark": benchmark, "commit": commit, "runs": runs, "summary": summary}
    write_json(out_dir / "results.json", results)
    write_text(out_dir / "results.md", markdown_table(benchmark, commit, summary, classes, base.eval.split))
    write_plots(out_dir, benchmark, summary, classes, runs)
    print(markdown_table(benchmark, commit, summary, classes, base.eval.split), flush=True)
    return results
