"""Few-shot linear evaluation: closed-form ridge regression to {-1, 1} targets on frozen features."""

import numpy as np
import pytest
import torch

from pipelines.train.fewshot import fewshot_accuracy, fewshot_metrics, ridge_classifier, sample_shots


def _clusters(num_classes=10, per_class=60, dim=32, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * 3
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_linearly_separable_features_reach_100_percent():
    train_x, train_y = _clusters(seed=0)
    test_x, test_y = _clusters(seed=0, per_class=30)
    test_x = test_x + 0.05 * torch.randn_like(test_x)
    accuracies = fewshot_accuracy(train_x, train_y, test_x, test_y, num_classes=10, shots=(1, 5, 10, 25), seeds=3)
    assert accuracies == {1: 1.0, 5: 1.0, 10: 1.0, 25: 1.0}


def test_random_labels_stay_near_chance():
    x, _ = _clusters(seed=1)
    y = torch.from_numpy(np.random.default_rng(0).integers(0, 10, len(x)))
    accuracies = fewshot_accuracy(x[:300], y[:300], x[300:], y[300:], num_classes=10, shots=(5,), seeds=3)
    assert accuracies[5] < 0.3


@pytest.mark.parametrize("n, l2", [(40, 1.0), (400, 1024.0)])  # dual (N < D) and primal (N >= D) systems
def test_ridge_matches_sklearn(n, l2):
    linear_model = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 64, generator=g), torch.randint(0, 5, (n,), generator=g)
    test = torch.randn(50, 64, generator=g)
    scores = ridge_classifier(x, y, num_classes=5, l2_reg=l2)(test)
    mean, std = x.double().mean(0), x.double().std(0, unbiased=False) + 1e-5
    targets = 2.0 * np.eye(5)[y.numpy()] - 1.0
    peer = linear_model.Ridge(alpha=l2, fit_intercept=True).fit(((x.double() - mean) / std).numpy(), targets)
    expected = peer.predict(((test.double() - mean) / std).numpy())
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-6, atol=1e-8)


def test_shots_are_per_class_and_seeded():
    labels = np.repeat(np.arange(4), 20)
    picks = sample_shots(labels, 5, 4, seed=0)
    assert np.bincount(labels[picks]).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(picks, sample_shots(labels, 5, 4, seed=0))
    assert not np.array_equal(picks, sample_shots(labels, 5, 4, seed=1))
    assert len(sample_shots(labels, 50, 4, seed=0)) == 80  # a class with fewer examples gives all it has


def test_missing_class_in_pool_is_an_error():
    x, y = _clusters(num_classes=3)
    with pytest.raises(ValueError, match="class"):
        fewshot_accuracy(x, y, x, y, num_classes=4, shots=(1,), seeds=1)


def test_metric_names():
    expected = {"fewshot/cifar10_1shot": 0.5, "fewshot/cifar10_25shot": 0.9}
    assert fewshot_metrics("cifar10", {1: 0.5, 25: 0.9}) == expected
