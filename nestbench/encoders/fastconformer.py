"""FastConformer encoder with NeMo ``ConformerEncoder`` parameter names (no NeMo needed).

mel [B, F, T] -> ``pre_encode`` (dw-striding convs over (time, freq), 8x in time) -> [B, T', d]
-> ``x * sqrt(d)`` -> ``layers``: N conformer blocks with relative-position self-attention.

Only the configuration NEST uses is implemented (``subsampling: dw_striding``,
``self_attention_model: rel_pos``, ``conv_norm_type: batch_norm``, full attention context);
:meth:`FastConformerConfig.from_nemo` rejects anything else with a clear error.

Speed (the same values as NeMo's padded batch, to ~3e-6): the blocks of a padded batch run on its
valid steps only (:class:`Packing`): position-wise layers on one [N, d] matrix of rows,
attention and the depthwise convolution on each utterance's own rows. In inference the
subsampling also runs each utterance alone, its first convolution made and consumed in chunks
(:meth:`ConvSubsampling._convs`), BatchNorm is folded into the depthwise weights and the residual
sums are made in place. ``benchmarks/nemo_compare.py`` measures it against NeMo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

MASK_VALUE = -10000.0
"""Score given to masked attention positions, as in NeMo (``-INF_VAL``)."""


@dataclass
class FastConformerConfig:
    """Dimensions and regularisation of a FastConformer encoder (NeMo ``encoder:`` names)."""

    feat_in: int = 80
    n_layers: int = 17
    d_model: int = 512
    n_heads: int = 8
    subsampling_factor: int = 8
    subsampling_conv_channels: int = 256
    ff_expansion_factor: int = 4
    conv_kernel_size: int = 9
    xscaling: bool = True
    use_bias: bool = True
    untie_biases: bool = True
    pos_emb_max_len: int = 5000
    dropout: float = 0.1
    dropout_pre_encoder: float = 0.1
    dropout_emb: float = 0.0
    dropout_att: float = 0.1
    stochastic_depth_drop_prob: float = 0.0
    stochastic_depth_mode: str = "linear"
    stochastic_depth_start_layer: int = 1
    masked_subsampling: bool = True
    """Mask padded time steps inside the subsampling convs (NeMo >= 2.5); False for NeMo <= 2.4."""

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.subsampling_factor < 2 or self.subsampling_factor & (self.subsampling_factor - 1):
            raise ValueError(
                f"subsampling_factor must be a power of 2, not {self.subsampling_factor}"
            )
        if self.conv_kernel_size % 2 != 1:
            raise ValueError(f"conv_kernel_size must be odd, not {self.conv_kernel_size}")
        if self.stochastic_depth_mode not in ("linear", "uniform"):
            raise ValueError(f"unsupported stochastic_depth_mode={self.stochastic_depth_mode!r}")

    @classmethod
    def from_nemo(cls, cfg: dict, masked_subsampling: bool = True) -> FastConformerConfig:
        """Read NeMo's ``encoder:`` config section.

        Keys this class does not name (``_target_``, ``use_pytorch_sdpa``, ...) are ignored when
        they cannot change the result; values this implementation does not support raise
        ValueError naming the setting.
        """
        cfg = dict(cfg)
        target = str(cfg.get("_target_", "ConformerEncoder"))
        if not target.endswith(("ConformerEncoder", "ConformerEncoderAdapter")):
            raise ValueError(f"unsupported encoder {target!r} (a ConformerEncoder is required)")

        def require(key, ok, what):
            if key in cfg and cfg[key] is not None and not ok(cfg[key]):
                raise ValueError(f"unsupported encoder setting {key}={cfg[key]!r} ({what})")

        require("subsampling", lambda v: v == "dw_striding", "only dw_striding")
        require("self_attention_model", lambda v: v == "rel_pos", "only rel_pos")
        require("conv_norm_type", lambda v: v == "batch_norm", "only batch_norm")
        require("att_context_size", lambda v: list(v) in ([-1, -1], [[-1, -1]]), "only [-1, -1]")
        require("att_context_style", lambda v: v == "regular", "only regular")
        require("causal_downsampling", lambda v: not v, "only false")
        require("reduction", lambda v: not v, "no time reduction")
        require("global_tokens", lambda v: v == 0, "only 0")
        require("feat_out", lambda v: v in (-1, cfg.get("d_model")), "no output projection")
        kernel = int(cfg.get("conv_kernel_size", 31))
        half = (kernel - 1) // 2
        require("conv_context_size", lambda v: list(v) == [half, half], "only symmetric")

        names = {f.name for f in dataclasses.fields(cls)} - {"masked_subsampling"}
        kwargs = {k: cfg[k] for k in names if k in cfg and cfg[k] is not None}
        if kwargs.get("subsampling_conv_channels", -1) == -1:
            kwargs["subsampling_conv_channels"] = int(cfg["d_model"])
        return cls(**kwargs, masked_subsampling=masked_subsampling)

    def to_nemo(self) -> dict:
        """NeMo's ``encoder:`` config section for these settings."""
        cfg = {"_target_": "nemo.collections.asr.modules.ConformerEncoder"}
        cfg.update(dataclasses.asdict(self))
        del cfg["masked_subsampling"]
        cfg.update(
            feat_out=-1,
            subsampling="dw_striding",
            causal_downsampling=False,
            self_attention_model="rel_pos",
            att_context_size=[-1, -1],
            att_context_style="regular",
            conv_norm_type="batch_norm",
            conv_context_size=None,
        )
        return cfg


