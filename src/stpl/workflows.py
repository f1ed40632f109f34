"""What each command does, as plain functions of a config and paths (the CLI only parses arguments).

Each run writes into its own folder: config.yaml (resolved), metrics.jsonl, checkpoint_last.safetensors (for
resuming) and, once finished, model.safetensors. Inputs are checked before anything is written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from stpl.adapt import METHODS, build_method, training_free, uses_source, with_method_defaults
from stpl.adapt.norm import reestimate_norm_statistics
from stpl.atomic import remove_temporaries, write_json
from stpl.config import Config, build_config, config_to_dict, with_overrides
from stpl.data import DATASETS, PairDataset, RandomBatches, build_dataset, dataset_classes, reported_classes
from stpl.data.neighbours import with_later_neighbours
from stpl.data.pairs import SourceAndTarget
from stpl.data.palettes import palette_for
from stpl.engine import distributed
from stpl.engine.checkpoint import Checkpoint, file_sha1, load_checkpoint, save_checkpoint
from stpl.engine.checkpoint_model import (
    check_classes,
    check_finite_weights,
    model_from_checkpoint,
    with_checkpoint_model,
)
from stpl.engine.evaluate import evaluate
from stpl.engine.loop import LoopSettings, run_loop
from stpl.engine.run_files import EVAL_FILE, FINAL_CHECKPOINT, LAST_CHECKPOINT
from stpl.engine.run_folder import (
    check_out_dir,
    finished,
    prepare_run_dir,
    run_folder,
    run_identity,
    supervised_identity,
)
from stpl.engine.supervised import Supervised
from stpl.engine.sync_norm import synced_norms
from stpl.engine.tensorboard import log_evaluation, require_tensorboard
from stpl.errors import StplError
from stpl.estimation import ESTIMATE_FILE, compare_with_source
from stpl.losses.class_weights import median_frequency_weights
from stpl.models import build_model
from stpl.runlock import run_lock


def setup_runtime(config: Config) -> torch.device:
    require_tensorboard(config.log.tensorboard)  # one line before any work, not an ImportError after it
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise StplError(f"device '{config.device}' asked for, but CUDA is not available")
    device = torch.device(config.device)
    if distributed.init_from_environment(device) and device.type == "cuda":  # torchrun: one GPU per process
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def load_split(config: Config, split: str, with_labels: bool) -> PairDataset:
    dataset = build_dataset(config, split, with_labels)
    return dataset if config.model.temporal else dataset.without_time()


def save_final(out_dir: Path, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    path = out_dir / FINAL_CHECKPOINT
    if distributed.is_main():
        save_checkpoint(path, model.state_dict(), meta)
    distributed.barrier()  # every process returns once the file is there
    return path


# ----------------------------------------------------------------------------------------------------------


def train_supervised(
    config: Config, out_dir: Path, split: str = "source", kind: str = "source", init_checkpoint: Path | None = None
) -> Path:
    """Supervised training on a labelled split: the source model (split "source") or an oracle ("adapt"), from
    ImageNet weights or, with `init_checkpoint`, fine-tuning that model (the oracle as the field reports it)."""
    out_dir = Path(out_dir)
    identity = supervised_identity(config, split)
    if init_checkpoint is not None:
        identity["init_checkpoint_sha1"] = file_sha1(Path(init_checkpoint))
    if finished(out_dir, identity):
        print(f"[{kind}] finished run found in {out_dir}; reusing it", flush=True)
        return out_dir / FINAL_CHECKPOINT
    check_out_dir(out_dir)
    device = setup_runtime(config)
    dataset = load_split(config, split, with_labels=True)  # before the folder: bad data leaves nothing behind
    with run_folder(out_dir):  # one process per run folder
        if finished(out_dir, identity):  # another process finished it while this one was loading data
            return out_dir / FINAL_CHECKPOINT
        prepare_run_dir(out_dir, config, identity)
        if init_checkpoint is not None:
            checkpoint = load_checkpoint(Path(init_checkpoint))
            check_classes(checkpoint, config, Path(init_checkpoint))
            model = model_from_checkpoint(checkpoint, config, skip_adaptation_modules=False).to(device)
        else:
            model = build_model(dataset.num_classes, **config.model.network_options()).to(device)
        if config.sync_norm:
            model = synced_norms(model)
        train = config.train
        weights = None
        if train.class_weight_power > 0:
            weights = median_frequency_weights(dataset.labels, dataset.num_classes, train.class_weight_power)
            print(f"[{kind}] class weights " + " ".join(f"{w:.2f}" for w in weights.tolist()), flush=True)
        method = Supervised(model, train.lr, train.backbone_lr_scale, weights)
        batches = RandomBatches(
            dataset, train.batch_size, config.seed, hflip=train.hflip, scale_range=train.scale_range,
            photometric=train.photometric,
        )  # fmt: skip
        meta = {"kind": kind, "config": config_to_dict(config), "identity": identity,
                "class_names": list(dataset.class_names), "palette": palette_for(dataset.class_names)}  # fmt: skip
        oracle = split == "adapt"  # supervised training on the target adaptation labels
        iterations = train.oracle_iterations if oracle and train.oracle_iterations else train.iterations
        settings = LoopSettings(
            iterations=iterations,
            momentum=train.momentum,
            weight_decay=train.weight_decay,
            log_every=train.log_every,
            checkpoint_every=train.checkpoint_every,
            label=kind,
            optimizer=train.optimizer,
            warmup_steps=train.warmup_steps,
            amp=train.amp,
            loader_workers=config.data.loader_workers,
            checkpoint_seconds=60.0 * train.checkpoint_minutes,
            tensorboard=config.log.tensorboard,
        )
        result = run_loop(method, batches, settings, out_dir, meta)
        return save_final(out_dir, model, {**meta, "step": iterations, "collapsed": result.collapsed})


def source_pairs(config: Config, seed: int) -> tuple[RandomBatches, torch.Tensor]:
    """For the methods that use source data: batches of the labelled source split, augmented as the source model
    was trained (train.hflip, scale_range, photometric), and the class weights of its supervised loss."""
    if config.data.dataset == "frames":
        raise StplError(
            f"adapt.method={config.adapt.method} trains on labelled source data beside the target video, and a "
            "folder of frames has none: choose a source-free method, or a benchmark config with a source split"
        )
    dataset = load_split(config, "source", with_labels=True)
    train = config.train
    weights = torch.ones(dataset.num_classes)
    if train.class_weight_power > 0:
        weights = median_frequency_weights(dataset.labels, dataset.num_classes, train.class_weight_power)
    batches = RandomBatches(
        dataset, config.adapt.batch_size, seed, hflip=train.hflip, scale_range=train.scale_range,
        photometric=train.photometric,
    )  # fmt: skip
    return batches, weights


def adapt(config: Config, source_checkpoint: Path, out_dir: Path) -> Path:
    """Adaptation from the source checkpoint and the unlabelled target video; source-free methods open nothing
    else. The domain-adaptation baselines that declare `uses_source` also read the labelled source split."""
    source_checkpoint, out_dir = Path(source_checkpoint), Path(out_dir)
    checkpoint = load_checkpoint(source_checkpoint)
    if config.data.dataset == "frames" and not config.data.frames.classes:  # own video: the model's classes
        config = with_overrides(config, {"data": {"frames": {"classes": checkpoint.class_names}}})
    check_classes(checkpoint, config, source_checkpoint)
    config = with_method_defaults(with_checkpoint_model(config, checkpoint, architecture_only=True))
    identity = run_identity(config, source_checkpoint)
    if finished(out_dir, identity):
        print(f"[adapt] finished run found in {out_dir}; reusing it", flush=True)
        return out_dir / FINAL_CHECKPOINT
    check_out_dir(out_dir)
    device = setup_runtime(config)
    dataset = load_split(config, "adapt", with_labels=False)  # the only target data adaptation opens
    trained = METHODS[config.adapt.method].method
    with_source = uses_source(config.adapt.method)
    source = source_pairs(config, config.seed) if with_source else None  # never for a source-free method
    if config.model.temporal and trained is not None and trained.looks_ahead(config.adapt):
        dataset = with_later_neighbours(dataset, config.flow)  # the no-temporal control looks at frame t only
    with run_folder(out_dir):  # one process per run folder
        if finished(out_dir, identity):  # another process finished it while this one was loading data
            return out_dir / FINAL_CHECKPOINT
        prepare_run_dir(out_dir, config, identity)
        model = model_from_checkpoint(checkpoint, config, skip_adaptation_modules=True).to(device)
        if config.sync_norm:
            model = synced_norms(model)
        resuming = (out_dir / LAST_CHECKPOINT).is_file()
        training_free_method = config.adapt.method in training_free()
        if (config.adapt.norm == "reestimate" or training_free_method) and not resuming:
            # Shuffled: consecutive frames are alike, and batches of them would understate the variance.
            batches = dataset.iterate(config.adapt.batch_size, shuffle_seed=config.seed)
            count = reestimate_norm_statistics(
                model, (batch.to(device) for batch in batches), config.adapt.norm_source_weight
            )
            print(f"[adapt] normalisation statistics re-estimated on {count} target batches", flush=True)
        meta = {
            "kind": "adapted",
            "method": config.adapt.method,
            "config": config_to_dict(config),
            "identity": identity,
            "class_names": checkpoint.class_names,
            "palette": checkpoint.meta.get("palette") or palette_for(checkpoint.class_names),
            "source_checkpoint": str(source_checkpoint),
            "uses_source": with_source,
        }
        if training_free_method:  # e.g. AdaBN: the re-estimation above is the whole method
            final = save_final(out_dir, model, {**meta, "step": 0})
            return _compared_with_source(config, device, final, source_checkpoint, out_dir)
        method = build_method(model, config.adapt, config.seed)
        if not resuming:  # a resumed run restores what `prepare` set from its checkpoint
            method.prepare(dataset.iterate(config.adapt.batch_size))
        batches: RandomBatches | SourceAndTarget = RandomBatches(dataset, config.adapt.batch_size, config.seed)
        if source is not None:
            source_batches, class_weights = source
            method.set_source_class_weights(class_weights.to(device))
            batches = SourceAndTarget(batches, source_batches)
        settings = LoopSettings(
            iterations=config.adapt.iterations,
            momentum=config.adapt.momentum,
            weight_decay=config.adapt.weight_decay,
            log_every=config.adapt.log_every,
            checkpoint_every=config.adapt.checkpoint_every,
            label="adapt",
            snapshot_every=config.adapt.snapshot_every,
            amp=config.adapt.amp,
            loader_workers=config.data.loader_workers,
            checkpoint_seconds=60.0 * config.adapt.checkpoint_minutes,
            tensorboard=config.log.tensorboard,
        )
        result = run_loop(method, batches, settings, out_dir, meta)
        final = save_final(out_dir, model, {**meta, "step": config.adapt.iterations, "collapsed": result.collapsed})
        return _compared_with_source(config, device, final, source_checkpoint, out_dir)


def _compared_with_source(config: Config, device: torch.device, adapted: Path, source: Path, out_dir: Path) -> Path:
    """With adapt.estimate: the adapted and the source model's label-free estimates on the adaptation frames, in
    OUT/estimate.json and one line; returns `adapted`."""
    if config.adapt.estimate and distributed.is_main():
        comparison = compare_with_source(config, device, adapted, source)
        write_json(out_dir / ESTIMATE_FILE, comparison)
        print(f"[adapt] {comparison['sentence']}", flush=True)
    return adapted


def evaluate_checkpoint(checkpoint_path: Path, config: Config, out_dir: Path | None = None) -> dict[str, Any]:
    """Evaluate on the target evaluation split; writes out_dir/eval.json when out_dir is given."""
    checkpoint_path = Path(checkpoint_path)
    if not DATASETS[config.data.dataset].labelled:
        raise StplError(
            f"data set '{config.data.dataset}' has no labels: there is nothing to score (stpl predict writes masks)"
        )
    checkpoint = load_checkpoint(checkpoint_path)
    check_classes(checkpoint, config, checkpoint_path)
    check_finite_weights(checkpoint)
    if out_dir is not None:
        check_out_dir(Path(out_dir))
        with run_lock(Path(out_dir)):  # a folder another command is writing fails at once, not after the work
            remove_temporaries(Path(out_dir))  # half-written files of a killed evaluation
            return _evaluate(checkpoint, checkpoint_path, config, Path(out_dir))
    return _evaluate(checkpoint, checkpoint_path, config, None)


def _evaluate(checkpoint: Checkpoint, checkpoint_path: Path, config: Config, out_dir: Path | None) -> dict[str, Any]:
    model_config = with_checkpoint_model(config, checkpoint, architecture_only=False)
    device = setup_runtime(config)
    model = model_from_checkpoint(checkpoint, model_config, skip_adaptation_modules=False).to(device)
    dataset = load_split(model_config, config.eval.split, with_labels=True)
    result = evaluate(model, dataset, config.eval.batch_size, reported_classes(config))
    result["split"] = config.eval.split
    result["checkpoint"] = str(checkpoint_path)
    # what made the scored model, so the file identifies it without the (often deleted) run folder
    result["checkpoint_sha1"] = file_sha1(checkpoint_path)
    result["checkpoint_config"] = checkpoint.config
    # a run whose predictions degenerated (engine/health.py) is scored, but marked
    result["collapsed"] = bool(checkpoint.meta.get("collapsed", False))
    result["config"] = config_to_dict(config)
    if out_dir is not None:
        write_json(Path(out_dir) / EVAL_FILE, result)  # atomic: concurrent evaluations leave one whole file
    palette = checkpoint.meta.get("palette") or palette_for(checkpoint.class_names)
    tensorboard = config.log.tensorboard and distributed.is_main()
    log_evaluation(out_dir, tensorboard, result, checkpoint.step, model, dataset, palette)  # beside eval.json
    return result


def demo(config: Config, out_dir: Path) -> dict[str, Any]:
    """Source model, STPL adaptation, oracle, all evaluated on the target evaluation clips."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    started = time.perf_counter()
    source = train_supervised(config, out_dir / "source", split="source", kind="source")
    adapted = adapt(config, source, out_dir / "stpl")
    oracle = train_supervised(config, out_dir / "oracle", split="adapt", kind="oracle", init_checkpoint=source)
    rows = {}
    for name, path in (("source_only", source), ("stpl", adapted), ("oracle", oracle)):
        rows[name] = evaluate_checkpoint(path, config, out_dir / name.replace("_only", ""))
    summary: dict[str, Any] = {name: {"mIoU": row["mIoU"], "per_class": row["per_class"]} for name, row in rows.items()}
    summary["seconds"] = time.perf_counter() - started
    summary["classes"] = rows["stpl"]["classes"]
    summary["config"] = config_to_dict(config)
    write_json(out_dir / "summary.json", summary)
    print(format_table(summary), flush=True)
    return summary


