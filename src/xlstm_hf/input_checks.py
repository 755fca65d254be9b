"""Cheap checks of what the models are given, run before any heavy work.

Each raises a TypeError (not a tensor, wrong dtype) or a ValueError (wrong shape, values out of range)
whose message names the argument, shows what it got and says what is expected. Checks that read tensor
values (token-id ranges, 0/1 masks, NaN) cost one reduction each and are skipped while torch.compile or
torch.jit traces the model.
"""

import threading
from contextlib import contextmanager

import torch

IGNORE_INDEX = -100  # the label that the losses of transformers ignore
TOKEN_ID_DTYPES = (torch.long, torch.int)  # what nn.Embedding takes
# what transformers' token losses take besides logits and labels (Trainer passes num_items_in_batch)
LOSS_KWARGS = ("num_items_in_batch", "ignore_index", "shift_labels")
# keywords other models take that an xLSTM has no use for, and what to do instead
NOT_USED_HERE = {
    "token_type_ids": "xLSTM has no token types: leave them out (tokenizer(..., return_token_type_ids=False))",
    **dict.fromkeys(("position_ids", "seq_idx", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"),
                    "packed rows (as DataCollatorWithFlattening makes them) are for the heads that predict per step: "
                    "the causal LM, the token classifier and XLSTMModel; pad the batch for this one"),
    "output_attentions": "a recurrent model has no attention weights: leave it out",
    "head_mask": "a recurrent model has no attention heads to mask: leave it out",
}


_calls = threading.local()  # what the current thread's model calls may skip: "checked" values, "graph_safe"


def tracing() -> bool:
    """True while torch.compile, torch.export or torch.jit traces the model."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def host_reads_allowed() -> bool:
    """Whether a call may read tensor values on the host (a sync, and a branch on data): not while traced, and
    not inside `graph_safe()`."""
    return not (tracing() or getattr(_calls, "graph_safe", False))


def skip_value_checks() -> bool:
    """Whether the value checks of the inputs (token-id ranges, 0/1 masks, NaN) are left out: where no host reads
    are allowed, and inside `values_checked()`, whose caller has checked them once."""
    return not host_reads_allowed() or getattr(_calls, "checked", False)


@contextmanager
def _calls_with(setting: str):
    previous = getattr(_calls, setting, False)
    setattr(_calls, setting, True)
    try:
        yield
    finally:
        setattr(_calls, setting, previous)


def graph_safe():
    """Run the models without reading tensor values on the host: no value checks of the inputs and no shortcut for
    masks without padding, so that a call can be captured as a CUDA graph. torch.compile and torch.export need no
    such context; they are recognised."""
    return _calls_with("graph_safe")


def values_checked():
    """Model calls whose inputs the caller has checked (generate, after checking the prompt: its later steps feed
    the tokens it chose) skip the value checks."""
    return _calls_with("checked")


def shape_of(value: torch.Tensor) -> tuple[int, ...]:
    return tuple(value.shape)


def require_tensor(name: str, value) -> None:
    """TypeError unless `value` is a torch.Tensor."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} is a {type(value).__name__}; expected a torch.Tensor (e.g. torch.tensor({name})).")


def check_unused_kwargs(model, kwargs: dict, used: tuple[str, ...] = ()) -> None:
    """TypeError naming every keyword in `kwargs` that the forward of `model` would otherwise ignore (all but
    `used`, which it passes on to its loss). `output_attentions=False`, which `generate` passes to every
    encoder, asks for nothing."""
    unused = [name for name in kwargs if name not in used and not (name == "output_attentions" and not kwargs[name])]
    if not unused:
        return
    advice = "; ".join(f"{name}: {NOT_USED_HERE[name]}" for name in unused if name in NOT_USED_HERE)
    raise TypeError(
        f"{type(model).__name__}.forward() got keyword argument(s) it does not use: {', '.join(unused)}"
        f"{' (' + advice + ')' if advice else ''}. It takes only the arguments of its signature"
        f"{' and ' + ', '.join(used) + ' for the loss' if used else ''}."
    )


