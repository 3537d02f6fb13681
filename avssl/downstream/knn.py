"""k-nearest-neighbour classification on embeddings (cosine similarity, weighted vote).

Vote weights are exp(similarity / temperature) over the k most similar training embeddings,
the usual self-supervised monitor (Wu et al. 2018). Written with torch.topk because scikit-learn's
KNeighborsClassifier has no temperature-weighted cosine vote.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["knn_predict", "knn_accuracy"]


def knn_predict(train_emb, train_labels, query_emb, k: int = 20, temperature: float = 0.07,
                num_classes: int | None = None, chunk_size: int = 4096) -> np.ndarray:
    """Class scores [Q, C] of each query: sum over its k nearest training rows (cosine) of
    exp(sim / temperature), accumulated on the neighbours' classes."""
    train = F.normalize(torch.as_tensor(np.asarray(train_emb), dtype=torch.float32), dim=1)
    query = F.normalize(torch.as_tensor(np.asarray(query_emb), dtype=torch.float32), dim=1)
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    if train.shape[0] != labels.shape[0]:
        raise ValueError(f"{train.shape[0]} training embeddings but {labels.shape[0]} labels")
    if train.shape[1] != query.shape[1]:
        raise ValueError(f"embedding sizes differ: train {train.shape[1]}, query {query.shape[1]}")
    c = int(num_classes or int(labels.max()) + 1)
    k = min(int(k), train.shape[0])
    scores = torch.zeros(query.shape[0], c)
    for s in range(0, query.shape[0], chunk_size):  # bounded memory: [chunk, N] similarities at a time
        sim = query[s:s + chunk_size] @ train.T
        top, idx = sim.topk(k, dim=1)
        scores[s:s + chunk_size].scatter_add_(1, labels[idx], (top / temperature).exp())
    return scores.numpy()


def knn_accuracy(train_emb, train_labels, test_emb, test_labels, k: int = 20, temperature: float = 0.07,
                 num_classes: int | None = None) -> float:
    scores = knn_predict(train_emb, train_labels, test_emb, k, temperature, num_classes)
    return float((scores.argmax(1) == np.asarray(test_labels)).mean())
