"""The run's settings: the schema (schema.py: nested dataclasses whose defaults are the synthetic demo's), the rule
each field's values follow (ranges.py), the checks across fields (checks.py), `--set` and YAML overrides
(overrides.py), config files and the packaged ones (files.py), and the options of individual methods and of online
adaptation (methods.py). Everything else imports what it needs from here."""

from stpl.config.schema import (
    ARCHITECTURE,
    DATASET_NAMES,
    LOCAL_PATH,
    METHOD_NAMES,
    NOT_A_RESULT,
    TARGET_ONLY,
    AdaptConfig,
    CamVidConfig,
    CityscapesSeqConfig,
    Config,
    DataConfig,
    FlowConfig,
    ModelConfig,
    build_config,
    config_to_dict,
    config_to_yaml,
    marked_keys,
    with_overrides,
)

__all__ = [
    "ARCHITECTURE", "DATASET_NAMES", "LOCAL_PATH", "METHOD_NAMES", "NOT_A_RESULT", "TARGET_ONLY", "AdaptConfig",
    "CamVidConfig", "CityscapesSeqConfig", "Config", "DataConfig", "FlowConfig", "ModelConfig", "build_config",
    "config_to_dict", "config_to_yaml", "marked_keys", "with_overrides",
]  # fmt: skip
