"""References the generation tests hold `generate` to, shared by the test modules."""

import torch


def beam_search_reference(next_logits, start: torch.Tensor, num_beams: int, steps: int) -> list[tuple[torch.Tensor,
                                                                                                       float]]:
    """Beam search with a full forward per candidate: `next_logits(tokens)` gives the logits [vocab] that follow
    the generated `tokens` [n]; the beams start from `start` [n0]. -> [(tokens, sum of log-probs)], best first."""
    beams = [(start, 0.0)]
    for _ in range(steps):
        candidates = []
        for tokens, score in beams:
            top = next_logits(tokens).float().log_softmax(-1).topk(num_beams)
            candidates += [(torch.cat([tokens, token[None]]), score + logprob.item())
                           for logprob, token in zip(top.values, top.indices)]
        beams = sorted(candidates, key=lambda candidate: -candidate[1])[:num_beams]
    return beams
