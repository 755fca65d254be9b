"""The decoding fast path on the CPU: one generated token through every block and the out norm in one compiled
call (`csrc/decode_cpu.cpp`, docs/design.md 4), mixed into `XLSTMModel` by `CompiledDecoding`.

Each layer declares, once and by name, the parameters the compiled step reads (`DECODE_PARAMETERS`, in the order
it reads them) and its kind (`decode_kind`, a `BlockKind`); `BlockKind` and `Activation` are the enums of the C++
step (a test holds them equal). The step runs only where it computes exactly what the modules do: plain
inference on float32, every module of a kind it knows (not replaced, e.g. by a LoRA adapter), no forward hooks.
The parameters are collected again only after a module or parameter anywhere was registered or replaced, which
torch's global registration hooks count (installed when the fast path first runs).
"""

import threading
from enum import IntEnum
from functools import reduce

import torch
from torch import nn

from .ops import choose_backend


class BlockKind(IntEnum):
    """The mixers of the compiled step (BlockKind in csrc/decode_cpu.cpp)."""

    NEURIPS_MLSTM = 0
    LARGE_MLSTM = 1
    SLSTM = 2


class Activation(IntEnum):
    """The feed-forward activations of the compiled step (Activation in csrc/decode_cpu.cpp)."""

    NONE = -1
    GELU = 0
    SILU = 1
    RELU = 2
    RELU_SQUARED = 3
    SIGMOID = 4


ACTIVATIONS = {"gelu": Activation.GELU, "silu": Activation.SILU, "swish": Activation.SILU, "relu": Activation.RELU,
               "relu2": Activation.RELU_SQUARED, "sigmoid": Activation.SIGMOID}


def declared_parameters(module: nn.Module) -> list[torch.Tensor | None]:
    """The tensors `module.DECODE_PARAMETERS` names (dotted paths), None where a module on the path is absent
    (a layer without convolution, a norm without bias)."""
    return [reduce(lambda owner, name: getattr(owner, name, None) if owner is not None else None,
                   path.split("."), module) for path in module.DECODE_PARAMETERS]


class ModuleTreeVersion:
    """Counts every registration or replacement of a module or parameter anywhere (torch's global registration
    hooks, installed by `watch` once), so that the compiled step collects its parameters again only then.
    Threads may build or change models at once: every change counts (under a lock), so that the count never
    comes back to a value seen before."""

    value = 0
    _lock = threading.Lock()
    _watching = False

    @classmethod
    def bump(cls, *args) -> None:
        with cls._lock:
            cls.value += 1

    @classmethod
    def watch(cls) -> None:
        with cls._lock:
            if not cls._watching:
                torch.nn.modules.module.register_module_module_registration_hook(cls.bump)
                torch.nn.modules.module.register_module_parameter_registration_hook(cls.bump)
                cls._watching = True


def plain_submodules(modules: list[nn.Module], plain_types: set[type]) -> list[nn.Module] | None:
    """`modules` and all their submodules, or None where one is not of `plain_types` (replaced, e.g. by an
    adapter such as LoRA): the compiled step reads their parameters directly."""
    found, unvisited = [], list(modules)
    while unvisited:
        module = unvisited.pop()
        if type(module) not in plain_types:
            return None
        found.append(module)
        unvisited.extend(module._modules.values())
    return found


def has_hooks(modules: list[nn.Module]) -> bool:
    """Whether forward hooks (such as FSDP's) would run around any of `modules`."""
    global_hooks = torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks
    return bool(global_hooks) or any(module._forward_hooks or module._forward_pre_hooks for module in modules)


