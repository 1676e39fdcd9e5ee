"""Configuration: the schema of experiment files (``schema``), reading a file with its bases and overrides
(``files``, ``validation``) and expanding an experiment into runs (``expansion``).

The schema's models are importable from here: ``from benchkit.config import RunSpec``.
"""

from benchkit.config.schema import (MONITORS, BackboneConfig, BootstrapConfig, BuildInputs, DataConfig,
                                    EarlyStoppingConfig, EmaConfig, EnsembleConfig, EvaluationConfig,
                                    ExperimentConfig, FreezeConfig, HeadConfig, MlflowTrackingConfig, ModelConfig,
                                    OptimizerConfig, ResourcesConfig, RunSpec, SchedulerConfig, SyntheticConfig,
                                    TrackingConfig, TrainConfig, dump_yaml)

__all__ = ["MONITORS", "BackboneConfig", "BootstrapConfig", "BuildInputs", "DataConfig", "EarlyStoppingConfig",
           "EmaConfig", "EnsembleConfig", "EvaluationConfig", "ExperimentConfig", "FreezeConfig", "HeadConfig",
           "MlflowTrackingConfig", "ModelConfig", "OptimizerConfig", "ResourcesConfig", "RunSpec", "SchedulerConfig",
           "SyntheticConfig", "TrackingConfig", "TrainConfig", "dump_yaml"]
