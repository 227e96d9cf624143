import numpy as np
import pytest
import torch
from PIL import Image

from fld_train.capture import find_head
from fld_train.demo import MLPClassifier
from fld_train.vision import ImageClassifier, SmallCNN, flip_and_shift, load_image_folder


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


def test_flip_and_shift_returns_a_shifted_crop_of_each_image_or_its_mirror():
    images = torch.arange(6 * 3 * 8 * 8, dtype=torch.float32).view(6, 3, 8, 8)
    torch.manual_seed(0)
    out = flip_and_shift(images, pad=2)
    assert out.shape == images.shape
    for image, got in zip(images, out):
        crops = [torch.nn.functional.pad(source[None], (2, 2, 2, 2), mode="reflect")[0, :, a:a + 8, b:b + 8]
                 for source in (image, image.flip(2)) for a in range(5) for b in range(5)]
        assert any(torch.equal(got, crop) for crop in crops)
    assert not torch.equal(out, images)  # 6 images: some flip or shift
    with pytest.raises(ValueError, match="`pad` must be in \\[0, 8\\) for 8x8 images, got 8"):
        flip_and_shift(images, pad=8)
    with pytest.raises(ValueError, match="`images` must be a batch of shape"):
        flip_and_shift(images[0])


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("augment", [True, False])
def test_small_cnn_augments_training_batches_only_and_anneals_its_learning_rate(monkeypatch, augment):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from fld_train import RelabeledDataset, vision

    calls = []
    monkeypatch.setattr(vision, "flip_and_shift", lambda images: calls.append(images.shape[0]) or images.flip(3))
    model = SmallCNN(3, lr=0.01, augment=augment, one_cycle=True)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 3, (8,))
    rates = []

    class Rates(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[Rates()])
    loader = DataLoader(RelabeledDataset(TensorDataset(x, y)), batch_size=4)
    trainer.fit(model, loader, DataLoader(TensorDataset(x, y), batch_size=4))
    assert calls == ([4] * 4 if augment else [])  # four training batches; validation sees the images as they are
    (schedule,) = trainer.lr_scheduler_configs
    assert isinstance(schedule.scheduler, torch.optim.lr_scheduler.OneCycleLR) and schedule.interval == "step"
    assert schedule.scheduler.total_steps == 4
    assert rates[0] < max(rates) <= 0.01 and rates[-1] < max(rates)  # warms up towards lr, then anneals
    assert isinstance(SmallCNN(3).configure_optimizers(), torch.optim.Adam)  # no schedule by default


def test_build_model_knows_the_augmented_small_cnn():
    from fld_train.vision import MODELS, build_model

    model = build_model("small-cnn-aug", 4)
    assert isinstance(model, SmallCNN) and model.augment and model.one_cycle and model.lr == 0.01
    assert MODELS["small-cnn-aug"] == 32 and not build_model("small-cnn", 4).augment
    with pytest.raises(ValueError, match="`model` must be one of"):
        build_model("small-cnn-augmented", 4)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"num_classes": 1}, ValueError, "`num_classes` must be an int >= 2, got 1"),
    ({"num_classes": 10.0}, TypeError, "`num_classes` must be an int, got 10.0"),
    ({"lr": 0.0}, ValueError, "`lr` must be > 0, got 0.0"),
    ({"lr": float("nan")}, TypeError, "`lr` must be a finite float > 0, got nan"),
    ({"lr": "0.01"}, TypeError, "`lr` must be a finite float > 0, got '0.01'"),
    ({"augment": 1}, TypeError, "`augment` must be True or False, got 1"),
    ({"one_cycle": "yes"}, TypeError, "`one_cycle` must be True or False, got 'yes'"),
])
def test_small_cnn_refuses_bad_arguments_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        SmallCNN(**{"num_classes": 10, **kwargs})


def test_image_classifier_refuses_bad_arguments_by_name():
    with pytest.raises(TypeError, match="`network` must be a torch.nn.Module, got str"):
        ImageClassifier("resnet18")
    with pytest.raises(ValueError, match="`lr` must be > 0, got -0.1"):
        ImageClassifier(torch.nn.Linear(4, 2), lr=-0.1)