def check_sequence_shape(name: str, value: torch.Tensor, ndim: int, layout: str) -> None:
    """`value` has `ndim` dimensions, at least one row and at least one step."""
    if value.dim() != ndim:
        raise ValueError(f"{name} has shape {shape_of(value)}; expected {layout}.")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {shape_of(value)}: an empty batch or a zero-length sequence; expected {layout} "
            "with at least one row and one step."
        )


def check_token_ids(name: str, input_ids, vocab_size: int | None) -> None:
    """[batch, length] integer token ids, each in [0, vocab_size)."""
    require_tensor(name, input_ids)
    if input_ids.dtype not in TOKEN_ID_DTYPES:
        raise TypeError(
            f"{name} has dtype {input_ids.dtype}; expected integer token ids (torch.long): pass {name}.long()."
        )
    check_sequence_shape(name, input_ids, 2, "[batch, length] token ids")
    if vocab_size is not None:
        check_id_range(name, input_ids, vocab_size)


def check_id_range(name: str, ids: torch.Tensor, num_ids: int, what: str = "token id", ignore_index=None) -> None:
    """Every id in [0, num_ids) (or equal to `ignore_index`): one min/max reduction. Where no host reads are allowed
    (traced, captured) the check runs on the device instead (an id outside the range would otherwise index past
    the embedding): a RuntimeError with the range, not the id."""
    if ids.numel() == 0 or getattr(_calls, "checked", False) or torch.onnx.is_in_onnx_export():
        return
    if ignore_index is not None:
        ids = ids.masked_fill(ids == ignore_index, 0)
    if not host_reads_allowed():
        torch._assert_async(((ids >= 0) & (ids < num_ids)).all(), f"{name} holds a {what} outside [0, {num_ids}).")
        return
    low, high = torch.stack(torch.aminmax(ids)).tolist()
    if low < 0 or high >= num_ids:
        ignored = f" or {ignore_index} (ignored)" if ignore_index is not None else ""
        raise ValueError(
            f"{name} holds the {what} {low if low < 0 else high}, outside [0, {num_ids}); expected ids from 0 "
            f"to {num_ids - 1}{ignored}."
        )


def check_embeddings(name: str, inputs_embeds, hidden_size: int) -> None:
    """[batch, length, hidden_size] floating-point vectors."""
    require_tensor(name, inputs_embeds)
    if not inputs_embeds.dtype.is_floating_point:
        raise TypeError(
            f"{name} has dtype {inputs_embeds.dtype}; expected floating-point vectors: pass {name}.float()."
        )
    layout = f"[batch, length, hidden_size={hidden_size}] vectors"
    check_sequence_shape(name, inputs_embeds, 3, layout)
    if inputs_embeds.shape[2] != hidden_size:
        raise ValueError(f"{name} has shape {shape_of(inputs_embeds)}; expected {layout}.")


def check_binary_mask(name: str, mask: torch.Tensor, meaning: str) -> None:
    """A bool, integer or float mask holding only 0 and 1."""
    if mask.dtype.is_complex:
        raise TypeError(f"{name} has dtype {mask.dtype}; expected a bool or integer mask with {meaning}.")
    if mask.dtype == torch.bool or mask.numel() == 0 or skip_value_checks():
        return
    if bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError(f"{name} holds values other than 0 and 1; expected {meaning}.")


def check_attention_mask(
    name: str, attention_mask, batch_size: int, length: int, exact: bool = False, values: bool = True
) -> None:
    """[batch_size, >= length] (exactly `length` with `exact`), 1 at real steps and 0 at padding (the values read
    only with `values`: where the block stack, which checks them, reads the mask next, the shape is enough)."""
    require_tensor(name, attention_mask)
    meaning = "1 at real tokens and 0 at padding"
    columns = f"{length}" if exact else f">= {length}"
    if (attention_mask.dim() != 2 or attention_mask.shape[0] != batch_size
            or attention_mask.shape[1] < length or (exact and attention_mask.shape[1] != length)):
        raise ValueError(
            f"{name} has shape {shape_of(attention_mask)}; expected [batch, length] = [{batch_size}, {columns}] "
            f"with {meaning}."
        )
    if values:
        check_binary_mask(name, attention_mask, meaning)


