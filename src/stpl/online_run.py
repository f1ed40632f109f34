"""`stpl bench`'s online rows: test-time adaptation over the evaluation split in order, each frame scored as soon as
it is predicted (and, for a continual stream, per round and shift)."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from stpl.analysis.label_free import StreamScores
from stpl.atomic import write_json, write_text
from stpl.config import Config, config_to_dict, config_to_yaml, with_overrides
from stpl.data import reported_classes
from stpl.data.palettes import palette_for
from stpl.engine.checkpoint import load_checkpoint
from stpl.engine.checkpoint_model import check_classes, model_from_checkpoint, with_checkpoint_model
from stpl.engine.continual_scores import ContinualScores
from stpl.engine.evaluate import ConfusionMatrix, scores
from stpl.engine.run_files import CONFIG_FILE, EVAL_FILE
from stpl.engine.run_folder import check_out_dir, run_folder
from stpl.engine.tensorboard import log_evaluation
from stpl.errors import StplError
from stpl.models.segmenter import upsample
from stpl.online import OnlineAdapter, causal_settings, online_pass, stream_recipe
from stpl.progress import Progress
from stpl.workflows import load_split, save_final, setup_runtime


def continual_scores(config: Config, num_classes: int) -> ContinualScores | None:
    """Per-segment scores when the evaluation split is a continual stream (data.camvid.continual_shifts)."""
    camvid = config.data.camvid
    if config.data.dataset != "camvid" or config.eval.split != "eval" or not camvid.continual_shifts:
        return None
    return ContinualScores(num_classes, camvid.continual_shifts, camvid.continual_frames, camvid.continual_rounds)


def online_evaluate(config: Config, source_checkpoint: Path, out_dir: Path) -> dict[str, Any]:
    """Online test-time adaptation over the evaluation split in order, scored as it goes: frame t is predicted
    after adapt.online.steps updates on the unlabelled pairs up to frame t (labels are read only to score the
    predictions). Writes OUT/eval.json (with the online options) and the final weights OUT/model.safetensors."""
    source_checkpoint, out_dir = Path(source_checkpoint), Path(out_dir)
    if config.adapt.online.fps > 0:  # a score must not depend on how fast this machine happens to be
        raise StplError(
            "adapt.online.fps paces `stpl predict`; a scored online run updates every adapt.online.every frames: "
            "set that to the interval --fps settles on (predict.json's update_interval)"
        )
    checkpoint = load_checkpoint(source_checkpoint)
    check_classes(checkpoint, config, source_checkpoint)
    config = stream_recipe(with_checkpoint_model(config, checkpoint, architecture_only=True))
    causal = causal_settings(config.adapt)  # what an online run can honour; recorded as the run's config
    config = with_overrides(config, {"adapt": {"norm": causal.norm, "teacher_later": causal.teacher_later}})
    device = setup_runtime(config)
    labelled = load_split(config, config.eval.split, with_labels=True)
    unlabelled = labelled.without_labels()  # what the adaptation sees
    check_out_dir(out_dir)
    with run_folder(out_dir):
        write_text(out_dir / CONFIG_FILE, config_to_yaml(config))
        model = model_from_checkpoint(checkpoint, config, skip_adaptation_modules=True).to(device)
        source_model = copy.deepcopy(model).eval()  # the source model as it is, for the label-free estimate
        adapter = OnlineAdapter(model, config.adapt, config.seed)
        stream = StreamScores(labelled.num_classes)
        confusion = ConfusionMatrix(labelled.num_classes)
        continual = continual_scores(config, labelled.num_classes)
        progress = Progress("online", len(labelled), every_seconds=10.0)
        started = time.perf_counter()
        for index, batch, output in online_pass(adapter, unlabelled, device):
            with torch.no_grad():
                source_output = source_model(batch.current, batch.previous, batch.flow)
            stream.add(output, source_output, int(labelled.pairs[index, 0]) != int(labelled.pairs[index, 1]))
            label = torch.from_numpy(labelled.labels[labelled.pairs[index, 0]]).long().to(device)[None]
            prediction = upsample(output.logits, label.shape[-2:]).argmax(dim=1)
            confusion.update(prediction, label)
            if continual is not None:
                continual.update(index, prediction, label)
            progress.update(index + 1)
        result = scores(confusion, labelled.class_names, reported_classes(config), len(labelled))
        if continual is not None:  # per round and per shift, first and last round side by side
            result["continual"] = continual.summary(labelled.class_names, reported_classes(config))
        result["pass_seconds"] = time.perf_counter() - started  # updates and predictions, no loading
        online = dataclasses.asdict(config.adapt.online)
        result.update(split=config.eval.split, online=online, config=config_to_dict(config))
        # label-free signals of the online predictions (engine/frame_health.py), and any reset they caused
        result["health"] = {**adapter.health.summary(), "resets_after_frames": adapter.resets,
                            "holds_after_frames": adapter.holds}  # fmt: skip
        if adapter.guard is not None:
            result["health"]["guard_checks"] = adapter.guard.checks
        # the online predictions' temporal estimate, and the source model's on the same frames (reference_estimate)
        result["estimate"] = stream.result()
        result["collapsed"] = bool(result["health"]["collapsed"])
        meta = {"kind": "online", "method": config.adapt.method, "config": config_to_dict(config),
                "class_names": checkpoint.class_names, "source_checkpoint": str(source_checkpoint),
                "online": online, "palette": checkpoint.meta.get("palette")}  # fmt: skip
        result["checkpoint"] = str(save_final(out_dir, model, meta))
        write_json(out_dir / EVAL_FILE, result)
        palette = checkpoint.meta.get("palette") or palette_for(checkpoint.class_names)
        # at the number of frames adapted over; the overlays show the final weights, not the online predictions
        log_evaluation(out_dir, config.log.tensorboard, result, len(labelled), model, labelled, palette)
        return result
