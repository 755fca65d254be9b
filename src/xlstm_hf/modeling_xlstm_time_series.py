"""xLSTM forecaster with the interface of PatchTST: patches of each channel go through the causal xLSTM
block stack, and a head on the state after the last patch forecasts the next `prediction_length` steps.

Because the backbone is recurrent, `generate` reaches horizons beyond `prediction_length` by feeding
its own forecasts back as new patches from the recurrent state, without re-reading the context.
"""

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution
from transformers.models.patchtst.modeling_patchtst import PatchTSTScaler, nll, weighted_average
from transformers.time_series_utils import NegativeBinomialOutput, NormalOutput, StudentTOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_xlstm import XLSTMConfig
from .input_checks import check_binary_mask, check_positive_int, require_tensor
from .modeling_xlstm import XLSTMCache, XLSTMModel, XLSTMPreTrainedModel

DISTRIBUTION_OUTPUTS = {
    "student_t": StudentTOutput, "normal": NormalOutput, "negative_binomial": NegativeBinomialOutput
}


def backbone_config(config: XLSTMConfig) -> XLSTMConfig:
    """The block stack's config: that of the forecaster without token embedding."""
    config = copy.deepcopy(config)
    config.vocab_size, config.tie_word_embeddings = None, False
    return config


def path_rows(batch_size: int, num_samples: int, channels: int, device: torch.device) -> torch.Tensor:
    """Backbone rows (b, c) -> rows (b, s, c) of the sample paths: the index of (b, c) for each (b, s, c)."""
    rows = torch.arange(batch_size * channels, device=device).view(batch_size, 1, channels)
    return rows.expand(-1, num_samples, -1).flatten()


def patchify(series: torch.Tensor, patch_length: int, stride: int) -> torch.Tensor:
    """[N, T] -> [N, P, patch_length]: patches every `stride` steps, the last one ending at the last step;
    a leading remainder that fills no patch is dropped."""
    num_patches = (series.shape[-1] - patch_length) // stride + 1
    start = series.shape[-1] - patch_length - (num_patches - 1) * stride
    return series[..., start:].unfold(-1, patch_length, stride)


