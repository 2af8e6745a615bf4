"""ev2lite: a small, readable reproduction of EfficientNetV2 (Tan & Le, ICML 2021)."""

from .models import EfficientNet, create_model, get_config, list_models
from .weights import from_torchvision, load_weights

__all__ = ["EfficientNet", "create_model", "from_torchvision", "get_config", "list_models", "load_weights"]
