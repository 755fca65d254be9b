"""Run by tests/test_training.py under `torchrun --nproc_per_node 2`: FSDP2 sharding through transformers
(`from_pretrained(..., distributed_config=...)`) over gloo on the CPU. Each process trains on its half of
every batch; process 0 then checks the gathered weights against one unsharded model trained on the whole
batches and prints "FSDP2 matches one process"."""

import os
import tempfile

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.testing import assert_close
from transformers import AutoModelForCausalLM
from transformers.distributed import DistributedConfig

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM
from xlstm_hf.modeling_xlstm import XLSTMBlock

STEPS, BATCH, LENGTH, VOCAB = 3, 4, 12, 32


def train(model, batches, rows: slice) -> None:
    """STEPS of SGD on `rows` of each batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for ids in batches:
        model(ids[rows], labels=ids[rows]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    folder = [tempfile.mkdtemp() if rank == 0 else None]
    dist.broadcast_object_list(folder)
    if rank == 0:
        torch.manual_seed(0)
        config = XLSTMConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=3, num_heads=2, chunk_size=4,
                             layer_types=["mlstm", "slstm", "mlstm"])
        XLSTMForCausalLM(config).save_pretrained(folder[0])
    dist.barrier()
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, VOCAB, (BATCH, LENGTH), generator=generator) for _ in range(STEPS)]

    sharded = AutoModelForCausalLM.from_pretrained(folder[0], distributed_config=DistributedConfig(fsdp_size=world))
    blocks = [module for module in sharded.modules() if isinstance(module, XLSTMBlock)]
    assert blocks and all(isinstance(block, FSDPModule) for block in blocks), "a block is not sharded"
    half = BATCH // world
    train(sharded, batches, slice(rank * half, (rank + 1) * half))
    gathered = {name: p.full_tensor() for name, p in sharded.named_parameters()}

    if rank == 0:
        reference = AutoModelForCausalLM.from_pretrained(folder[0])
        train(reference, batches, slice(None))
        for name, p in reference.named_parameters():
            assert_close(gathered[name], p.detach(), rtol=1e-5, atol=1e-6, msg=name)
        print("FSDP2 matches one process")
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
