"""See ``bench/peers/shims/torchvision/__init__.py``."""
