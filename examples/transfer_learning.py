"""Transfer learning: an ImageNet backbone, trained head first, then fine-tuned.

Phase 1 trains the new head on a frozen backbone; phase 2 unfreezes the
backbone and fine-tunes everything at a much lower learning rate (one call of
``fit`` with ``fine_tune_epochs``)::

    python examples/transfer_learning.py --data-dir ~/data/chest_xray --backbone densenet121
    python examples/transfer_learning.py --data-dir DIR --backbone vgg19 --weights none \\
        --image-size 32 --epochs 1 --fine-tune-epochs 1

``--weights imagenet`` needs Keras' ImageNet file of the backbone, downloaded on
first use or placed by hand in ``$KERAS_HOME/models`` (default ``~/.keras/models``)
for offline machines; ``--weights none`` starts from random weights (for tests).
"""

from __future__ import annotations

import argparse

from cxr_pneumonia import build_model, choose_threshold, evaluate, fit, load_dataset, save_model
from cxr_pneumonia.models import MODELS

BACKBONES = sorted(name for name, spec in MODELS.items() if spec.kind == "backbone")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", help="a data folder in an accepted layout")
    source.add_argument("--dataset", default="kermany2018", help="a registered data set")
    parser.add_argument("--backbone", default="densenet121", choices=BACKBONES)
    parser.add_argument("--weights", default="imagenet", choices=("imagenet", "none"))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="head-only epochs")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="bundle folder to write (optional)")
    args = parser.parse_args(argv)

    size = (args.image_size, args.image_size)
    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        image_size=size,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
    )
    # Grayscale input: the model repeats the channel to RGB and applies the
    # backbone's own preprocess_input inside its graph.
    model = build_model(
        args.backbone,
        input_shape=(*size, 1),
        weights=None if args.weights == "none" else "imagenet",
        freeze_backbone=True,
    )
    result = fit(
        model,
        data,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        seed=args.seed,
        verbose=2,
    )
    for epoch, phase, loss in zip(
        result.epochs, result.phases, result.history["val_loss"], strict=True
    ):
        print(f"epoch {epoch} ({phase}): val_loss {loss:.4f}")

    report = evaluate(model, data, split="validation")
    threshold = choose_threshold(report.labels, report.scores, target_sensitivity=0.97)
    print(report.at_threshold(threshold).to_markdown())
    if args.out:
        save_model(model, args.out, threshold=threshold, overwrite=True)
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
