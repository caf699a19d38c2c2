"""Hugging Face PEFT's prompt tuning as a model this package's ``Trainer`` trains (used by
``pt_throughput.py`` and ``time_to_accuracy.py``, so both benches compare with the same PEFT side).

The forward is PEFT's own (``get_peft_model`` with a ``PromptTuningConfig`` on the backbone's base
model: PEFT prepends its prompt embedding and extends the attention mask); the tokenisation is ours in
PEFT's layout ``[prompt][text]`` with a mask slot before the closing token (``PromptModel.encode``,
``layout="prompt_first"``), and the head reads the slot. With a label-word head the class scores are
taken PEFT's way: the LM head over every position and the whole vocabulary, then the slot's label
words (``full_logits``); ours computes the LM head at the read slot only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from skillneurons.backbones import Backbone
from skillneurons.prompts import PromptModel, SoftPrompt
from skillneurons.prompts.heads import Head, LabelWordHead
from skillneurons.prompts.model import Batch

__all__ = ["PeftPromptModel", "peft_prompt_tuning"]

_PEFT: dict[int, Any] = {}  # one PEFT wrapper per backbone: get_peft_model is applied once


def peft_prompt_tuning(bb: Backbone, prompt_length: int) -> Any:
    """PEFT's prompt-tuning model on ``bb``'s base model (made once per backbone and prompt length)."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    key = id(bb) * 1000 + prompt_length
    if key not in _PEFT:
        cfg = PromptTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=prompt_length,
            token_dim=bb.hidden_size,
            num_transformer_submodules=1,
        )
        _PEFT[key] = get_peft_model(bb.model.base_model, cfg)
    return _PEFT[key]


class PeftPromptModel(nn.Module):
    """``head(PEFT forward at the read slot)``, trainable like a :class:`PromptModel` (its ``prompt``
    is PEFT's prompt embedding, started from ``prompt``'s vectors; the backbone stays out of the
    module tree)."""

    def __init__(self, bb: Backbone, prompt: SoftPrompt, head: Head, max_length: int = 128) -> None:
        super().__init__()
        self._reader = [PromptModel(bb, prompt, head, layout="prompt_first", max_length=max_length)]
        self._peft = [peft_prompt_tuning(bb, prompt.length)]
        self.prompt = self._peft[0].prompt_encoder["default"]
        with torch.no_grad():
            self.prompt.embedding.weight.copy_(prompt.weight)
        self.head = head
        self.layout = "prompt_first"
        self.max_length = max_length

    @property
    def backbone(self) -> Backbone:
        return self._reader[0].backbone

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def prefix_length(self) -> int:
        return self._reader[0].prefix_length

    def encode(self, *args: Any, **kw: Any) -> Batch:
        return self._reader[0].encode(*args, **kw)

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self._peft[0](input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        rows = torch.arange(h.shape[0], device=h.device)
        if isinstance(self.head, LabelWordHead):  # PEFT's way: every position, the whole vocabulary
            logits = self.backbone.lm_logits(h)[rows, batch.read_index][:, self.head.token_ids]
            return logits.float() @ self.head.membership.T
        return self.head(h[rows, batch.read_index])
