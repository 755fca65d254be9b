"""What a saved xLSTM folder carries besides weights and config: its own code, so that it loads with
`trust_remote_code=True` where xlstm_hf is not installed, the `auto_map` that points the Auto classes at
that code, and a model card.

The code is the package's own modules, copied flat beside the weights: every module the models import,
renamed `xlstm_hf_<path>.py` (the models and the config under transformers' usual names), with their
relative imports rewritten to the flat names. The compiled kernels stay behind: `xlstm_hf_kernels.py`
imports them from an installed xlstm_hf inside try/except, and the PyTorch kernels run without it.
"""

import ast
import re
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

PACKAGE = Path(__file__).resolve().parent
CARD_TEMPLATE = PACKAGE / "model_cards" / "xlstm_hf.md"
# this module runs from the package, or from a saved folder's own code (remote code), which has no ops/
RUNS_FROM_PACKAGE = (PACKAGE / "ops").is_dir()
CONFIG_FILE, MODELING_FILE = "configuration_xlstm_hf", "modeling_xlstm_hf"
# package modules -> flat module names in a saved folder; the compiled kernels -> their stand-in
FLAT_NAMES = {
    "xlstm_hf.configuration_xlstm": CONFIG_FILE,
    "xlstm_hf.modeling_xlstm": MODELING_FILE,
    "xlstm_hf.modeling_xlstm_time_series": "modeling_xlstm_hf_time_series",
    "xlstm_hf.modeling_xlstm_seq2seq": "modeling_xlstm_hf_seq2seq",
    "xlstm_hf.hub": "xlstm_hf_hub",
    "xlstm_hf.ops.compiled": "xlstm_hf_kernels",
    "xlstm_hf.ops.extension": "xlstm_hf_kernels",
}
KERNELS_STAND_IN = '''"""The compiled kernels for a checkpoint that carries its own code: those of an installed
xlstm_hf, or none, and then the PyTorch kernels run."""

try:
    from xlstm_hf.ops import compiled
    from xlstm_hf.ops.extension import extension_has_cuda, extension_status
except ImportError:
    compiled = None

    def extension_status() -> tuple[bool, str]:
        return False, "xlstm_hf is not installed (this checkpoint's own code runs the PyTorch kernels)"

    def extension_has_cuda() -> bool:
        return False
'''

# the Auto classes each head loads with; heads on the token backbone also load each other's checkpoints
BACKBONE_HEADS = {
    "XLSTMForCausalLM": "AutoModelForCausalLM",
    "XLSTMForSequenceClassification": "AutoModelForSequenceClassification",
    "XLSTMForTokenClassification": "AutoModelForTokenClassification",
}
OTHER_HEADS = {
    "XLSTMForSeq2SeqLM": "AutoModelForSeq2SeqLM",
    "XLSTMForTimeSeriesPrediction": "AutoModelForTimeSeriesPrediction",
}
PIPELINE_TAGS = {
    "XLSTMForCausalLM": "text-generation",
    "XLSTMForSequenceClassification": "text-classification",
    "XLSTMForTokenClassification": "token-classification",
    "XLSTMForSeq2SeqLM": "text2text-generation",
    "XLSTMForTimeSeriesPrediction": "time-series-forecasting",
    "XLSTMModel": "feature-extraction",
}