class CompiledDecoding:
    """The fast path of a block stack (`self.blocks`, `self.out_norm`, `self.config`): `can_decode_compiled`
    answers whether it runs a call, `decode_compiled` runs it. `PLAIN_TYPES`: the module types whose
    parameters it reads directly."""

    PLAIN_TYPES: set[type] = set()

    def can_decode_compiled(self, hidden_states, mask, resets, cache, use_cache, output_hidden_states) -> bool:
        """One token of plain inference whose every block the compiled step computes exactly."""
        config = self.config
        return (
            not torch.compiler.is_compiling()  # an opaque call that reads the module tree: eager inference only
            and hidden_states.shape[1] == 1
            and use_cache
            and mask is None
            and resets is None
            and not output_hidden_states
            and not (self.training or torch.is_grad_enabled())
            and hidden_states.dtype == torch.float32
            and not config.slstm_bf16_rounding  # the step has neither the rounding nor another sLSTM norm eps
            and config.slstm_norm_eps == config.norm_eps
            and all(state is not None for state in cache.layer_states)
            and choose_backend("decode_step", hidden_states.device, config.backend)[0] == "cpp"
            and self.decode_parameters() is not None
        )

    def decode_parameters(self) -> list[torch.Tensor | None] | None:
        """The parameters of every block and the out norm in the order the compiled step reads them, or None where
        it would not compute what the modules do: a block it lacks, a replaced module or hooks. Collected again
        only after a module or parameter changed. Safe from several threads: the count is read before collecting
        (a change meanwhile, in another thread, makes the next call collect again) and the collection is
        replaced whole, never read half-written."""
        ModuleTreeVersion.watch()
        collected, version = getattr(self, "_decode_collected", None), ModuleTreeVersion.value
        if collected is None or collected[0] != version:
            modules = plain_submodules([*self.blocks, self.out_norm], self.PLAIN_TYPES)
            parameters = None
            if modules is not None and all(block.decode_kind_supported for block in self.blocks):
                parameters = [parameter for block in self.blocks for parameter in declared_parameters(block)]
                if self.config.add_out_norm:
                    parameters += [self.out_norm.weight, self.out_norm.bias]
            collected = self._decode_collected = (version, modules, parameters)
        _, modules, parameters = collected
        return None if parameters is None or has_hooks(modules) else parameters

    def decode_compiled(self, hidden_states: torch.Tensor, cache) -> torch.Tensor:
        """[B, 1, hidden] through every block and the out norm in one compiled call; the cache moves on by one
        token."""
        states, layout = self._decode_states(cache)
        hidden, new_states = torch.ops.xlstm_hf.decode_step(
            hidden_states[:, 0], self.decode_parameters(), states, layout, *self._decode_settings()
        )
        for idx, ((conv_history, _), _) in enumerate(cache.layer_states):
            count = layout[3 * idx + 2]
            block_states, new_states = new_states[:count], new_states[count:]
            if conv_history is not None:
                cache.layer_states[idx] = ((block_states[0], tuple(block_states[1:])), None)
            else:
                cache.layer_states[idx] = ((None, tuple(block_states)), None)
        return hidden[:, None]

    def _decode_states(self, cache) -> tuple[list[torch.Tensor], list[int]]:
        """The states of every block in `cache` as the compiled step reads them, and its layout: (block kind,
        feed-forward activation, number of state tensors) per block."""
        states, layout = [], []
        for block, ((conv_history, cell_state), _) in zip(self.blocks, cache.layer_states):
            block_states = [conv_history, *cell_state] if conv_history is not None else list(cell_state)
            states += block_states
            layout += [int(block.mixer.decode_kind), int(block.decode_activation), len(block_states)]
        return states, layout

    def _decode_settings(self) -> tuple[list[float], list[int]]:
        """(norm eps, gate soft cap, mLSTM eps), (RMSNorm or LayerNorm, heads, Large q/k and v widths, out norm)."""
        config = self.config
        return (
            [config.norm_eps, config.gate_soft_cap, config.mlstm_eps],
            [int(config.norm_type == "rmsnorm"), config.num_heads, config.mlstm_qk_size, config.mlstm_v_size,
             int(config.add_out_norm)],
        )