def check_every_row_has_a_real_step(name: str, attention_mask: torch.Tensor, length: int) -> None:
    """Each row of the last `length` columns holds a 1 (a pooled output needs a real step)."""
    if skip_value_checks():
        return
    empty_rows = (~attention_mask[:, attention_mask.shape[1] - length :].bool().any(-1)).nonzero().flatten()
    if len(empty_rows):
        raise ValueError(
            f"{name} marks every step of row(s) {empty_rows.tolist()} as padding; each row needs at least one "
            "real step (1) to classify."
        )


def check_finite(name: str, values: torch.Tensor, mask_name: str, positions: str = "real (unmasked)") -> None:
    """No NaN or inf in `values` (whose masked positions the caller has filled)."""
    if skip_value_checks():
        return
    if not bool(torch.isfinite(values).all()):
        raise ValueError(
            f"{name} holds NaN or inf at {positions} positions; replace them, or mark those positions "
            f"with 0 in {mask_name}."
        )


def check_class_labels(
    name: str, labels, shapes: list[tuple[int, ...]] | None, num_classes: int, layout: str, what: str = "class id"
) -> None:
    """Integer ids of one of `shapes` (None: any), each in [0, num_classes) or -100 (ignored)."""
    require_tensor(name, labels)
    if labels.dtype != torch.long:  # what the cross-entropy of transformers' losses takes
        raise TypeError(f"{name} has dtype {labels.dtype}; expected {what}s of dtype torch.long: pass {name}.long().")
    if shapes is not None and shape_of(labels) not in [tuple(shape) for shape in shapes]:
        raise ValueError(f"{name} has shape {shape_of(labels)}; expected {layout} = "
                         f"{' or '.join(str(list(shape)) for shape in shapes)}.")
    check_id_range(name, labels, num_classes, what, ignore_index=IGNORE_INDEX)


def check_float_targets(name: str, labels, shapes: list[tuple[int, ...]], layout: str, hint: str = "") -> None:
    """Floating-point targets of one of `shapes`."""
    require_tensor(name, labels)
    if not labels.dtype.is_floating_point:
        raise TypeError(f"{name} has dtype {labels.dtype}; expected floating-point {layout}: pass {name}.float()"
                        f"{hint}.")
    if shape_of(labels) not in [tuple(shape) for shape in shapes]:
        raise ValueError(f"{name} has shape {shape_of(labels)}; expected {layout} = "
                         f"{' or '.join(str(list(shape)) for shape in shapes)}{hint}.")


def input_rows_and_steps(*inputs) -> tuple[int, int] | None:
    """(batch, length) of the first of `inputs` that is a tensor with at least two dimensions, else None (the
    model's own checks then report the input)."""
    for value in inputs:
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            return value.shape[0], value.shape[1]
    return None


