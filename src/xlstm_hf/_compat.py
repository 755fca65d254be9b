"""What importing xlstm_hf changes outside its own code, in one place. Each change names the versions that need it;
tests/test_compat.py holds, for each, that transformers (or huggingface_hub) still behaves as the change assumes,
so that a test fails once a change is no longer needed.
"""

from huggingface_hub.errors import StrictDataclassFieldValidationError
from transformers import configuration_utils


def allow_layer_types(layer_types: tuple[str, ...]) -> None:
    """transformers >= 5.0 checks `layer_types` against the attention layer types it knows wherever it reads a
    config.json without the model's class (Trainer does, resuming from a checkpoint): ours join that list."""
    known = configuration_utils.ALLOWED_ATTN_LAYER_TYPES
    configuration_utils.ALLOWED_ATTN_LAYER_TYPES = (*known, *(name for name in layer_types if name not in known))


def raise_type_errors_for_fields(config_class: type) -> None:
    """huggingface_hub's `@strict` dataclasses (transformers >= 5.0 configs) report a value of the wrong type as a
    StrictDataclassFieldValidationError, a ValueError: a config of `config_class` raises a TypeError naming the
    field instead, as the rest of our input checks do."""
    strict_setattr = config_class.__setattr__

    def __setattr__(self, name: str, value) -> None:
        try:
            strict_setattr(self, name, value)
        except StrictDataclassFieldValidationError as error:
            declared = self.__dataclass_fields__[name].type
            declared = getattr(declared, "__name__", None) if isinstance(declared, type) else str(declared)
            raise TypeError(f"{name}={value!r} does not have the field's type {declared}; pass a value of that "
                            "type (see XLSTMConfig's docstring).") from error

    config_class.__setattr__ = __setattr__


def route_tirex_checkpoints(auto_class, model_class, find_checkpoint, hub_names: tuple[str, ...]) -> None:
    """transformers' Auto classes (all versions) read config.json first, which a TiRex checkpoint lacks: make
    `auto_class.from_pretrained` (AutoModelForTimeSeriesPrediction) load such a checkpoint (where
    `find_checkpoint(path, **hub_kwargs)` finds one) into `model_class`; everything else loads as before."""
    if getattr(auto_class.from_pretrained, "loads_tirex", False):
        return
    regular = auto_class.from_pretrained.__func__

    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        hub_kwargs = {key: kwargs[key] for key in hub_names if key in kwargs}
        if not args and find_checkpoint(pretrained_model_name_or_path, **hub_kwargs) is not None:
            return model_class.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return regular(cls, pretrained_model_name_or_path, *args, **kwargs)

    from_pretrained.loads_tirex, from_pretrained.regular = True, regular
    from_pretrained.__doc__ = regular.__doc__
    auto_class.from_pretrained = classmethod(from_pretrained)
