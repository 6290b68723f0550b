"""Edge detection odsF: our Python implementation of the SEISM / BSDS boundary protocol.

The official 002 / MTI-Net / InvPT number comes from the MATLAB SEISM package (jponttuset/seism;
MTL-PyTorch ``evaluation/eval_edge.py``; InvPT README). The protocol, as implemented here:

1. the edge probability is quantised as the saved 8-bit PNG (round(255 p) / 255);
2. for each threshold t (SEISM's HED parameters: 0.01, 0.02, ..., 0.99) the map ``p >= t`` is thinned
   (MATLAB ``bwmorph(..., 'thin', inf)``, the two-subiteration algorithm of Guo & Hall 1989 as given by
   Lam, Lee & Suen 1992; implemented below with a 256-entry lookup table);
3. thinned prediction pixels are matched one to one to ground-truth boundary pixels at Euclidean
   distance <= maxDist * image diagonal (0.011 NYUD, 0.0075 PASCAL), minimising BSDS
   ``correspondPixels``'s cost (distance of each match + outlierCost = 100 maxDist per unmatched pixel):
   exactly, with ``scipy.optimize.linear_sum_assignment`` on each connected component of the
   candidate graph (a component larger than ``max_component`` falls back to a maximum-cardinality
   matching, ``scipy.sparse.csgraph.maximum_bipartite_matching``: same counts unless an augmenting path
   is longer than ~200 pixels);
4. matched and total pixels are summed over the split per threshold (SEISM ``gather_measure.m``):
   R = sum cntR / sum sumR, P = sum cntP / sum sumP, F = 2PR / (P + R) (0 where P + R = 0);
5. odsF = the max of F over thresholds (``general_ods.m``), in percent.

Differences from SEISM are listed in docs/fidelity.md (integer-weighted CSA with a sparse outlier graph
there; exact assignment here; fewer thresholds at cpu scale).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, maximum_bipartite_matching
from scipy.spatial import cKDTree
from torch import Tensor

#: maxDist as a fraction of the image diagonal (REFERENCE-DATA section 1e)
MAX_DIST = {"nyud": 0.011, "pascal_context": 0.0075}
SEISM_THRESHOLDS = 99
IGNORE = 255
OUTLIER_COST = 100.0

# neighbours x1..x8 of Lam, Lee & Suen: E, NE, N, NW, W, SW, S, SE as (row, column) offsets
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two subiterations, indexed by sum_i x_i 2^(i-1)."""
    first = np.zeros(256, dtype=bool)
    second = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [(code >> i) & 1 for i in range(8)]  # x[0] = x1 ... x[7] = x8
        x9 = [*x, x[0]]
        crossings = sum(1 for i in range(4) if x9[2 * i] == 0 and (x9[2 * i + 1] or x9[2 * i + 2]))
        n1 = sum(1 for k in range(4) if x9[2 * k] or x9[2 * k + 1])
        n2 = sum(1 for k in range(4) if x9[2 * k + 1] or x9[2 * k + 2])
        g12 = crossings == 1 and 2 <= min(n1, n2) <= 3
        x1, x2, x3, x4, x5, x6, x7, x8 = x
        first[code] = g12 and ((x2 or x3 or not x8) and x1) == 0
        second[code] = g12 and ((x6 or x7 or not x4) and x5) == 0
    return first, second


_TABLES = _thinning_tables()


def thin(image: np.ndarray) -> np.ndarray:
    """Thin a binary map to one-pixel-wide curves until stable (MATLAB ``bwmorph(bw, 'thin', inf)``).

    Each subiteration deletes, at once, every foreground pixel whose neighbourhood code is in its table.
    A pixel's code changes only when a neighbour is deleted, so each table re-examines only the neighbours
    of the pixels deleted since it last ran (all foreground pixels the first time): the same result as
    re-examining every pixel, in time proportional to the deletions."""
    padded = np.ascontiguousarray(np.pad(np.asarray(image, dtype=bool), 1))  # .mat arrays are Fortran-ordered
    width = padded.shape[1]
    flat = padded.reshape(-1)  # a view of the C-ordered copy
    offsets = np.array([dr * width + dc for dr, dc in _NEIGHBOURS], dtype=np.int64)
    everything = np.flatnonzero(flat)
    pending = [[everything], [everything]]  # per table: pixels whose code may have changed since it last ran
    slot = np.zeros(flat.size, dtype=np.int64)  # scratch for removing repeated candidates without sorting
    idle = 0
    while idle < 2:
        for k, table in enumerate(_TABLES):
            candidates = np.concatenate(pending[k])
            candidates = candidates[flat[candidates]]
            slot[candidates] = np.arange(len(candidates))
            candidates = candidates[slot[candidates] == np.arange(len(candidates))]
            pending[k] = []
            code = np.zeros(len(candidates), dtype=np.int64)
            for bit, offset in enumerate(offsets):
                code |= flat[candidates + offset].astype(np.int64) << bit
            deleted = candidates[table[code]]
            if len(deleted) == 0:
                idle += 1
                if idle == 2:
                    break
                continue
            idle = 0
            flat[deleted] = False
            touched = (deleted[:, None] + offsets[None, :]).reshape(-1)
            pending[0].append(touched)
            pending[1].append(touched)
    return flat.reshape(padded.shape)[1:-1, 1:-1].copy()


