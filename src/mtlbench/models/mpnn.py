"""The message-passing network of the QM9 problem (Gilmer et al. 2017, as in PyG's ``qm9_nn_conv``
example, used by Nash-MTL and by Gama & Grassi 000 section 3.4; ``shared/REFERENCE.md``, QM9).

Encoder, with hidden size 64:

    h0 = ReLU(Linear(11, 64)(x))
    3 times:  m = ReLU(NNConv(h, edge_index, e))          # edge network: Linear(5, 128) - ReLU -
              h, s = GRU(m, s)                            #   Linear(128, 64 * 64), mean aggregation
    g = Set2Set(h, 3 processing steps)                    # (B, 128)
    z = ReLU(Linear(128, 64)(g))                          # the shared representation

NNConv (Gilmer et al. eq. "edge network"): h_i' = W_root h_i + b + mean_{j in N(i)} h_j^T A(e_ij),
with A(e) the 64 x 64 matrix produced by the edge network. The GRU's hidden state s starts at h0 and
the same NNConv and GRU are applied at every step (weights shared across steps). Heads: one
Linear(64, 1) per task.

Speed: the edge network's input e does not change between the three steps, so A(e) is the same at
each of them. PyG's NNConv recomputes it at every call; with ``edge_network_once=True`` (default) the
encoder evaluates it once per forward and runs the same message passing (x_j^T A(e_ij), mean at the
target node i = edge_index[1], plus the root term and bias of the same NNConv module). The result
is the same function with the same parameters (equal up to float rounding; tested), at about a
third of the edge-network cost, which dominates on complete graphs (E x 128 x 4096 multiply-adds).
``edge_network_once=False`` calls PyG's NNConv literally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.data.qm9_deps import require_pyg
from mtlbench.models.base import MultiTaskModel


class MPNNEncoder(nn.Module):
    """Graphs (a PyG batch with x, edge_index, edge_attr, batch) -> (num_graphs, ``dim``) features."""

    def __init__(
        self,
        node_features: int = 11,
        edge_features: int = 5,
        dim: int = 64,
        steps: int = 3,
        set2set_steps: int = 3,
        *,
        edge_network_once: bool = True,
    ) -> None:
        super().__init__()
        require_pyg()
        from torch_geometric.nn import NNConv, Set2Set

        self.dim = dim
        self.steps = steps
        self.edge_network_once = edge_network_once
        self.lin0 = nn.Linear(node_features, dim)
        edge_network = nn.Sequential(nn.Linear(edge_features, 128), nn.ReLU(), nn.Linear(128, dim * dim))
        self.conv = NNConv(dim, dim, edge_network, aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * dim, dim)

    def _message_passing(self, x: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
        """NNConv with precomputed edge matrices ``weight`` (E, dim, dim): mean of x_j^T A_ij at i."""
        from torch_geometric.utils import scatter

        source, target = edge_index
        messages = torch.bmm(x[source].unsqueeze(1), weight).squeeze(1)
        out = scatter(messages, target, dim=0, dim_size=x.size(0), reduce="mean")
        return out + self.conv.lin(x) + self.conv.bias

    def forward(self, data: Any) -> Tensor:
        out = F.relu(self.lin0(data.x))
        hidden = out.unsqueeze(0)
        if self.edge_network_once:
            weight = self.conv.nn(data.edge_attr).view(-1, self.dim, self.dim)
        for _ in range(self.steps):
            if self.edge_network_once:
                convolved = self._message_passing(out, data.edge_index, weight)
            else:
                convolved = self.conv(out, data.edge_index, data.edge_attr)
            message = F.relu(convolved)
            out, hidden = self.gru(message.unsqueeze(0), hidden)
            out = out.squeeze(0)
        pooled = self.set2set(out, data.batch, dim_size=data.num_graphs)
        return F.relu(self.lin1(pooled))


def make_head(in_features: int = 64, dropout: float = 0.0) -> nn.Module:
    """A Linear(in, 1) head (preceded by dropout when ``dropout`` > 0; the paper uses none)."""
    linear = nn.Linear(in_features, 1)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear


def build_mpnn(
    tasks: Sequence[str], *, dropout: float = 0.0, dim: int = 64, edge_network_once: bool = True
) -> MultiTaskModel:
    """The shared MPNN encoder and one Linear(64, 1) head per task."""
    encoder = MPNNEncoder(dim=dim, edge_network_once=edge_network_once)
    heads = {name: make_head(dim, dropout) for name in tasks}
    return MultiTaskModel(encoder, heads, last_shared_layer=encoder.lin1, representation_size=dim)
