"""Registers the knowledgeable verbalizer head (``kpt``) with :mod:`skillneurons.prompts.heads`.

Imported through the ``skillneurons.plugins`` entry point; see :mod:`skillneurons.registry`.
"""

from __future__ import annotations

from skillneurons.prompts.heads import HEADS, HeadType
from skillneurons.verbalizers.kpt import KnowledgeableHead

HEADS.register(
    "kpt",  # unrefined, learned word weights (refined: skillneurons.verbalizers.zero_shot)
    HeadType(
        lambda bb, words, scale: KnowledgeableHead(bb, words, calibrate=False, aggregate="learned"),
        KnowledgeableHead.from_config,
    ),
)
