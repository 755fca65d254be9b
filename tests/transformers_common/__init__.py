"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), taken from the source
distribution of the installed transformers version, which ships `tests/test_modeling_common.py` and
`tests/test_configuration_common.py` but not the modules they import from `tests/generation/`,
`tests/exporters/` and `tests/utils/`: `stand_ins/` holds those (generation is covered by
tests/test_generation.py instead).

`common_test_modules()` downloads the source distribution once (pip, from the package registry) into the
user's cache and imports the two files as the package `transformers_common_tests`.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

PACKAGE = "transformers_common_tests"
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py")
STAND_INS = Path(__file__).parent / "stand_ins"


def cache_folder() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "xlstm_hf" / f"transformers-{transformers.__version__}-common-tests"


def download_common_tests(target: Path) -> None:
    """The two test files of transformers' source distribution, and the stand-ins, as a package in `target`."""
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"transformers=={transformers.__version__}", "--no-deps",
             "--no-binary", ":all:", "--quiet", "--dest", download],
            check=True, capture_output=True, text=True,
        )
        (archive,) = Path(download).glob("transformers-*.tar.gz")
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        package = staging / PACKAGE
        shutil.copytree(STAND_INS, package)
        with tarfile.open(archive) as tar:
            for name in COMMON_FILES:
                member = tar.getmember(f"{archive.name.removesuffix('.tar.gz')}/tests/{name}")
                (package / name).write_bytes(tar.extractfile(member).read())
        try:
            staging.rename(target)  # whole or not at all: another test process may download at the same time
        except OSError:
            shutil.rmtree(staging)
            if not target.is_dir():
                raise


def common_test_modules():
    """(test_modeling_common, test_configuration_common) of the installed transformers version."""
    folder = cache_folder()
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        download_common_tests(folder)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return tuple(importlib.import_module(f"{PACKAGE}.{name.removesuffix('.py')}") for name in COMMON_FILES)
