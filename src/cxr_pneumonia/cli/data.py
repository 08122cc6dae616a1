"""``download``, ``datasets`` and ``summary``: the data sets and what a data folder holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cxr_pneumonia.cli import common
from cxr_pneumonia.cli.options import POSITIVE_INT, library_option, option
from cxr_pneumonia.cli.output import EXIT_OK, format_option, write_json, write_table

__all__ = ["datasets", "download", "summary"]

_ENSURE = "cxr_pneumonia.data.download:ensure_local"
_LOAD = "cxr_pneumonia.data.loading:load_dataset"


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia download kermany2018
  cxr-pneumonia download pneumoniamnist --cache-dir /data/cache""",
)
@click.argument("name")
@library_option(
    _ENSURE,
    "cache_dir",
    type=click.Path(file_okay=False),
    show_default="CXR_PNEUMONIA_CACHE_DIR or the OS cache",
)
@library_option(_ENSURE, "progress", "--progress/--no-progress")
def download(name: str, cache_dir: str | None, progress: bool) -> int:
    """Download a registered data set into the cache (hash-checked); prints its path."""
    from cxr_pneumonia.data.download import ensure_local
    from cxr_pneumonia.data.sources import get_source

    path = ensure_local(get_source(name), cache_dir=cache_dir, progress=progress)
    click.echo(str(path))
    return EXIT_OK


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia datasets
  cxr-pneumonia datasets --format json""",
)
@format_option()
def datasets(output_format: str) -> int:
    """List the data set registry."""
    from cxr_pneumonia.data.sources import get_source, list_datasets

    sources = [get_source(name) for name in list_datasets()]
    if output_format == "json":
        write_json(
            [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "url": s.url,
                    "known_hash": s.known_hash,
                    "description": s.description,
                    "citation": s.citation,
                    "license": s.license,
                }
                for s in sources
            ]
        )
        return EXIT_OK
    rows = [
        [s.name, s.kind, "known" if s.known_hash else "trust on first use", s.description]
        for s in sources
    ]
    write_table(["name", "kind", "hash", "description"], rows)
    return EXIT_OK


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia summary --data-dir chest_xray
  cxr-pneumonia summary --data-dir chest_xray --plots figures/
  cxr-pneumonia summary --dataset kermany2018 --format json""",
)
@common.data_options
@library_option(_LOAD, "validation_fraction")
@library_option(
    _LOAD,
    "validation",
    type=click.Choice(("grouped", "folder")),
    help="grouped: a patient-grouped part of the training files; folder: the data's own val/",
)
@option(
    "--image-size", type=POSITIVE_INT, default=224, help="side of the decoded images, in pixels"
)
@library_option(_LOAD, "seed")
@option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="also draw class-counts.png, samples.png and image-statistics.png into DIR "
    "(needs the plot extra)",
)
@format_option()
def summary(
    data: common.DataChoice,
    validation_fraction: float,
    validation: str,
    image_size: int,
    seed: int,
    plots_dir: str | None,
    output_format: str,
) -> int:
    """Summarise a data set: splits, images and patients per class; --plots draws them."""
    splits = common.load_data(
        data,
        image_size=(image_size, image_size),
        validation_fraction=validation_fraction,
        validation=validation,
        augment=False,
        seed=seed,
    )
    figures: dict[str, str] = {}
    if plots_dir is not None:
        figures = _draw_data_figures(splits, Path(plots_dir), seed=seed)
    if output_format == "json":
        write_json(
            {
                "source": splits.source,
                "image_size": list(splits.image_size),
                "color_mode": splits.color_mode,
                "class_counts": splits.class_counts,
                "patients": {name: len(set(p)) for name, p in splits.patients.items()},
                "figures": figures,
            }
        )
    else:
        click.echo(splits.summary())
        for path in figures.values():
            click.echo(f"wrote {path}")
    return EXIT_OK


DATA_FIGURES = ("class-counts.png", "samples.png", "image-statistics.png")
"""The files ``summary --plots DIR`` writes."""


def _draw_data_figures(splits: Any, folder: Path, *, seed: int) -> dict[str, str]:
    """Draw the data figures of ``splits`` into ``folder``; return name -> path."""
    from cxr_pneumonia.plots import plot_class_counts, plot_image_statistics, plot_samples

    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in DATA_FIGURES}
    plot_class_counts(splits, paths["class-counts.png"])
    plot_samples(splits, paths["samples.png"], seed=seed)
    plot_image_statistics(splits, paths["image-statistics.png"], seed=seed)
    return {name.removesuffix(".png"): str(path) for name, path in paths.items()}
