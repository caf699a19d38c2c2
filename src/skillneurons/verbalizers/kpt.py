"""The knowledgeable verbalizer (KPT, Hu et al. 2022) as a :class:`Head` of kind ``"kpt"``.

``KnowledgeableHead`` maps the read-position hidden state to class scores through the model's own
MLM / LM head, computed at that position only and restricted to the label words' tokens:

    word logits [B, W]  (pieces combined: first / mean / max)
    -> log softmax over all label words of all classes
    -> (calibrated) minus log p~(v), renormalised
    -> class scores [B, C]: mean over the class's words, or learned softmax weights per word

Refinement (:meth:`KnowledgeableHead.refine`) needs the read states of ~200 unlabelled contexts
(:meth:`KnowledgeableHead.context_stats`); it drops words and sets the contextual prior, and its
result (the kept words, the prior, a report of what was dropped) is part of :meth:`config`, so a
saved prompt rebuilds the refined head exactly. With ``aggregate="learned"`` the head holds one
trainable weight per word (``word_weights``), trained with the prompt by the usual trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skillneurons.backbones import Backbone
from skillneurons.errors import ConfigError
from skillneurons.prompts.heads import Head
from skillneurons.verbalizers.refine import (
    MULTI_TOKEN,
    aggregate,
    calibrate_log_probs,
    combine_pieces,
    contextual_prior,
    frequency_keep,
    frequency_keep_words,
    membership,
    relevance_keep,
    shared_keep,
)

log = logging.getLogger(__name__)


def _log(p: torch.Tensor) -> torch.Tensor:
    """``log p`` with underflowed zeros kept finite (a prior of exactly 0 would divide by zero)."""
    return p.float().clamp(min=1e-30).log()


@dataclass
class ContextStats:
    """What refinement needs from the unlabelled contexts (computed by
    :meth:`KnowledgeableHead.context_stats`).

    Attributes:
        token_prior: ``[V]`` mean over the contexts of ``log p(t|c)`` for every vocabulary token.
        word_log_probs: ``[N, W]`` ``log p(w|c)`` (full-vocabulary softmax) of every label word of
            the head, pieces combined by the head's rule.
    """

    token_prior: torch.Tensor
    word_log_probs: torch.Tensor

    @property
    def num_contexts(self) -> int:
        return int(self.word_log_probs.shape[0])


class KnowledgeableHead(Head):
    """Many label words per class, read through the model's MLM / LM head (see the module docstring).

    Args:
        backbone: a backbone with an MLM / LM head.
        label_words: one list of words per class; the first word of a class is its anchor.
        multi_token: how a word of several tokens is scored
            (:func:`~skillneurons.verbalizers.refine.combine_pieces`).
        calibrate: divide by the contextual prior (needs :meth:`refine` or ``prior``).
        aggregate: ``"mean"`` (zero-shot) or ``"learned"`` (one trainable weight per word).
        prior: ``p~(v)`` per class and word, as :meth:`config` writes it.
        report: what refinement did (kept in :meth:`config`).
    """

    kind = "kpt"

    def __init__(
        self,
        backbone: Backbone,
        label_words: Sequence[Sequence[str]],
        *,
        multi_token: str = "first",
        calibrate: bool = True,
        aggregate: str = "mean",
        prior: Sequence[Sequence[float]] | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not backbone.has_lm_head:
            raise ConfigError(
                f"{backbone.name} has no MLM/LM head, so label words cannot be scored: load a *ForMaskedLM / "
                "*ForCausalLM checkpoint, or use --head linear or --head similarity"
            )
        if multi_token not in MULTI_TOKEN:
            raise ConfigError(
                f"unknown multi-token rule '{multi_token}': use one of {', '.join(MULTI_TOKEN)}"
            )
        if aggregate not in ("mean", "learned"):
            raise ConfigError(
                f"unknown aggregation '{aggregate}': use mean (zero-shot) or learned (few-shot)"
            )
        if len(label_words) < 2:
            raise ConfigError(f"a verbalizer needs at least two classes, got {len(label_words)}")
        self.backbone_ref = [backbone]  # not a submodule: frozen and saved elsewhere
        self.multi_token = multi_token
        self.calibrate = bool(calibrate)
        self.aggregate = aggregate
        self.report: dict[str, Any] = dict(report or {})
        self._set_words([list(ws) for ws in label_words])
        if prior is not None:
            flat = [float(p) for ws in prior for p in ws]
            if [len(ws) for ws in prior] != [len(ws) for ws in self.label_words]:
                raise ConfigError(
                    "the saved prior does not match the label words (one value per word): it was edited "
                    "by hand; "
                    "refine the head again"
                )
            self.prior_probs = torch.tensor(flat).to(self.piece_ids.device)

    piece_ids: torch.Tensor
    vocab_ids: torch.Tensor
    piece_index: torch.Tensor
    piece_mask: torch.Tensor
    owner: torch.Tensor
    member: torch.Tensor
    prior_probs: torch.Tensor | None
    word_weights: nn.Parameter

    # ---- words and their tokens --------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        return self.backbone_ref[0]

    def _set_words(self, label_words: list[list[str]]) -> None:
        """(Re)build the buffers for ``label_words`` (and reset the prior and learned weights)."""
        bb = self.backbone
        for c, ws in enumerate(label_words):
            if not ws:
                raise ConfigError(f"class {c} has no label words: give at least one word per class")
        self.label_words = label_words
        self.num_classes = len(label_words)
        pieces = [bb.token_ids(w) for ws in label_words for w in ws]
        self.word_pieces = [p[:1] if self.multi_token == "first" else p for p in pieces]
        width = max(len(p) for p in self.word_pieces)
        ids = torch.zeros(len(pieces), width, dtype=torch.long)
        mask = torch.zeros(len(pieces), width, dtype=torch.bool)
        for w, p in enumerate(self.word_pieces):
            ids[w, : len(p)] = torch.tensor(p)
            mask[w, : len(p)] = True
        vocab_ids, inverse = torch.unique(ids, return_inverse=True)
        owner = torch.tensor([c for c, ws in enumerate(label_words) for _ in ws])
        dev = bb.device
        self.register_buffer("piece_ids", ids.to(dev), persistent=False)
        self.register_buffer("vocab_ids", vocab_ids.to(dev), persistent=False)
        self.register_buffer("piece_index", inverse.to(dev), persistent=False)
        self.register_buffer("piece_mask", mask.to(dev), persistent=False)
        self.register_buffer("owner", owner.to(dev), persistent=False)
        self.register_buffer("member", membership(owner, self.num_classes).to(dev), persistent=False)
        self.register_buffer("prior_probs", None, persistent=False)
        if self.aggregate == "learned":
            self.word_weights = nn.Parameter(torch.zeros(len(pieces), device=dev))

    @property
    def num_words(self) -> int:
        return int(self.owner.numel())

    @property
    def anchors(self) -> list[int]:
        """Index (into the flat word list) of each class's first word."""
        starts, n = [], 0
        for ws in self.label_words:
            starts.append(n)
            n += len(ws)
        return starts

    def prior(self) -> list[list[float]] | None:
        """``p~(v)`` per class and word, or None before refinement."""
        if self.prior_probs is None:
            return None
        flat = self.prior_probs.tolist()
        out, n = [], 0
        for ws in self.label_words:
            out.append(flat[n : n + len(ws)])
            n += len(ws)
        return out

    # ---- scoring ------------------------------------------------------------------------------
    def word_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, W]`` each label word's logit at the read position (pieces combined) from
        ``hidden [B, H]``."""
        logits = self.backbone.lm_logits(hidden, self.vocab_ids).float()  # [B, U]
        return combine_pieces(logits[:, self.piece_index], self.piece_mask, self.multi_token)

    def word_log_probs(self, word_logits: torch.Tensor) -> torch.Tensor:
        """Steps 3: ``[B, W]`` log-probabilities over all label words, calibrated when enabled."""
        if self.calibrate and self.prior_probs is None:
            raise ConfigError(
                "KPT calibration needs the contextual prior: call head.refine(head.context_stats(...)) "
                "on unlabelled "
                "texts first, or build the head with calibrate=False"
            )
        log_prior = _log(self.prior_probs) if self.calibrate and self.prior_probs is not None else None
        return calibrate_log_probs(word_logits, log_prior)

    def class_scores(self, word_logits: torch.Tensor) -> torch.Tensor:
        """Steps 3-5 from ``word_logits [B, W]`` -> ``[B, C]``."""
        weights = self.word_weights if self.aggregate == "learned" else None
        return aggregate(self.word_log_probs(word_logits), self.member, weights)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, C]`` (log-domain; cross-entropy and argmax use them as logits)."""
        return self.class_scores(self.word_logits(hidden))

    # ---- refinement ---------------------------------------------------------------------------
    @torch.no_grad()
    def context_stats(self, hidden_batches: Iterable[torch.Tensor]) -> ContextStats:
        """Step 1 from read states of unlabelled contexts (batches of ``[b, H]``): the full-vocabulary
        prior of every token and ``log p(w|c)`` of every label word (LM head on the read states only)."""
        total: torch.Tensor | None = None
        words: list[torch.Tensor] = []
        n = 0
        for h in hidden_batches:
            full = self.backbone.lm_logits(h).float()  # [b, V]
            logp = torch.log_softmax(full, -1)
            total = logp.sum(0) if total is None else total + logp.sum(0)
            words.append(combine_pieces(logp[:, self.piece_ids], self.piece_mask, self.multi_token).cpu())
            n += int(h.shape[0])
        if total is None or n == 0:
            raise ConfigError(
                "refinement needs unlabelled contexts: give some texts (e.g. the task's training texts)"
            )
        return ContextStats(token_prior=(total / n).cpu(), word_log_probs=torch.cat(words))

    def refine(
        self,
        stats: ContextStats,
        *,
        cutoff: float = 0.5,
        scope: str = "vocab",
        drop_shared: bool = True,
        relevance: bool = False,
        relevance_margin: float = 0.0,
    ) -> dict[str, Any]:
        """Apply refinement steps 2 and 4, then set the contextual prior over the kept words (step 3).

        Args:
            stats: from :meth:`context_stats`, computed with this head's current words.
            cutoff: frequency refinement: the fraction ranked lowest by the prior that is dropped
                (0 disables).
            scope: ``"vocab"`` (original KPT: rank all vocabulary tokens; a word goes when one of
                its scored tokens is in the lowest ``cutoff``) or ``"words"`` (rank the label words
                by ``mean log p(w|c)`` and drop their lowest ``cutoff``).
            drop_shared: drop words whose scored tokens occur in more than one class.
            relevance: relevance refinement (keep words correlating most with their own anchor).
            relevance_margin: how much more, in correlation.

        A class that would lose every word keeps its word with the highest prior (logged). The word
        list changes, so learned word weights are reset: refine before building an optimizer.
        Returns the report (also stored in :meth:`config`).
        """
        if stats.word_log_probs.shape[1] != self.num_words:
            raise ConfigError(
                "these context statistics were computed for another word list: call context_stats with "
                "this head"
            )
        if scope not in ("vocab", "words"):
            raise ConfigError(f"unknown frequency scope '{scope}': use vocab (original) or words")
        flat = [w for ws in self.label_words for w in ws]
        owner = self.owner.tolist()
        keep = [True] * len(flat)
        dropped: dict[str, list[str]] = {"shared": [], "frequency": [], "relevance": []}

        def apply(reason: str, mask: Sequence[bool]) -> None:
            for w, ok in enumerate(mask):
                if keep[w] and not ok:
                    keep[w] = False
                    dropped[reason].append(flat[w])

        shared_out = [True] * len(flat)
        if drop_shared:
            shared_out = shared_keep([tuple(p) for p in self.word_pieces], owner)
            apply("shared", shared_out)
        word_prior = stats.word_log_probs.mean(0)
        if cutoff > 0:
            if scope == "vocab":
                apply("frequency", frequency_keep(self.word_pieces, stats.token_prior, cutoff))
            else:
                apply("frequency", frequency_keep_words(word_prior, cutoff))
        if relevance:
            apply("relevance", relevance_keep(stats.word_log_probs, owner, self.anchors, relevance_margin))
        restored = []
        for c in range(self.num_classes):
            mine = [w for w in range(len(flat)) if owner[w] == c]
            if any(keep[w] for w in mine):
                continue
            usable = [w for w in mine if shared_out[w]]
            if not usable:
                raise ConfigError(
                    f"every label word of class {c} ({', '.join(flat[w] for w in mine[:5])}) is shared "
                    "with another "
                    "class: give the class words of its own"
                )
            best = max(usable, key=lambda w: float(word_prior[w]))
            keep[best] = True
            for reason in dropped.values():
                if flat[best] in reason:
                    reason.remove(flat[best])
            restored.append(flat[best])
            log.warning("refinement would leave class %d without label words: keeping '%s'", c, flat[best])
        kept_idx = [w for w in range(len(flat)) if keep[w]]
        before = [len(ws) for ws in self.label_words]
        new_words: list[list[str]] = [[] for _ in range(self.num_classes)]
        for w in kept_idx:
            new_words[owner[w]].append(flat[w])
        p = contextual_prior(stats.word_log_probs[:, kept_idx])
        self._set_words(new_words)
        self.prior_probs = p.float().to(self.piece_ids.device)
        self.report = {
            "contexts": stats.num_contexts,
            "cutoff": cutoff,
            "scope": scope,
            "drop_shared": drop_shared,
            "relevance": relevance,
            "words_before": before,
            "words_after": [len(ws) for ws in new_words],
            "dropped": dropped,
            "restored": restored,
        }
        return self.report

    def set_prior(self, stats: ContextStats) -> None:
        """Set the contextual prior from ``stats`` without dropping any word (calibration only)."""
        self.prior_probs = contextual_prior(stats.word_log_probs).to(self.piece_ids.device)

    # ---- artifacts ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "label_words": self.label_words,
            "multi_token": self.multi_token,
            "calibrate": self.calibrate,
            "aggregate": self.aggregate,
            "prior": self.prior(),
            "refinement": self.report,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], backbone: Backbone) -> KnowledgeableHead:
        """Rebuild a head from :meth:`config` (learned word weights are loaded separately)."""
        return cls(
            backbone,
            cfg["label_words"],
            multi_token=str(cfg.get("multi_token", "first")),
            calibrate=bool(cfg.get("calibrate", True)),
            aggregate=str(cfg.get("aggregate", "mean")),
            prior=cfg.get("prior"),
            report=cfg.get("refinement"),
        )