def standardize(values: torch.Tensor, observed: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`(values - loc) / scale` where observed, 0 where missing (whatever the values hold there)."""
    return torch.where(observed, (values - loc) / scale, 0.0)


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
    if not torch.isfinite(values[mask]).all():
        raise ValueError(
            f"{prefix}_values holds NaN or inf at observed positions; mark those positions missing "
            f"with 0 in {prefix}_observed_mask."
        )
    return mask


class XLSTMPatchEmbedding(nn.Module):
    """Each channel on its own: patches of the values and of the observed mask, mapped linearly to the
    hidden size."""

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        self.patch_length, self.patch_stride = config.patch_length, config.patch_stride
        self.projection = nn.Linear(2 * config.patch_length, config.hidden_size)

    def forward(self, values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """values, observed: [B, T, C] -> [B*C, P, hidden]."""
        series = values.transpose(1, 2).flatten(0, 1)  # [B*C, T]
        mask = observed.transpose(1, 2).flatten(0, 1).to(values.dtype)
        patches = [patchify(x, self.patch_length, self.patch_stride) for x in (series, mask)]
        return self.projection(torch.cat(patches, dim=-1))  # [B*C, P, 2*patch_length] -> [B*C, P, hidden]


@dataclass
class XLSTMForTimeSeriesPredictionOutput(ModelOutput):
    """
    loss: the loss of `config.loss` on the observed `future_values`, when they are given.
    prediction_outputs: `mse`: point forecasts [B, H, C]; `quantile`: forecasts [B, H, C, Q] at
        `config.quantiles`; both in the data's units. `nll`: the parameters of the scaled distribution, each
        [B, H, C], which with `loc` and `scale` give the forecast distribution (`model.forecast_distribution`).
    hidden_states: the input of every block and the final output, each [B*C, P, hidden], when asked for.
    loc, scale: [B, 1, C] statistics of the observed context with which the model scaled it.
    """

    loss: torch.FloatTensor | None = None
    prediction_outputs: torch.FloatTensor | tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    loc: torch.FloatTensor | None = None
    scale: torch.FloatTensor | None = None


@dataclass
class XLSTMTimeSeriesSampleOutput(ModelOutput):
    """
    sequences: [B, S, H, C] sampled forecast paths (S = 1 for the point forecasts of the `mse` loss).
    """

    sequences: torch.FloatTensor | None = None


class XLSTMForTimeSeriesPrediction(XLSTMPreTrainedModel):
    """xLSTM forecaster in the manner of PatchTST (`past_values [B, L, C]` -> forecasts of the next
    `config.prediction_length` steps), with the recurrent xLSTM block stack in place of the Transformer.

    Each channel is scaled by the statistics of its observed context (`config.scaling`) and forecast on
    its own by the same weights. Its context is cut into patches of `patch_length` values every
    `patch_stride` steps, aligned to the end of the context (any context of at least one patch works,
    not only `context_length`); each patch and its observed mask are embedded linearly, and the head reads
    the block stack's output after the last patch. `config.loss` picks the head and the loss, computed
    in the data's units on the observed future values: `"mse"` (point forecast, squared error), `"nll"`
    (`config.distribution_output`, negative log-likelihood) or `"quantile"` (`config.quantiles`, pinball
    loss). The backbone has no token embedding: `config.vocab_size` is ignored.

    Trainer finds no labels in `forward`'s arguments; name them for evaluation:
    `TrainingArguments(..., label_names=["future_values"])`.
    """

    main_input_name = "past_values"
    accepts_loss_kwargs = False

    def __init__(self, config: XLSTMConfig):
        super().__init__(config)
        self.scaler = PatchTSTScaler(config)
        self.patch_embedding = XLSTMPatchEmbedding(config)
        self.backbone = XLSTMModel(backbone_config(config))
        self.distribution_output = None
        if config.loss == "nll":
            output_class = DISTRIBUTION_OUTPUTS[config.distribution_output]
            self.distribution_output = output_class()  # one distribution per value of [B, H, C]
            self.head = output_class(dim=config.prediction_length).get_parameter_projection(config.hidden_size)
        else:
            num_outputs = len(config.quantiles) if config.loss == "quantile" else 1
            self.head = nn.Linear(config.hidden_size, config.prediction_length * num_outputs)
        self.post_init()

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
        past_values: [B, L, C] context with L >= patch_length and C = num_input_channels.
        past_observed_mask: [B, L, C], 1 where observed, 0 where missing (those values, NaN or not, are
            ignored). Defaults to all observed.
        future_values: [B, prediction_length, C] targets of the loss.
        future_observed_mask: [B, prediction_length, C], 1 where observed; missing targets (NaN or not) do
            not count in the loss. Defaults to all observed.
        return_dict: return a tuple when False.
        """
        observed = self._check_past(past_values, past_observed_mask)
        scaled, loc, scale = self._scale(past_values, observed)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        outputs = self.backbone(
            inputs_embeds=self.patch_embedding(scaled, observed),
            use_cache=False,
            output_hidden_states=output_hidden_states,
        )
        prediction_outputs = self._predict(outputs.last_hidden_state[:, -1], loc, scale)
        loss = None
        if future_values is not None:
            future_observed = self._check_future(future_values, future_observed_mask, past_values.shape[0])
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
    ) -> XLSTMTimeSeriesSampleOutput:
        r"""
        Sample forecast paths [B, S, H', C] of H' = `prediction_length` (default `config.prediction_length`)
        steps: S = `config.num_parallel_samples` draws of the distribution (`nll`) or of the quantiles
        (`quantile`, see `sample_from_quantiles`), or S = 1, the point forecast (`mse`, as in PatchTST).

        Beyond `config.prediction_length`, each path rolls forward from the recurrent state after the
        context: its forecast values are scaled with the context's `loc`/`scale`, cut into the patches
        that continue the context's patch grid, fed to the backbone, and the next block is forecast from
        the end of the last patch (values past it are kept and become part of the next patches).
        """
        horizon = self.config.prediction_length if prediction_length is None else prediction_length
        self._check_horizon(horizon)
        observed = self._check_past(past_values, past_observed_mask)
        scaled, loc, scale = self._scale(past_values, observed)
        outputs = self.backbone(inputs_embeds=self.patch_embedding(scaled, observed), use_cache=True)
        num_samples = 1 if self.config.loss == "mse" else self.config.num_parallel_samples
        forecast = self._sample(self._predict(outputs.last_hidden_state[:, -1], loc, scale), loc, scale, num_samples)
        if horizon > self.config.prediction_length:
            last_patch = slice(-self.config.patch_length, None)
            forecast = self._roll_forward(
                forecast, horizon, outputs.cache, scaled[:, last_patch], observed[:, last_patch], loc, scale
            )
        return XLSTMTimeSeriesSampleOutput(sequences=forecast[:, :, :horizon])

    def forecast_distribution(
        self, params: tuple[torch.Tensor, ...], loc: torch.Tensor, scale: torch.Tensor
    ) -> Distribution:
        """The `nll` forecast distribution in the data's units, one per value of [B, H, C], from the
        parameters in `prediction_outputs` and `loc`/`scale` [B, 1, C]."""
        params = tuple(param.clone() for param in params)  # NegativeBinomialOutput shifts its logits in place
        return self.distribution_output.distribution(params, loc=loc, scale=scale)

    # ---- the steps of forward and generate ------------------------------------------------------------
    def _scale(self, values: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """values, observed [B, L, C] -> scaled values (0 where missing) [B, L, C], loc and scale [B, 1, C]
        from the observed values alone."""
        _, loc, scale = self.scaler(values.masked_fill(~observed, 0.0), observed.to(values.dtype))
        return standardize(values, observed, loc, scale), loc, scale

    def _predict(
        self, hidden: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The head on the last hidden state [B*C, hidden] -> `prediction_outputs` (see the output class)."""
        batch_size, channels = loc.shape[0], loc.shape[-1]
        outputs = self.head(hidden)
        if self.config.loss == "nll":
            return tuple(param.reshape(batch_size, channels, -1).transpose(1, 2) for param in outputs)
        if self.config.loss == "quantile":
            quantiles = outputs.reshape(batch_size, channels, self.config.prediction_length, -1).transpose(1, 2)
            return quantiles * scale[..., None] + loc[..., None]  # [B, H, C, Q]
        return outputs.reshape(batch_size, channels, -1).transpose(1, 2) * scale + loc  # [B, H, C]

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

    # ---- argument checks ------------------------------------------------------------------------------
    def _check_past(self, past_values: torch.Tensor, past_observed_mask: torch.Tensor | None) -> torch.Tensor:
        """-> the observed mask [B, L, C] as bool."""
        channels, patch_length = self.config.num_input_channels, self.config.patch_length
        require_tensor("past_values", past_values)
        if past_values.dim() != 3 or past_values.shape[2] != channels or past_values.shape[0] == 0:
            raise ValueError(
                f"past_values has shape {list(past_values.shape)}; expected [batch, length, num_input_channels] "
                f"with num_input_channels = {channels} and at least one row."
            )
        if past_values.shape[1] < patch_length:
            raise ValueError(
                f"past_values has {past_values.shape[1]} time steps, fewer than patch_length = {patch_length}; "
                "give a context of at least one patch."
            )
        return check_observed_mask("past", past_values, past_observed_mask)

    def _check_future(
        self, future_values: torch.Tensor, future_observed_mask: torch.Tensor | None, batch_size: int
    ) -> torch.Tensor:
        """-> the observed mask [B, H, C] as bool."""
        expected = [batch_size, self.config.prediction_length, self.config.num_input_channels]
        require_tensor("future_values", future_values)
        if list(future_values.shape) != expected:
            raise ValueError(
                f"future_values has shape {list(future_values.shape)}; expected "
                f"[batch, prediction_length, num_input_channels] = {expected}."
            )
        return check_observed_mask("future", future_values, future_observed_mask)

    def _check_horizon(self, horizon: int) -> None:
        check_positive_int("prediction_length", horizon, " (the number of steps to forecast)")
        if horizon > self.config.prediction_length and self.config.prediction_length < self.config.patch_stride:
            raise ValueError(
                f"prediction_length={horizon} exceeds config.prediction_length={self.config.prediction_length}, "
                f"and forecasts of fewer than patch_stride={self.config.patch_stride} steps fill no new patch "
                "to roll forward with; ask for at most config.prediction_length steps."
            )


__all__ = [
    "XLSTMForTimeSeriesPrediction",
    "XLSTMForTimeSeriesPredictionOutput",
    "XLSTMTimeSeriesSampleOutput",
]
