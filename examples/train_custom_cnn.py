"""Train the reference notebook's custom CNN (or ``cnn-small``) and save it as a bundle.

Shows the callbacks of the reference studies (multi-metric early stopping and a
step-decay learning rate), a resumable run in a checkpoint folder, a decision
threshold chosen for a target sensitivity on the patient-grouped validation
split, and an evaluation on the test split when the data has one::

    python examples/train_custom_cnn.py --data-dir ~/data/chest_xray --out bundles/cnn
    python examples/train_custom_cnn.py --data-dir DIR --image-size 32 --epochs 1 --out /tmp/b

Run the same command again after an interruption: training resumes from the
checkpoint folder (``--checkpoint-dir``, default ``<out>.checkpoints``).
"""

from __future__ import annotations

import argparse

import keras

from cxr_pneumonia import build_model, choose_threshold, evaluate, fit, load_dataset, save_model
from cxr_pneumonia.training.callbacks import MultiMetricEarlyStopping, step_decay


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", help="a data folder in an accepted layout")
    source.add_argument("--dataset", default="kermany2018", help="a registered data set")
    parser.add_argument("--model", default="cnn", choices=("cnn", "cnn-small"))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--color-mode", default="grayscale", choices=("grayscale", "rgb"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--target-accuracy", type=float, default=0.94)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--target-sensitivity", type=float, default=0.97)
    parser.add_argument("--checkpoint-dir", help="default: <out>.checkpoints")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="bundle folder to write")
    args = parser.parse_args(argv)

    size = (args.image_size, args.image_size)
    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        image_size=size,
        color_mode=args.color_mode,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
    )
    print(data.summary())
    channels = 1 if args.color_mode == "grayscale" else 3
    model = build_model(args.model, input_shape=(*size, channels))

    # The VGG19 study's rule done right: an epoch counts only when it meets every
    # target; the best such epoch's weights are restored at the end.
    callbacks = [
        MultiMetricEarlyStopping(
            {"val_accuracy": args.target_accuracy, "val_recall": args.target_recall},
            patience=args.patience,
        ),
        keras.callbacks.LearningRateScheduler(step_decay(args.learning_rate, drop=0.5, every=10)),
    ]
    # With a checkpoint folder, fit adds a CSV log and BackupAndRestore: rerunning
    # this script after an interruption continues at the next epoch.
    result = fit(
        model,
        data,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        callbacks=callbacks,
        checkpoint_dir=args.checkpoint_dir or f"{args.out}.checkpoints",
        seed=args.seed,
        verbose=2,
    )
    print(f"trained {result.epochs_run} epoch(s) in {result.wall_time:.0f} s")

    report = evaluate(model, data, split="validation")
    threshold = choose_threshold(
        report.labels, report.scores, target_sensitivity=args.target_sensitivity
    )
    validation = report.at_threshold(threshold)
    print("validation:\n" + validation.to_markdown())
    save_model(
        model,
        args.out,
        threshold=threshold,
        metrics=validation.to_dict(include_scores=False),
        training={"source": data.source, "seed": args.seed, "epochs": result.epochs_run},
        overwrite=True,
    )
    print(f"saved {args.out} (threshold {threshold:.4f})")
    if data.test is not None:
        print("test:\n" + evaluate(model, data, split="test", threshold=threshold).to_markdown())


if __name__ == "__main__":
    main()
