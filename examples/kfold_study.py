"""The KFold study, ported: patient-grouped K-fold of its baselines and its ResNet50.

The study compared a dense baseline, an L2-regularized small CNN and a
ResNet50 with a Flatten + Dense 256 head on 64 x 64 RGB images, each over K
folds. Every one of them is a registry model (``dense-kfold``, ``cnn-kfold``,
``resnet50-kfold``); a model of your own is a builder function
``input_shape -> keras.Model``, as ``two_class_cnn`` below (a 2-unit softmax
output, trained with two-class cross-entropy)::

    python examples/kfold_study.py --data-dir ~/data/chest_xray
    python examples/kfold_study.py --data-dir DIR --image-size 32 --folds 2 --epochs 1 \\
        --models dense-kfold cnn-kfold own

``resnet50-kfold`` with ``--weights imagenet`` needs Keras' ImageNet file (see
the Models guide); the other models start from random weights.
"""

from __future__ import annotations

import argparse

import keras

from cxr_pneumonia import cross_validate, load_dataset

CHOICES = ("dense-kfold", "cnn-kfold", "resnet50-kfold", "own")


def two_class_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    """A model the registry does not have: two conv blocks and a 2-unit softmax."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for filters in (16, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)  # NORMAL, PNEUMONIA
    return keras.Model(inputs, outputs, name="two_class_cnn")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", help="a data folder in an accepted layout")
    source.add_argument("--dataset", default="kermany2018", help="a registered data set")
    parser.add_argument("--models", nargs="+", default=list(CHOICES[:3]), choices=CHOICES)
    parser.add_argument("--weights", default="none", choices=("imagenet", "none"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        image_size=(args.image_size, args.image_size),
        color_mode="rgb",
        batch_size=args.batch_size,
        augment=False,
        seed=args.seed,
        progress=False,
    )
    print(data.summary())
    for name in args.models:
        if name == "own":
            result = cross_validate(
                two_class_cnn, data, folds=args.folds, epochs=args.epochs, seed=args.seed, verbose=0
            )
        else:
            imagenet = name == "resnet50-kfold" and args.weights == "imagenet"
            weights = "imagenet" if imagenet else None
            result = cross_validate(
                name,
                data,
                folds=args.folds,
                epochs=args.epochs,
                seed=args.seed,
                model_options={"weights": weights},
                verbose=0,
            )
        auc, recall = result.mean["val_auc"], result.mean["val_recall"]
        print(
            f"{result.name}: ROC AUC {auc:.3f} +/- {result.std['val_auc']:.3f}, "
            f"recall {recall:.3f} +/- {result.std['val_recall']:.3f} over {result.folds} folds"
        )


if __name__ == "__main__":
    main()
