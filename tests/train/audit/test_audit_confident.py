import numpy as np
import pytest

from pawpipe.train.audit.confident import find_label_issues

# Six samples, two classes; sample 2 is labelled 0 but looks like 1.
PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.4, 0.6]])
LABELS = np.array([0, 0, 0, 1, 1, 1])


def test_every_step_by_hand():
    r = find_label_issues(PROBS, LABELS)
    # t0 = (0.9 + 0.8 + 0.2) / 3, t1 = (0.9 + 0.7 + 0.6) / 3
    assert r.thresholds == pytest.approx([1.9 / 3, 2.2 / 3])
    # x0, x1 confident in 0; x2 in 1 (0.8 >= 0.733); x3 in 1; x4 (0.7) and x5 (0.6) in none
    assert r.confident_class.tolist() == [0, 0, 1, 1, -1, -1]
    assert r.confident_joint.tolist() == [[2, 1], [0, 1]]
    # rows rescaled to 3 samples each: [[2, 1], [0, 3]], over 6
    assert r.joint == pytest.approx(np.array([[2, 1], [0, 3]]) / 6)
    assert r.noise_matrix == pytest.approx(np.array([[1.0, 0.25], [0.0, 0.75]]))
    assert r.noise_rate == pytest.approx([1 / 3, 0.0])
    # prune by noise rate: round(6 * 1/6) = 1 sample labelled 0, the one with the largest p1 - p0
    assert r.issues.tolist() == [False, False, True, False, False, False]
    assert r.suggested[2] == 1 and r.ranked_issues().tolist() == [2]
    assert r.self_confidence == pytest.approx([0.9, 0.8, 0.2, 0.9, 0.7, 0.6])


def test_ranked_by_self_confidence():
    probs = np.array([[0.9, 0.1], [0.95, 0.05], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.25, 0.75], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    r = find_label_issues(probs, labels)
    # t = (0.5375, 0.75); C = [[2, 2], [0, 2]]; Q[0][1] = 2/7, so round(7 * 2/7) = 2 samples labelled 0 pruned
    assert r.confident_joint.tolist() == [[2, 2], [0, 2]]
    assert r.issues.tolist() == [False, False, True, True, False, False, False]
    assert r.ranked_issues().tolist() == [3, 2]  # p(given) 0.1 before 0.3


def test_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match="expected 6 ids in 0..1"):
        find_label_issues(PROBS, np.array([0, 0, 0, 1, 1, 2]))
