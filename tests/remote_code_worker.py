"""Run by tests/test_hub.py in a fresh interpreter where `import xlstm_hf` fails: load a saved folder with
`trust_remote_code=True` through every Auto class of its auto_map, save the outputs of the one named on the
command line for the inputs saved beside it, then save the model again from this code and reload that.

    python remote_code_worker.py FOLDER AUTO_CLASS INPUTS OUTPUTS
"""

import json
import sys
import tempfile

sys.modules["xlstm_hf"] = None  # importing xlstm_hf raises ImportError from here on

import torch  # noqa: E402
import transformers  # noqa: E402


def main(folder: str, auto_class: str, inputs_file: str, outputs_file: str) -> None:
    auto_map = json.load(open(f"{folder}/config.json"))["auto_map"]
    for name in auto_map:  # every Auto class the checkpoint names loads it from its own code
        loaded = getattr(transformers, name).from_pretrained(folder, trust_remote_code=True)
        assert type(loaded).__module__.startswith("transformers_modules."), (name, type(loaded).__module__)
    model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
    inputs = torch.load(inputs_file)
    with torch.no_grad():
        outputs = model(**inputs)[0]
        with tempfile.TemporaryDirectory() as again:  # saved again from the remote code: still loads
            model.save_pretrained(again)
            reloaded = getattr(transformers, auto_class).from_pretrained(again, trust_remote_code=True).eval()
            assert torch.equal(reloaded(**inputs)[0], outputs)
    torch.save(outputs, outputs_file)


if __name__ == "__main__":
    main(*sys.argv[1:])
