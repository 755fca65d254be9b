"""Stand-in for transformers' tests/utils/test_configuration_utils.py (not in its source distribution): the
common keyword arguments every config must take and keep, as transformers 5 lists them."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
