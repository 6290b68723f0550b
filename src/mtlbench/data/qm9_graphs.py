"""QM9 graphs for the MPNN: node and edge features, and vectorised batching (no per-molecule Python).

Features of PyTorch Geometric's QM9 (its ``QM9.process``) and of the Nash-MTL example transforms:

- nodes (11): one-hot of H, C, N, O, F; atomic number; aromatic; sp, sp2, sp3; number of bonded H;
- edges (5): one-hot of single, double, triple, aromatic (zero for non-bonded pairs), then the
  interatomic distance in angstrom (``T.Distance(norm=False)``).

``features="pyg"`` reproduces the data the reference runs trained on: PyG parses its SDF with
``sanitize=False``, so aromaticity and hybridisation are never perceived (those four node columns
are zero everywhere, and bonds are in Kekule form: no aromatic bond); see PyG issues #2163 and #8370.
``features="rdkit"`` fills them from RDKit's perception after ``DetermineBonds``.

``graph="complete"`` is the example's ``Complete`` transform: every ordered pair of distinct atoms of
a molecule is an edge (n (n - 1) per molecule, row-major order, no self-loops), with the bond one-hot
of bonded pairs; ``graph="bonded"`` keeps the chemical bonds only (both directions, sorted by
(row, col) as PyG stores them). Complete graphs are built per batch, never cached.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlbench.data.qm9_deps import require_pyg

NODE_FEATURES = 11
EDGE_FEATURES = 5
ATOM_TYPES = (1, 6, 7, 8, 9)  # H, C, N, O, F
FEATURE_SETS = ("pyg", "rdkit")
GRAPH_KINDS = ("complete", "bonded")


def global_bonds(atom_ptr: np.ndarray, bond_ptr: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Bond pairs in global atom indices (B, 2) from per-molecule local pairs."""
    shift = np.repeat(np.asarray(atom_ptr[:-1], dtype=np.int64), np.diff(bond_ptr))
    return np.asarray(bonds, dtype=np.int64) + shift[:, None]


