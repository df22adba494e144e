"""The neighbour view: what the images most like a frame say its class is, asking only **other** videos.

A run that trained on a wrongly labelled video learned that video's label from the video itself:
its own view of those frames, and its training dynamics, vouch for the wrong label. Its
penultimate features still place the frames near the images they look like, so a vote among a
frame's nearest neighbours in that space, taken only from frames of other groups (a video cannot
vouch for itself), is a view of the frame that never saw its label: the idea of SimiFeat (Zhu et
al., ICML 2022) and deep k-NN (Bahri et al., ICML 2020).

Each frame asks the ``k`` nearest **other videos**, one vote each: a video's distance is that of
its frame most like this one (cosine similarity of the embeddings), its vote that frame's given
label. One vote per video, not per frame: at 200 ms a video is hundreds of near-copies, and one
other video of the same scene labelled wrongly would otherwise fill every neighbour place.

A frame asks no more videos than its label has others: ``min(k, n_c - 1)`` (at least one), ``n_c``
the videos whose frames mostly carry the frame's label ``c``. With ``k`` above that, the class
cannot fill the places even where every neighbour is right: a class of four videos has at most
three votes out of ten, and a frame of it sees whichever nearby class fills the other seven (on 24
training videos, four per class, the uncapped vote called 11 and 22 of the 24 videos wrong on seeds
0 and 1, with no video planted; docs/audit.md). Confident learning's thresholds are per class, so a
class asked fewer neighbours is judged against its own.

The votes are shares of the places asked, smoothed by one pseudo-count spread over the classes, so that a
log-probability is always finite. Brute force in chunks on the audit's device: N x N x D
multiply-adds (2 M frames x 1280 features: ~5 PFLOP, minutes on a GPU; docs/audit.md), memory one
chunk of similarities and of per-video maxima (at most ``_CHUNK_ELEMENTS`` each).
"""

from __future__ import annotations

import numpy as np
import torch

K_NEIGHBOURS = 10
_CHUNK = 1024  # rows of similarities at a time, fewer where the data is large:
_CHUNK_ELEMENTS = 1 << 27  # at most this many similarities (512 MB of float32) per chunk


def neighbour_probs(
    embeddings: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    num_classes: int,
    k: int = K_NEIGHBOURS,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """(N, K) class probabilities for each row from the ``k`` nearest other groups (one vote each: the given
    label, an id or -1 for none, of the group's row most like this one), fewer for a row whose label has
    fewer other groups (``_asks``). ``groups``: any sortable ids.

    >>> e = np.array([[1, 0], [1, .1], [0, 1], [.1, 1]], dtype=np.float32)
    >>> neighbour_probs(e, np.array([0, 0, 1, 1]), np.array(["a", "b", "c", "d"]), num_classes=2, k=1).round(2)
    array([[0.75, 0.25],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.25, 0.75]])
    """
    n = len(labels)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    g = int(codes.max()) + 1 if n else 0
    dev = torch.device(device)
    x = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings, dtype=np.float32), device=dev), dim=1)
    group = torch.as_tensor(codes.astype(np.int64), device=dev)
    label = torch.as_tensor(np.array(labels, dtype=np.int64), device=dev)
    labelled = label >= 0
    # each labelled row's (group, class) cell: a group's best match per class, then its best class
    cell = group[labelled] * num_classes + label[labelled]
    voters = x[labelled].T.contiguous()  # once, not per chunk: at 2 M frames it is the size of all the features
    votes = torch.zeros((n, num_classes), dtype=torch.float64, device=dev)
    k = min(k, g - 1)
    asks = _asks(codes, np.asarray(labels, dtype=np.int64), num_classes, k)
    chunk = max(1, min(_CHUNK, _CHUNK_ELEMENTS // max(int(labelled.sum()), g * num_classes, 1)))
    for start in range(0, n if k > 0 else 0, chunk):
        stop = min(start + chunk, n)
        sim = x[start:stop] @ voters
        best = torch.full((stop - start, g * num_classes), -torch.inf, device=dev)
        best.scatter_reduce_(1, cell.expand(stop - start, -1), sim, reduce="amax")
        per_group, vote = best.view(stop - start, g, num_classes).max(dim=2)
        per_group[
            torch.arange(stop - start, device=dev), group[start:stop]
        ] = -torch.inf  # a video never votes for itself
        top = per_group.topk(k, dim=1)
        valid = torch.isfinite(top.values) & (torch.arange(k, device=dev) < asks[start:stop, None].to(dev))
        votes[start:stop].scatter_add_(1, vote.gather(1, top.indices), valid.to(torch.float64))
    probs = (votes + 1.0 / num_classes) / (votes.sum(dim=1, keepdim=True) + 1.0)
    return probs.cpu().numpy()


def _asks(codes: np.ndarray, labels: np.ndarray, num_classes: int, k: int) -> torch.Tensor:
    """How many other groups each row asks: ``k``, or its label's count of groups less one where that is
    fewer (at least one); a group counts for the label most of its labelled rows carry (ties: the lower id).

    >>> _asks(np.array([0, 0, 1, 2, 3]), np.array([0, 0, 0, 1, -1]), 2, 3).tolist()
    [1, 1, 1, 1, 3]
    """
    labelled = labels >= 0
    g = int(codes.max()) + 1 if len(codes) else 0
    counts = np.zeros((g, num_classes), dtype=np.int64)
    np.add.at(counts, (codes[labelled], labels[labelled]), 1)
    has = counts.sum(axis=1) > 0
    per_class = np.bincount(counts[has].argmax(axis=1), minlength=num_classes)
    own = np.where(labelled, per_class[np.where(labelled, labels, 0)] - 1, k)
    return torch.as_tensor(np.clip(own, 1, max(k, 1)), dtype=torch.int64)
