"""The LeNet variant of Multi-MNIST (Sener & Koltun 2018; Gama & Grassi, 000 §3.1 and their code).

Encoder: conv 1->10 (k5), max-pool 2, ReLU; conv 10->20 (k5), dropout, max-pool 2, ReLU; flatten
(320); FC 320->50, ReLU. The 50-d output is the shared representation and the FC layer the last
shared layer. Classification head: FC 50->50, ReLU, dropout, FC 50->10 (logits; cross-entropy on
them equals the reference's NLL on log-softmax). Reconstruction head: FC 50->256, ReLU, dropout,
FC 256->784, reshaped to 28x28.

Dropout is element-wise ``nn.Dropout`` everywhere, as in Gama's ``multi_lenet.py`` (which replaced
Sener & Koltun's hand-written dropout); p = 0 by default, tuned over {0, 0.1, ..., 0.5}.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.models.base import MultiTaskModel

REPRESENTATION_SIZE = 50


class LeNetEncoder(nn.Module):
    """(B, 1, 28, 28) -> (B, 50) shared representation (non-negative, after the final ReLU)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(320, REPRESENTATION_SIZE)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.dropout(self.conv2(x)), 2))
        return F.relu(self.fc(x.flatten(1)))


class LeNetClassifier(nn.Module):
    """(B, in_features) -> (B, classes) logits."""

    def __init__(self, in_features: int = REPRESENTATION_SIZE, dropout: float = 0.0, classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 50)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(50, classes)

    def forward(self, z: Tensor) -> Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(z))))


class LeNetReconstructor(nn.Module):
    """(B, in_features) -> (B, 28, 28) reconstructed (normalised) digit."""

    def __init__(self, in_features: int = REPRESENTATION_SIZE, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 256)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(256, 784)

    def forward(self, z: Tensor) -> Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(z)))).view(-1, 28, 28)


def build_lenet(heads: Mapping[str, nn.Module], *, dropout: float = 0.0) -> MultiTaskModel:
    """The shared LeNet encoder with ``heads``; its FC layer is the last shared layer."""
    encoder = LeNetEncoder(dropout)
    return MultiTaskModel(encoder, heads, last_shared_layer=encoder.fc, representation_size=REPRESENTATION_SIZE)
