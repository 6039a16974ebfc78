"""Decoding for Flamingo: greedy, sampling and beam search, and log-likelihood scoring of candidates.

Fast by construction:
- the prompt's media are encoded once and each cross-attention block computes their keys/values once (kept in
  ``MediaContext.kv_cache``); every later step reuses them, for every beam;
- beams and candidates are rows that *share* the prompt's media through global media indices, so nothing visual
  is copied when a prompt is expanded into beams;
- the LM's self-attention cache (``DecodeCache``) has room to grow, so a step writes one position instead of
  copying the whole prompt's keys/values, and beam reordering moves only the generated positions (beams of one
  prompt share the prompt's keys/values exactly);
- a decoding step's media routing is the same at every step (each new token reads its row's last media item), so
  it is built once and every block reuses it; only the last position goes through the output head.

``use_cache=False`` recomputes the whole sequence at every step: slow, and there to test the fast path against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from flamingo_vlm.model.cross_attention import MediaContext, MediaRouting
from flamingo_vlm.model.kv_cache import DecodeCache

if TYPE_CHECKING:
    from flamingo_vlm.model.flamingo import Flamingo


@dataclass
class _Rows:
    """Per-row media bookkeeping: where each row's media start in the flat media list and how many it has."""

    offset: torch.Tensor  # (R,)
    count: torch.Tensor  # (R,)

    def select(self, index: torch.Tensor) -> _Rows:
        return _Rows(self.offset[index], self.count[index])


