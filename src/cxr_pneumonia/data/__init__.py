"""Data: sources, downloads, folder layouts, patient-grouped splits and the cached pipeline.

[`load_dataset`][cxr_pneumonia.data.loading.load_dataset] is the entry point: it reads a folder you
already have (``data_dir=``) or downloads a registered data set by name, decodes every image once
into an on-disk cache, draws a patient-grouped validation split, and returns a
[`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] of batched ``tf.data`` pipelines.

The flow: `cxr_pneumonia.data.sources` (registry) ->
`cxr_pneumonia.data.download` (pooch, hashes, safe extraction) ->
`cxr_pneumonia.data.layouts` (folder layouts, patient ids) ->
`cxr_pneumonia.data.split` (grouped split, folds) ->
`cxr_pneumonia.data.pipeline` (decode cache, ``tf.data``, augmentation),
put together by `cxr_pneumonia.data.loading`
([`load_dataset`][cxr_pneumonia.data.loading.load_dataset]). This file only re-exports.
"""

from cxr_pneumonia.data.layouts import DatasetFiles, find_images, patient_groups, patient_id
from cxr_pneumonia.data.loading import load_dataset
from cxr_pneumonia.data.pipeline import (
    Augmentation,
    SkippedFilesWarning,
    decode_cached,
    make_dataset,
)
from cxr_pneumonia.data.sources import DatasetSource, get_source, list_datasets, register_dataset
from cxr_pneumonia.data.split import grouped_kfold, grouped_split
from cxr_pneumonia.data.splits import CLASS_NAMES, SPLIT_NAMES, DatasetSplits

__all__ = [
    "CLASS_NAMES",
    "SPLIT_NAMES",
    "Augmentation",
    "DatasetFiles",
    "DatasetSource",
    "DatasetSplits",
    "SkippedFilesWarning",
    "decode_cached",
    "find_images",
    "get_source",
    "grouped_kfold",
    "grouped_split",
    "list_datasets",
    "load_dataset",
    "make_dataset",
    "patient_groups",
    "patient_id",
    "register_dataset",
]
