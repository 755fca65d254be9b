"""xLSTM forecasters: every channel of `past_values [B, L, C]` is one series, cut into patches that go
through the causal xLSTM block stack. Two designs, chosen by `config.forecaster`:

* `"direct"`, the interface of PatchTST: a head on the state after the last patch forecasts the next
  `prediction_length` steps. Because the backbone is recurrent, `generate` reaches horizons beyond
  `prediction_length` by feeding its own forecasts back as new patches from the recurrent state, without
  re-reading the context.
* `"tirex"`, the design of NX-AI's TiRex (docs/tirex.md): a window of exactly `context_length` steps
  (cut, or left-padded with missing values), scaled by its observed values; every token forecasts the
  quantiles of the next patch. A horizon of k patches reads the outputs after k windows: the context, and
  the context followed by 1 .. k-1 masked patches (no forecast is fed back), run in one batch. TiRex
  checkpoints load with `from_pretrained` (tirex.py).
"""

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution
from torch.utils._pytree import tree_map
from transformers import AutoModelForTimeSeriesPrediction
from transformers import initialization as init
from transformers.models.patchtst.modeling_patchtst import PatchTSTScaler, nll, weighted_average
from transformers.time_series_utils import NegativeBinomialOutput, NormalOutput, StudentTOutput
from transformers.utils import ModelOutput, can_return_tuple

from ._compat import route_tirex_checkpoints
from .configuration_xlstm import XLSTMConfig
from .input_checks import check_binary_mask, check_finite, check_positive_int, require_tensor
from .modeling_xlstm import HUB_KWARGS, XLSTMCache, XLSTMModel, XLSTMPreTrainedModel
from .tirex import find_tirex_checkpoint, load_tirex

DISTRIBUTION_OUTPUTS = {
    "student_t": StudentTOutput, "normal": NormalOutput, "negative_binomial": NegativeBinomialOutput
}
TIREX_MAX_ROWS = 512  # series windows per backbone call in generate, which bounds its memory


def backbone_config(config: XLSTMConfig) -> XLSTMConfig:
    """The block stack's config: that of the forecaster without token embedding."""
    config = copy.deepcopy(config)
    config.vocab_size, config.tie_word_embeddings = None, False
    return config


# ---- the channel-independent layout -------------------------------------------------------------------


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """[B, L, C] -> [B*C, L]: one row per series (a channel of a batch row)."""
    return x.transpose(1, 2).flatten(0, 1)


