"""The per-sample training dynamics table: written by the trainer (``train.fit.dynamics``), one row per
training sample and epoch, read by the label audit and ``train scores``.

Columns: ``sample_id``; ``epoch``; ``step`` (global optimizer step of the update the sample took
part in); ``label_id``; ``pred_id``; ``loss`` (plain ``-log p(label)``: no class weights, no
smoothing); ``margin`` (``z_label - max_{c != label} z_c``; negative = misclassified); ``probs``
(the softmax vector, float16, a fixed-size list of the run's class count) and ``finite`` (false for
the samples of an update the trainer skipped as non-finite; their values must not enter means).
"""

from __future__ import annotations

import pyarrow as pa

SCALARS = pa.schema(
    [
        ("sample_id", pa.string()),
        ("epoch", pa.int32()),
        ("step", pa.int64()),
        ("label_id", pa.int32()),
        ("pred_id", pa.int32()),
        ("loss", pa.float32()),
        ("margin", pa.float32()),
    ]
)


def dynamics_schema(num_classes: int) -> pa.Schema:
    """The Arrow schema of a dynamics file for a model with ``num_classes`` outputs."""
    return pa.schema([*SCALARS, pa.field("probs", pa.list_(pa.float16(), num_classes)), pa.field("finite", pa.bool_())])
