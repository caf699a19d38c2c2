"""Loading backbones: any Hugging Face model by Hub id or local path, GGUF checkpoints, and the
offline models that install on machines without the Hub (``minilm``, ``mpnet``, ``smollm2``).

A :class:`Backbone` bundles the frozen model, its tokenizer, its :class:`FFNSpec` and resolved
module handles, so the rest of the package never looks at architecture-specific attribute names.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from skillneurons.backbones.architectures import (
    FFNSpec,
    known_architectures,
    parse_ffn_option,
    register_architecture,
    spec_for,
)
from skillneurons.backbones.offline import (  # noqa: F401 (re-exported: the names' former home)
    OFFLINE_MODELS,
    OfflineModel,
    offline_model_status,
    offline_models,
)
from skillneurons.errors import ModelError
from skillneurons.files import home
from skillneurons.registry import Registry

if TYPE_CHECKING:  # the config imports this module when it loads a model: a type-only import back
    from skillneurons.backbones.config import BackboneOptions

log = logging.getLogger(__name__)

BackboneKind = Literal["masked_lm", "causal_lm", "encoder"]


# --------------------------------------------------------------------------------------------
# The Backbone
# --------------------------------------------------------------------------------------------


def _find_layers(model: nn.Module, suffix: str) -> tuple[str, nn.ModuleList]:
    hits = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList) and (name == suffix or name.endswith("." + suffix))
    ]
    if len(hits) != 1:
        what = "no" if not hits else f"{len(hits)}"
        raise ModelError(
            f"{what} ModuleList named '*{suffix}' in {type(model).__name__}: declare the right FFN paths "
            "with "
            "register_architecture(..., overwrite=True) or --ffn"
        )
    return hits[0]


def _get(module: nn.Module, path: str) -> nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError:
        raise ModelError(
            f"{type(module).__name__} has no submodule '{path}': declare the right FFN paths with "
            "register_architecture(..., overwrite=True) or --ffn"
        ) from None


def _neurons(down: nn.Module, spec: FFNSpec) -> int:
    """The neurons of one FFN: the input channels of its down projection ``down``."""
    w = down.weight
    assert isinstance(w, torch.Tensor)
    return int(w.shape[0] if spec.linear_kind == "conv1d" else w.shape[1])


@dataclass
class Backbone:
    """A frozen pre-trained model with everything the package needs to know about it.

    Attributes:
        model: the full model (with its MLM/LM head when it has one).
        tokenizer: its tokenizer (padding on the right; pad token set).
        name: the name or path it was loaded from (offline aliases kept as given).
        kind: ``"masked_lm"``, ``"causal_lm"`` or ``"encoder"`` (no LM head).
        spec: where its FFN lives.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    kind: BackboneKind
    spec: FFNSpec
    layers_path: str = ""
    blocks: list[nn.Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layers_path, layer_list = _find_layers(self.model, self.spec.layers)
        self.blocks = list(layer_list)
        for b in self.blocks:
            _get(b, self.spec.down)

    # ---- geometry -------------------------------------------------------------------------
    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        return int(self.input_embeddings.weight.shape[1])

    @property
    def d_ff(self) -> list[int]:
        """Neurons per layer (may differ between layers after pruning)."""
        return [self.neuron_count(i) for i in range(self.num_layers)]

    def neuron_count(self, layer: int) -> int:
        return _neurons(self.down_proj(layer), self.spec)

    @property
    def num_neurons(self) -> int:
        return sum(self.d_ff)

    def down_proj(self, layer: int) -> nn.Module:
        """The FFN down projection of block ``layer``; its input is the neuron site."""
        return _get(self.blocks[layer], self.spec.down)

    def up_proj(self, layer: int) -> nn.Module:
        return _get(self.blocks[layer], self.spec.up)

    def gate_proj(self, layer: int) -> nn.Module | None:
        return _get(self.blocks[layer], self.spec.gate) if self.spec.gate else None

    @property
    def input_embeddings(self) -> nn.Embedding:
        emb = self.model.get_input_embeddings()
        assert isinstance(emb, nn.Embedding)
        return emb

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.input_embeddings.weight.dtype

    @property
    def is_causal(self) -> bool:
        return self.kind == "causal_lm"

    @property
    def has_lm_head(self) -> bool:
        return self.kind in ("masked_lm", "causal_lm") and bool(self.spec.lm_head)

    @property
    def loadable_name(self) -> str:
        """A Hub id or local folder that ``transformers``' ``from_pretrained`` loads this model from (what
        other tools, e.g. PEFT, are given): the folder an offline alias or a ``.gguf`` was resolved to
        when it holds a ``config.json``, else :attr:`name`."""
        resolved = str(getattr(self.model, "name_or_path", "") or "")
        if resolved and (Path(resolved) / "config.json").is_file():
            return resolved
        return self.name

    def identity(self) -> dict[str, Any]:
        """What a saved artifact records about the backbone, and checks when loaded back."""
        return {
            "name": self.name,
            "model_type": self.config.model_type,
            "kind": self.kind,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "d_ff": self.d_ff,
            "vocab_size": int(self.input_embeddings.weight.shape[0]),
        }

    # ---- running ---------------------------------------------------------------------------
    def encoder_forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **kw: Any
    ) -> torch.Tensor:
        """Last hidden states ``[batch, seq, hidden]`` from input embeddings (no LM head)."""
        out = self.model.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kw)
        return out[0]

    def lm_logits(self, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits for hidden states ``[..., hidden]`` through the LM head, restricted to
        ``token_ids`` when given (``[..., len(token_ids)]``). Call it on the read positions only."""
        if not self.has_lm_head:
            raise ModelError(
                f"{self.name} was loaded without an LM head: use a linear or similarity head, "
                "or load a *ForMaskedLM / *ForCausalLM checkpoint"
            )
        x = hidden
        for path in self.spec.lm_head:
            x = _get(self.model, path)(x)
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            x = torch.tanh(x / cap) * cap
        return x if token_ids is None else x[..., token_ids]

    def freeze(self) -> Backbone:
        self.model.requires_grad_(False)
        self.model.eval()
        return self

    def token_ids(self, word: str) -> list[int]:
        """Token ids of ``word`` as it appears inside a sentence (leading space for BPE vocabularies)."""
        tok = self.tokenizer
        text = word if self._wordpiece else " " + word.lstrip()
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ModelError(
                f"label word '{word}' has no tokens in {self.name}'s vocabulary: choose another word"
            )
        return list(ids)

    @property
    def _wordpiece(self) -> bool:
        return getattr(self.tokenizer, "do_lower_case", None) is not None or "bert" in self.config.model_type


def _resolve(name_or_path: str, gguf_file: str | None) -> tuple[str, str | None, bool]:
    """-> (path or hub id, gguf file, is_offline_alias)."""
    if name_or_path in OFFLINE_MODELS:
        path, g = OFFLINE_MODELS[name_or_path][1]()
        return str(path), gguf_file or g, True
    p = Path(name_or_path)
    if p.is_file() and p.suffix == ".gguf":
        return str(p.parent), p.name, False
    return name_or_path, gguf_file, False


def _gguf_cache(path: str, gguf_file: str) -> Path:
    src = Path(path) / gguf_file
    st = src.stat()
    return home() / "models" / f"{src.stem}-f32-{st.st_size}"


def _located(name_or_path: str, gguf_file: str | None) -> tuple[str, str | None, Path | None]:
    """``(path, gguf file, its float32 cache)``: a GGUF model whose float32 conversion is cached is
    read from the cache (then no gguf file)."""
    path, gguf, _alias = _resolve(name_or_path, gguf_file)
    cache: Path | None = None
    if gguf:
        cache = _gguf_cache(path, gguf)
        if (cache / "config.json").is_file():
            path, gguf = str(cache), None
    return path, gguf, cache


#: folders written by skillneurons itself, by the file that marks them: ``loader(path, device)``
#: (the pruning plugin registers ``pruning.json``)
FOLDER_LOADERS: Registry[Callable[[str, Any], Backbone]] = Registry("backbone folder loader")


def load_backbone(
    name_or_path: str,
    *,
    kind: BackboneKind | Literal["auto"] = "auto",
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    gguf_file: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict[str, Any] | None = None,
) -> Backbone:
    """Load a frozen backbone by Hub id, local folder, ``.gguf`` file, or offline alias.

    Args:
        name_or_path: e.g. ``"roberta-base"`` (needs the Hub), ``"/models/my-bert"``, ``"model.gguf"``,
            or an offline alias from :func:`offline_models` (``"minilm"``, ``"mpnet"``, ``"smollm2"``).
        kind: which head to load; ``"auto"`` picks the masked/causal LM head when the checkpoint has
            one and falls back to the bare encoder when the head weights are missing (instead of
            silently random-initialising them).
        dtype: weights dtype (default float32 on CPU; GGUF is dequantized to float32).
        device: where to put it (default: CUDA when available, else CPU). Ignored with ``device_map``.
        gguf_file: GGUF file inside ``name_or_path``; its float32 conversion is cached under
            :func:`home` so later loads take well under a second.
        trust_remote_code: off unless asked for.
    """
    for marker, loader in FOLDER_LOADERS.items():  # e.g. a model pruned by skillneurons.pruning
        if (Path(name_or_path) / marker).is_file():
            return loader(name_or_path, device)
    path, gguf, cache = _located(name_or_path, gguf_file)
    torch_dtype = _dtype(dtype)
    common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    config, tokenizer = _config_and_tokenizer(name_or_path, path, gguf, cache, common)
    spec = spec_for(config)
    if kind == "auto":
        kind = _auto_kind(config, gguf)
    load_kw: dict[str, Any] = {**common, "dtype": torch_dtype or torch.float32}
    if gguf:
        load_kw["gguf_file"] = gguf
    if device_map is not None:
        load_kw["device_map"] = device_map
    model, kind = _load_model(name_or_path, path, config, kind, spec, load_kw)
    if gguf and cache is not None:
        _save_float32_cache(model, tokenizer, cache)
    prepared = _prepare_tokenizer(tokenizer, kind)
    if device_map is None:
        dev = torch.device(device) if device is not None else default_device()
        model.to(dev)  # type: ignore[arg-type]
    bb = Backbone(model=model, tokenizer=prepared, name=name_or_path, kind=kind, spec=spec)
    return bb.freeze()


def backbone_geometry(
    name_or_path: str, *, gguf_file: str | None = None, revision: str | None = None
) -> tuple[int, list[int]]:
    """``(layers, neurons per layer)`` of the model :func:`load_backbone` would load, read without its
    weights: the model is built from its config on the ``meta`` device (no memory, no file but the
    config), so a plan can be checked before any model loads. A folder written by skillneurons itself
    (a pruned model) is loaded, its layers may differ."""
    if any((Path(name_or_path) / marker).is_file() for marker in FOLDER_LOADERS.names()):
        bb = load_backbone(name_or_path, device="cpu")
        return bb.num_layers, bb.d_ff
    path, gguf, cache = _located(name_or_path, gguf_file)
    config, _tok = _config_and_tokenizer(name_or_path, path, gguf, cache, {"revision": revision})
    spec = spec_for(config)
    with torch.device("meta"):
        cls = _model_class(config, "encoder")  # the bare model: its blocks are the ones loaded
        model = cls(config) if config.model_type in _T5_TYPES else cls.from_config(config)
    _, layers = _find_layers(model, spec.layers)
    return len(layers), [_neurons(_get(b, spec.down), spec) for b in layers]


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A dtype given by name (``float32``/``fp32``, ``bfloat16``/``bf16``, ``float16``/``fp16``) as a
    torch dtype."""
    if not isinstance(dtype, str):
        return dtype
    out = _DTYPES.get(dtype)
    if out is None:
        raise ModelError("dtype must be one of float32, bfloat16, float16")
    return out


def _config_and_tokenizer(
    name_or_path: str, path: str, gguf: str | None, cache: Path | None, common: dict[str, Any]
) -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    """The model's config and tokenizer; an unloadable model is a one-line error naming the alternatives."""
    try:
        tok_kw = {"gguf_file": gguf} if gguf else {}
        config = AutoConfig.from_pretrained(path, **common, **tok_kw)
        tokenizer = AutoTokenizer.from_pretrained(
            cache if cache and cache.is_dir() and not gguf else path, **common, **tok_kw
        )
    except (OSError, ValueError) as e:
        local = Path(path).exists()
        hint = (
            f"'{name_or_path}' is not a loadable model folder ({str(e).splitlines()[0][:160]})"
            if local
            else f"could not load '{name_or_path}' (not a local folder, and the Hugging Face Hub is "
            "unreachable or has no such model)"
        )
        raise ModelError(
            f"{hint}: use a local model folder, a .gguf file, or an offline model: "
            f"{', '.join(OFFLINE_MODELS)}"
        ) from None
    return config, tokenizer


def _auto_kind(config: PretrainedConfig, gguf: str | None) -> BackboneKind:
    """Which head ``kind="auto"`` loads: the causal / masked LM head the checkpoint declares, else none."""
    archs = " ".join(getattr(config, "architectures", None) or [])
    if config.model_type in _T5_TYPES:
        return "encoder"
    if "CausalLM" in archs or "LMHeadModel" in archs or gguf or getattr(config, "is_decoder", False):
        return "causal_lm"
    if "MaskedLM" in archs or "ForPreTraining" in archs:
        return "masked_lm"
    return "encoder"


_T5_TYPES = ("t5", "mt5", "umt5")


def _model_class(config: PretrainedConfig, kind: BackboneKind) -> Any:
    """The class that loads a model of ``kind``: T5's encoder alone for the T5 family (its decoder is
    never used), else the Auto class of the head."""
    if config.model_type in _T5_TYPES:
        from transformers import T5EncoderModel  # imported on use: it loads the T5 modelling code

        return T5EncoderModel
    return {"masked_lm": AutoModelForMaskedLM, "causal_lm": AutoModelForCausalLM, "encoder": AutoModel}[kind]


def _load_model(
    name_or_path: str,
    path: str,
    config: PretrainedConfig,
    kind: BackboneKind,
    spec: FFNSpec,
    load_kw: dict[str, Any],
) -> tuple[PreTrainedModel, BackboneKind]:
    """The model with the head of ``kind``; a masked LM whose head weights are missing is loaded as the
    bare encoder (transformers would only warn and random-initialise the head)."""
    model, info = _model_class(config, kind).from_pretrained(path, output_loading_info=True, **load_kw)
    missing = set(info.get("missing_keys", ()))
    head_roots = {h.split(".")[0] + "." for h in spec.lm_head}
    head_missing = sorted(k for k in missing if k.startswith(tuple(head_roots)))
    if kind == "masked_lm" and head_missing:
        # transformers only warns and random-initialises a missing head: never train on that silently
        log.warning(
            "%s has no trained MLM head weights (%s, ...): loading the bare encoder",
            name_or_path,
            head_missing[0],
        )
        model = AutoModel.from_pretrained(path, **load_kw)
        kind = "encoder"
    return model, kind


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _prepare_tokenizer(tok: PreTrainedTokenizerBase, kind: BackboneKind) -> PreTrainedTokenizerBase:
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _save_float32_cache(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cache: Path) -> None:
    """Save a float32 copy of a dequantized GGUF model (atomically: tmp folder + rename)."""
    if (cache / "config.json").is_file():
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".tmp-"))
    try:
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, cache)
    except OSError as e:  # a cache is an optimisation: never fail the load for it
        log.warning("could not cache the float32 conversion at %s: %s", cache, e)
        shutil.rmtree(tmp, ignore_errors=True)


def load_with_options(name: str, options: BackboneOptions) -> Backbone:
    """:func:`load_backbone` with a :class:`~skillneurons.backbones.config.BackboneOptions` record; an
    ``ffn`` layout is registered for the model's ``model_type`` before loading."""
    if options.ffn:
        model_type = AutoConfig.from_pretrained(name, trust_remote_code=options.trust_remote_code).model_type
        register_architecture(
            model_type, parse_ffn_option(options.ffn), overwrite=model_type in known_architectures()
        )
    return load_backbone(
        name, dtype=options.dtype, device_map=options.device_map, trust_remote_code=options.trust_remote_code
    )
