"""Tiny configs and models that the test modules share."""

import torch

from xlstm_hf import XLSTMConfig

VOCAB = 64
PAD = 0
# block patterns of both families, each with an mLSTM and (where mixed) an sLSTM block
PATTERNS = {
    "neurips-mlstm": {"block_family": "neurips", "layer_types": ["mlstm", "mlstm"]},
    "neurips-mixed": {"block_family": "neurips", "layer_types": ["mlstm", "slstm", "mlstm"]},
    "large-mlstm": {"block_family": "large", "layer_types": ["mlstm", "mlstm"]},
    "large-mixed": {"block_family": "large", "layer_types": ["mlstm", "slstm"]},
}


def tiny_config(pattern: str = "neurips-mixed", **overrides) -> XLSTMConfig:
    """Hidden size 32, 2 heads, chunks of 8 steps, token 0 for padding."""
    settings = {"vocab_size": VOCAB, "hidden_size": 32, "num_heads": 2, "chunk_size": 8, "pad_token_id": PAD,
                **PATTERNS[pattern], **overrides}
    return XLSTMConfig(num_hidden_layers=len(settings["layer_types"]), **settings)


def noisy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`model` in eval mode with every parameter moved by N(0, 0.05) noise (the initialisation leaves gates and
    recurrent matrices at values that hide mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval()


def random_ids(*shape: int, seed: int = 0) -> torch.Tensor:
    """Token ids that are never the pad id."""
    return torch.randint(1, VOCAB, shape, generator=torch.Generator().manual_seed(seed))