def from_rows(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[B*C, L, ...] -> [B, L, C, ...], the inverse of `to_rows`."""
    return x.unflatten(0, (-1, channels)).movedim(1, 2)


def path_rows(batch_size: int, num_samples: int, channels: int, device: torch.device) -> torch.Tensor:
    """Backbone rows (b, c) -> rows (b, s, c) of the sample paths: the index of (b, c) for each (b, s, c)."""
    rows = torch.arange(batch_size * channels, device=device).view(batch_size, 1, channels)
    return rows.expand(-1, num_samples, -1).flatten()


# ---- values, scaling, patches, losses -----------------------------------------------------------------


def cast_values(name: str, values, dtype: torch.dtype) -> torch.Tensor:
    """`values` in the model's dtype (float64 from numpy, float16, integers: cast); TypeError naming `name`
    for what is not a tensor of real numbers."""
    require_tensor(name, values)
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"{name} has dtype {values.dtype}; pass real values (floats), and mark missing ones in "
                        f"{name.replace('values', 'observed_mask')}.")
    return values.to(dtype)


def patchify(series: torch.Tensor, patch_length: int, stride: int) -> torch.Tensor:
    """[N, T] -> [N, P, patch_length]: patches every `stride` steps, the last one ending at the last step;
    a leading remainder that fills no patch is dropped."""
    num_patches = (series.shape[-1] - patch_length) // stride + 1
    start = series.shape[-1] - patch_length - (num_patches - 1) * stride
    return series[..., start:].unfold(-1, patch_length, stride)


def standardize(values: torch.Tensor, observed: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`(values - loc) / scale` where observed, 0 where missing (whatever the values hold there)."""
    return torch.where(observed, (values - loc) / scale, 0.0)


def rollout_windows(values: torch.Tensor, observed: torch.Tensor, window: int, patch: int, passes: int):
    """values, observed [B, L, C] -> [passes * B, window, C] each: for pass k = 0 .. passes-1, the context
    followed by k missing patches, cut to its last `window` steps or left-padded with missing steps."""
    batch_size, length, channels = values.shape
    left, right = max(window - length, 0), (passes - 1) * patch
    padded = [torch.cat([x.new_zeros(batch_size, left, channels), x, x.new_zeros(batch_size, right, channels)], 1)
              for x in (values, observed)]
    start = length + left - window
    return tuple(torch.cat([x[:, start + k * patch : start + k * patch + window] for k in range(passes)])
                 for x in padded)


def window_statistics(values: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TiRex's scaler: rows [N, W] -> loc, scale [N, 1], the mean and standard deviation of each row's
    observed values; 0 and 1 where none is observed, |loc| + 1e-5 where the deviation is 0."""
    observed_values = values.masked_fill(~observed, float("nan"))
    loc = torch.nanmean(observed_values, dim=-1, keepdim=True).nan_to_num(0.0)
    scale = torch.nanmean((observed_values - loc).square(), dim=-1, keepdim=True).sqrt().nan_to_num(1.0)
    return loc, torch.where(scale == 0, loc.abs() + 1e-5, scale)


def join_passes(forecast: torch.Tensor, passes: int, horizon: int) -> torch.Tensor:
    """The patches forecast after each window of `rollout_windows`, [passes*B, patch, C, Q], one after the
    other: [B, horizon, C, Q]."""
    return forecast.unflatten(0, (passes, -1)).transpose(0, 1).flatten(1, 2)[:, :horizon]


def pinball_loss(quantiles: torch.Tensor, target: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """quantiles [..., Q] at `levels` [Q], target [...] -> the quantile (pinball) loss [..., Q]."""
    error = target[..., None] - quantiles
    return torch.maximum(levels * error, (levels - 1) * error)


def sample_from_quantiles(quantiles: torch.Tensor, levels: torch.Tensor, num_samples: int) -> torch.Tensor:
    """quantiles [B, H, C, Q] at `levels` [Q] -> samples [B, num_samples, H, C] by inverse-CDF sampling:
    uniform levels, clamped to the outer quantile levels, through the linear interpolation of the sorted
    quantiles (so no sample leaves the range of the predicted quantiles)."""
    quantiles = quantiles.sort(dim=-1).values.unsqueeze(1).expand(-1, num_samples, -1, -1, -1)
    u = torch.rand(quantiles.shape[:-1] + (1,), device=quantiles.device, dtype=quantiles.dtype)
    u = u.clamp(levels[0], levels[-1])
    upper = torch.searchsorted(levels, u).clamp(max=len(levels) - 1)
    lower = (upper - 1).clamp(min=0)
    span = levels[upper] - levels[lower]
    weight = torch.where(span > 0, (u - levels[lower]) / span, 0.0)
    below, above = quantiles.gather(-1, lower), quantiles.gather(-1, upper)
    return (below + weight * (above - below)).squeeze(-1)


def check_observed_mask(prefix: str, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`{prefix}_observed_mask` as a bool tensor (all True when None), checked against `{prefix}_values`."""
    if mask is None:
        mask = torch.ones_like(values, dtype=torch.bool)
    elif not isinstance(mask, torch.Tensor) or mask.shape != values.shape:
        require_tensor(f"{prefix}_observed_mask", mask)
        raise ValueError(
            f"{prefix}_observed_mask has shape {list(mask.shape)} but {prefix}_values has shape "
            f"{list(values.shape)}; give the mask the shape of the values (1 observed, 0 missing)."
        )
    else:
        check_binary_mask(f"{prefix}_observed_mask", mask, "1 where observed and 0 where missing")
    mask = mask.bool()
    check_finite(f"{prefix}_values", values.masked_fill(~mask, 0.0), f"{prefix}_observed_mask", "observed")
    return mask


def series_batch(context) -> torch.Tensor:
    """`forecast`'s context -> [B, L] float32, NaN where missing: a [B, L] or [L] tensor or array, or a list of
    1-D series (of any lengths, left-padded with NaN)."""
    if isinstance(context, (list, tuple)):
        series = [torch.as_tensor(s, dtype=torch.float32).flatten() for s in context]
        if not series or any(s.numel() == 0 for s in series):
            raise ValueError("context is an empty list or holds an empty series; give every series a value.")
        length = max(s.numel() for s in series)
        return torch.stack([F.pad(s, (length - s.numel(), 0), value=float("nan")) for s in series])
    context = torch.as_tensor(context)
    if context.dim() not in (1, 2) or context.numel() == 0:
        raise ValueError(f"context has shape {list(context.shape)}; expected [batch, length] or [length] values, "
                         "or a list of 1-D series.")
    return cast_values("context", context, torch.float32).reshape(-1, context.shape[-1])


# ---- modules ------------------------------------------------------------------------------------------


class PatchLinear(nn.Linear):
    """A linear map of a `PatchMLP` (initialised as PyTorch initialises nn.Linear, see `_init_weights`)."""


class PatchMLP(nn.Module):
    """`fc2(relu(fc1(x))) + skip(x)`: a residual MLP between a patch and the hidden size (TiRex's)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.fc1 = PatchLinear(in_features, hidden_features)
        self.fc2 = PatchLinear(hidden_features, out_features)
        self.skip = PatchLinear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x))) + self.skip(x)


def patch_map(in_features: int, hidden_features: int, out_features: int) -> nn.Module:
    """A `PatchMLP`, or a linear map where `hidden_features` is 0."""
    if hidden_features:
        return PatchMLP(in_features, hidden_features, out_features)
    return nn.Linear(in_features, out_features)


class XLSTMPatchEmbedding(nn.Module):
    """Each channel on its own: patches of the values and of the observed mask, side by side, mapped to the
    hidden size (linearly, or by a `PatchMLP` with `config.patch_ffn_size`)."""

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        self.patch_length, self.patch_stride = config.patch_length, config.patch_stride
        self.projection = patch_map(2 * config.patch_length, config.patch_ffn_size, config.hidden_size)

    def forward(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """values, observed: [B, T, C] -> [B*C, P, hidden]."""
        series, mask = to_rows(values), to_rows(observed).to(values.dtype)  # [B*C, T]
        patches = [patchify(x, self.patch_length, self.patch_stride) for x in (series, mask)]
        return self.projection(torch.cat(patches, dim=-1))  # [B*C, P, 2*patch_length] -> [B*C, P, hidden]


@dataclass
class XLSTMForTimeSeriesPredictionOutput(ModelOutput):
    """
    loss: the loss of `config.loss` on the observed `future_values`, when they are given (`tirex`: the
        quantile loss of every token's next patch, in the context and the horizon).
    prediction_outputs: `mse`: point forecasts [B, H, C]; `quantile`: forecasts [B, H, C, Q] at
        `config.quantiles`; both in the data's units. `nll`: the parameters of the scaled distribution, each
        [B, H, C], which with `loc` and `scale` give the forecast distribution (`model.forecast_distribution`).
    hidden_states: the input of every block and the final output, each [B*C, P, hidden] (`tirex`: the
        windows of all passes, [passes*B*C, P, hidden]), when asked for.
    loc, scale: [B, 1, C] statistics of the observed context with which the model scaled it (`tirex`: those
        of the window of each pass, [passes*B, 1, C]).
    """

    loss: torch.FloatTensor | None = None
    prediction_outputs: torch.FloatTensor | tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    loc: torch.FloatTensor | None = None
    scale: torch.FloatTensor | None = None


@dataclass
class XLSTMTimeSeriesSampleOutput(ModelOutput):
    """
    sequences: [B, S, H, C] sampled forecast paths (S = 1 for the point forecasts of the `mse` loss; None
        where no samples were asked for).
    quantiles: [B, H, C, Q] the forecast quantiles at `config.quantiles` (forecaster `tirex`; None otherwise).
    """

    sequences: torch.FloatTensor | None = None
    quantiles: torch.FloatTensor | None = None


@dataclass
class XLSTMForecastOutput(ModelOutput):
    """
    quantiles: [B, H, Q] the forecast quantiles at `config.quantiles`.
    median: [B, H] the 0.5 quantile, the point forecast.
    samples: [B, S, H] sampled paths, when asked for.
    """

    quantiles: torch.FloatTensor | None = None
    median: torch.FloatTensor | None = None
    samples: torch.FloatTensor | None = None


class XLSTMForTimeSeriesPrediction(XLSTMPreTrainedModel):
    """xLSTM forecaster (`past_values [B, L, C]` -> forecasts of the next `config.prediction_length`
    steps), each channel forecast on its own by the same weights; see the module docstring for the two
    designs of `config.forecaster`.

    `"direct"` (in the manner of PatchTST): each channel is scaled by the statistics of its observed
    context (`config.scaling`) and cut into patches of `patch_length` values every `patch_stride` steps,
    aligned to the end of the context (any context of at least one patch works, not only
    `context_length`); each patch and its observed mask are embedded linearly, and the head reads the block
    stack's output after the last patch. `config.loss` picks the head and the loss, computed in the data's
    units on the observed future values: `"mse"` (point forecast, squared error), `"nll"`
    (`config.distribution_output`, negative log-likelihood) or `"quantile"` (`config.quantiles`, pinball
    loss).

    `"tirex"`: forecasts quantiles as TiRex does (any context length, any horizon; `forecast` takes
    univariate series as TiRex's API does); `from_pretrained` also reads TiRex checkpoints.

    The backbone has no token embedding: `config.vocab_size` is ignored. Trainer finds no labels in
    `forward`'s arguments; name them for evaluation: `TrainingArguments(..., label_names=["future_values"])`.
    """

    main_input_name = "past_values"
    accepts_loss_kwargs = False

    def __init__(self, config: XLSTMConfig):
        super().__init__(config)
        self.scaler = PatchTSTScaler(config) if config.forecaster == "direct" else None
        self.patch_embedding = XLSTMPatchEmbedding(config)
        self.backbone = XLSTMModel(backbone_config(config))
        self.distribution_output = None
        if config.forecaster == "tirex":  # every token: the quantiles of the next patch
            outputs = len(config.quantiles) * config.patch_length
            self.head = patch_map(config.hidden_size, config.patch_ffn_size, outputs)
        elif config.loss == "nll":
            output_class = DISTRIBUTION_OUTPUTS[config.distribution_output]
            self.distribution_output = output_class()  # one distribution per value of [B, H, C]
            self.head = output_class(dim=config.prediction_length).get_parameter_projection(config.hidden_size)
        else:
            num_outputs = len(config.quantiles) if config.loss == "quantile" else 1
            self.head = nn.Linear(config.hidden_size, config.prediction_length * num_outputs)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loading of our checkpoints; also reads a TiRex checkpoint (the `model.ckpt` of
        NX-AI/TiRex: the file, a folder holding it, or a Hub repo id), converted on load (tirex.py) into a
        `forecaster="tirex"` model; `scripts/convert_tirex.py` converts one once and for all. With a TiRex
        checkpoint, keywords are `dtype`, Hub arguments and config fields that override TiRex's (e.g.
        `slstm_bf16_rounding=False` for the float32 recurrence, `prediction_length=64`)."""
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        checkpoint = None if args else find_tirex_checkpoint(pretrained_model_name_or_path, **hub_kwargs)
        if checkpoint is None:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        return load_tirex(cls, checkpoint, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """The init of every xLSTM model, but PyTorch's default init of nn.Linear (as TiRex's) for the patch
        MLPs: with zero biases an empty patch would embed as exactly 0, where the gradient of the first
        RMSNorm is 1/sqrt(eps), and over a left padding of many empty patches and a few blocks such
        gradients overflow."""
        if not isinstance(module, PatchLinear):
            super()._init_weights(module)
            return
        bound = 1 / math.sqrt(module.in_features)
        init.uniform_(module.weight, -bound, bound)
        init.uniform_(module.bias, -bound, bound)

    @can_return_tuple
    def forward(
        self,
        past_values: torch.Tensor,
        past_observed_mask: torch.Tensor | None = None,
        future_values: torch.Tensor | None = None,
        future_observed_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> XLSTMForTimeSeriesPredictionOutput:
        r"""
        past_values: [B, L, C] context with L >= patch_length (any L >= 1 for `tirex`) and
            C = num_input_channels; float64 (numpy's), float16 or integer values are cast to the model's dtype.
        past_observed_mask: [B, L, C], 1 where observed, 0 where missing (those values, NaN or not, are
            ignored). Defaults to all observed.
        future_values: [B, prediction_length, C] targets of the loss.
        future_observed_mask: [B, prediction_length, C], 1 where observed; missing targets (NaN or not) do
            not count in the loss. Defaults to all observed.
        return_dict: return a tuple when False.
        """
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if self.config.forecaster == "tirex":
            return self._forward_tirex(past_values, past_observed_mask, future_values, future_observed_mask,
                                       output_hidden_states)
        scaled, observed, loc, scale = self._encode_context(past_values, past_observed_mask)
        outputs = self.backbone(
            inputs_embeds=self.patch_embedding(scaled, observed),
            use_cache=False,
            output_hidden_states=output_hidden_states,
        )
        prediction_outputs = self._predict(outputs.last_hidden_state[:, -1], loc, scale)
        loss = None
        if future_values is not None:
            future_values, future_observed = self._check_future(future_values, future_observed_mask, loc.shape[0])
            loss = self._loss(prediction_outputs, loc, scale, future_values, future_observed)
        return XLSTMForTimeSeriesPredictionOutput(
            loss=loss, prediction_outputs=prediction_outputs, hidden_states=outputs.hidden_states, loc=loc, scale=scale
        )

    @torch.no_grad()
    def generate(
        self,
        past_values: torch.Tensor,
        past_observed_mask: torch.Tensor | None = None,
        prediction_length: int | None = None,
        num_samples: int | None = None,
    ) -> XLSTMTimeSeriesSampleOutput:
        r"""
        Sample forecast paths [B, S, H', C] of H' = `prediction_length` (default `config.prediction_length`)
        steps: S = `num_samples` (default `config.num_parallel_samples`) draws of the distribution (`nll`)
        or of the quantiles (`quantile`, see `sample_from_quantiles`), or S = 1, the point forecast (`mse`,
        as in PatchTST).

        `"tirex"` forecasters also return the quantiles [B, H', C, Q] (TiRex's forecast, for any H');
        `num_samples=0` skips the sampling. `"direct"` forecasters roll beyond `config.prediction_length`:
        each path rolls forward from the recurrent state after the context: its forecast values are scaled
        with the context's `loc`/`scale`, cut into the patches that continue the context's patch grid, fed
        to the backbone, and the next block is forecast from the end of the last patch (values past it are
        kept and become part of the next patches).
        """
        horizon = self.config.prediction_length if prediction_length is None else prediction_length
        self._check_horizon(horizon)
        num_samples = self._check_num_samples(num_samples)
        if self.config.forecaster == "tirex":
            quantiles = self._tirex_quantiles(past_values, past_observed_mask, horizon, TIREX_MAX_ROWS)
            levels = quantiles.new_tensor(self.config.quantiles)
            samples = sample_from_quantiles(quantiles, levels, num_samples) if num_samples else None
            return XLSTMTimeSeriesSampleOutput(sequences=samples, quantiles=quantiles)
        scaled, observed, loc, scale = self._encode_context(past_values, past_observed_mask)
        outputs = self.backbone(inputs_embeds=self.patch_embedding(scaled, observed), use_cache=True)
        num_samples = 1 if self.config.loss == "mse" else num_samples
        forecast = self._sample(self._predict(outputs.last_hidden_state[:, -1], loc, scale), loc, scale, num_samples)
        if horizon > self.config.prediction_length:
            last_patch = slice(-self.config.patch_length, None)
            forecast = self._roll_forward(
                forecast, horizon, outputs.cache, scaled[:, last_patch], observed[:, last_patch], loc, scale
            )
        return XLSTMTimeSeriesSampleOutput(sequences=forecast[:, :, :horizon])

    @torch.no_grad()
    def forecast(self, context, prediction_length: int | None = None, num_samples: int = 0) -> XLSTMForecastOutput:
        """Zero-shot forecasts of univariate series as TiRex's API gives them (forecaster `"tirex"`, one
        channel): `context` a [B, L] (or [L]) tensor or array, or a list of 1-D series of any lengths (left-padded
        with NaN); NaN marks missing values. -> quantiles [B, H, Q], the median [B, H] (the point forecast)
        and, with `num_samples`, sampled paths [B, S, H]."""
        if self.config.forecaster != "tirex" or self.config.num_input_channels != 1:
            raise ValueError("forecast takes univariate series for forecaster='tirex' with num_input_channels=1; "
                             "call generate(past_values [B, L, C], ...) otherwise.")
        values = series_batch(context).to(self.device)
        observed = ~values.isnan()
        output = self.generate(values[..., None], observed[..., None], prediction_length, num_samples)
        quantiles = output.quantiles[:, :, 0]  # [B, H, Q]
        samples = output.sequences[..., 0] if output.sequences is not None else None
        return XLSTMForecastOutput(quantiles=quantiles, median=quantiles[..., self.config.quantiles.index(0.5)],
                                   samples=samples)

    def forecast_distribution(
        self, params: tuple[torch.Tensor, ...], loc: torch.Tensor, scale: torch.Tensor
    ) -> Distribution:
        """The `nll` forecast distribution in the data's units, one per value of [B, H, C], from the
        parameters in `prediction_outputs` and `loc`/`scale` [B, 1, C]."""
        params = tuple(param.clone() for param in params)  # NegativeBinomialOutput shifts its logits in place
        return self.distribution_output.distribution(params, loc=loc, scale=scale)

    # ---- the context ----------------------------------------------------------------------------------
    def _encode_context(
        self, past_values: torch.Tensor, past_observed_mask: torch.Tensor | None, passes: int = 1
    ) -> tuple[torch.Tensor, ...]:
        """The checked context as the backbone reads it: (scaled values, 0 where missing; the observed mask;
        loc; scale). `"direct"`: [B, L, C] and [B, 1, C], the statistics of the observed context. `"tirex"`:
        the `passes` windows of `rollout_windows`, [passes*B, context_length, C] and [passes*B, 1, C]."""
        values, observed = self._check_past(past_values, past_observed_mask)
        if self.config.forecaster == "tirex":
            values, observed = rollout_windows(values, observed, self.config.context_length,
                                               self.config.patch_length, passes)
            loc, scale = (from_rows(x, values.shape[-1]) for x in window_statistics(to_rows(values), to_rows(observed)))
        else:
            _, loc, scale = self.scaler(values.masked_fill(~observed, 0.0), observed.to(values.dtype))
        return standardize(values, observed, loc, scale), observed, loc, scale

    # ---- the steps of the direct forecaster -------------------------------------------------------------
    def _predict(
        self, hidden: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The head on the last hidden state [B*C, hidden] -> `prediction_outputs` (see the output class)."""
        channels = loc.shape[-1]
        outputs = self.head(hidden)
        if self.config.loss == "nll":
            return tuple(from_rows(param, channels) for param in outputs)
        if self.config.loss == "quantile":
            quantiles = from_rows(outputs.unflatten(-1, (self.config.prediction_length, -1)), channels)
            return quantiles * scale[..., None] + loc[..., None]  # [B, H, C, Q]
        return from_rows(outputs, channels) * scale + loc  # [B, H, C]

    def _loss(self, prediction_outputs, loc, scale, future_values, future_observed) -> torch.Tensor:
        """Mean loss over the observed future values (and the quantile levels)."""
        target = future_values.masked_fill(~future_observed, 0.0)  # 0 lies in every distribution's support
        weights = future_observed.to(target.dtype)
        if self.config.loss == "nll":
            losses = nll(self.forecast_distribution(prediction_outputs, loc, scale), target)
        elif self.config.loss == "quantile":
            losses = pinball_loss(prediction_outputs, target, target.new_tensor(self.config.quantiles))
            weights = weights[..., None].expand_as(losses)
        else:
            losses = (prediction_outputs - target) ** 2
        return weighted_average(losses, weights=weights)

    def _sample(self, prediction_outputs, loc, scale, num_samples: int) -> torch.Tensor:
        """-> forecast paths [B, S, H, C]; the point forecast (S = 1) for the `mse` loss."""
        if self.config.loss == "nll":
            return self.forecast_distribution(prediction_outputs, loc, scale).sample((num_samples,)).transpose(0, 1)
        if self.config.loss == "quantile":
            levels = prediction_outputs.new_tensor(self.config.quantiles)
            return sample_from_quantiles(prediction_outputs, levels, num_samples)
        return prediction_outputs.unsqueeze(1)

    def _roll_forward(
        self,
        forecast: torch.Tensor,
        horizon: int,
        cache: XLSTMCache,
        series: torch.Tensor,
        observed: torch.Tensor,
        loc: torch.Tensor,
        scale: torch.Tensor,
    ) -> torch.Tensor:
        """Extend the paths `forecast` [B, S, H, C] to at least `horizon` steps, one path per row of the
        backbone. `series`, `observed` [B, patch_length, C]: the scaled last patch of the context, which
        `cache` holds the state after."""
        batch_size, num_samples, _, channels = forecast.shape
        patch_length, stride = self.config.patch_length, self.config.patch_stride
        cache.reorder_cache(path_rows(batch_size, num_samples, channels, forecast.device))
        series, observed, loc, scale = (x.repeat_interleave(num_samples, 0) for x in (series, observed, loc, scale))
        new_values = forecast.flatten(0, 1)  # [B*S, H, C]
        blocks, length = [new_values], forecast.shape[2]
        grid_end = patch_length  # where the last patch fed to the backbone ends in `series`
        while length < horizon:
            series = torch.cat([series, (new_values - loc) / scale], dim=1)
            observed = torch.cat([observed, torch.ones_like(new_values, dtype=torch.bool)], dim=1)
            next_grid_end = grid_end + (series.shape[1] - grid_end) // stride * stride
            window = slice(grid_end + stride - patch_length, next_grid_end)  # the new patches
            outputs = self.backbone(
                inputs_embeds=self.patch_embedding(series[:, window], observed[:, window]), cache=cache, use_cache=True
            )
            grid_end = next_grid_end
            block = self._sample(self._predict(outputs.last_hidden_state[:, -1], loc, scale), loc, scale, 1)
            new_values = block[:, 0, series.shape[1] - grid_end :]  # the forecast after the known values
            blocks.append(new_values)
            length += new_values.shape[1]
        return torch.cat(blocks, dim=1).unflatten(0, (batch_size, num_samples))

    # ---- the steps of the TiRex forecaster --------------------------------------------------------------
    def _forward_tirex(self, past_values, past_observed_mask, future_values, future_observed_mask,
                       output_hidden_states: bool) -> XLSTMForTimeSeriesPredictionOutput:
        """forward for `"tirex"`: the forecast of `prediction_length` steps, and with `future_values` the
        quantile loss of every token's next patch: those of the context (read in the first window) and
        those of the horizon, in the data's units."""
        horizon, patch = self.config.prediction_length, self.config.patch_length
        passes = math.ceil(horizon / patch)
        scaled, observed, loc, scale = self._encode_context(past_values, past_observed_mask, passes)
        if output_hidden_states:
            outputs = self.backbone(inputs_embeds=self.patch_embedding(scaled, observed), use_cache=False,
                                    output_hidden_states=True)
            hidden, hidden_states = outputs.last_hidden_state, outputs.hidden_states
        else:
            hidden, hidden_states = self._backbone_outputs(scaled, observed), None
        forecast = join_passes(self._unscale(self._patch_quantiles(hidden[:, -1:]), loc, scale), passes, horizon)
        loss = None
        if future_values is not None:
            batch_size, channels = loc.shape[0] // passes, loc.shape[-1]
            future_values, future_observed = self._check_future(future_values, future_observed_mask, batch_size)
            levels = forecast.new_tensor(self.config.quantiles)
            # the first window's tokens but the last forecast its next patches, compared in scaled units
            # and brought into the data's units by the scale (the pinball loss is shift-invariant and
            # positively homogeneous)
            context_forecast = from_rows(self._patch_quantiles(hidden[: batch_size * channels, :-1]), channels)
            context_losses = pinball_loss(context_forecast, scaled[:batch_size, patch:], levels)
            context_losses = context_losses * scale[:batch_size, :, :, None]  # [B, W - patch, C, Q]
            horizon_losses = pinball_loss(forecast, future_values.masked_fill(~future_observed, 0.0), levels)
            losses = torch.cat([context_losses, horizon_losses], dim=1)
            weights = torch.cat([observed[:batch_size, patch:], future_observed], dim=1).to(losses.dtype)
            loss = weighted_average(losses, weights=weights[..., None].expand_as(losses))
        return XLSTMForTimeSeriesPredictionOutput(
            loss=loss, prediction_outputs=forecast, hidden_states=hidden_states, loc=loc, scale=scale
        )

    def _tirex_quantiles(self, past_values, past_observed_mask, horizon: int, max_rows: int) -> torch.Tensor:
        """TiRex's forecast of `horizon` steps: quantiles [B, H, C, Q]. The windows go through the backbone
        `max_rows` series at a time."""
        passes = math.ceil(horizon / self.config.patch_length)
        scaled, observed, loc, scale = self._encode_context(past_values, past_observed_mask, passes)
        step = max(1, max_rows // scaled.shape[-1])
        forecast = torch.cat([
            self._forecast_windows(*(x[start : start + step] for x in (scaled, observed, loc, scale)))
            for start in range(0, scaled.shape[0], step)
        ])
        return join_passes(forecast, passes, horizon)

    def _forecast_windows(self, scaled, observed, loc, scale) -> torch.Tensor:
        """Windows [N, W, C] (scaled, observed) with their statistics [N, 1, C] -> the quantiles of the patch
        after each, [N, patch, C, Q]."""
        hidden = self._backbone_outputs(scaled, observed)[:, -1:]
        return self._unscale(self._patch_quantiles(hidden), loc, scale)

    def _backbone_outputs(self, scaled: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The backbone's outputs [N*C, T, hidden] for windows [N, W, C] (scaled, observed). The empty patches
        (no observed value: the left padding of short contexts) that start every window are the same token
        in every row: one row runs them, and every row continues from its state (not while training with
        dropout, whose masks differ between rows)."""
        embeds = self.patch_embedding(scaled, observed)  # [N*C, T, hidden]
        empty = ~to_rows(observed).unflatten(-1, (-1, self.config.patch_length)).any(-1)  # [N*C, T]
        skip = int(empty.cumprod(-1).sum(-1).min().clamp(max=embeds.shape[1] - 1))  # the last token always runs
        if not skip or (self.training and self.config.dropout):
            return self.backbone(inputs_embeds=embeds, use_cache=False).last_hidden_state
        rows = embeds.shape[0]
        prefix = self.backbone(inputs_embeds=embeds[:1, :1].expand(1, skip, -1), use_cache=True)
        cache = prefix.cache
        cache.layer_states = tree_map(lambda x: None if x is None else x.expand(rows, *x.shape[1:]), cache.layer_states)
        rest = self.backbone(inputs_embeds=embeds[:, skip:], cache=cache, use_cache=False).last_hidden_state
        return torch.cat([prefix.last_hidden_state.expand(rows, -1, -1), rest], dim=1)

    def _patch_quantiles(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head on tokens [N*C, T, hidden] -> the scaled quantiles of the patch after each token, side by
        side: [N*C, T*patch, Q]."""
        quantiles = self.head(hidden).unflatten(-1, (len(self.config.quantiles), -1))  # [N*C, T, Q, patch]
        return quantiles.transpose(-1, -2).flatten(1, 2)

    @staticmethod
    def _unscale(quantiles: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Scaled quantiles [N*C, S, Q] of windows with statistics [N, 1, C] -> the data's units, [N, S, C, Q]."""
        return from_rows(quantiles * to_rows(scale)[..., None] + to_rows(loc)[..., None], loc.shape[-1])

    # ---- argument checks ------------------------------------------------------------------------------
    def _check_past(
        self, past_values: torch.Tensor, past_observed_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> the values [B, L, C] in the model's dtype and the observed mask [B, L, C] as bool."""
        channels, patch_length = self.config.num_input_channels, self.config.patch_length
        past_values = cast_values("past_values", past_values, self.dtype)
        if past_values.dim() != 3 or past_values.shape[2] != channels or past_values.shape[0] == 0:
            raise ValueError(
                f"past_values has shape {list(past_values.shape)}; expected [batch, length, num_input_channels] "
                f"with num_input_channels = {channels} and at least one row."
            )
        minimum = 1 if self.config.forecaster == "tirex" else patch_length
        if past_values.shape[1] < minimum:
            raise ValueError(
                f"past_values has {past_values.shape[1]} time steps, fewer than "
                + (f"patch_length = {patch_length}; give a context of at least one patch." if minimum > 1
                   else "1; give a context of at least one step.")
            )
        return past_values, check_observed_mask("past", past_values, past_observed_mask)

    def _check_future(
        self, future_values: torch.Tensor, future_observed_mask: torch.Tensor | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> the values [B, H, C] in the model's dtype and the observed mask [B, H, C] as bool."""
        expected = [batch_size, self.config.prediction_length, self.config.num_input_channels]
        future_values = cast_values("future_values", future_values, self.dtype)
        if list(future_values.shape) != expected:
            raise ValueError(
                f"future_values has shape {list(future_values.shape)}; expected "
                f"[batch, prediction_length, num_input_channels] = {expected}."
            )
        return future_values, check_observed_mask("future", future_values, future_observed_mask)

    def _check_horizon(self, horizon: int) -> None:
        check_positive_int("prediction_length", horizon, " (the number of steps to forecast)")
        too_short = self.config.prediction_length < self.config.patch_stride
        if self.config.forecaster == "direct" and horizon > self.config.prediction_length and too_short:
            raise ValueError(
                f"prediction_length={horizon} exceeds config.prediction_length={self.config.prediction_length}, "
                f"and forecasts of fewer than patch_stride={self.config.patch_stride} steps fill no new patch "
                "to roll forward with; ask for at most config.prediction_length steps."
            )

    def _check_num_samples(self, num_samples: int | None) -> int:
        if num_samples is None:
            return self.config.num_parallel_samples
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples={num_samples!r}; give a number of sample paths >= 1 (0: none, for "
                             "forecaster='tirex'), or None for config.num_parallel_samples.")
        if num_samples == 0 and self.config.forecaster != "tirex":
            raise ValueError("num_samples=0 asks for no forecast; sample at least one path.")
        return num_samples


route_tirex_checkpoints(AutoModelForTimeSeriesPrediction, XLSTMForTimeSeriesPrediction, find_tirex_checkpoint,
                        HUB_KWARGS)

__all__ = [
    "XLSTMForTimeSeriesPrediction",
    "XLSTMForTimeSeriesPredictionOutput",
    "XLSTMTimeSeriesSampleOutput",
    "XLSTMForecastOutput",
]
