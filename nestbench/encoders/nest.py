"""NEST (NeMo ``EncDecDenoiseMaskedTokenPredModel``) without NeMo.

:class:`NestModel` has NeMo's submodules and state-dict keys (``preprocessor``, ``encoder``,
``quantizer``, ``mask_processor``, ``decoder``), so a ``.nemo`` file loads strictly;
:func:`load_nest` does that. :class:`NestEncoder` wraps it for nestbench's Encoder contract.
"""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from . import fastconformer
from .base import Encoder, EncoderOutput
from .checkpoint import Checkpoint, CheckpointError, read_checkpoint
from .fastconformer import NEST_SIZES, FastConformerConfig, FastConformerEncoder
from .preprocessor import MelPreprocessor, check_generation, generation_for_version
from .ssl_modules import (
    MultiSoftmaxDecoder,
    RandomBlockMasking,
    RandomProjectionVectorQuantizer,
    masked_token_loss,
)

NEST_TARGET = "nemo.collections.asr.models.ssl_models.EncDecDenoiseMaskedTokenPredModel"
IGNORED_PREFIXES = ("decoder_ssl.",)
"""Checkpoint keys NeMo itself no longer uses (old NEST files): skipped on load."""

_NEMO_VERSION_OF = {"2.4": "2.4.0", "2.5": "2.5.0"}


def _kwargs(cfg: dict, names) -> dict:
    return {k: cfg[k] for k in names if k in cfg and cfg[k] is not None}


def _build_part(cfg: dict, section: str, cls: type[nn.Module]) -> nn.Module | None:
    """Build ``cls`` from ``cfg[section]`` (None if the section is absent), checking the
    ``_target_`` class name and passing the keys ``cls`` accepts."""
    part = cfg.get(section)
    if part is None:
        return None
    target = str(part.get("_target_", cls.__name__))
    if target.rsplit(".", 1)[-1] != cls.__name__:
        hint = " (encoder_only=True loads just the encoder)" if section == "decoder" else ""
        raise ValueError(f"unsupported {section} {target!r}: only {cls.__name__}{hint}")
    return cls(**_kwargs(part, inspect.signature(cls).parameters))


