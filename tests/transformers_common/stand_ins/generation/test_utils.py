"""Stand-in for transformers' tests/generation/test_utils.py, which its source distribution does not ship:
the generation behaviours are tested in tests/test_generation.py."""


class GenerationTesterMixin:
    pass