class _CachedDecoder:
    """Prefill once, then feed one token per row per step, reusing self-attention and cross-attention caches."""

    def __init__(self, model: Flamingo, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 latents: torch.Tensor | None, *, reserve: int = 32) -> None:
        self.model = model
        routing = model.route(input_ids, attention_mask)
        count = (input_ids == model.media_token_id).sum(1)
        self.rows = _Rows(torch.cumsum(count, 0) - count, count)
        self.context_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        context = MediaContext(routing=routing, latents=latents, kv_cache=self.context_cache)
        cache = DecodeCache(config=model.lm.config, reserve=reserve)
        hidden, self.cache = model.decode(input_ids, attention_mask, context, cache=cache, use_cache=True)
        self.prompt_length = input_ids.shape[1]
        self.attention_mask = attention_mask
        self.logits = model.logits(hidden[:, -1:])[:, 0]  # (B, V): only the last position needs the head
        self._step_routing: MediaRouting | None = None

    def select(self, index: torch.Tensor, *, within_prompts: bool = False) -> None:
        """Keep/duplicate/reorder rows: row i becomes old row ``index[i]``.

        ``within_prompts``: every row and its source row continue the same prompt (beam reordering), so their
        prompt keys/values, attention mask and media are already identical and only generated positions move.
        """
        if within_prompts:
            self.cache.reorder_generated(index, self.prompt_length)
        else:
            self.cache.batch_select_indices(index)
            self.attention_mask = self.attention_mask[index]
            self.rows = self.rows.select(index)
            self._step_routing = None
        self.logits = self.logits[index]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (R,) and return the next logits (R, V)."""
        chunk = tokens[:, None]  # (R, 1)
        self.attention_mask = torch.cat([self.attention_mask, torch.ones_like(chunk)], dim=1)
        if self._step_routing is None:
            # A generated token reads its row's last media item, at every step: route once, reuse the plan.
            self._step_routing = self.model.route(chunk, media_seen=self.rows.count,
                                                  row_media_offset=self.rows.offset, row_media_count=self.rows.count)
        context = MediaContext(routing=self._step_routing, latents=None, kv_cache=self.context_cache)
        hidden, self.cache = self.model.decode(chunk, self.attention_mask, context, cache=self.cache, use_cache=True,
                                               check_token_ids=False)
        self.logits = self.model.logits(hidden)[:, -1]
        return self.logits


class _RecomputeDecoder:
    """Reference decoder: runs the full sequence through the model at every step (no caches at all)."""

    def __init__(self, model: Flamingo, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 latents: torch.Tensor | None) -> None:
        self.model = model
        self.latents = latents
        count = (input_ids == model.media_token_id).sum(1)
        self.rows = _Rows(torch.cumsum(count, 0) - count, count)
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.logits = self._forward()

    def _forward(self) -> torch.Tensor:
        routing = self.model.route(self.input_ids, self.attention_mask, row_media_offset=self.rows.offset,
                                   row_media_count=self.rows.count)
        context = MediaContext(routing=routing, latents=self.latents)
        hidden, _ = self.model.decode(self.input_ids, self.attention_mask, context)
        return self.model.logits(hidden)[:, -1]

    def select(self, index: torch.Tensor, *, within_prompts: bool = False) -> None:
        self.input_ids = self.input_ids[index]
        self.attention_mask = self.attention_mask[index]
        self.rows = self.rows.select(index)
        self.logits = self.logits[index]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.input_ids = torch.cat([self.input_ids, tokens[:, None]], dim=1)
        self.attention_mask = torch.cat([self.attention_mask, torch.ones_like(tokens[:, None])], dim=1)
        self.logits = self._forward()
        return self.logits


def _prepare(model: Flamingo, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
             pixel_values: torch.Tensor | None, frame_mask: torch.Tensor | None,
             media_latents: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be a non-empty (batch, length) tensor; got shape {tuple(input_ids.shape)}.")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("Generation continues every row from its last position: pad prompts on the left "
                         "(the processor's default padding_side='left').")
    latents = model._media_latents(input_ids, pixel_values, frame_mask, media_latents)
    return attention_mask, latents


def _blocked_tokens_bias(model: Flamingo, logits: torch.Tensor) -> torch.Tensor:
    """``(V,)``: 0, or -inf for ids never generated: ``<image>`` (no media would follow) and ids past the tokenizer
    (padded embedding rows). Added to the logits at each step."""
    bias = torch.zeros(logits.shape[-1], dtype=torch.float32, device=logits.device)
    bias[model.media_token_id] = float("-inf")
    bias[len(model.tokenizer):] = float("-inf")
    return bias


def generate(
    model: Flamingo,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    pixel_values: torch.Tensor | None = None,
    frame_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int = 20,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_at_end_of_chunk: bool = True,
    use_cache: bool = True,
    media_latents: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generate up to ``max_new_tokens`` after each prompt; returns ``(B, new)`` new token ids, padded.

    Stops a row at EOS and, with ``stop_at_end_of_chunk`` (default, the paper's protocol), at ``<|endofchunk|>``.
    Beam search ranks finished hypotheses by ``sum log p / length ** length_penalty``.
    """
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1.")
    if num_beams < 1 or (num_beams > 1 and do_sample):
        raise ValueError("num_beams must be >= 1, and beam search cannot be combined with do_sample=True.")
    was_training = model.training
    model.eval()
    try:
        attention_mask, latents = _prepare(model, input_ids, attention_mask, pixel_values, frame_mask, media_latents)
        if use_cache:
            decoder: Any = _CachedDecoder(model, input_ids, attention_mask, latents, reserve=max_new_tokens)
        else:
            decoder = _RecomputeDecoder(model, input_ids, attention_mask, latents)
        stop_ids = [i for i in (model.tokenizer.eos_token_id,) if i is not None]
        if stop_at_end_of_chunk:
            stop_ids.append(model.end_of_chunk_token_id)
        stop = torch.tensor(stop_ids, dtype=torch.long, device=input_ids.device)
        pad_id = model.tokenizer.pad_token_id
        if num_beams == 1:
            return _greedy_or_sample(model, decoder, max_new_tokens, stop, pad_id, do_sample, temperature, top_k,
                                     top_p, generator)
        return _beam_search(model, decoder, max_new_tokens, num_beams, length_penalty, stop, pad_id)
    finally:
        model.train(was_training)