def format_table(summary: dict[str, Any]) -> str:
    classes = summary["classes"]
    header = f"{'model':<12} {'mIoU':>6} " + " ".join(f"{c[:8]:>8}" for c in classes)
    lines = [header, "-" * len(header)]
    for name in ("source_only", "stpl", "oracle"):
        per_class = summary[name]["per_class"]
        cells = " ".join(f"{'-' if per_class[c] is None else f'{per_class[c]:.1f}':>8}" for c in classes)
        lines.append(f"{name:<12} {summary[name]['mIoU']:>6.1f} {cells}")
    lines.append(f"target evaluation clips; oracle = trained on target labels (reference); {summary['seconds']:.0f} s")
    return "\n".join(lines)


def precompute_flow(config: Config, splits: list[str]) -> None:
    """Build each split once (which computes and caches any missing flow); labels are not read."""
    if config.flow.method != "dis":
        raise StplError(f"flow.method is '{config.flow.method}': there is no estimated flow to precompute")
    for split in splits:
        dataset = build_dataset(config, split, with_labels=False)
        print(f"[flow] {split}: {len(dataset)} pairs cached in {config.flow.cache_dir}", flush=True)


def import_accel(config: Config, weights: Path, out: Path) -> Path:
    """Turn a DA-VSN / TPS ACCEL source-only checkpoint into an stpl checkpoint that `adapt` and `eval` accept."""
    from stpl.models.accel_import import load_accel_checkpoint

    out = Path(out)
    if out.exists() and out.is_dir():
        raise StplError(f"--out {out} is a folder; give the checkpoint file to write")
    if config.model.backbone != "resnet101_deeplabv2":
        raise StplError("ACCEL checkpoints need --set model.backbone=resnet101_deeplabv2 (and input_format=caffe_bgr)")
    classes = list(dataset_classes(config))
    import_config = build_config(
        base={**config_to_dict(config), "model": {**config_to_dict(config)["model"], "pretrained": False}}
    )
    model = build_model(len(classes), **import_config.model.network_options(load_pretrained=False))
    skipped = load_accel_checkpoint(weights, model)
    meta = {
        "kind": "source",
        "config": config_to_dict(import_config),
        "class_names": classes,
        "step": 0,
        "imported_from": str(weights),
        "skipped_keys": skipped,
    }
    save_checkpoint(out, model.state_dict(), meta)
    return out


