"""Tiny randomly initialised backbones for tests and examples (no downloads).

Every supported family is built from its config with a few layers and a small width, plus a real
``PreTrainedTokenizerFast`` over a word-level vocabulary, so the exact code paths used with real
checkpoints (tokenisation, special tokens, pairs, heads) run in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from skillneurons.backbones.architectures import spec_for
from skillneurons.backbones.loading import Backbone, BackboneKind, _prepare_tokenizer

#: words of the tiny vocabulary (used by fixtures); label words are included
WORDS = (
    "good great fine nice happy love best fun bad awful poor sad hate worst dull boring "
    "movie film plot actor story the a is was it this and not very so of to "
    "positive negative neutral yes no maybe sports business politics tech"
).split()

FAMILIES: dict[str, tuple[str, str]] = {
    # family -> (config class, model class for masked/causal kind)
    "bert": ("BertConfig", "BertForMaskedLM"),
    "roberta": ("RobertaConfig", "RobertaForMaskedLM"),
    "mpnet": ("MPNetConfig", "MPNetForMaskedLM"),
    "distilbert": ("DistilBertConfig", "DistilBertForMaskedLM"),
    "t5": ("T5Config", "T5EncoderModel"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM"),
}
CAUSAL = {"gpt2", "llama", "qwen2", "mistral", "gemma"}


def tiny_tokenizer(family: str, extra_words: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer with the special tokens of ``family``'s style."""
    causal = family in CAUSAL
    specials = ["<pad>", "<unk>", "<eos>"] if causal else ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*specials, *WORDS, *extra_words]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if not causal:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        kw: dict[str, Any] = dict(
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        )
    else:
        kw = dict(
            pad_token="<pad>",
            unk_token="<unk>",
            eos_token="<eos>",
            model_input_names=["input_ids", "attention_mask"],
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **kw)
    return fast


def tiny_model(
    family: str,
    *,
    kind: BackboneKind | None = None,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    d_ff: int = 48,
    extra_words: Iterable[str] = (),
    **overrides: Any,
) -> Backbone:
    """A tiny random :class:`Backbone` of ``family`` (see :data:`FAMILIES`); ``extra_words`` extend its
    vocabulary beyond :data:`WORDS`."""
    import transformers

    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family}; choose from {sorted(FAMILIES)}")
    tok = tiny_tokenizer(family, extra_words)
    vocab = len(tok)
    cfg_name, model_name = FAMILIES[family]
    cfg_cls = getattr(transformers, cfg_name)
    heads = 2
    common: dict[str, Any]
    if family == "gpt2":
        common = dict(
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=d_ff,
            n_positions=128,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    elif family == "distilbert":
        common = dict(
            dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=d_ff, max_position_embeddings=128
        )
    elif family == "t5":
        common = dict(d_model=hidden, d_ff=d_ff, num_layers=layers, num_heads=heads, d_kv=hidden // heads)
    else:
        common = dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=d_ff,
            max_position_embeddings=128,
        )
        if family in CAUSAL:
            common.update(
                num_key_value_heads=heads,
                head_dim=hidden // heads,
                bos_token_id=None,
                eos_token_id=tok.eos_token_id,
            )
    if family in ("roberta", "mpnet"):
        common.update(
            pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id
        )
    else:
        common.setdefault("pad_token_id", tok.pad_token_id)
    # a larger init scale than the pre-training default (0.02): at 0.02 a 2-layer random model's read
    # state barely depends on the input, so nothing could be learned or detected through it
    if family == "t5":
        common["initializer_factor"] = 10.0
    else:
        common["initializer_range"] = 0.2
    config = cfg_cls(vocab_size=vocab, **{**common, **overrides})
    torch.manual_seed(seed)
    if kind == "encoder" and family != "t5":
        model = transformers.AutoModel.from_config(config)
    else:
        model = getattr(transformers, model_name)(config)
    resolved: BackboneKind = kind or (
        "causal_lm" if family in CAUSAL else "encoder" if family == "t5" else "masked_lm"
    )
    model.eval()
    bb = Backbone(
        model=model,
        tokenizer=_prepare_tokenizer(tok, resolved),
        name=f"tiny-{family}",
        kind=resolved,
        spec=spec_for(config),
    )
    return bb.freeze()
