"""Few-shot linear evaluation as in the paper and big_vision: frozen pre-logit features, closed-form ridge
regression to {-1, 1} one-hot targets, k examples per class, averaged over a few seeds.

The solver is pure (tensors in, accuracies out); :func:`fewshot_metrics` wraps it with the metric names
``fewshot/<dataset>_<k>shot``.
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.metric_names import fewshot_key

DEFAULT_SHOTS = (1, 5, 10, 25)


def ridge_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2_reg: float):
    """Fit ``argmin_W |X W - T|^2 + l2 |W|^2`` with T the {-1, 1} one-hot targets on standardised features.

    The bias is left unregularised (targets and features are centred); the smaller of the primal (D x D) and
    dual (N x N) systems is solved. Returns a function that maps features to class scores.
    """
    x = x.double()
    mean, std = x.mean(0, keepdim=True), x.std(0, unbiased=False, keepdim=True) + 1e-5
    xs = (x - mean) / std
    targets = 2.0 * torch.nn.functional.one_hot(y.long(), num_classes).double() - 1.0
    t_mean = targets.mean(0, keepdim=True)
    n, d = xs.shape
    if n >= d:
        w = torch.linalg.solve(xs.T @ xs + l2_reg * torch.eye(d, dtype=xs.dtype), xs.T @ (targets - t_mean))
    else:
        w = xs.T @ torch.linalg.solve(xs @ xs.T + l2_reg * torch.eye(n, dtype=xs.dtype), targets - t_mean)

    def scores(features: torch.Tensor) -> torch.Tensor:
        return ((features.double() - mean) / std) @ w + t_mean

    return scores


def sample_shots(labels: np.ndarray, shots: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` random examples of every class (fewer where a class has fewer)."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in range(num_classes)]
    return np.concatenate(picks)


def fewshot_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                     num_classes: int, shots=DEFAULT_SHOTS, seeds: int = 3, l2_reg: float = 1024.0) -> dict[int, float]:
    """Mean test accuracy over ``seeds`` draws of k shots per class from ``train``, for each k in ``shots``."""
    labels = train_y.cpu().numpy()
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"few-shot pool has no example of class(es) {missing[:10]}; enlarge eval.fewshot_train_size")
    results = {}
    for k in shots:
        accuracies = []
        for seed in range(seeds):
            idx = torch.from_numpy(sample_shots(labels, k, num_classes, seed))
            predict = ridge_classifier(train_x[idx], train_y[idx], num_classes, l2_reg)
            accuracies.append((predict(test_x).argmax(1) == test_y.long()).double().mean().item())
        results[k] = float(np.mean(accuracies))
    return results


def fewshot_metrics(dataset: str, accuracies: dict[int, float]) -> dict[str, float]:
    return {fewshot_key(dataset, k): acc for k, acc in accuracies.items()}