def module_name(path: Path) -> str:
    """xlstm_hf.ops.mlstm.chunkwise for .../xlstm_hf/ops/mlstm/chunkwise.py (packages: their __init__)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path:
    relative = Path(*name.split("."))
    package_init = PACKAGE.parent / relative / "__init__.py"
    return package_init if package_init.is_file() else (PACKAGE.parent / relative).with_suffix(".py")


def flat_name(name: str) -> str:
    return FLAT_NAMES.get(name) or name.replace(".", "_")


def absolute_import(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module that `from <node.level dots><node.module> import ...` in module `importer` names."""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def rewritten_source(name: str) -> tuple[str, set[str]]:
    """The module's source with its relative imports pointing at flat siblings, and the modules it imports."""
    path = module_path(name)
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    imported = set()
    for node in sorted(ast.walk(ast.parse(source)), key=lambda n: -getattr(n, "lineno", 0)):
        if not (isinstance(node, ast.ImportFrom) and node.level):
            continue
        target = absolute_import(name, path.name == "__init__.py", node)
        if node.module is None:  # `from . import submodule`: only the compiled kernels are imported that way
            (alias,) = node.names
            target = f"{target}.{alias.name}"
        imported.add(target)
        names = ", ".join(alias.name + (f" as {alias.asname}" if alias.asname else "") for alias in node.names)
        indent = re.match(r"\s*", lines[node.lineno - 1]).group()
        lines[node.lineno - 1 : node.end_lineno] = [f"{indent}from .{flat_name(target)} import {names}\n"]
    return "".join(lines), imported


def write_own_code(folder: Path) -> list[str]:
    """Write the flat modules the models need into `folder` (copies of its own where this module runs from a
    saved folder); -> their file names."""
    if not RUNS_FROM_PACKAGE:
        files = [path for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
        for path in files:
            (folder / path.name).write_text(path.read_text())
        return sorted(path.name for path in files)
    written, pending = {}, ["xlstm_hf.modeling_xlstm_time_series", "xlstm_hf.modeling_xlstm_seq2seq",
                            "xlstm_hf.configuration_xlstm"]
    while pending:
        name = pending.pop()
        if flat_name(name) in written:
            continue
        if flat_name(name) == "xlstm_hf_kernels":
            written[flat_name(name)] = KERNELS_STAND_IN
            continue
        source, imported = rewritten_source(name)
        written[flat_name(name)] = source
        pending.extend(imported)
    for flat, source in written.items():
        (folder / f"{flat}.py").write_text(source)
    return sorted(f"{flat}.py" for flat in written)


def auto_map(model) -> dict[str, str]:
    """config.json's auto_map for a checkpoint of `model`: every Auto class it loads with (the heads on the
    token backbone load each other's checkpoints; a language model needs a vocabulary)."""
    class_name = type(model).__name__
    heads = dict(BACKBONE_HEADS) if class_name in BACKBONE_HEADS or class_name == "XLSTMModel" else {}
    if not model.config.vocab_size:
        heads.pop("XLSTMForCausalLM", None)
    heads.update({name: auto for name, auto in OTHER_HEADS.items() if name == class_name})
    modeling = {"XLSTMForTimeSeriesPrediction": "modeling_xlstm_hf_time_series",
                "XLSTMForSeq2SeqLM": "modeling_xlstm_hf_seq2seq"}
    mapping = {"AutoConfig": f"{CONFIG_FILE}.XLSTMConfig"}
    if class_name != "XLSTMForSeq2SeqLM":
        mapping["AutoModel"] = f"{MODELING_FILE}.XLSTMModel"
    for head_name, auto_class in heads.items():
        mapping[auto_class] = f"{modeling.get(head_name, MODELING_FILE)}.{head_name}"
    return mapping


def model_card(model, training: dict | None = None) -> ModelCard:
    """The card of `model` from model_cards/xlstm_hf.md: metadata, the architecture, training figures."""
    config = model.config
    class_name = type(model).__name__
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS.get(class_name),
        tags=["xlstm", "xlstm_hf", "mlstm", "slstm", "recurrent"],
        license="apache-2.0",
        datasets=(training or {}).get("datasets"),
        metrics=sorted((training or {}).get("metrics", {})) or None,
    )
    blocks = getattr(config, "layer_types", None) or []
    return ModelCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        model_class=class_name,
        auto_class={**BACKBONE_HEADS, **OTHER_HEADS}.get(class_name, "AutoModel"),
        block_family=config.block_family,
        hidden_size=config.hidden_size,
        blocks=" - ".join(blocks),
        num_blocks=len(blocks),
        num_parameters=f"{model.num_parameters():,}",
        vocab_size=config.vocab_size,
        training=training or {},
    )