def match_count(prediction: np.ndarray, truth: np.ndarray, max_dist: float, *, max_component: int = 3000) -> int:
    """Number of one-to-one matches of boundary pixels at distance <= ``max_dist`` x diagonal (BSDS cost)."""
    h, w = truth.shape
    radius = max_dist * math.hypot(h, w)
    p_pixels = np.argwhere(prediction)
    g_pixels = np.argwhere(truth)
    if len(p_pixels) == 0 or len(g_pixels) == 0:
        return 0
    pairs = cKDTree(p_pixels).sparse_distance_matrix(cKDTree(g_pixels), radius, output_type="coo_matrix")
    # sparse_distance_matrix drops exact-zero distances: add coincident pixels back
    g_index = np.full(h * w, -1, dtype=np.int64)
    g_index[g_pixels[:, 0] * w + g_pixels[:, 1]] = np.arange(len(g_pixels))
    same = g_index[p_pixels[:, 0] * w + p_pixels[:, 1]]
    hit = same >= 0
    rows_a = np.concatenate([pairs.row, np.flatnonzero(hit)])
    cols_a = np.concatenate([pairs.col, same[hit]])
    dist_a = np.concatenate([pairs.data, np.zeros(int(hit.sum()))])
    if len(rows_a) == 0:
        return 0
    n_p, n_g = len(p_pixels), len(g_pixels)
    graph = coo_matrix((np.ones(len(rows_a)), (rows_a, cols_a + n_p)), shape=(n_p + n_g, n_p + n_g))
    _, component = connected_components(graph, directed=False)
    outlier = OUTLIER_COST * radius
    total = 0
    edge_component = component[rows_a]
    order = np.argsort(edge_component, kind="stable")
    boundaries = np.flatnonzero(np.diff(edge_component[order])) + 1
    for group in np.split(order, boundaries):
        r, c, d = rows_a[group], cols_a[group], dist_a[group]
        r_ids, r_local = np.unique(r, return_inverse=True)
        c_ids, c_local = np.unique(c, return_inverse=True)
        if max(len(r_ids), len(c_ids)) > max_component:
            matrix = coo_matrix((np.ones(len(r)), (r_local, c_local)), shape=(len(r_ids), len(c_ids))).tocsr()
            total += int((maximum_bipartite_matching(matrix, perm_type="column") >= 0).sum())
            continue
        # a pair that cannot match costs what leaving both pixels unmatched costs (2 outliers)
        cost = np.full((len(r_ids), len(c_ids)), 2.0 * outlier)
        np.minimum.at(cost, (r_local, c_local), d)
        chosen_r, chosen_c = linear_sum_assignment(cost)
        total += int((cost[chosen_r, chosen_c] <= radius).sum())
    return total


def edge_thresholds(n: int = SEISM_THRESHOLDS) -> np.ndarray:
    """n equally spaced thresholds strictly inside (0, 1): n = 99 gives SEISM's 0.01, ..., 0.99."""
    return np.arange(1, n + 1) / (n + 1)


class EdgeODS:
    """Dataset-level odsF (percent). ``output`` = logits (B,1,H,W) (probability = sigmoid);
    ``target`` (B,1,H,W) boundary map (1 = boundary; other values, 255 included, count as non-boundary)."""

    def __init__(self, max_dist: float, thresholds: int = SEISM_THRESHOLDS, *, quantise: bool = True) -> None:
        self.max_dist = max_dist
        self.thresholds = edge_thresholds(thresholds)
        self.quantise = quantise
        k = len(self.thresholds)
        self.cnt_r = np.zeros(k, dtype=np.int64)
        self.sum_r = np.zeros(k, dtype=np.int64)
        self.cnt_p = np.zeros(k, dtype=np.int64)
        self.sum_p = np.zeros(k, dtype=np.int64)

    def update_probabilities(self, probability: np.ndarray, truth: np.ndarray) -> None:
        """One image: (H,W) probabilities in [0, 1] and (H,W) boolean boundary."""
        if self.quantise:
            probability = np.round(probability * 255.0) / 255.0
        truth = np.asarray(truth, dtype=bool)
        n_truth = int(truth.sum())
        for k, t in enumerate(self.thresholds):
            predicted = thin(probability >= t)
            matched = match_count(predicted, truth, self.max_dist)
            self.cnt_r[k] += matched
            self.sum_r[k] += n_truth
            self.cnt_p[k] += matched
            self.sum_p[k] += int(predicted.sum())

    def update(self, output: Tensor, target: Tensor) -> None:
        """A batch; each image is cropped to the rows and columns whose label is not all 255 (padding), as
        SEISM reads predictions saved at the original image size."""
        probability = torch.sigmoid(output.detach().double()).cpu().numpy()
        labels = target.cpu().numpy()
        for b in range(probability.shape[0]):
            p = probability[b].reshape(probability.shape[-2:])
            t = labels[b].reshape(labels.shape[-2:])
            inside = t != IGNORE
            rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
            if len(rows) == 0:
                continue
            window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            self.update_probabilities(p[window], t[window] == 1)

    def f_scores(self) -> np.ndarray:
        recall = self.cnt_r / np.maximum(self.sum_r, 1)
        precision = self.cnt_p / np.maximum(self.sum_p, 1)
        denominator = precision + recall
        return np.where(denominator > 0, 2 * precision * recall / np.where(denominator > 0, denominator, 1), 0.0)

    def compute(self) -> dict[str, float]:
        if not self.sum_r.any() and not self.sum_p.any():
            return {"odsf": math.nan}
        return {"odsf": 100.0 * float(self.f_scores().max())}