NEST_SIZES: dict[str, dict] = {
    "tiny": dict(d_model=64, n_heads=4, n_layers=3, subsampling_conv_channels=32),
    "small": dict(d_model=176, n_heads=4, n_layers=16),
    "medium": dict(d_model=256, n_heads=4, n_layers=16),
    "large": dict(d_model=512, n_heads=8, n_layers=18),
    "xlarge": dict(d_model=1024, n_heads=8, n_layers=24, xscaling=False, use_bias=False),
}
"""FastConformerConfig overrides of the NEST sizes (NeMo's ``nest_fast-conformer.yaml`` table;
``large`` has 18 layers like the released ``ssl_en_nest_large_v1.0``). ``tiny`` is for tests."""


def conv_out_length(lengths, repeat: int = 1):
    """Length (int or LongTensor) after ``repeat`` convs with kernel 3, stride 2, padding 1:
    ``(L - 1) // 2 + 1`` (floor division)."""
    for _ in range(repeat):
        lengths = (lengths - 1) // 2 + 1
    return lengths


def time_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """BoolTensor [B, max_len], True at valid steps."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class ConvSubsampling(nn.Module):
    """Depthwise-striding 2-D conv subsampling (NeMo ``dw_striding``), keys ``conv.N``, ``out``.

    conv: Conv2d(1, C, 3, s2) ReLU, then per further factor 2: depthwise Conv2d(C, C, 3, s2),
    pointwise Conv2d(C, C, 1), ReLU. out: Linear(C * F', d) over (channel, freq) flattened.
    """

    def __init__(self, feat_in: int, d_model: int, channels: int, factor: int, masked: bool):
        super().__init__()
        self.masked = masked
        self.num_strided = int(math.log2(factor))
        f_out = conv_out_length(feat_in, self.num_strided)
        self.out = nn.Linear(channels * f_out, d_model)
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.ReLU(True)]
        for _ in range(self.num_strided - 1):
            layers += [
                nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels),
                nn.Conv2d(channels, channels, 1),
                nn.ReLU(True),
            ]
        self.conv = nn.Sequential(*layers)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, mask_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, F] features, lengths: [B] -> ([B, T', d], lengths [B]).

        With ``masked`` or given ``mask_lengths``, steps at or past ``mask_lengths`` (default
        ``lengths``) are zeroed before the first conv and after every conv, the lengths following
        each strided conv.
        """
        x = x.unsqueeze(1)  # [B, 1, T, F]
        masked = self.masked or mask_lengths is not None
        cur = lengths if mask_lengths is None else mask_lengths
        if not torch.is_grad_enabled():
            x = self._each_alone(x, cur if masked else None)
        elif masked:
            x = x * time_mask(cur, x.shape[2])[:, None, :, None]
            for layer in self.conv:
                x = layer(x)
                if isinstance(layer, nn.Conv2d):
                    if layer.stride[0] > 1:
                        cur = conv_out_length(cur)
                    x = x * time_mask(cur, x.shape[2])[:, None, :, None]
        else:
            x = self.conv(x)
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, conv_out_length(lengths, self.num_strided)

    def _each_alone(self, x: torch.Tensor, cur: torch.Tensor | None) -> torch.Tensor:
        """Inference: x [B, 1, T, F] -> the convolutions' output [B, C, T', F'] computed on each
        utterance's first ``cur`` steps alone, zeros after (``cur`` None: on all T steps, the
        unmasked subsampling). Masked subsampling zeroes the padding before and after every
        convolution, which is what a convolution's own zero padding gives an unpadded
        utterance: the same values, without the padded steps' work or the masking passes."""
        t_out = conv_out_length(x.shape[2], self.num_strided)
        steps = [x.shape[2]] * x.shape[0] if cur is None else [int(n) for n in cur.tolist()]
        parts = []
        for i, n in enumerate(steps):
            y = self._convs(x[i : i + 1, :, : max(n, 1)])
            if n <= 0:
                y = y[:, :, :0]
            parts.append(nn.functional.pad(y, (0, 0, 0, t_out - y.shape[2])))
        return torch.cat(parts, 0)

    #: Rows of the first depthwise convolution's output computed at once by :meth:`_convs`
    #: (the first convolution's output for them is 128 x F/2 x C floats, not 4 x T/2 x F/2 x C;
    #: 64 measured fastest, with 32 and 128, in a 20 s x 4 batch of NEST-L).
    CHUNK = 64

    def _convs(self, x: torch.Tensor) -> torch.Tensor:
        """``self.conv(x)`` for one utterance x [1, 1, n, F] -> [1, C, n', F'], channels-last,
        without the first convolution's whole output (C x n/2 x F/2, the largest tensor of the
        encoder) ever existing: it is made, rectified and consumed by the first depthwise
        convolution :attr:`CHUNK` output rows at a time."""
        convs = [m for m in self.conv if isinstance(m, nn.Conv2d)]
        cl = torch.channels_last
        weights = [m.weight.contiguous(memory_format=cl) for m in convs]
        first = convs[0]
        x = x.contiguous(memory_format=cl)
        if len(convs) == 1:
            return F.relu(F.conv2d(x, weights[0], first.bias, 2, 1))
        n = x.shape[2]
        t1 = conv_out_length(n)
        t2 = conv_out_length(t1)
        dw = convs[1]
        chunks = []
        for s in range(0, t2, self.CHUNK):
            e = min(t2, s + self.CHUNK)
            a, b = 2 * s - 1, 2 * e - 1  # rows of the first conv's output that rows s..e-1 use
            a0, b0 = max(a, 0), min(b, t1 - 1)
            i0, i1 = 2 * a0 - 1, 2 * b0 + 1  # the input rows those need
            seg = x[:, :, max(i0, 0) : min(i1, n - 1) + 1]
            seg = F.pad(seg, (1, 1, int(i0 < 0), int(i1 > n - 1)))
            y = F.relu(F.conv2d(seg, weights[0], first.bias, 2, 0))  # rows a0..b0
            y = F.pad(y, (0, 0, a0 - a, b - b0))  # zero rows outside the output
            chunks.append(F.conv2d(y, weights[1], dw.bias, 2, (0, 1), 1, dw.groups))
        y = torch.cat(chunks, 2).contiguous(memory_format=cl)
        for i in range(2, len(convs)):
            m = convs[i]
            y = F.conv2d(y, weights[i], m.bias, m.stride, m.padding, 1, m.groups)
            if m.groups == 1:  # a pointwise convolution: ReLU follows
                y = F.relu_(y)
        return y


def relative_positions(length: int, d_model: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal embeddings [1, 2*length-1, d_model] of positions length-1 down to -(length-1).

    Even channels hold sin, odd channels cos, with frequencies ``10000 ** (-2i / d_model)``.
    """
    pos = torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
        * -(math.log(10000.0) / d_model)
    )
    pe = torch.zeros(2 * length - 1, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.unsqueeze(0).to(dtype or torch.float32)


class RelPositionalEncoding(nn.Module):
    """Scales x by ``xscale`` and gives the relative position table (not added to x).

    The table is computed on the fly for each length, so nothing is saved in the state dict.
    """

    def __init__(self, d_model: int, dropout: float, dropout_emb: float, xscale: float | None):
        super().__init__()
        self.d_model = d_model
        self.xscale = xscale
        self.dropout = nn.Dropout(dropout)
        self.dropout_emb = nn.Dropout(dropout_emb) if dropout_emb > 0 else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, d] -> (x [B, T, d], pos_emb [1, 2T-1, d])."""
        if self.xscale:
            x = x * self.xscale
        pos_emb = relative_positions(x.shape[1], self.d_model, x.device, x.dtype)
        if self.dropout_emb is not None:
            pos_emb = self.dropout_emb(pos_emb)
        return self.dropout(x), pos_emb


#: Whether the blocks skip the padding of a batch (:class:`Packing`); False computes every step,
#: as NeMo does (``benchmarks/nemo_compare.py --no-packing`` measures the difference).
PACK_PADDING = True


class Packing:
    """The valid steps of a padded batch as rows of one [N, d] matrix, so position-wise layers
    (layer norms, feed-forwards, projections, pointwise convolutions) skip the padding: in a
    batch of utterances of 100 / 90 / 75 / 60% of the longest, a fifth of the steps. Attention
    and the depthwise convolution run on each utterance's own rows (:meth:`segments`), so they
    skip it too.

    ``lengths`` [B] valid steps (each utterance's steps are a prefix of its row of the batch);
    ``index`` [N] holds the flat positions (b * T + t) of the valid steps, utterance after
    utterance; :meth:`unpack` puts rows back in a zero-padded [B, T, d], :meth:`pack` takes them
    out again.
    """

    def __init__(self, lengths: torch.Tensor, max_len: int):
        self.b, self.t = lengths.shape[0], max_len
        self.lengths = [int(n) for n in lengths.tolist()]
        self.index = time_mask(lengths, max_len).reshape(-1).nonzero().squeeze(1)

    def segments(self):
        """(first row, number of rows) of each utterance, in order: its rows are
        ``rows[first : first + n]``."""
        first = 0
        for n in self.lengths:
            yield first, n
            first += n

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, d] -> [N, d]."""
        return x.reshape(self.b * self.t, -1).index_select(0, self.index)

    def unpack(self, rows: torch.Tensor) -> torch.Tensor:
        """[N, d] -> [B, T, d], zeros at the padding."""
        out = rows.new_zeros(self.b * self.t, rows.shape[-1])
        return out.index_copy(0, self.index, rows).view(self.b, self.t, -1)


def rel_shift(bd: torch.Tensor) -> torch.Tensor:
    """Align relative-position scores to key positions.

    bd: [B, H, T, 2T-1], where column m scores relative position T-1-m.
    Returns [B, H, T, T] with ``out[..., i, j] = bd[..., i, T-1-i+j]`` (relative position i-j),
    as a strided view: element (i, j) sits at flat offset ``i*(2T-2) + (T-1) + j`` of a row block.
    """
    b, h, t, p = bd.shape
    bd = bd.contiguous()
    sb, sh = bd.stride(0), bd.stride(1)
    return bd.as_strided((b, h, t, t), (sb, sh, p - 1, 1), bd.storage_offset() + t - 1)


class RelPositionMultiHeadAttention(nn.Module):
    """Transformer-XL self-attention with learned biases ``pos_bias_u``/``pos_bias_v`` [H, d_k].

    ``scores = ((q + u) k^T + rel_shift((q + v) p^T)) / sqrt(d_k)``, where p = linear_pos(pos_emb).
    """

    def __init__(
        self,
        n_heads: int,
        d_model: int,
        dropout: float,
        use_bias: bool = True,
        pos_bias_u: nn.Parameter | None = None,
        pos_bias_v: nn.Parameter | None = None,
    ):
        super().__init__()
        self.h = n_heads
        self.d_k = d_model // n_heads
        self.dropout_rate = dropout
        self.linear_q = nn.Linear(d_model, d_model, bias=use_bias)
        self.linear_k = nn.Linear(d_model, d_model, bias=use_bias)
        self.linear_v = nn.Linear(d_model, d_model, bias=use_bias)
        self.linear_out = nn.Linear(d_model, d_model, bias=use_bias)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        if pos_bias_u is None:
            pos_bias_u = nn.Parameter(torch.zeros(n_heads, self.d_k))
        if pos_bias_v is None:
            pos_bias_v = nn.Parameter(torch.zeros(n_heads, self.d_k))
        self.pos_bias_u = pos_bias_u
        self.pos_bias_v = pos_bias_v

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, d] -> [B, H, T, d_k]."""
        return x.view(x.shape[0], x.shape[1], self.h, self.d_k).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        att_mask: torch.Tensor | None,
        packing: Packing | None = None,
    ) -> torch.Tensor:
        """x: [B, T, d] (or [N, d] valid rows with ``packing``); pos_emb: [1, 2T-1, d];
        att_mask: BoolTensor [B, T, T], True = masked.

        Returns [B, T, d] (or [N, d]). Fully masked query rows (padding) attend to nothing, so
        their output is ``linear_out``'s bias, as in NeMo.
        """
        if packing is not None:
            return self._each_utterance(x, pos_emb, packing)
        q, k, v = self.linear_q(x), self.linear_k(x), self.linear_v(x)
        b, t, _ = q.shape
        q = q.view(b, t, self.h, self.d_k)  # [B, T, H, d_k]
        k, v = self._heads(k), self._heads(v)
        p = self._heads(self.linear_pos(pos_emb))  # [1, H, 2T-1, d_k]
        q_u = (q + self.pos_bias_u.to(q.dtype)).transpose(1, 2)  # [B, H, T, d_k]
        # (q + v) p^T / sqrt(d_k), scaled on the small side
        q_v = ((q + self.pos_bias_v.to(q.dtype)) * (1.0 / math.sqrt(self.d_k))).transpose(1, 2)
        bias = rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))
        if att_mask is not None:
            bias = bias.masked_fill(att_mask[:, None], MASK_VALUE)
        out = F.scaled_dot_product_attention(
            q_u, k, v, attn_mask=bias, dropout_p=self.dropout_rate if self.training else 0.0
        )  # [B, H, T, d_k]
        out = out.transpose(1, 2).reshape(b, t, self.h * self.d_k)
        if att_mask is not None:
            out = out.masked_fill(att_mask.all(-1)[:, :, None], 0.0)
        return self.linear_out(out)

    def _each_utterance(self, x: torch.Tensor, pos_emb: torch.Tensor, packing: Packing):
        """Attention over the valid rows x [N, d] of each utterance alone -> [N, d].

        An utterance of n steps uses the middle 2n-1 rows of the batch's position table
        (relative positions n-1 .. -(n-1)). Its queries see only its own keys, which is what
        the padded batch gives its valid queries: NeMo's masked scores are exp(-10000 - max) = 0.
        No padded step is computed and no mask is needed."""
        n_all, t = x.shape[0], pos_emb.shape[1] // 2 + 1
        heads = (n_all, self.h, self.d_k)
        q = self.linear_q(x).view(heads)
        k = self.linear_k(x).view(heads).transpose(0, 1)  # [H, N, d_k]
        v = self.linear_v(x).view(heads).transpose(0, 1)
        q_u = (q + self.pos_bias_u.to(q.dtype)).transpose(0, 1)
        q_v = ((q + self.pos_bias_v.to(q.dtype)) * (1.0 / math.sqrt(self.d_k))).transpose(0, 1)
        p = self._heads(self.linear_pos(pos_emb))[0]  # [H, 2T-1, d_k]
        dropout = self.dropout_rate if self.training else 0.0
        outs = []
        for first, n in packing.segments():
            if n == 0:
                continue
            rows = slice(first, first + n)
            p_n = p[:, t - n : t + n - 1].transpose(-2, -1)  # [H, d_k, 2n-1]
            bias = rel_shift(torch.matmul(q_v[None, :, rows], p_n[None]))  # [1, H, n, n]
            out = F.scaled_dot_product_attention(
                q_u[None, :, rows], k[None, :, rows], v[None, :, rows], bias, dropout
            )  # [1, H, n, d_k]
            outs.append(out[0].transpose(0, 1).reshape(n, self.h * self.d_k))
        return self.linear_out(torch.cat(outs, 0) if outs else x)  # x: [0, d] without rows


