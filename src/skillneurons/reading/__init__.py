"""Multi-passage reading comprehension (DynSAN, ../shared/REFERENCE.md section 9): the example type,
loaders (``hf:`` SearchQA / Quasar-T / WikiHop, JSONL, the built-in BBC News cloze task), SQuAD-style
metrics, the model and its trainer. Import the submodules directly (``skillneurons.reading.examples``,
``.data``, ``.metrics``): the data side imports neither torch nor numpy."""

from __future__ import annotations
