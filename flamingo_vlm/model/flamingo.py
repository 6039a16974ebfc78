"""The Flamingo model: frozen vision encoder -> Perceiver Resampler -> gated cross-attention inside a frozen LM.

Data flow of one forward pass (see docs/architecture.md):
    pixel_values (N, F, 3, H, W) --vision--> (N, F, P, Dv) --resampler--> latents (N, L, Dr)
    input_ids (B, T) --embeddings (+ new token rows)--> (B, T, E)
        --[GATED XATTN-DENSE reads latents routed per token] + frozen LM block--> x num_layers
        --final norm, head (+ new token logits)--> logits (B, T, V)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flamingo_vlm.backbones.language import (
    add_flamingo_tokens,
    base_model_and_head,
    embeddings_are_tied,
    load_language_model,
    load_tokenizer,
)
from flamingo_vlm.backbones.vision import VisionEncoder, load_vision_tower
from flamingo_vlm.config import FlamingoConfig
from flamingo_vlm.model.cross_attention import GatedCrossAttentionBlock, MediaContext, MediaRouting, route_media
from flamingo_vlm.model.fusion import (
    MEDIA_KWARG,
    FlamingoDecoderLayer,
    GraftedBlocks,
    NewTokenEmbeddings,
    cross_attn_layer_indices,
    find_decoder_layers,
    fuse_decoder_layers,
    unfused,
)
from flamingo_vlm.model.resampler import build_resampler
from flamingo_vlm.processing.images import ImageProcessor
from flamingo_vlm.processing.processor import FlamingoProcessor

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CROSS_ATTN_KEY = ".cross_attn_block."


@dataclass
class FlamingoOutput:
    """``logits`` (B, T, V); ``loss`` when labels were given; ``cache`` the LM's KV cache when asked for."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    cache: Any = None