def _greedy_or_sample(model: Flamingo, decoder: Any, max_new_tokens: int, stop: torch.Tensor, pad_id: int,
                      do_sample: bool, temperature: float, top_k: int, top_p: float,
                      generator: torch.Generator | None) -> torch.Tensor:
    logits = decoder.logits
    blocked = _blocked_tokens_bias(model, logits)
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    generated: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        scores = logits.float() + blocked
        if do_sample:
            next_tokens = _sample(scores, temperature, top_k, top_p, generator)
        else:
            next_tokens = scores.argmax(-1)
        next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_id), next_tokens)
        generated.append(next_tokens)
        finished |= torch.isin(next_tokens, stop)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        logits = decoder.step(next_tokens)
    return torch.stack(generated, dim=1)


def _sample(scores: torch.Tensor, temperature: float, top_k: int, top_p: float,
            generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling (use greedy decoding for temperature 0).")
    scores = scores / temperature
    if top_k > 0:
        kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        # Drop a token once the mass before it already reaches top_p (the top token always stays).
        drop_sorted = (cumulative - sorted_scores.softmax(-1)) >= top_p
        scores = scores.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
    probs = scores.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _beam_search(model: Flamingo, decoder: Any, max_new_tokens: int, num_beams: int, length_penalty: float,
                 stop: torch.Tensor, pad_id: int) -> torch.Tensor:
    batch = decoder.logits.shape[0]
    device = decoder.logits.device
    # The prompt was run once; its state is now shared by all beams of its row (no media are copied).
    decoder.select(torch.arange(batch, device=device).repeat_interleave(num_beams))
    beam_scores = torch.full((batch, num_beams), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0  # the first step must expand a single beam, not K identical ones
    sequences = torch.empty(batch * num_beams, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    stop_set = set(stop.tolist())
    logits = decoder.logits
    blocked = _blocked_tokens_bias(model, logits)
    for step in range(max_new_tokens):
        log_probs = (logits.float() + blocked).log_softmax(-1)  # (B*K, V)
        vocab = log_probs.shape[-1]
        candidates = (beam_scores.view(-1, 1) + log_probs).view(batch, num_beams * vocab)
        top_scores_t, top_index_t = candidates.topk(2 * num_beams, dim=1)  # (B, 2K)
        # One transfer to Python per step (the bookkeeping below is per hypothesis).
        top_scores, top_index = top_scores_t.tolist(), top_index_t.tolist()
        next_rows, next_tokens, next_scores = [], [], []
        for b in range(batch):
            chosen = 0
            if not done[b]:
                for rank in range(2 * num_beams):
                    token, score = top_index[b][rank] % vocab, top_scores[b][rank]
                    row = b * num_beams + top_index[b][rank] // vocab
                    if token in stop_set:
                        # Only a stop within the top K counts, as in the standard beam search.
                        if rank < num_beams:
                            length = max(step, 1)
                            finished[b].append((score / length ** length_penalty,
                                                sequences[row].tolist() + [token]))
                        continue
                    next_rows.append(row)
                    next_tokens.append(token)
                    next_scores.append(score)
                    chosen += 1
                    if chosen == num_beams:
                        break
                while chosen < num_beams:  # more stops than spare candidates: pad with dead beams
                    next_rows.append(b * num_beams)
                    next_tokens.append(pad_id)
                    next_scores.append(float("-inf"))
                    chosen += 1
                finished[b] = sorted(finished[b], key=lambda h: h[0], reverse=True)[:num_beams]
                best_running = next_scores[len(next_scores) - num_beams] / (step + 1) ** length_penalty
                if len(finished[b]) == num_beams and finished[b][-1][0] >= best_running:
                    done[b] = True
            else:
                next_rows.extend(b * num_beams + k for k in range(num_beams))
                next_tokens.extend([pad_id] * num_beams)
                next_scores.extend([float("-inf")] * num_beams)
        rows = torch.tensor(next_rows, device=device)
        tokens = torch.tensor(next_tokens, device=device)
        beam_scores = torch.tensor(next_scores, device=device).view(batch, num_beams)
        sequences = torch.cat([sequences[rows], tokens[:, None]], dim=1)
        if all(done) or step == max_new_tokens - 1:
            break
        decoder.select(rows, within_prompts=True)  # beams stay with their own prompt
        logits = decoder.step(tokens)
    for b in range(batch):
        if not done[b]:
            length = sequences.shape[1]
            for k in range(num_beams):
                score = float(beam_scores[b, k])
                if score > float("-inf"):
                    finished[b].append((score / length ** length_penalty, sequences[b * num_beams + k].tolist()))
    best = [max(hyps, key=lambda h: h[0])[1] for hyps in finished]
    width = max(len(seq) for seq in best)
    out = torch.full((batch, width), pad_id, dtype=torch.long, device=device)
    for b, seq in enumerate(best):
        out[b, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
    return out


def score_candidates(
    model: Flamingo,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    pixel_values: torch.Tensor | None,
    frame_mask: torch.Tensor | None,
    *,
    candidates: list[str] | list[list[str]],
    reduction: str = "sum",
    candidate_batch_size: int = 64,
    media_latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-likelihood of each candidate continuation given each prompt: ``(B, C)``.

    Candidates are tokenized as given (no special tokens), so include any leading space the prompt format needs.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}.")
    batch = input_ids.shape[0]
    per_prompt = [list(candidates)] * batch if candidates and isinstance(candidates[0], str) else candidates
    if len(per_prompt) != batch or len({len(c) for c in per_prompt}) != 1 or not per_prompt[0]:
        raise ValueError("candidates must be one non-empty list of strings for every prompt, or one list per prompt "
                         "with the same number of candidates each.")
    num_candidates = len(per_prompt[0])
    was_training = model.training
    model.eval()
    try:
        attention_mask, latents = _prepare(model, input_ids, attention_mask, pixel_values, frame_mask, media_latents)
        prompt = _CachedDecoder(model, input_ids, attention_mask, latents)
        first_log_probs = prompt.logits.float().log_softmax(-1)  # (B, V): the first candidate token
        tokenizer = model.tokenizer
        scores = torch.empty(batch, num_candidates, device=input_ids.device)
        for start in range(0, num_candidates, candidate_batch_size):
            stop = min(start + candidate_batch_size, num_candidates)
            width = stop - start
            token_lists = [tokenizer(per_prompt[b][c], add_special_tokens=False)["input_ids"]
                           for b in range(batch) for c in range(start, stop)]
            if any(len(t) == 0 for t in token_lists):
                raise ValueError("A candidate tokenized to nothing; candidates must be non-empty strings.")
            length = max(len(t) for t in token_lists)
            cand = torch.full((batch * width, length), tokenizer.pad_token_id, dtype=torch.long,
                              device=input_ids.device)
            cand_mask = torch.zeros_like(cand)
            for i, tokens in enumerate(token_lists):
                cand[i, : len(tokens)] = torch.tensor(tokens, device=input_ids.device)
                cand_mask[i, : len(tokens)] = 1
            rows = torch.arange(batch, device=input_ids.device).repeat_interleave(width)
            cache = prompt.cache.selected(rows)  # the prompt's own cache stays intact for the next candidates
            full_mask = torch.cat([prompt.attention_mask[rows], cand_mask], dim=1)
            routing = model.route(cand, cand_mask, media_seen=prompt.rows.count[rows],
                                  row_media_offset=prompt.rows.offset[rows], row_media_count=prompt.rows.count[rows])
            context = MediaContext(routing=routing, latents=None, kv_cache=prompt.context_cache)
            hidden, _ = model.decode(cand, full_mask, context, cache=cache, use_cache=True)
            log_probs = model.logits(hidden[:, :-1]).float().log_softmax(-1) if length > 1 else None
            # token 0 is predicted by the prompt's last position, token j by candidate position j - 1
            token_scores = first_log_probs[rows].gather(1, cand[:, :1])
            if log_probs is not None:
                token_scores = torch.cat([token_scores, log_probs.gather(2, cand[:, 1:, None])[..., 0]], dim=1)
            token_scores = token_scores * cand_mask
            total = token_scores.sum(1)
            if reduction == "mean":
                total = total / cand_mask.sum(1)
            scores[:, start:stop] = total.view(batch, width)
        return scores
    finally:
        model.train(was_training)
