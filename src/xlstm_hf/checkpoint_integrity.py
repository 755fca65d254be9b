"""Checkpoint folders that change in one step and are read as one save wrote them.

A save (`atomic_save`) writes everything into a hidden staging folder inside the checkpoint folder, then, holding
the folder's lock, writes the manifest `checkpoint.sha256` into the staging folder (the commit point) and moves
the files into place, the manifest last. The manifest names every file of the save with its sha256, in the format
of `sha256sum` (`sha256sum -c checkpoint.sha256` checks a folder by hand), plus comment lines: the save's id, the
sha256 of each safetensors header, and the files of an older save it removes (stale shards). Until the commit
point, the folder is untouched (a failed or killed save leaves the old checkpoint); after it, the staging folder
with its manifest *is* the new checkpoint, whichever of its files have been moved yet: a reader takes it from
there, and the next save completes the moves of a save that was killed. Other files in the folder (a tokenizer,
the user's README.md, which is never replaced) are never touched.

Reading (`consistent_checkpoint`): the newest committed save is found (a staging folder with its manifest, else
the folder's own manifest), every file is opened, and the open files are checked against the manifest and handed
to transformers through a private folder of links to them, so a save that runs meanwhile cannot mix its files
in. A file that fails the check, or a save that committed meanwhile, means another try; after a few, an error
naming the file. What fails the check: a safetensors file with the header the save wrote but other tensor bytes
(safetensors itself has no checksum: that is damage). A safetensors file with another header was replaced by
other code on purpose (a warning; it loads), and a config.json that still parses was edited (it loads).
Checkpoints saved before this format carry `weights.sha256`, whose files are checked the same way.
"""

import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from transformers.utils import logging

logger = logging.get_logger(__name__)

MANIFEST = "checkpoint.sha256"
LEGACY_MANIFEST = "weights.sha256"  # the checksums of the weights files, as saves before the manifest wrote them
STAGING_PREFIX = ".xlstm_hf-saving-"
NOT_IN_MANIFEST = ("README.md",)  # documentation, which its owner may edit at any time
READ_ATTEMPTS = 40  # about 20 s of waiting for a save that is moving its files (it holds them staged until then)
CONFIG_FILES = re.compile(r"[^/]+\.json")  # config.json, generation_config.json, a weights index


class CheckpointError(OSError):
    """A checkpoint on disk that is damaged or does not match the model it is loaded into."""


# ---------------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------------


@dataclass
class Manifest:
    """What one save wrote: {file: sha256}, {safetensors file: sha256 of its header}, the files of an older save
    it removed, and an id that tells saves apart."""

    files: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    save_id: str = ""

    def text(self) -> str:
        lines = [f"# xlstm_hf checkpoint, save {self.save_id}: the sha256 of every file this save wrote\n"]
        lines += [f"# header {digest}  {name}\n" for name, digest in sorted(self.headers.items())]
        lines += [f"# removed {name}\n" for name in self.removed]
        lines += [f"{digest}  {name}\n" for name, digest in sorted(self.files.items())]
        return "".join(lines)

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        manifest = cls(files={})
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if match := re.fullmatch(r"# xlstm_hf checkpoint, save (\w+):.*", line):
                manifest.save_id = match[1]
            elif match := re.fullmatch(r"# header ([0-9a-f]{64})  (.+)", line):
                manifest.headers[match[2]] = match[1]
            elif match := re.fullmatch(r"# removed (.+)", line):
                manifest.removed.append(match[1])
            elif match := re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line):
                manifest.files[match[2]] = match[1]
            elif line.strip() and not line.startswith("#"):
                raise CheckpointError(
                    f"{path} is damaged (line {line[:80]!r} is not '<sha256>  <file>'). Restore it, save the model "
                    f"again, or delete it to load without checking the files."
                )
        return manifest


def sha256_of(file) -> str:
    """sha256 of a path or of an open binary file (read from its start)."""
    digest = hashlib.sha256()
    with open(file, "rb") if isinstance(file, (str, Path)) else _rewound(file) as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _rewound(f):
    f.seek(0)
    yield f


def header_sha256(f) -> str | None:
    """sha256 of the JSON header of an open safetensors file, or None where it has no readable header."""
    f.seek(0)
    size = int.from_bytes(f.read(8), "little")
    header = f.read(size) if size < 1 << 30 else b""
    return hashlib.sha256(header).hexdigest() if len(header) == size and size else None


