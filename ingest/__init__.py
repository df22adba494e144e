"""``ingest``: raw annotations in any registered format -> a clean manifest, a quarantine, labels and
a report (``ingest clean``). Public surface (what tests, benchmarks and the command line may import;
the rest are this stage's insides):

* ``ingest.clean``: ``clean(CleanConfig) -> CleanResult`` (manifest, quarantine, report; the files
  written under ``config.out``), ``CleanAborted`` (the quarantined share passed the threshold);
* ``ingest.config``: ``CleanConfig``, every option, from TOML and the command line;
* ``ingest.sources``: the format registry: ``FORMATS``, ``FORMAT_CHOICES``, ``get_source(name)``
  (``detect``, ``parse``, ``post_probe``), ``detect_format``, ``parse``, ``SourceOptions``,
  ``Parsed``; each format's module (``ingest.sources.aihub``...) for its ``parse``, ``detect`` and
  layout constants (``aihub.EMOTIONS``, ``LABELS_DIR``, ``FRAMES_DIR``);
* ``ingest.probe``: ``probe_images``, ``probe_one``: what each image file is, without trusting it;
* ``ingest.split``: ``assign_splits``, ``groups_in_both_splits``;
* ``write_resplit`` (``from pawpipe.ingest import write_resplit``, loaded when first asked for): a clean folder
  whose rows have new splits, written as one set (``train crossval``'s folds);
* ``ingest.demo`` (a room: the demo dataset, for ``make demo`` and the tests): ``data.generate``,
  ``data.draw_frame``, ``data.LOOK_ALIKE``; ``check.check``, ``check.format_table``;
* ``ingest.cli``: ``main``, the ``ingest`` command.

Other stages import nothing from here but ``write_resplit`` (``train crossval``): ``shards`` reads
the output files through the contracts in ``common`` (``common.contracts.ingest_tables``,
``common.contracts.labels_file``), and the rules live in ``validation_rules``. Nothing is imported
at the package level (``write_resplit`` is loaded on first use), so ``ingest --help`` does not load
polars and the rule engine.
"""


def __getattr__(name: str):
    """``write_resplit``, imported on first use: ``ingest --help`` loads no polars."""
    if name == "write_resplit":
        from pawpipe.ingest.resplit import write_resplit

        return write_resplit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