class NestModel(nn.Module):
    """NEST: mel preprocessor, FastConformer encoder and the (optional) pretraining parts.

    ``quantizer``, ``mask_processor`` and ``decoder`` are None for encoder-only models.
    """

    def __init__(
        self,
        preprocessor: MelPreprocessor,
        encoder: FastConformerEncoder,
        quantizer: RandomProjectionVectorQuantizer | None = None,
        mask_processor: RandomBlockMasking | None = None,
        decoder: MultiSoftmaxDecoder | None = None,
        loss_cfg: dict | None = None,
        config: dict | None = None,
    ):
        super().__init__()
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.quantizer = quantizer
        self.mask_processor = mask_processor
        self.decoder = decoder
        self.loss_cfg = {"combine_time_steps": 8, "mask_threshold": 0.8, **(loss_cfg or {})}
        self.config = copy.deepcopy(config) if config is not None else None

    # ----------------------------------------------------------------------- construction

    @classmethod
    def from_config(
        cls,
        cfg: dict,
        generation: str | None = None,
        batch_invariant: bool = False,
        encoder_only: bool = False,
    ) -> NestModel:
        """Build (random weights) from a NeMo ``model_config.yaml`` dict.

        generation: "2.4" or "2.5"; None picks it from ``cfg["nemo_version"]``
            (:func:`generation_for_version`).
        batch_invariant: for generation 2.4, process each utterance as NeMo would alone
            (see ``nestbench.encoders.preprocessor``); exact NeMo batching when False.
        encoder_only: leave out quantizer, masking and decoder even if the config has them.
        """
        if "model" in cfg and "encoder" not in cfg:
            cfg = cfg["model"]
        if "encoder" not in cfg or "preprocessor" not in cfg:
            raise ValueError("not a NeMo model config: no 'preprocessor' or 'encoder' section")
        generation = check_generation(generation or generation_for_version(cfg.get("nemo_version")))
        if cfg.get("mask_position", "pre_conv") != "pre_conv":
            raise ValueError(f"unsupported mask_position={cfg['mask_position']!r} (only pre_conv)")
        pre = MelPreprocessor.from_nemo(cfg["preprocessor"], generation, batch_invariant)
        enc_cfg = FastConformerConfig.from_nemo(
            cfg["encoder"], masked_subsampling=generation == "2.5"
        )
        if enc_cfg.feat_in != pre.n_mels:
            raise ValueError(f"encoder feat_in={enc_cfg.feat_in} but {pre.n_mels} mel features")
        quantizer = mask_processor = decoder = None
        if not encoder_only:
            quantizer = _build_part(cfg, "quantizer", RandomProjectionVectorQuantizer)
            mask_processor = _build_part(cfg, "masking", RandomBlockMasking)
            decoder = _build_part(cfg, "decoder", MultiSoftmaxDecoder)
        loss = _kwargs(cfg.get("loss") or {}, ("combine_time_steps", "mask_threshold"))
        return cls(
            pre, FastConformerEncoder(enc_cfg), quantizer, mask_processor, decoder, loss, cfg
        )

    @classmethod
    def from_size(
        cls, name: str, num_classes: int = 8192, generation: str = "2.5", **overrides
    ) -> NestModel:
        """A randomly initialised NEST of a named size (``NEST_SIZES``: tiny, small, medium,
        large, xlarge) with the full pretraining parts; ``overrides`` go to FastConformerConfig."""
        if name not in NEST_SIZES:
            raise KeyError(f"unknown NEST size {name!r}; known: {', '.join(NEST_SIZES)}")
        enc = FastConformerConfig(**{**NEST_SIZES[name], **overrides})
        return cls.from_config(nest_config(enc, num_classes, generation), generation)

    def to_nemo_config(self) -> dict:
        """A NeMo-style ``model_config.yaml`` dict describing this model (for writing .nemo).

        Sections of the config the model was built from that this class does not own
        (``optim``, ``train_ds``, ...) are kept. ``nemo_version`` is kept when it implies the
        current preprocessing generation, else set to "2.4.0" or "2.5.0" accordingly.
        """
        q, m, d = self.quantizer, self.mask_processor, self.decoder
        enc = self.encoder.cfg
        cfg = nest_config(
            enc,
            num_classes=q.num_classes if q is not None else 8192,
            generation=self.generation,
        )
        cfg["preprocessor"] = self.preprocessor.to_nemo()
        if q is not None:
            cfg["quantizer"].update(
                feat_in=q.feat_in,
                code_dim=q.code_dim,
                num_classes=q.num_classes,
                num_books=q.num_books,
                dist_fn=q.dist_fn,
                combine_time_steps=q.combine_time_steps,
            )
            cfg.update(num_classes=q.num_classes, num_books=q.num_books, code_dim=q.code_dim)
        else:
            del cfg["quantizer"]
        if m is not None:
            cfg["masking"].update(
                feat_in=m.mask_embedding.numel(), block_size=m.block_size, mask_prob=m.mask_prob
            )
        else:
            del cfg["masking"]
        if d is not None:
            conv = d.decoder_layers[0]
            cfg["decoder"].update(
                feat_in=conv.in_channels,
                num_classes=d.num_classes,
                num_decoders=d.num_decoders,
                use_bias=conv.bias is not None,
            )
        else:
            del cfg["decoder"]
        cfg["loss"].update(self.loss_cfg)
        merged = copy.deepcopy(self.config) if self.config else {}
        for section in ("quantizer", "masking", "decoder"):
            merged.pop(section, None)
        merged.update(cfg)
        old_version = (self.config or {}).get("nemo_version")
        if old_version and generation_for_version(old_version) == self.generation:
            merged["nemo_version"] = old_version
        return merged

    # ----------------------------------------------------------------------- properties

    @property
    def generation(self) -> str:
        """Preprocessing generation, "2.4" or "2.5" (settable: switches mel and subsampling)."""
        return self.preprocessor.generation

    @generation.setter
    def generation(self, value: str) -> None:
        value = check_generation(value)
        self.preprocessor.generation = value
        self.encoder.masked_subsampling = value == "2.5"

    @property
    def batch_invariant(self) -> bool:
        return self.preprocessor.batch_invariant

    @batch_invariant.setter
    def batch_invariant(self, value: bool) -> None:
        self.preprocessor.batch_invariant = bool(value)

    @property
    def frame_shift(self) -> int:
        """Input samples per encoder step (1280 for NEST)."""
        return self.preprocessor.hop_length * self.encoder.cfg.subsampling_factor

    # ----------------------------------------------------------------------- forward

    def features(self, wav: torch.Tensor, wav_lens: torch.Tensor):
        """wav [B, S], wav_lens [B] -> (mel [B, F, T], mel_len [B], subsampling mask lengths or None)."""
        mel, mel_len = self.preprocessor(wav, wav_lens)
        sub_len = None
        if self.generation == "2.4" and self.batch_invariant:
            # emulate an unpadded batch of one: the subsampling sees zeros only past the
            # utterance's own pad_to-rounded length
            pad_to = max(self.preprocessor.pad_to, 1)
            sub_len = ((mel_len + pad_to - 1) // pad_to * pad_to).clamp(max=mel.shape[-1])
        return mel, mel_len, sub_len

    def encode(self, mel: torch.Tensor, mel_len: torch.Tensor, sub_len=None):
        """mel [B, F, T], mel_len [B] -> (hidden_states: L+1 x [B, T', d], lengths [B])."""
        return self.encoder(mel, mel_len, sub_len)

    def forward(
        self, wav: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """wav: [B, S] 16 kHz audio, wav_lens: [B] samples ->
        (hidden_states: tuple of L+1 FloatTensor [B, T', d], lengths LongTensor [B])."""
        mel, mel_len, sub_len = self.features(wav, wav_lens)
        return self.encode(mel, mel_len, sub_len)

    def forward_pretrain(
        self,
        wav: torch.Tensor,
        wav_lens: torch.Tensor,
        noisy_wav: torch.Tensor | None = None,
        noisy_lens: torch.Tensor | None = None,
        apply_mask: bool = True,
    ) -> dict[str, torch.Tensor]:
        """The NEST pretraining step: targets from the clean audio, masked noisy audio encoded.

        wav/noisy_wav: [B, S]; lens: [B]. ``noisy_wav`` defaults to ``wav`` (no augmentation).
        Returns dict with ``loss`` (scalar), ``log_probs`` [B, T', C, H], ``tokens`` [B, T', H],
        ``masks`` [B, F, T], ``lengths`` [B].
        """
        if self.quantizer is None or self.decoder is None:
            raise RuntimeError("this NestModel has no quantizer/decoder (encoder-only)")
        mel, _mel_len, _ = self.features(wav, wav_lens)
        tokens = self.quantizer(mel)
        if noisy_wav is None:
            noisy_wav, noisy_lens = wav, wav_lens
        noisy, noisy_len, sub_len = self.features(noisy_wav, noisy_lens)
        if apply_mask:
            if self.mask_processor is None:
                raise RuntimeError("this NestModel has no mask_processor")
            noisy, masks = self.mask_processor(noisy, noisy_len)
        else:
            masks = torch.zeros_like(noisy)
        hidden, lengths = self.encode(noisy, noisy_len, sub_len)
        log_probs = self.decoder(hidden[-1].transpose(1, 2))
        loss = masked_token_loss(log_probs, tokens, masks, **self.loss_cfg)
        return {
            "loss": loss,
            "log_probs": log_probs,
            "tokens": tokens,
            "masks": masks,
            "lengths": lengths,
        }

    # ----------------------------------------------------------------------- loading

    def load_checkpoint_state(self, state: dict[str, torch.Tensor], path: str | Path = "<state>"):
        """Load ``state`` strictly (``decoder_ssl.*`` ignored; missing SSL parts allowed only
        when this model has none). Raises CheckpointError listing missing/unexpected keys."""
        state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise CheckpointError(_mismatch_message(path, missing, unexpected))
        wrong = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items()
            if tuple(state[k].shape) != tuple(v.shape)
        ]
        if wrong:
            raise CheckpointError(
                f"{path}: {len(wrong)} tensors have the wrong shape: " + "; ".join(wrong[:20])
            )
        self.load_state_dict(
            {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
        )


def _mismatch_message(path, missing: list[str], unexpected: list[str]) -> str:
    def show(keys):
        more = f", ... ({len(keys) - 20} more)" if len(keys) > 20 else ""
        return ", ".join(keys[:20]) + more

    parts = [f"{path}: checkpoint does not match the model"]
    if missing:
        parts.append(f"{len(missing)} missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
    return "; ".join(parts)


def nest_config(enc: FastConformerConfig, num_classes: int = 8192, generation: str = "2.5") -> dict:
    """A NeMo-style NEST ``model_config.yaml`` dict around encoder settings ``enc``."""
    feat = enc.feat_in
    return {
        "sample_rate": 16000,
        "num_classes": num_classes,
        "num_books": 1,
        "code_dim": 16,
        "squeeze_single": False,
        "mask_position": "pre_conv",
        "preprocessor": MelPreprocessor(features=feat).to_nemo(),
        "masking": {
            "_target_": "nemo.collections.asr.modules.RandomBlockMasking",
            "block_size": 40,
            "mask_prob": 0.01,
            "feat_in": feat,
            "freeze": True,
            "allow_overlap": True,
        },
        "quantizer": {
            "_target_": "nemo.collections.asr.modules.RandomProjectionVectorQuantizer",
            "feat_in": feat,
            "code_dim": 16,
            "num_books": 1,
            "num_classes": num_classes,
            "dist_fn": "l2",
            "freeze": True,
            "squeeze_single": False,
            "combine_time_steps": 8,
        },
        "encoder": enc.to_nemo(),
        "decoder": {
            "_target_": "nemo.collections.asr.modules.MultiSoftmaxDecoder",
            "feat_in": enc.d_model,
            "num_classes": num_classes,
            "num_decoders": 1,
            "squeeze_single": False,
            "use_bias": True,
        },
        "loss": {
            "_target_": "nemo.collections.asr.losses.MultiMLMLoss",
            "combine_time_steps": 8,
            "mask_threshold": 0.8,
            "num_decoders": 1,
            "squeeze_single": False,
        },
        "target": NEST_TARGET,
        "nemo_version": _NEMO_VERSION_OF[check_generation(generation)],
    }


def infer_config(state: dict[str, torch.Tensor]) -> dict:
    """Guess a NEST model config from the shapes of a bare state dict.

    Sizes, kernel, subsampling, biases and the SSL parts come from the shapes. Not recoverable
    from weights: ``xscaling`` (taken as ``use_bias``, as in every NEST size) and the
    preprocessing generation (``nemo_version`` left out, so 2.5 unless overridden).
    """

    def get(key):
        if key not in state:
            raise CheckpointError(f"cannot infer the model: no {key!r} in the state dict")
        return state[key]

    u = get("encoder.layers.0.self_attn.pos_bias_u")
    n_heads, d_k = u.shape
    d_model = n_heads * d_k
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    conv_ids = {
        int(m.group(1)) for k in state if (m := re.match(r"encoder\.pre_encode\.conv\.(\d+)\.", k))
    }
    n_strided = 1 + sum(
        1 for i in conv_ids if i > 0 and state[f"encoder.pre_encode.conv.{i}.weight"].shape[1] == 1
    )
    channels = get("encoder.pre_encode.conv.0.weight").shape[0]
    fb = state.get("preprocessor.featurizer.fb")
    feat_in = fb.shape[1] if fb is not None else 80
    use_bias = "encoder.layers.0.feed_forward1.linear1.bias" in state
    enc = FastConformerConfig(
        feat_in=feat_in,
        n_layers=max(layer_ids) + 1,
        d_model=d_model,
        n_heads=n_heads,
        subsampling_factor=2**n_strided,
        subsampling_conv_channels=channels,
        ff_expansion_factor=get("encoder.layers.0.feed_forward1.linear1.weight").shape[0]
        // d_model,
        conv_kernel_size=get("encoder.layers.0.conv.depthwise_conv.weight").shape[-1],
        xscaling=use_bias,
        use_bias=use_bias,
    )
    cfg = nest_config(enc)
    del cfg["nemo_version"]
    if "quantizer.codebooks" in state:
        books, classes, code_dim = state["quantizer.codebooks"].shape
        combine = get("quantizer.proj.weight").shape[1] // feat_in
        cfg["quantizer"].update(
            num_books=books, num_classes=classes, code_dim=code_dim, combine_time_steps=combine
        )
        cfg["loss"]["combine_time_steps"] = combine
    else:
        del cfg["quantizer"]
    if "mask_processor.mask_embedding" not in state:
        del cfg["masking"]
    if "decoder.decoder_layers.0.weight" in state:
        out = state["decoder.decoder_layers.0.weight"].shape[0]
        books = cfg.get("quantizer", {}).get("num_books", 1)
        cfg["decoder"].update(
            num_classes=out // books,
            num_decoders=books,
            use_bias="decoder.decoder_layers.0.bias" in state,
        )
    else:
        del cfg["decoder"]
    return cfg


def _strip_wrapper_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a common wrapper prefix such as ``model.`` (Lightning modules holding a NestModel)."""
    if any(k.startswith(("encoder.", "preprocessor.")) for k in state):
        return state
    for prefix in ("model.", "module.", "nest."):
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_nest(
    path: str | Path,
    generation: str | None = None,
    batch_invariant: bool = False,
    encoder_only: bool = False,
) -> NestModel:
    """Load a NEST model from a ``.nemo``, Lightning ``.ckpt`` or bare state-dict file.

    The architecture comes from the checkpoint's config, or is inferred from tensor shapes when
    there is none. Keys must match exactly (``decoder_ssl.*`` ignored); encoder-only checkpoints
    load with the SSL parts set to None. ``generation`` ("2.4"/"2.5") overrides the one the
    checkpoint's ``nemo_version`` implies. ``encoder_only`` ignores every key outside
    ``preprocessor.``/``encoder.`` (e.g. to take the encoder of a FastConformer ASR model).
    Returns the model in eval mode. Raises CheckpointError.
    """
    ckpt: Checkpoint = read_checkpoint(path)
    state = _strip_wrapper_prefix(ckpt.state_dict)
    if encoder_only:
        state = {k: v for k, v in state.items() if k.startswith(("preprocessor.", "encoder."))}
    cfg = ckpt.config
    if cfg is None:
        cfg = infer_config(state)
        warnings.warn(
            f"{path}: no model config in the checkpoint; architecture inferred from tensor shapes "
            f"(xscaling={cfg['encoder']['xscaling']}, preprocessing generation "
            f"{generation or generation_for_version(None)})",
            stacklevel=2,
        )
    else:
        cfg = dict(cfg)
        if "model" in cfg and "encoder" not in cfg:
            cfg = dict(cfg["model"], nemo_version=cfg.get("nemo_version"))
        if ckpt.nemo_version and not cfg.get("nemo_version"):
            cfg["nemo_version"] = ckpt.nemo_version
    try:
        model = NestModel.from_config(cfg, generation, batch_invariant, encoder_only)
    except ValueError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: {e}") from e
    model.load_checkpoint_state(state, path)
    model.source = str(path)
    return model.eval()


class NestEncoder(Encoder):
    """A NEST model as a nestbench :class:`~nestbench.encoders.base.Encoder`.

    forward(wav [B, S], wav_lens [B]) -> EncoderOutput with L+1 hidden states [B, T', d]
    (steps at or past ``lengths`` set to 0) and lengths [B]; frame_shift 1280.
    Only the preprocessor and encoder are kept (no unused pretraining heads).
    """

    def __init__(self, model: NestModel, name: str = "nest"):
        super().__init__()
        self.model = NestModel(
            model.preprocessor, model.encoder, loss_cfg=model.loss_cfg, config=model.config
        )
        self.name = name
        self.frame_shift = model.frame_shift
        self.num_layers = model.encoder.cfg.n_layers
        self.hidden_size = model.encoder.cfg.d_model

    @property
    def generation(self) -> str:
        return self.model.generation

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        generation: str | None = None,
        batch_invariant: bool = True,
        name: str | None = None,
    ) -> NestEncoder:
        """Load from a checkpoint file (see :func:`load_nest`); eval mode.

        ``batch_invariant`` (default True) makes generation-2.4 checkpoints padding invariant,
        as the Encoder contract requires; pass False for NeMo's exact batched 2.4 behaviour.
        """
        model = load_nest(path, generation, batch_invariant=batch_invariant, encoder_only=True)
        return cls(model, name or str(path)).eval()

    @classmethod
    def from_size(cls, size: str, name: str | None = None, **kwargs) -> NestEncoder:
        """Randomly initialised NEST encoder of a named size (``NEST_SIZES``); eval mode."""
        return cls(NestModel.from_size(size, **kwargs), name or f"nest-{size}").eval()

    def identity(self) -> dict:
        """Base identity plus the preprocessing settings, which change features but no weight."""
        return {
            **super().identity(),
            "generation": self.model.generation,
            "batch_invariant": self.model.batch_invariant,
        }

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute conformer blocks in the backward pass (fine-tuning with less memory)."""
        self.model.encoder.gradient_checkpointing = bool(enabled)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        """wav: FloatTensor [B, S] at 16 kHz; wav_lens: LongTensor [B] -> EncoderOutput."""
        hidden, lengths = self.model(wav, wav_lens)
        t = hidden[0].shape[1]
        if bool((lengths >= t).all()):  # no padding
            return EncoderOutput(tuple(hidden), lengths)
        pad = (torch.arange(t, device=lengths.device)[None, :] >= lengths[:, None])[..., None]
        # the blocks' outputs are zero at the padding already when they skipped it
        skipped = fastconformer.PACK_PADDING
        return EncoderOutput(
            tuple(
                h.masked_fill(pad, 0.0) if i == 0 or not skipped else h
                for i, h in enumerate(hidden)
            ),
            lengths,
        )
