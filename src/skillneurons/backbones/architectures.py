"""Where each architecture family keeps its FFN: the per-family knowledge, kept as data.

A *neuron* is one input channel of a block's FFN down projection (REFERENCE.md section 0), so the
only thing the rest of the package needs to know about an architecture is where its blocks, its
FFN matrices and its LM head live. That knowledge is an :class:`FFNSpec` per ``config.model_type``
(pyvene-style: module paths as data, not code). Declare a new family with
:func:`register_architecture`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from skillneurons.errors import ModelError

if TYPE_CHECKING:  # annotations only: `skillneurons models` lists the families without transformers
    from transformers import PretrainedConfig


@dataclass(frozen=True)
class FFNSpec:
    """Module paths of one architecture family's feed-forward blocks.

    Attributes:
        layers: dotted path suffix of the ``ModuleList`` of transformer blocks, matched against the
            model's module names (``"encoder.layer"`` matches ``bert.encoder.layer``).
        down: path inside a block of the FFN down projection; its INPUT is the neuron site,
            shape ``[batch, seq, d_ff]``.
        up: path inside a block of the first FFN matrix (its output rows are the neurons).
        gate: path of the gate matrix for gated FFNs (LLaMA-style ``act(gate(x)) * up(x)``), else None.
        linear_kind: ``"linear"`` for ``nn.Linear`` (weight ``[out, in]``) or ``"conv1d"`` for GPT-2's
            ``Conv1D`` (weight ``[in, out]``).
        lm_head: module paths, from the top model, applied in sequence to hidden states to get
            vocabulary logits (the MLM or LM head); empty when the family has none.
        attn_out: path inside a block of the self-attention output projection (where Houlsby
            adapters go), or None when unknown.
        attn_query, attn_value: paths inside a block of the attention query and value projections
            (LoRA's default targets; GPT-2 fuses them in one ``c_attn``), or None when unknown.
    """

    layers: str
    down: str
    up: str
    gate: str | None = None
    linear_kind: Literal["linear", "conv1d"] = "linear"
    lm_head: tuple[str, ...] = ()
    attn_out: str | None = None
    attn_query: str | None = None
    attn_value: str | None = None


_BERT_LIKE: dict[str, Any] = dict(
    layers="encoder.layer",
    down="output.dense",
    up="intermediate.dense",
    attn_out="attention.output.dense",
    attn_query="attention.self.query",
    attn_value="attention.self.value",
)
_LLAMA_LIKE = FFNSpec(
    layers="layers",
    down="mlp.down_proj",
    up="mlp.up_proj",
    gate="mlp.gate_proj",
    lm_head=("lm_head",),
    attn_out="self_attn.o_proj",
    attn_query="self_attn.q_proj",
    attn_value="self_attn.v_proj",
)
_T5_ATTN: dict[str, Any] = dict(
    attn_out="layer.0.SelfAttention.o",
    attn_query="layer.0.SelfAttention.q",
    attn_value="layer.0.SelfAttention.v",
)

_REGISTRY: dict[str, FFNSpec] = {
    "bert": FFNSpec(**_BERT_LIKE, lm_head=("cls",)),
    "roberta": FFNSpec(**_BERT_LIKE, lm_head=("lm_head",)),
    "xlm-roberta": FFNSpec(**_BERT_LIKE, lm_head=("lm_head",)),
    "camembert": FFNSpec(**_BERT_LIKE, lm_head=("lm_head",)),
    "mpnet": FFNSpec(
        **{
            **_BERT_LIKE,
            "attn_out": "attention.attn.o",
            "attn_query": "attention.attn.q",
            "attn_value": "attention.attn.v",
        },
        lm_head=("lm_head",),
    ),
    "electra": FFNSpec(**_BERT_LIKE, lm_head=("generator_predictions", "generator_lm_head")),
    "distilbert": FFNSpec(
        layers="transformer.layer",
        down="ffn.lin2",
        up="ffn.lin1",
        lm_head=("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),
        attn_out="attention.out_lin",
        attn_query="attention.q_lin",
        attn_value="attention.v_lin",
    ),
    "t5": FFNSpec(
        layers="encoder.block", down="layer.1.DenseReluDense.wo", up="layer.1.DenseReluDense.wi", **_T5_ATTN
    ),
    "gpt2": FFNSpec(
        layers="h",
        down="mlp.c_proj",
        up="mlp.c_fc",
        linear_kind="conv1d",
        lm_head=("lm_head",),
        attn_out="attn.c_proj",
        attn_query="attn.c_attn",
        attn_value="attn.c_attn",
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
}
_REGISTRY["mt5"] = _REGISTRY["t5"]
_REGISTRY["umt5"] = _REGISTRY["t5"]

_GATED_T5 = FFNSpec(
    layers="encoder.block",
    down="layer.1.DenseReluDense.wo",
    up="layer.1.DenseReluDense.wi_1",
    gate="layer.1.DenseReluDense.wi_0",
    **_T5_ATTN,
)


def register_architecture(model_type: str, spec: FFNSpec, *, overwrite: bool = False) -> None:
    """Declare where the FFN of a ``config.model_type`` lives.

    Example::

        register_architecture("my_model", FFNSpec(layers="model.blocks", down="ffn.out", up="ffn.inp"))
    """
    if model_type in _REGISTRY and not overwrite:
        raise ModelError(
            f"architecture '{model_type}' is already registered: pass overwrite=True to replace it"
        )
    _REGISTRY[model_type] = spec


def known_architectures() -> list[str]:
    """The ``model_type`` values with a known FFN layout."""
    return sorted(_REGISTRY)


def spec_for(config: PretrainedConfig) -> FFNSpec:
    """The :class:`FFNSpec` of a model config; a :class:`ModelError` saying how to declare it if unknown."""
    model_type = getattr(config, "model_type", None) or "?"
    if model_type in ("t5", "mt5", "umt5") and getattr(config, "is_gated_act", False):
        return _GATED_T5
    if model_type == "gemma3":  # multimodal wrapper: the text tower is gemma3_text
        return _LLAMA_LIKE
    try:
        return _REGISTRY[model_type]
    except KeyError:
        raise ModelError(
            f"unknown architecture '{model_type}' (no known FFN down projection): declare it with "
            "skillneurons.backbones.register_architecture('"
            + model_type
            + "', FFNSpec(layers=..., down=..., up=...)) "
            "or the CLI option --ffn 'layers=PATH,down=PATH,up=PATH[,gate=PATH]'; known: "
            + ", ".join(known_architectures())
        ) from None


def parse_ffn_option(text: str) -> FFNSpec:
    """Parse the CLI form ``"layers=model.layers,down=mlp.down_proj,up=mlp.up_proj[,gate=...]"``."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        if "=" not in part:
            raise ModelError(
                f"--ffn entry '{part}' is not KEY=PATH: write e.g. "
                "'layers=model.layers,down=mlp.down_proj,up=mlp.up_proj'"
            )
        k, v = part.split("=", 1)
        fields[k.strip()] = v.strip()
    unknown = set(fields) - {
        "layers",
        "down",
        "up",
        "gate",
        "linear_kind",
        "lm_head",
        "attn_out",
        "attn_query",
        "attn_value",
    }
    missing = {"layers", "down", "up"} - set(fields)
    if unknown or missing:
        raise ModelError(
            "--ffn needs layers, down and up (optional gate, linear_kind, lm_head, attn_out, attn_query, "
            f"attn_value); got {sorted(fields)}"
        )
    lm_head = tuple(p for p in fields.pop("lm_head", "").split("+") if p)
    kind = fields.pop("linear_kind", "linear")
    if kind not in ("linear", "conv1d"):
        raise ModelError(f"--ffn linear_kind must be 'linear' or 'conv1d', not '{kind}'")
    return FFNSpec(
        layers=fields["layers"],
        down=fields["down"],
        up=fields["up"],
        gate=fields.get("gate"),
        linear_kind=cast(Literal["linear", "conv1d"], kind),
        lm_head=lm_head,
        attn_out=fields.get("attn_out"),
        attn_query=fields.get("attn_query"),
        attn_value=fields.get("attn_value"),
    )
