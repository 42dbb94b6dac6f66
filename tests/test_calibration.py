import pytest
import torch

from augbench.calibration import expected_calibration_error


def test_confidence_that_matches_accuracy_in_every_bin_has_no_error():
    # Four predictions at 0.75, three of them right; twenty at 0.35, seven right.
    confidence = [0.75] * 4 + [0.35] * 20
    hits = [True, True, True, False] + [True] * 7 + [False] * 13
    # In float64: float32's 0.35 is 0.35000000149, a gap of its own.
    ece = expected_calibration_error(torch.tensor(confidence, dtype=torch.float64), torch.tensor(hits))
    assert ece == pytest.approx(0.0, abs=1e-9)


def test_certain_predictions_right_70_percent_of_the_time_are_30_points_off():
    confidence = torch.ones(10)
    hits = torch.tensor([True] * 7 + [False] * 3)
    assert expected_calibration_error(confidence, hits) == pytest.approx(30.0)


def test_each_bin_is_weighted_by_its_share_of_the_predictions():
    # Bin of 0.9 (4 of 10 predictions): right half the time, 0.4 off; bin of 0.5 (6 of 10): always
    # right, 0.5 off. ECE = 0.4 * 0.4 + 0.6 * 0.5 = 0.46. Over all predictions together the gap
    # would be |0.66 - 0.8| = 0.14: the bins keep over- and under-confidence from cancelling.
    confidence = torch.tensor([0.9] * 4 + [0.5] * 6)
    hits = torch.tensor([True, True, False, False] + [True] * 6)
    assert expected_calibration_error(confidence, hits) == pytest.approx(46.0)


def test_bins_are_closed_on_the_right():
    # With two bins, (0, 0.5] and (0.5, 1]: 0.5 falls in the lower one, apart from 0.9.
    # Apart: (|1 - 0.5| + |0 - 0.9|) / 2 = 0.7; had they shared a bin, |1 - 1.4| / 2 = 0.2.
    confidence, hits = torch.tensor([0.5, 0.9]), torch.tensor([True, False])
    assert expected_calibration_error(confidence, hits, n_bins=2) == pytest.approx(70.0)


def test_fifteen_bins_by_default():
    # 0.49 and 0.52 share the bin (7/15, 8/15] of fifteen bins, and lie apart in ten.
    confidence, hits = torch.tensor([0.49, 0.52]), torch.tensor([True, False])
    assert expected_calibration_error(confidence, hits) == pytest.approx(100 * abs(1 - 1.01) / 2)
    assert expected_calibration_error(confidence, hits, n_bins=10) == pytest.approx(100 * (0.51 + 0.52) / 2)


@pytest.mark.parametrize(
    ("confidence", "hits"), [([], []), ([0.5, 0.6], [True]), ([1.5], [True])], ids=["none", "unpaired", "above 1"]
)
def test_no_predictions_unpaired_ones_or_confidences_above_1_are_refused(confidence, hits):
    with pytest.raises(ValueError):
        expected_calibration_error(torch.tensor(confidence), torch.tensor(hits, dtype=torch.bool))
