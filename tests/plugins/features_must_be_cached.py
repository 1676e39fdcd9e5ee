"""A plugin that makes computing backbone features an error: a run that lists it must read them from the cache."""
import benchkit.training.feature_cache as feature_cache


def _refuse(*args, **kwargs):
    raise RuntimeError("backbone features were computed, not read from the feature cache")


feature_cache.compute_features = _refuse
