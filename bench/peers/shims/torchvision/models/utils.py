"""See ``bench/peers/shims/torchvision/__init__.py``: LibMTL imports this name at import time only."""


def load_state_dict_from_url(*args, **kwargs):
    raise RuntimeError("torchvision is not available: pretrained ResNet weights cannot be loaded in the benchmark")