def describe(staging: Path, names: list[str], kept: Manifest, removed: list[str]) -> Manifest:
    """The manifest of a save: the files in `staging`, and those of the folder's manifest `kept` that the save
    leaves in place (the plain checkpoint beside a variant, say)."""
    files = {name: digest for name, digest in kept.files.items() if name not in names and name not in removed}
    headers = {name: digest for name, digest in kept.headers.items() if name in files}
    for name in names:
        if name in NOT_IN_MANIFEST:
            continue
        with open(staging / name, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename that publishes it
            files[name] = sha256_of(f)
            if name.endswith(".safetensors"):
                headers[name] = header_sha256(f)
    return Manifest(files, headers, removed, uuid.uuid4().hex)


def folder_manifest(folder: Path) -> Manifest:
    """The manifest of the checkpoint in `folder` (an empty one where it has none)."""
    path = folder / MANIFEST
    return Manifest.read(path) if path.is_file() else Manifest(files={})


# ---------------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------------


def weights_file_pattern(variant: str | None) -> re.Pattern:
    """The weights files of an unsharded or sharded save of `variant`: model.safetensors,
    model-00001-of-00002.safetensors, model.safetensors.index.json (with `.variant` before the suffixes)."""
    tag = rf"\.{re.escape(variant)}" if variant else ""
    return re.compile(rf"model{tag}(-\d{{5}}-of-\d{{5}})?\.safetensors|model\.safetensors\.index{tag}\.json")


@contextmanager
def atomic_save(folder: Path, variant: str | None = None) -> Iterator[Path]:
    """Yield an empty staging folder inside `folder` to save into; when the block succeeds, commit and publish
    it (see the module docstring). On failure before the commit `folder` is left as it was (and removed again
    where this call created it)."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=folder))
    try:
        yield staging
        with folder_lock(folder):
            finish_interrupted_saves(folder)
            commit(staging, folder, variant)
            publish(staging, folder)
    except BaseException:
        if not (staging / MANIFEST).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            if created and not any(folder.iterdir()):
                folder.rmdir()
        raise


def commit(staging: Path, folder: Path, variant: str | None) -> None:
    """Write the manifest into `staging`: from then on, the staged files are the checkpoint."""
    names = sorted(str(path.relative_to(staging)) for path in staging.rglob("*") if path.is_file())
    pattern = weights_file_pattern(variant)
    writes_weights = any(pattern.fullmatch(name) for name in names)
    removed = sorted(
        path.name for path in folder.iterdir()
        if path.is_file() and path.name not in names
        and ((writes_weights and pattern.fullmatch(path.name)) or path.name == LEGACY_MANIFEST)
    )
    manifest = describe(staging, names, folder_manifest(folder), removed)
    temporary = staging / f"{MANIFEST}.partial"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(manifest.text())
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, staging / MANIFEST)
    _sync_folder(staging)


def publish(staging: Path, folder: Path) -> None:
    """Move the files of the committed `staging` into `folder` (a README.md only where `folder` has none), remove
    the files of the older save it replaces, move the manifest last, and remove `staging`. Idempotent: a save
    killed midway is completed by running it again."""
    manifest = Manifest.read(staging / MANIFEST)
    staged = sorted(str(path.relative_to(staging)) for path in staging.rglob("*") if path.is_file())
    for name in staged:
        if name == MANIFEST:
            continue
        if name in NOT_IN_MANIFEST and (folder / name).exists():
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, folder / name)
    for name in manifest.removed:
        (folder / name).unlink(missing_ok=True)
    os.replace(staging / MANIFEST, folder / MANIFEST)
    _sync_folder(folder)
    shutil.rmtree(staging, ignore_errors=True)


def finish_interrupted_saves(folder: Path) -> None:
    """Complete the saves into `folder` that committed but were killed before their files were all in place, and
    remove the staging folders of saves killed before they committed (only those of processes that have ended:
    a save may be writing into its staging folder now)."""
    for staging in sorted(folder.glob(f"{STAGING_PREFIX}*")):
        if (staging / MANIFEST).is_file():
            publish(staging, folder)
        elif not _writer_is_alive(staging):
            shutil.rmtree(staging, ignore_errors=True)


def _writer_is_alive(staging: Path) -> bool:
    match = re.match(rf"{re.escape(STAGING_PREFIX)}(\d+)-", staging.name)
    if match is None:
        return False
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return False
    except OSError:  # a process of another user
        return True
    return True


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` among the processes that save into it (flock on the folder itself, so no
    lock file is left behind); where the system has none, saves are not serialised."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entries (the renames) to disk, where the system allows."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The files of the newest committed save, where to find each, and what identifies that save."""

    manifest: Manifest
    legacy: bool  # a manifest written before checkpoint.sha256 (weights.sha256): every mismatch is damage
    places: list[Path]  # where files are looked up, first the staging folder of a save still moving them
    identity: tuple

    def path_of(self, name: str) -> Path | None:
        return next((place / name for place in self.places if (place / name).is_file()), None)


def snapshot(folder: Path) -> Snapshot:
    committed = sorted(path for path in folder.glob(f"{STAGING_PREFIX}*") if (path / MANIFEST).is_file())
    places = [*committed[-1:], folder]
    if committed:
        manifest, legacy = Manifest.read(committed[-1] / MANIFEST), False
    elif (folder / MANIFEST).is_file():
        manifest, legacy = Manifest.read(folder / MANIFEST), False
    elif (folder / LEGACY_MANIFEST).is_file():
        manifest, legacy = Manifest.read(folder / LEGACY_MANIFEST), True
    else:
        manifest, legacy = Manifest(files={}), False
    return Snapshot(manifest, legacy, places, (tuple(committed), manifest.save_id, manifest.files.get("config.json")))


def check_file(name: str, f, snapshot_: Snapshot) -> str | None:
    """None where the open file `f` is what the save wrote (or was replaced or edited on purpose, see the module
    docstring), else why not."""
    expected = snapshot_.manifest.files.get(name)
    if expected is None or sha256_of(f) == expected:
        return None
    if snapshot_.legacy:
        return "damaged"
    if name.endswith(".safetensors"):
        if header_sha256(f) != snapshot_.manifest.headers.get(name):
            logger.warning(f"{name} holds other tensors than the save recorded in {MANIFEST}: replaced by other code; "
                           "it is loaded without its checksum.")
            return None
        return "damaged"
    return None  # a config edited by hand (transformers reads and checks it)


@contextmanager
def consistent_checkpoint(folder: Path, variant: str | None = None) -> Iterator[Path]:
    """A private folder through which transformers reads the checkpoint in `folder` exactly as one save wrote it
    (see the module docstring): links to the files, opened, and checked where they belong to this load (its
    configs and the weights of `variant`). Where the system has no links to open files (no /proc/self/fd or
    /dev/fd), the files are checked and read in place."""
    checked = re.compile(f"{CONFIG_FILES.pattern}|{weights_file_pattern(variant).pattern}")
    links_to_open_files = next((Path(p) for p in ("/proc/self/fd", "/dev/fd") if Path(p).is_dir()), None)
    for attempt in range(READ_ATTEMPTS):
        seen = snapshot(folder)
        with ExitStack() as open_files:
            files, problem = _open_and_check(seen, _listed_files(seen), checked, open_files)
            if problem is None and snapshot(folder).identity == seen.identity:
                if links_to_open_files is None:
                    yield folder
                    return
                with tempfile.TemporaryDirectory(prefix="xlstm_hf-reading-") as view:
                    for name, f in files.items():
                        os.symlink(links_to_open_files / str(f.fileno()), Path(view) / name)
                    yield Path(view)
                return
        saving = seen.places[0] != folder or snapshot(folder).identity != seen.identity
        if problem is not None and not saving and attempt >= 2:  # wrong three times with no save around: damage
            break
        time.sleep(min(0.05 * 2**attempt, 0.5))
    manifest = folder / (LEGACY_MANIFEST if seen.legacy else MANIFEST)
    raise CheckpointError(
        f"{folder / problem} does not match its sha256 in {manifest.name}, written when the checkpoint was saved: "
        f"the file was damaged or changed since. Restore it or save the model again; if you replaced it on purpose, "
        f"delete {manifest}."
    )


def _open_and_check(
    seen: Snapshot, names: list[str], checked: re.Pattern, open_files: ExitStack
) -> tuple[dict, str | None]:
    """({name: open file}, the first file named by `checked` that fails its check, or None). A file moved into
    place this instant is left out: the save's identity has then changed, and the caller tries again."""
    files, problem = {}, None
    for name in names:
        path = seen.path_of(name)
        try:
            files[name] = open_files.enter_context(open(path, "rb")) if path is not None else None
        except FileNotFoundError:
            files[name] = None
        if files[name] is None:
            del files[name]
        elif problem is None and checked.fullmatch(name) and check_file(name, files[name], seen):
            problem = name
    return files, problem


def _listed_files(seen: Snapshot) -> list[str]:
    """Every file the reader may need: those of the manifest and the folder's other top-level files."""
    present = {path.name for place in seen.places for path in place.iterdir() if path.is_file()}
    ours = {MANIFEST, f"{MANIFEST}.partial", LEGACY_MANIFEST}
    return sorted((present | set(seen.manifest.files)) - ours)


def verify_remote_checkpoint(path_or_repo, find_file, variant: str | None = None) -> None:
    """The checks of `consistent_checkpoint` for a checkpoint that is not a local folder (a Hub repo, whose files
    do not change under a reader): `find_file(name)` gives the local path of one of its files, or None."""
    checked = re.compile(f"{CONFIG_FILES.pattern}|{weights_file_pattern(variant).pattern}")
    for manifest_name, legacy in ((MANIFEST, False), (LEGACY_MANIFEST, True)):
        listing = find_file(manifest_name)
        if listing is not None:
            break
    else:
        return
    seen = Snapshot(Manifest.read(Path(listing)), legacy, [], ())
    for name in seen.manifest.files:
        if checked.fullmatch(name) and (path := find_file(name)) is not None:
            with open(path, "rb") as f:
                if check_file(name, f, seen):
                    raise CheckpointError(
                        f"{path} does not match its sha256 in {manifest_name}, written when the checkpoint was "
                        f"saved: the file was damaged or changed since. Download it again (force_download=True)."
                    )
