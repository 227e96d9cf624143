import numpy as np
import pytest
import torch
from PIL import Image

from fld_train.capture import find_head
from fld_train.demo import MLPClassifier
from fld_train.vision import SmallCNN, load_image_folder


def _folder(root, per_class=3, classes=("cat", "dog")):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_image_folder_loads_normalised_images_with_sorted_class_ids(tmp_path):
    images, labels, classes = load_image_folder(_folder(tmp_path / "train", classes=("dog", "cat")))
    assert classes == ["cat", "dog"] and images.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
    assert images.dtype == torch.float32 and abs(float(images.mean())) < 1.5


def test_image_folder_subset_is_seeded(tmp_path):
    root = _folder(tmp_path / "train", per_class=5)
    a = load_image_folder(root, subset=4, seed=1)
    b = load_image_folder(root, subset=4, seed=1)
    assert len(a[1]) == 4
    torch.testing.assert_close(a[0], b[0])


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="`root` .*missing.* must be a folder"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path / "empty")


def test_small_cnn_head_is_found():
    model = SmallCNN(10)
    name, _ = find_head(model, 10)
    assert name == "fc" and model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("make", [lambda: SmallCNN(3), lambda: MLPClassifier(3 * 8 * 8, 3)])
def test_models_log_validation_loss_and_accuracy(make):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 3, (16,))
    model = make()
    if isinstance(model, MLPClassifier):
        x = x.flatten(1)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, DataLoader(TensorDataset(x, y), batch_size=16), verbose=False)
    model.eval()  # as validation ran (BatchNorm with its running statistics)
    with torch.no_grad():
        logits = model(x)
    assert metrics["val_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert metrics["val_acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
