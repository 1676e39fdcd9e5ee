"""Training: the engine, batch transforms and augmentation, and the feature cache for frozen backbones."""
