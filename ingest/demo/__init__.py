"""The demo dataset: what ``make demo`` and the tests clean, and the check of what cleaning made of it.

It is the product's own example, so it ships with ``ingest`` (``ingest demo-data``, ``ingest
demo-check``), in a room of its own: nothing that cleans real data imports it
(``tests/test_architecture.py``), and the command line loads it only for those two commands.

* ``ingest.demo.data``: ``generate`` (an AI Hub-layout dataset with injected faults and planted
  label noise), ``draw_frame``, ``LOOK_ALIKE``, ``COLOURS``;
* ``ingest.demo.check``: ``check``, ``format_table`` (the faults found, against those injected).
"""

NOISE_UNITS = ("frame", "video")  # what ``--noise-unit`` flips: single frames, or every frame of a drawn video
