"""The SASRec-style model: GPT-2 blocks from a config over summed input embeddings.

Inputs are right-padded, so with causal attention no real position ever sees
padding and no attention mask is needed; position ids are 0..len-1 from the
oldest item in the window. Output logits reuse the item embedding (tied).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GPT2Config, GPT2Model

from models.sequence.config import SeqConfig
from models.vocab import grow_rows


class SeqRec(nn.Module):
    """Next-item model: ``forward`` returns the training loss, ``user_vectors`` scores."""

    def __init__(self, config: SeqConfig, n_rows: int) -> None:
        super().__init__()
        self.config = config
        self.items = nn.Embedding(n_rows, config.hidden, padding_idx=0)
        self.types = nn.Embedding(config.n_event_types, config.hidden, padding_idx=0)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.types.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()
            self.types.weight[0].zero_()
        self.trunk = GPT2Model(
            GPT2Config(
                vocab_size=1,  # item ids never reach GPT-2's own token table
                n_positions=config.max_len,
                n_embd=config.hidden,
                n_layer=config.layers,
                n_head=config.heads,
                # GPT-2's own tanh GELU, as one fused torch kernel instead of five
                # Python-level ops (same function; 3-4x faster on the CPU)
                activation_function="gelu_pytorch_tanh",
                resid_pdrop=config.dropout,
                embd_pdrop=config.dropout,
                attn_pdrop=config.dropout,
                use_cache=False,
                bos_token_id=0,  # GPT-2 defaults point past a one-row token table
                eos_token_id=0,
            )
        )

    @property
    def n_rows(self) -> int:
        return self.items.num_embeddings

    @property
    def device(self) -> torch.device:
        """Where the weights are; inputs made elsewhere (batches are built on the CPU) are moved here."""
        return self.items.weight.device

    def ensure_rows(self, n_rows: int) -> None:
        """Grow the item table (new rows random, old rows kept) to at least ``n_rows``."""
        if n_rows <= self.n_rows:
            return
        weight = grow_rows(self.items.weight.detach(), n_rows)
        self.items = nn.Embedding.from_pretrained(weight, freeze=False, padding_idx=0)

    def hidden_states(self, items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len) right-padded rows and types -> (batch, seq_len, hidden)."""
        embeds = self.items(items) + self.types(types)  # (batch, seq_len, hidden)
        return self.trunk(inputs_embeds=embeds).last_hidden_state

    def forward(
        self, items: torch.Tensor, types: torch.Tensor, targets: torch.Tensor, n_rows: int
    ) -> torch.Tensor:
        """Mean cross-entropy of the next item over all ``n_rows`` rows, at non-padding targets."""
        hidden = self.hidden_states(items, types)  # (batch, seq_len, hidden)
        mask = targets > 0
        h = hidden[mask]  # (n_targets, hidden)
        logits = h @ self.items.weight[1:n_rows].T  # (n_targets, n_rows - 1)
        return nn.functional.cross_entropy(logits.float(), targets[mask] - 1)

    @torch.inference_mode()
    def user_vectors(self, items: torch.Tensor, types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len) histories -> (batch, hidden) state after each user's last item (on the model's device)."""
        device = self.device
        hidden = self.hidden_states(items.to(device), types.to(device))
        last = (lengths.to(device) - 1).clamp(min=0)
        return hidden[torch.arange(items.shape[0], device=device), last]

    @torch.inference_mode()
    def score_all(self, items: torch.Tensor, types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, n_rows) logits for every row; padding and empty histories get no signal."""
        vectors = self.user_vectors(items, types, lengths)  # (batch, hidden)
        scores = vectors @ self.items.weight.T  # (batch, n_rows), on the model's device
        scores[:, 0] = float("-inf")
        scores[lengths.to(scores.device) == 0, 1:] = 0.0
        return scores