def hydrogen_counts(z: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Number of bonded hydrogen atoms of every atom (PyG's ``num_hs``)."""
    hydrogen = (np.asarray(z) == 1).astype(np.float64)
    n = len(z)
    return np.bincount(pairs[:, 0], weights=hydrogen[pairs[:, 1]], minlength=n) + np.bincount(
        pairs[:, 1], weights=hydrogen[pairs[:, 0]], minlength=n
    )


def node_features(
    z: np.ndarray,
    atom_aromatic: np.ndarray,
    atom_hybrid: np.ndarray,
    pairs: np.ndarray,
    features: str = "pyg",
) -> np.ndarray:
    """(A, 11) float32 node features (see the module docstring)."""
    z = np.asarray(z, dtype=np.int64)
    x = np.zeros((len(z), NODE_FEATURES), dtype=np.float32)
    lookup = np.full(max(ATOM_TYPES) + 1, -1, dtype=np.int64)
    lookup[list(ATOM_TYPES)] = np.arange(len(ATOM_TYPES))
    types = lookup[z]
    if (types < 0).any():
        raise ValueError(f"atomic numbers outside H, C, N, O, F: {sorted(set(z[types < 0].tolist()))}")
    x[np.arange(len(z)), types] = 1.0
    x[:, 5] = z
    if features == "rdkit":
        x[:, 6] = np.asarray(atom_aromatic) > 0
        for column, code in ((7, 1), (8, 2), (9, 3)):
            x[:, column] = np.asarray(atom_hybrid) == code
    elif features != "pyg":
        raise ValueError(f"unknown feature set {features!r}; choose one of {FEATURE_SETS}")
    x[:, 10] = hydrogen_counts(z, pairs)
    return x


def gather_ranges(ptr: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For segments ``ids`` of a CSR pointer: (element indices concatenated, lengths, output offsets)."""
    starts = ptr[ids]
    counts = ptr[ids + 1] - starts
    offsets = np.cumsum(counts) - counts
    index = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts - offsets, counts)
    return index, counts, offsets


def complete_edges(n_nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complete graphs without self-loops of consecutive molecules with ``n_nodes`` atoms each.

    Returns (edge_index (2, sum n (n - 1)) in row-major order, first edge of each node's row).
    """
    n_nodes = np.asarray(n_nodes, dtype=np.int64)
    n_total = int(n_nodes.sum())
    graph = np.repeat(np.arange(len(n_nodes)), n_nodes)
    offsets = (np.cumsum(n_nodes) - n_nodes)[graph]  # per node: first node of its molecule
    degree = n_nodes[graph] - 1
    row_start = np.cumsum(degree) - degree
    row = np.repeat(np.arange(n_total, dtype=np.int64), degree)
    k = np.arange(len(row), dtype=np.int64) - row_start[row]
    local_row = np.arange(n_total, dtype=np.int64) - offsets
    col = offsets[row] + k + (k >= local_row[row])
    return np.stack([row, col]), row_start


class GraphBatcher:
    """Builds PyG batches of QM9 molecules by index, vectorised (numpy: single-threaded, which is
    fastest for these sizes and immune to thread wake-up latency on a busy machine).

    ``x`` (A, 11) and ``pos`` (A, 3) are per atom, ``atom_ptr``/``bond_ptr`` CSR pointers per
    molecule, ``bonds`` (B, 2) local atom pairs and ``bond_code`` (B,) their one-hot position.
    """

    def __init__(
        self,
        x: np.ndarray,
        pos: np.ndarray,
        atom_ptr: np.ndarray,
        bond_ptr: np.ndarray,
        bonds: np.ndarray,
        bond_code: np.ndarray,
        graph: str = "complete",
    ) -> None:
        if graph not in GRAPH_KINDS:
            raise ValueError(f"unknown graph kind {graph!r}; choose one of {GRAPH_KINDS}")
        require_pyg()
        self.graph = graph
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.pos = np.ascontiguousarray(pos, dtype=np.float32)
        self.atom_ptr = np.asarray(atom_ptr, dtype=np.int64)
        self.bond_ptr = np.asarray(bond_ptr, dtype=np.int64)
        self.bonds = np.asarray(bonds, dtype=np.int64)
        self.bond_code = np.asarray(bond_code, dtype=np.int64)

    def __call__(self, ids: Tensor | np.ndarray | list[int]) -> Any:
        """A ``torch_geometric.data.Batch`` with x, edge_index, edge_attr, batch and ptr."""
        from torch_geometric.data import Batch as PygBatch

        ids = ids.numpy() if isinstance(ids, Tensor) else np.asarray(ids)
        ids = ids.astype(np.int64, copy=False)
        node_index, n_nodes, node_offsets = gather_ranges(self.atom_ptr, ids)
        n_total = len(node_index)
        x, pos = self.x[node_index], self.pos[node_index]
        graph = np.repeat(np.arange(len(ids), dtype=np.int64), n_nodes)
        bond_index, n_bonds, _ = gather_ranges(self.bond_ptr, ids)
        local = self.bonds[bond_index]
        code = np.tile(self.bond_code[bond_index], 2)
        # directed bonds in both directions, local (lu, lv) and global (u, v) indices
        lu = np.concatenate([local[:, 0], local[:, 1]])
        lv = np.concatenate([local[:, 1], local[:, 0]])
        shift = np.tile(np.repeat(node_offsets, n_bonds), 2)
        u, v = lu + shift, lv + shift
        if self.graph == "complete":
            edge_index, row_start = complete_edges(n_nodes)
            edge_attr = np.zeros((edge_index.shape[1], EDGE_FEATURES), dtype=np.float32)
            edge_attr[row_start[u] + lv - (lv > lu), code] = 1.0
        else:
            order = np.argsort(u * max(n_total, 1) + v, kind="stable")
            edge_index = np.stack([u[order], v[order]])
            edge_attr = np.zeros((edge_index.shape[1], EDGE_FEATURES), dtype=np.float32)
            edge_attr[np.arange(len(order)), code[order]] = 1.0
        row, col = edge_index
        edge_attr[:, 4] = np.sqrt(((pos[col] - pos[row]) ** 2).sum(axis=1))
        ptr = np.concatenate([[0], np.cumsum(n_nodes)]).astype(np.int64)
        return PygBatch(
            x=torch.from_numpy(x),
            edge_index=torch.from_numpy(edge_index),
            edge_attr=torch.from_numpy(edge_attr),
            batch=torch.from_numpy(graph),
            ptr=torch.from_numpy(ptr),
        )