class Flamingo(nn.Module):
    """A Flamingo visual language model built around a frozen HF causal LM and a frozen vision encoder."""

    def __init__(self, config: FlamingoConfig, lm: PreTrainedModel, vision: VisionEncoder,
                 tokenizer: PreTrainedTokenizerBase, image_processor: ImageProcessor) -> None:
        super().__init__()
        self.config = config
        # Where this process loaded the backbones from, when the config names them relative to a saved folder
        # (self-contained models): lets a non-self-contained save point back at them instead of at nothing.
        self.loaded_backbones: dict[str, str | None] = {"lm": config.lm, "vision": config.vision}
        add_flamingo_tokens(tokenizer, config.media_token, config.end_of_chunk_token)
        self.media_token_id = tokenizer.convert_tokens_to_ids(config.media_token)
        self.end_of_chunk_token_id = tokenizer.convert_tokens_to_ids(config.end_of_chunk_token)

        self.vision = vision
        media_dim = config.resampler_dim or vision.feature_dim
        # A projection only when the resampler is narrower/wider than the vision features.
        self.vision_proj = nn.Linear(vision.feature_dim, media_dim) if media_dim != vision.feature_dim else None
        self.resampler = build_resampler(
            config.resampler_type, media_dim, config.resampler_depth, config.resampler_heads,
            config.resampler_head_dim, config.num_latents, config.max_frames, config.max_frames_at_inference,
            config.ffw_mult, config.spatial_positions,
        )

        self.lm = lm
        self.decoder_layers_path, layers = find_decoder_layers(lm, config.decoder_layers)
        hidden_size = lm.config.hidden_size
        block_layers = cross_attn_layer_indices(len(layers), config.cross_attn_every)
        new_blocks = [
            GatedCrossAttentionBlock(
                hidden_size, media_dim, config.cross_attn_heads, config.cross_attn_head_dim, config.ffw_mult,
                block_index=index, use_dense=config.cross_attn_style == "gated_xattn_dense",
                use_tanh_gating=config.use_tanh_gating,
            )
            for index in range(len(block_layers))
        ]
        if config.placement == "grafted":
            fuse_decoder_layers(layers, {len(layers) - 1: GraftedBlocks(new_blocks)}, block_after=True)
        else:
            fuse_decoder_layers(layers, dict(zip(block_layers, new_blocks)))
        self.num_cross_attn_blocks = len(new_blocks)

        new_ids = [self.media_token_id, self.end_of_chunk_token_id]
        output_init = None if embeddings_are_tied(lm) else _new_rows_init(lm.get_output_embeddings().weight, new_ids)
        self.new_tokens = NewTokenEmbeddings(new_ids, _new_rows_init(lm.get_input_embeddings().weight, new_ids),
                                             output_init)

        self.processor = FlamingoProcessor(tokenizer, image_processor, media_token=config.media_token,
                                           end_of_chunk_token=config.end_of_chunk_token,
                                           max_length=_max_positions(lm.config),
                                           max_frames=config.max_frames_at_inference)
        self._set_trainable()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_backbones(
        cls,
        lm: str | os.PathLike | PreTrainedModel,
        vision: str | os.PathLike | nn.Module,
        *,
        tokenizer: PreTrainedTokenizerBase | str | os.PathLike | None = None,
        image_processor: ImageProcessor | None = None,
        image_size: int | None = None,
        vision_feature_dim: int | None = None,
        config: FlamingoConfig | None = None,
        **config_fields: Any,
    ) -> Flamingo:
        """Build a Flamingo from a causal LM and a vision encoder, each a hub id or local folder.

        ``vision`` may also be any ``nn.Module`` mapping ``(N, 3, H, W)`` pixels to ``(N, tokens, dim)``; pass its
        ``image_size`` (and an ``image_processor`` with its normalisation). Remaining keyword arguments are
        ``FlamingoConfig`` fields, e.g. ``cross_attn_every=4, num_latents=64, resampler_depth=6``.
        """
        base = config or FlamingoConfig()
        lm_source = str(lm) if isinstance(lm, (str, os.PathLike)) else base.lm
        vision_source = str(vision) if isinstance(vision, (str, os.PathLike)) else None
        config = replace(base, lm=lm_source, vision=vision_source, **config_fields)

        if isinstance(lm, PreTrainedModel):
            if tokenizer is None:
                raise ValueError("When lm= is a model object, pass its tokenizer= as well.")
            language_model = lm
        else:
            language_model = load_language_model(lm, random_init=config.lm_random_init)
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(tokenizer if tokenizer is not None else lm)

        if isinstance(vision, (str, os.PathLike)):
            tower = load_vision_tower(vision)
            if image_processor is None:
                image_processor = ImageProcessor.from_vision_folder(vision, image_size=image_size)
        elif isinstance(vision, nn.Module):
            tower = vision
            if image_processor is None:
                if image_size is None:
                    raise ValueError("With a custom vision module, pass image_size= (or a full image_processor=).")
                image_processor = ImageProcessor(image_size=image_size)
        else:
            raise ValueError(f"vision= must be a hub id, a folder or an nn.Module, not {type(vision).__name__}.")
        encoder = VisionEncoder(tower, feature_layer=config.vision_feature_layer, drop_cls=config.vision_drop_cls,
                                feature_dim=vision_feature_dim, image_size=image_processor.image_size)
        return cls(config, language_model, encoder, tokenizer, image_processor)

    def _set_trainable(self) -> None:
        """Only the new layers and the two new token rows train (plus the whole LM when ``freeze_lm`` is off)."""
        for param in self.parameters():
            param.requires_grad_(False)
        for module in (self.resampler, self.vision_proj, self.new_tokens, *self.cross_attn_blocks()):
            if module is not None:
                module.requires_grad_(True)
        if not self.config.freeze_lm:
            self.lm.requires_grad_(True)

    def cross_attn_blocks(self) -> list[GatedCrossAttentionBlock]:
        """The GATED XATTN-DENSE blocks, in order from the bottom of the LM."""
        return [m for m in self.lm.modules() if isinstance(m, GatedCrossAttentionBlock)]

    def train(self, mode: bool = True) -> Flamingo:
        """Frozen backbones stay in eval mode (no dropout) while the new layers train."""
        super().train(mode)
        self.vision.eval()
        if self.config.freeze_lm:
            self.lm.eval()
            for block in self.cross_attn_blocks():
                block.train(mode)
        return self

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self.new_tokens.input_rows.device

    # ------------------------------------------------------------------ forward
    def encode_media(self, pixel_values: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels ``(N, F, 3, H, W)`` -> resampled media tokens ``(N, num_latents, Dr)``, each item independently."""
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be (media, frames, 3, H, W); got shape {tuple(pixel_values.shape)}.")
        num_media, frames = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)  # (N*F, 3, H, W)
        valid = None if frame_mask is None or bool(frame_mask.all()) else frame_mask.reshape(-1)
        if valid is not None:
            flat = flat[valid]  # padded frames are never encoded
        vision_param = next(self.vision.parameters(), None)
        if vision_param is not None:
            flat = flat.to(vision_param.dtype)
        frozen = vision_param is None or not vision_param.requires_grad
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            features = self.vision(flat)  # (n, P, Dv)
        if valid is not None:
            full = features.new_zeros(num_media * frames, *features.shape[1:])
            features = full.index_copy(0, torch.nonzero(valid).squeeze(1), features)
        features = features.view(num_media, frames, *features.shape[1:])  # (N, F, P, Dv)
        features = features.to(self.new_tokens.input_rows.dtype)
        if self.vision_proj is not None:
            features = self.vision_proj(features)
        return self.resampler(features, frame_mask)

    def route(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
              link_to_next: torch.Tensor | None = None, **state: torch.Tensor) -> MediaRouting:
        """Image-causal routing for ``input_ids`` under this model's masking choice."""
        return route_media(input_ids, self.media_token_id, attention_mask=attention_mask, link_to_next=link_to_next,
                           attend_all_previous=self.config.media_attention == "all_previous", **state)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        media_latents: torch.Tensor | None = None,
        link_to_next: torch.Tensor | None = None,
    ) -> FlamingoOutput:
        """Logits for interleaved prompts; ``labels`` (B, T) with -100 for ignored positions gives the loss.

        ``pixel_values`` ``(N, F, 3, H, W)`` hold the batch's media in prompt order, row after row, one per
        ``<image>`` token. ``media_latents`` ``(N, L, D)`` may be passed instead (already resampled).
        ``link_to_next`` ``(B,)`` overrides the p_next augmentation draw for each row.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        latents = self._media_latents(input_ids, pixel_values, frame_mask, media_latents)
        if link_to_next is None and self.training and self.config.p_next > 0:
            link_to_next = torch.rand(input_ids.shape[0], device=input_ids.device) < self.config.p_next
        routing = self.route(input_ids, attention_mask, link_to_next=link_to_next)
        context = MediaContext(routing=routing, latents=latents)
        hidden, _ = self.decode(input_ids, attention_mask, context)
        logits = self.logits(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return FlamingoOutput(logits=logits, loss=loss)

    def _media_latents(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None,
                       frame_mask: torch.Tensor | None, media_latents: torch.Tensor | None) -> torch.Tensor | None:
        num_tags = int((input_ids == self.media_token_id).sum())
        if media_latents is None and pixel_values is not None:
            media_latents = self.encode_media(pixel_values, frame_mask)
        num_media = 0 if media_latents is None else media_latents.shape[0]
        if num_tags != num_media:
            raise ValueError(
                f"The batch has {num_tags} {self.config.media_token} tokens but {num_media} media items were given; "
                f"each {self.config.media_token} needs exactly one image or video (use the model's processor)."
            )
        return media_latents

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: MediaContext | None,
               cache: Any = None, use_cache: bool = False, check_token_ids: bool = True) -> tuple[torch.Tensor, Any]:
        """Run the fused LM on ``input_ids`` (the new chunk) -> final hidden states ``(B, T, H)`` and the LM cache.

        ``attention_mask`` covers the cached tokens plus the new chunk. ``check_token_ids=False`` skips the
        vocabulary check (for ids the decoder itself produced).
        """
        base, _ = base_model_and_head(self.lm)
        embeds = self.new_tokens.embed(input_ids, self.lm.get_input_embeddings(), check=check_token_ids)
        # Positions count only real tokens, so left-padded rows start at 0 like unpadded ones.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)[:, -input_ids.shape[1]:]
        kwargs = {MEDIA_KWARG: context} if context is not None else {}
        out = base(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                   use_cache=use_cache, **kwargs)
        return out.last_hidden_state, getattr(out, "cache", None)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states -> logits over the LM vocabulary plus the new tokens."""
        _, head = base_model_and_head(self.lm)
        return self.new_tokens.logits(hidden, head(hidden))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 pixel_values: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None,
                 **generation_kwargs: Any) -> torch.Tensor:
        """Generate continuations; returns only the new tokens ``(B, new)``, padded after each row stops.

        Greedy by default; ``num_beams > 1`` for beam search, ``do_sample=True`` for sampling. Stops at
        ``<|endofchunk|>`` or EOS. See ``flamingo_vlm.model.generation.generate`` for every option.
        """
        from flamingo_vlm.model.generation import generate

        return generate(self, input_ids, attention_mask, pixel_values, frame_mask, **generation_kwargs)

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
              pixel_values: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None, *,
              candidates: list[str] | list[list[str]], reduction: str = "sum",
              candidate_batch_size: int = 64) -> torch.Tensor:
        """Log-likelihood of each candidate continuation of each prompt: ``(B, C)``.

        The prompt (and its media) is run once; its cache is shared by all candidates. ``reduction`` is ``sum``
        (total log-likelihood) or ``mean`` (per token, as OpenFlamingo ranks class names).
        """
        from flamingo_vlm.model.generation import score_candidates

        return score_candidates(self, input_ids, attention_mask, pixel_values, frame_mask, candidates=candidates,
                                reduction=reduction, candidate_batch_size=candidate_batch_size)

    # ------------------------------------------------------------------ save / load
    def flamingo_state_dict_keys(self) -> list[str]:
        """Keys a checkpoint stores: the new layers and token rows, plus the LM itself when it is trained."""
        keys = []
        for key in self.state_dict():
            if key.startswith("vision."):
                continue
            if key.startswith("lm.") and CROSS_ATTN_KEY not in key and self.config.freeze_lm:
                continue
            keys.append(key)
        if embeddings_are_tied(self.lm) and not self.config.freeze_lm:
            keys.remove("lm." + _head_key(self.lm))  # tied to the input embeddings; safetensors rejects aliasing
        return keys

    def flamingo_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors of ``flamingo_state_dict_keys`` (this process's view; see training for FSDP)."""
        state = self.state_dict()
        return {key: state[key] for key in self.flamingo_state_dict_keys()}

    def save_pretrained(self, directory: str | os.PathLike, *, self_contained: bool = False,
                        weights: dict[str, torch.Tensor] | None = None, dtype: torch.dtype | None = None) -> None:
        """Write config, new weights (safetensors), tokenizer and image processor; with ``self_contained`` also the
        backbones (``lm/`` and ``vision/`` subfolders) so the folder loads with no other files.

        ``weights`` replaces this process's ``flamingo_state_dict()`` (e.g. full weights gathered under FSDP).
        ``dtype`` (e.g. ``torch.bfloat16``) stores every floating-point weight in that type, for smaller files;
        loading casts back to the model's float32."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        if self_contained:
            if not self.vision.is_hf:
                raise ValueError("A custom vision module cannot be saved self-contained; save it yourself and pass "
                                 "it again as from_pretrained(..., vision=module).")
            with unfused(self.decoder_layers()):
                _save_hf_model(self.lm, directory / "lm", dtype)
            self.tokenizer.save_pretrained(directory / "lm")
            _save_hf_model(self.vision.tower, directory / "vision", dtype)
            config = replace(config, lm="lm", vision="vision")
        else:
            config = replace(config, lm=self._backbone_reference(directory, "lm"),
                             vision=self._backbone_reference(directory, "vision"))
        state = {k: _cast(v.detach().contiguous().cpu(), dtype)
                 for k, v in (weights or self.flamingo_state_dict()).items()}
        _atomic_save_safetensors(state, directory / WEIGHTS_NAME)
        config.save(directory / CONFIG_NAME)
        self.tokenizer.save_pretrained(directory)
        self.processor.image_processor.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, lm: str | os.PathLike | None = None,
                        vision: str | os.PathLike | nn.Module | None = None) -> Flamingo:
        """Load a saved Flamingo (strict: every stored weight must match a parameter and vice versa).

        ``lm=``/``vision=`` override where the backbones come from (e.g. a local copy of a hub model, or the
        custom vision module the model was built with).
        """
        from flamingo_vlm.hub import resolve_model_path

        directory = resolve_model_path(name_or_path)
        config = FlamingoConfig.load(directory / CONFIG_NAME)
        lm_source = lm or _resolve_relative(directory, config.lm)
        vision_source = vision if vision is not None else config.vision
        if vision_source is None:
            raise ValueError(f"{directory} was built with a custom vision module; pass it again as vision=.")
        if isinstance(vision_source, str):
            vision_source = _resolve_relative(directory, vision_source)
        image_processor = ImageProcessor.from_pretrained(directory)
        model = cls.from_backbones(lm_source, vision_source, tokenizer=load_tokenizer(directory),
                                   image_processor=image_processor, config=config)
        model.loaded_backbones = {"lm": model.config.lm, "vision": model.config.vision}
        model.config = replace(model.config, lm=config.lm, vision=config.vision)
        model.load_flamingo_weights(directory / WEIGHTS_NAME)
        return model

    def _backbone_reference(self, directory: Path, key: str) -> str | None:
        """What a non-self-contained save records for a backbone: the config's own value (hub id, absolute path,
        or a path that resolves from ``directory``), else the absolute folder it was actually loaded from."""
        value, loaded = getattr(self.config, key), self.loaded_backbones.get(key)
        if value is None or loaded is None or Path(value).is_absolute() or (directory / value).exists():
            return value
        return str(Path(loaded).resolve()) if Path(loaded).exists() else value

    def load_flamingo_weights(self, path: str | os.PathLike) -> None:
        """Strictly load a ``model.safetensors`` written by ``save_pretrained``."""
        if not Path(path).is_file():
            raise ValueError(f"No Flamingo weights at {path}.")
        stored = load_file(str(path))
        expected = self.flamingo_state_dict()
        missing = sorted(set(expected) - set(stored))
        unexpected = sorted(set(stored) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"Checkpoint {path} does not match this model: missing keys {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
                f"{' ...' if len(unexpected) > 10 else ''}. Was it saved from a model with another config?"
            )
        for key, value in stored.items():
            if value.shape != expected[key].shape:
                raise ValueError(f"Checkpoint {path}: {key} has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(expected[key].shape)}.")
        self.load_state_dict(stored, strict=False)

    def decoder_layers(self) -> nn.ModuleList:
        """The LM's decoder layers, each wrapped with its cross-attention block (bottom to top)."""
        return find_decoder_layers(self.lm, self.decoder_layers_path)[1]

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts: total, trainable, and per part."""
        def count(params: Any) -> int:
            return sum(p.numel() for p in params)

        blocks = count(p for b in self.cross_attn_blocks() for p in b.parameters())
        lm_total = count(self.lm.parameters()) - blocks
        return {
            "total": count(self.parameters()),
            "trainable": count(p for p in self.parameters() if p.requires_grad),
            "vision": count(self.vision.parameters()),
            "lm": lm_total,
            "resampler": count(self.resampler.parameters()) + (count(self.vision_proj.parameters()) if self.vision_proj else 0),
            "cross_attn": blocks,
            "new_token_rows": count(self.new_tokens.parameters()),
        }


def _new_rows_init(weight: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """Start each new token's row from the LM's own row when the LM already has one (a tokenizer trained with
    these tokens), else from the mean of the vocabulary rows, a neutral point for a frozen LM."""
    weight = weight.detach().float()
    mean = weight.mean(0)
    return torch.stack([weight[i] if i < weight.shape[0] else mean for i in token_ids])


def _max_positions(lm_config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(lm_config, name, None)
        if isinstance(value, int):
            return value
    return None


def _head_key(lm: PreTrainedModel) -> str:
    head = lm.get_output_embeddings()
    for name, module in lm.named_modules():
        if module is head:
            return name + ".weight"
    raise ValueError("Could not locate the LM's output head.")


def _resolve_relative(directory: Path, source: str) -> str:
    candidate = directory / source
    return str(candidate) if candidate.exists() else source


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def _save_hf_model(model: PreTrainedModel, directory: Path, dtype: torch.dtype | None) -> None:
    """``save_pretrained``, optionally from a copy cast to ``dtype`` (the live model keeps its own dtype)."""
    if dtype is None:
        model.save_pretrained(directory)
        return
    import copy

    copy.deepcopy(model).to(dtype).save_pretrained(directory)
    # save_pretrained writes the stored dtype into config.json, and transformers' from_pretrained (dtype "auto" by
    # default) builds the model in the config's dtype. The live model's dtype goes back there, so that a user who
    # loads the backbone alone gets what the Flamingo computes in (float32), not bf16, which CPUs without native
    # bf16 run about 100x slower; the bf16 weights are cast on loading.
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = str(model.dtype).removeprefix("torch.")
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _atomic_save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "library": "flamingo-vlm"})
    os.replace(tmp, path)
