"""Import shim for LibMTL 1.1.5 inside ``bench/vs_peers.py`` only (torchvision does not exist here).

LibMTL's package ``__init__`` imports ``LibMTL.model.resnet``, which imports
``torchvision.models.utils.load_state_dict_from_url``; the benchmark never builds those ResNets.
This directory is put on ``sys.path`` by the benchmark's worker process, never installed.
"""