class FeedForward(nn.Module):
    """Linear(d, d_ff) -> SiLU -> dropout -> Linear(d_ff, d); keys ``linear1``, ``linear2``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, use_bias: bool = True):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=use_bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, d] -> [B, T, d]."""
        h = F.silu(self.linear1(x), inplace=not torch.is_grad_enabled())  # no copy in inference
        return self.linear2(self.dropout(h))


class ConvModule(nn.Module):
    """Conformer convolution: pointwise(2d) -> GLU -> zero padding -> depthwise(k) -> BatchNorm
    -> SiLU -> pointwise(d)."""

    def __init__(self, d_model: int, kernel_size: int, use_bias: bool = True):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1, bias=use_bias)
        self.depthwise_conv = nn.Conv1d(
            d_model,
            d_model,
            kernel_size,
            padding=(kernel_size - 1) // 2,
            groups=d_model,
            bias=use_bias,
        )
        self.batch_norm = nn.BatchNorm1d(d_model)
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1, bias=use_bias)

    def forward(
        self, x: torch.Tensor, pad_mask: torch.Tensor | None, packing: Packing | None = None
    ) -> torch.Tensor:
        """x: [B, T, d]; pad_mask: BoolTensor [B, T], True at padding -> [B, T, d]. With
        ``packing``, x and the result are the [N, d] valid rows: the pointwise convolutions run
        on them alone, the depthwise one on the zero-padded batch."""
        if packing is not None:
            w1, w2 = self.pointwise_conv1, self.pointwise_conv2
            h = F.glu(F.linear(x, w1.weight.squeeze(-1), w1.bias), dim=-1)  # [N, d]
            if self.batch_norm.training:  # batch statistics over the padded batch, as NeMo
                h = packing.unpack(h).transpose(1, 2)  # [B, d, T], zeros at padding
                h = packing.pack(F.silu(self.batch_norm(self.depthwise_conv(h))).transpose(1, 2))
            else:
                h = F.silu(self._depthwise_each(h, packing), inplace=not torch.is_grad_enabled())
            return F.linear(h, w2.weight.squeeze(-1), w2.bias)
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # [B, d, T]
        if pad_mask is not None:
            x = x.masked_fill(pad_mask[:, None, :], 0.0)
        x = F.silu(self.batch_norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x).transpose(1, 2)

    def _depthwise_each(self, h: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Eval mode: the depthwise convolution and BatchNorm (folded into its weights) on each
        utterance's rows h [N, d] alone (zero padding at its ends, as in the padded batch) ->
        [N, d]. An utterance's [n, d] rows are a channels-last [1, d, 1, n] image, so no
        transposed copies are made."""
        conv, bn = self.depthwise_conv, self.batch_norm
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # [d]
        weight = (conv.weight * scale[:, None, None])[:, :, None, :]  # [d, 1, 1, k]
        weight = weight.contiguous(memory_format=torch.channels_last)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        bias = (bias - bn.running_mean) * scale + bn.bias
        pad = (0, conv.padding[0])
        outs = []
        for first, n in packing.segments():
            if n == 0:  # no rows (an utterance too short for a frame)
                continue
            image = h[first : first + n].t()[None, :, None, :]  # [1, d, 1, n]
            y = F.conv2d(
                image, weight.to(h.dtype), bias.to(h.dtype), padding=pad, groups=h.shape[1]
            )
            outs.append(y[0, :, 0].t())  # [n, d]
        return torch.cat(outs, 0) if outs else h


class ConformerLayer(nn.Module):
    """``x += FF1/2; x += MHSA; x += Conv; x += FF2/2; out = LayerNorm(x)`` (pre-norm branches)."""

    def __init__(self, cfg: FastConformerConfig, pos_bias_u=None, pos_bias_v=None):
        super().__init__()
        d, d_ff = cfg.d_model, cfg.d_model * cfg.ff_expansion_factor
        self.norm_feed_forward1 = nn.LayerNorm(d)
        self.feed_forward1 = FeedForward(d, d_ff, cfg.dropout, cfg.use_bias)
        self.norm_conv = nn.LayerNorm(d)
        self.conv = ConvModule(d, cfg.conv_kernel_size, cfg.use_bias)
        self.norm_self_att = nn.LayerNorm(d)
        self.self_attn = RelPositionMultiHeadAttention(
            cfg.n_heads, d, cfg.dropout_att, cfg.use_bias, pos_bias_u, pos_bias_v
        )
        self.norm_feed_forward2 = nn.LayerNorm(d)
        self.feed_forward2 = FeedForward(d, d_ff, cfg.dropout, cfg.use_bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm_out = nn.LayerNorm(d)

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        att_mask: torch.Tensor | None,
        pad_mask: torch.Tensor | None,
        packing: Packing | None = None,
    ) -> torch.Tensor:
        """x: [B, T, d]; pos_emb [1, 2T-1, d]; att_mask [B, T, T]; pad_mask [B, T] -> [B, T, d].
        With ``packing``, x and the result are the [N, d] valid rows (:class:`Packing`)."""
        x = torch.add(x, self.dropout(self.feed_forward1(self.norm_feed_forward1(x))), alpha=0.5)
        if torch.is_grad_enabled():
            x = x + self.dropout(self.self_attn(self.norm_self_att(x), pos_emb, att_mask, packing))
            x = x + self.dropout(self.conv(self.norm_conv(x), pad_mask, packing))
            x = torch.add(
                x, self.dropout(self.feed_forward2(self.norm_feed_forward2(x))), alpha=0.5
            )
        else:  # inference: the residual sums in place (x is this layer's own tensor by now)
            x += self.dropout(self.self_attn(self.norm_self_att(x), pos_emb, att_mask, packing))
            x += self.dropout(self.conv(self.norm_conv(x), pad_mask, packing))
            x.add_(self.dropout(self.feed_forward2(self.norm_feed_forward2(x))), alpha=0.5)
        return self.norm_out(x)


def layer_drop_probs(cfg: FastConformerConfig) -> list[float]:
    """Stochastic-depth drop probability of each layer (0 for layers before the start layer)."""
    p, start, n = cfg.stochastic_depth_drop_prob, cfg.stochastic_depth_start_layer, cfg.n_layers
    if not 0.0 <= p < 1.0:
        raise ValueError(f"stochastic_depth_drop_prob must be in [0, 1), not {p}")
    if not 1 <= start <= n:
        raise ValueError(f"stochastic_depth_start_layer must be in [1, {n}], not {start}")
    rest = n - start
    if cfg.stochastic_depth_mode == "linear":
        return [0.0] * start + [p * i / rest for i in range(1, rest + 1)]
    return [0.0] * start + [p] * rest


class FastConformerEncoder(nn.Module):
    """NeMo ``ConformerEncoder`` (rel_pos, dw_striding) with identical state-dict keys.

    Keys: ``pre_encode.{out, conv.N}``, ``layers.N.*``; the position table is not saved.
    """

    def __init__(self, cfg: FastConformerConfig):
        super().__init__()
        self.cfg = cfg
        self.pre_encode = ConvSubsampling(
            cfg.feat_in,
            cfg.d_model,
            cfg.subsampling_conv_channels,
            cfg.subsampling_factor,
            cfg.masked_subsampling,
        )
        self.pos_enc = RelPositionalEncoding(
            cfg.d_model,
            cfg.dropout_pre_encoder,
            cfg.dropout_emb,
            math.sqrt(cfg.d_model) if cfg.xscaling else None,
        )
        shared_u = shared_v = None
        if not cfg.untie_biases:  # one pair of biases shared by every layer
            d_k = cfg.d_model // cfg.n_heads
            shared_u = nn.Parameter(torch.zeros(cfg.n_heads, d_k))
            shared_v = nn.Parameter(torch.zeros(cfg.n_heads, d_k))
        self.layers = nn.ModuleList(
            ConformerLayer(cfg, shared_u, shared_v) for _ in range(cfg.n_layers)
        )
        self.layer_drop_probs = layer_drop_probs(cfg)
        #: Recompute each block in the backward pass instead of storing its activations.
        self.gradient_checkpointing = False

    @property
    def masked_subsampling(self) -> bool:
        return self.pre_encode.masked

    @masked_subsampling.setter
    def masked_subsampling(self, value: bool) -> None:
        self.pre_encode.masked = self.cfg.masked_subsampling = bool(value)

    def forward(
        self,
        mel: torch.Tensor,
        mel_len: torch.Tensor,
        subsampling_mask_len: torch.Tensor | None = None,
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """mel: [B, F, T]; mel_len: [B] valid frames.

        ``subsampling_mask_len`` [B] (optional): mask the subsampling at these lengths instead
        (even when ``masked_subsampling`` is off); used to emulate an unpadded batch of one (see
        ``MelPreprocessor``'s batch_invariant).

        Returns:
            hidden_states: tuple of n_layers+1 FloatTensor [B, T', d]; index 0 is the input of
                block 0 (after subsampling, xscaling and dropout), index i the output of block i.
                Steps at or past ``lengths`` hold padding garbage in index 0, as in NeMo, and
                zeros in the blocks' outputs (the blocks skip the padding).
            lengths: LongTensor [B], valid steps of T'.
        """
        x, lengths = self.pre_encode(mel.transpose(1, 2), mel_len, subsampling_mask_len)
        lengths = lengths.long()
        x, pos_emb = self.pos_enc(x)
        valid = time_mask(lengths, x.shape[1])  # [B, T']
        pad_mask = ~valid
        padded = bool(pad_mask.any())
        hidden = [x]
        # with padding, the blocks carry only the valid steps (Packing); their outputs are
        # zero at the padding
        packing = Packing(lengths, x.shape[1]) if PACK_PADDING and padded else None
        att_mask = None
        if packing is not None:
            x = packing.pack(x)
        elif padded:
            att_mask = ~(valid[:, :, None] & valid[:, None, :])  # [B, T', T'], True = masked
        for layer, drop in zip(self.layers, self.layer_drop_probs, strict=True):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                y = checkpoint(layer, x, pos_emb, att_mask, pad_mask, packing, use_reentrant=False)
            else:
                y = layer(x, pos_emb, att_mask, pad_mask, packing)
            if self.training and drop > 0.0:
                if torch.rand(()) < drop:
                    y = x + 0.0 * y  # keep every parameter in the graph
                else:
                    y = x + (y - x) / (1.0 - drop)
            x = y
            hidden.append(x if packing is None else packing.unpack(x))
        return tuple(hidden), lengths