def analyze_knn(
    checkpoints: list[Path], config: Config, k: int, out_dir: Path, per_class: int = 300, names: list[str] | None = None
) -> dict[str, Any]:
    """The paper's k-NN analysis for each checkpoint on the labelled target split; writes knn.json and knn.png."""
    from stpl.analysis.knn import collect_features, knn_report
    from stpl.analysis.plots import grouped_bars

    names = names or [Path(path).parent.name or str(path) for path in checkpoints]
    if len(names) != len(checkpoints):
        raise StplError(f"{len(checkpoints)} checkpoints but {len(names)} --name values")
    loaded = []
    for path in checkpoints:
        checkpoint = load_checkpoint(path)
        check_classes(checkpoint, config, Path(path))
        loaded.append(checkpoint)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    device = setup_runtime(config)
    dataset = load_split(config, config.eval.split, with_labels=True)
    reports = []
    for name, path, checkpoint in zip(names, checkpoints, loaded, strict=True):
        model_config = with_checkpoint_model(config, checkpoint, architecture_only=False)
        if model_config.model.temporal != config.model.temporal:
            raise StplError(f"{path} was made with model.temporal={model_config.model.temporal}; set it alike")
        model = model_from_checkpoint(checkpoint, model_config, skip_adaptation_modules=False).to(device)
        features, labels = collect_features(model, dataset, config.eval.batch_size, per_class, seed=config.seed)
        report = knn_report(features, labels, k, dataset.class_names)
        reports.append({"name": name, "checkpoint": str(path), **report})
        print(f"[knn] {name}: same-class share of {k} nearest neighbours {report['overall']:.1f} %", flush=True)
    result = {
        "k": k,
        "split": config.eval.split,
        "per_class_samples": per_class,
        "checkpoints": reports,
        "config": config_to_dict(config),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "knn.json", result)
    groups = [*dataset.class_names, "overall"]
    series = {r["name"]: [*r["per_class"].values(), r["overall"]] for r in reports}
    grouped_bars(out_dir / "knn.png", groups, series, f"same-class share of {k}-NN (%)", "k-NN feature analysis")
    return result
