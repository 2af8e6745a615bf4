"""ev2lite: a small, readable reproduction of EfficientNetV2 (Tan & Le, ICML 2021).

``ev2lite.create_model``, ``list_models``, ... are imported on first use (PEP 562), so that
tools which need none of the models (the main job writing its HTML index, the claims table)
start without loading torch.
"""

from importlib import import_module

_EXPORTS = {"EfficientNet": "models", "create_model": "models", "get_config": "models",
            "list_models": "models", "from_torchvision": "weights", "load_weights": "weights",
            "to_torchvision": "weights"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'ev2lite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