def check_positive_int(name: str, value, hint: str = "") -> None:
    """A Python integer (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected a positive integer{hint}.")
    if value < 1:
        raise ValueError(f"{name}={value} is not positive; expected a positive integer{hint}.")


def check_generate_arguments(args: tuple, kwargs: dict, vocab_size: int) -> None:
    """The arguments of `generate`, before it sets anything up: the prompt token ids (`inputs` or `input_ids`,
    unless `inputs_embeds` is given, then those are finite where not padded), decoder ids, the 0/1 masks, and the
    lengths (also those of a `generation_config`). Its model calls then skip these value checks."""
    prompt = args[0] if args else kwargs.get("inputs", kwargs.get("input_ids"))
    if prompt is not None and kwargs.get("inputs_embeds") is None:
        check_token_ids("input_ids", prompt, vocab_size)
    if isinstance(kwargs.get("decoder_input_ids"), torch.Tensor):
        check_token_ids("decoder_input_ids", kwargs["decoder_input_ids"], vocab_size)
    for name in ("attention_mask", "decoder_attention_mask"):  # the model's calls skip the value checks
        if isinstance(kwargs.get(name), torch.Tensor):
            check_binary_mask(name, kwargs[name], "1 at real tokens and 0 at padding")
    embeds, mask = kwargs.get("inputs_embeds"), kwargs.get("attention_mask")
    if isinstance(embeds, torch.Tensor) and embeds.dim() == 3:
        if isinstance(mask, torch.Tensor) and mask.shape == embeds.shape[:2]:
            embeds = embeds.masked_fill(~mask.bool()[..., None], 0.0)
        check_finite("inputs_embeds", embeds, "attention_mask")
    sources = [kwargs, vars(kwargs["generation_config"]) if kwargs.get("generation_config") is not None else {}]
    for source in sources:
        for name in ("max_new_tokens", "max_length"):
            if source.get(name) is not None:
                check_positive_int(name, source[name], " (the number of tokens to generate)"
                                   if name == "max_new_tokens" else " (prompt plus generated tokens)")


def check_sequence_labels(labels, batch_size: int, num_labels: int, problem_type: str | None) -> None:
    """`labels` of a sequence classifier as transformers' loss reads them for `problem_type` (inferred as it
    does when None: one label is regression, integer labels single-label, float labels multi-label)."""
    require_tensor("labels", labels)
    if problem_type is None:
        integer = labels.dtype in TOKEN_ID_DTYPES
        problem_type = ("regression" if num_labels == 1 else
                        "single_label_classification" if integer else "multi_label_classification")
    if problem_type == "single_label_classification":
        check_class_labels("labels", labels, [(batch_size,), (batch_size, 1)], num_labels, "[batch] class ids")
    elif problem_type == "multi_label_classification":
        check_float_targets("labels", labels, [(batch_size, num_labels)], "multi-label targets [batch, num_labels]",
                            " (float labels mean multi-label; integer class ids [batch] mean single-label)")
    elif problem_type == "regression":
        shapes = [(batch_size,), (batch_size, 1)] if num_labels == 1 else [(batch_size, num_labels)]
        check_float_targets("labels", labels, shapes, f"regression targets (num_labels={num_labels})")


def check_decoder_inputs(
    source_rows: int | None, decoder_input_ids, decoder_inputs_embeds, decoder_attention_mask, labels,
    vocab_size: int, hidden_size: int,
) -> None:
    """The target side of an encoder-decoder: `decoder_input_ids` [B, T] (or `decoder_inputs_embeds`, or the
    `labels` they are made from), its padding mask and the labels, one row per source row."""
    if decoder_input_ids is not None and decoder_inputs_embeds is not None:
        raise ValueError("Pass decoder_input_ids or decoder_inputs_embeds, not both.")
    if decoder_input_ids is not None:
        check_token_ids("decoder_input_ids", decoder_input_ids, vocab_size)
        name, target = "decoder_input_ids", decoder_input_ids
    elif decoder_inputs_embeds is not None:
        check_embeddings("decoder_inputs_embeds", decoder_inputs_embeds, hidden_size)
        name, target = "decoder_inputs_embeds", decoder_inputs_embeds
    elif labels is not None:
        require_tensor("labels", labels)
        check_sequence_shape("labels", labels, 2, "[batch, target length] token ids, -100 where ignored")
        name, target = "labels", labels
    else:
        raise ValueError(
            "decoder_input_ids is missing; pass decoder_input_ids (the target so far, starting with "
            "config.decoder_start_token_id), decoder_inputs_embeds, or labels to make them from."
        )
    rows, steps = target.shape[:2]
    if labels is not None:
        layout = f"the shape of {name}, [batch, length]" if name != "labels" else "[batch, target length]"
        check_class_labels("labels", labels, [(rows, steps)], vocab_size, layout, "token id")
    if source_rows is not None and rows != source_rows:
        raise ValueError(f"{name} has {rows} rows but the source has {source_rows}; give one target row per "
                         "source row.")
    if decoder_attention_mask is not None:
        check_attention_mask("decoder_attention_mask", decoder_attention_mask, rows, steps, values=False)
