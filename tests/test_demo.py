import pytest

from fld_train.demo import Conv1dClassifier, MLPClassifier


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: MLPClassifier(0, 10), ValueError, "`in_features` must be an int >= 1, got 0"),
    (lambda: MLPClassifier(64, 1), ValueError, "`num_classes` must be an int >= 2, got 1"),
    (lambda: MLPClassifier(64, 10, hidden=32.5), TypeError, "`hidden` must be an int, got 32.5"),
    (lambda: MLPClassifier(64, 10, lr=0), ValueError, "`lr` must be > 0, got 0"),
    (lambda: Conv1dClassifier(0, 10), ValueError, "`length` must be an int >= 1, got 0"),
    (lambda: Conv1dClassifier(40, 1), ValueError, "`num_classes` must be an int >= 2, got 1"),
    (lambda: Conv1dClassifier(40, 10, width=0), ValueError, "`width` must be an int >= 1, got 0"),
    (lambda: Conv1dClassifier(40, 10, lr=float("inf")), TypeError, "`lr` must be a finite float > 0, got inf"),
])
def test_demo_models_refuse_bad_arguments_by_name(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_demo_models_keep_their_arguments():
    mlp, cnn = MLPClassifier(64, 10, hidden=32, lr=0.003), Conv1dClassifier(40, 10, width=8, lr=0.004)
    assert (mlp.lr, mlp.head.in_features, mlp.head.out_features) == (0.003, 32, 10)
    assert (cnn.lr, cnn.features[0].out_channels, cnn.head.out_features) == (0.004, 8, 10)
