"""Label audit: per-sample signals that a label is wrong, one verdict per sample, a report to review.

Signals, one module each: ``aum`` (area under the margin, with threshold samples), ``confident``
(confident learning), ``forgetting`` (forgetting events), ``disagreement`` (two annotators);
``combine`` turns them into a rank and a verdict; ``report`` runs the audit on run directories
and writes ``suspects.parquet`` and ``audit.html``.
"""
