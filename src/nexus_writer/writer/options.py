"""Writer options (the seed-era session writer's flags, plus live-writing ones)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from ..nexus.appdef import load_template
from ..nexus.datasets import COMPRESSIONS


@dataclass(frozen=True)
class WriterOptions:
    """How scans are written; one set per session writer."""

    #: Mesh scans stored as a grid (slow, fast) instead of flat.
    keepshape: bool = False
    #: All channels of one motor in a single NXpositioner (``value`` first).
    multivalue_positioners: bool = False
    #: EDF frames mapped as raw external datasets (uncompressed EDF only).
    enable_external_nonhdf5: bool = False
    #: No VDS for HDF5 camera files: ``relpath::index`` strings instead.
    disable_external_hdf5: bool = False
    #: Copy the pixels of frames that are not linked externally.
    copy_non_external: bool = False
    #: Free space (MB) the dataset's directory must have for a scan to start.
    required_disk_space: float = 200.0
    #: Every published point is in the file (flushed) within this many seconds.
    flush_period: float = 1.0
    #: Filter for detector data (1D and 2D points): bitshuffle (LZ4), gzip or none.
    compression: str = "bitshuffle"
    #: A scan that sends nothing for this long is finalized FAILED (seconds, 0: never).
    inactivity_timeout: float = 300.0
    #: Directory a relative scan_info ``filename`` is resolved against (absolute);
    #: empty: relative file names are refused (the writer's working directory means
    #: nothing to the producer).
    base_path: str = ""
    #: ESRF master files (collection and proposal files linking every entry), for
    #: scans whose scan_info carries the data-policy fields (proposal, collection,
    #: dataset).
    master_files: bool = True
    #: Technique template (``NXxas``, ``xas``, a path to a .toml) applied to scans
    #: whose scan_info names none ("": only scans that name one get a subentry).
    technique: str = ""

    def __post_init__(self) -> None:
        if self.base_path and not os.path.isabs(self.base_path):
            raise ValueError(f"base_path must be an absolute directory, not {self.base_path!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression {self.compression!r} is not one of {COMPRESSIONS}")
        if self.flush_period <= 0:
            raise ValueError(f"flush_period must be > 0, not {self.flush_period}")
        if self.technique and self.technique.strip().lower() != "none":
            load_template(self.technique)  # an unknown template is refused at the start

    def camera_mode(self, file_format: str) -> str:
        """How a camera's frames are linked: vds, external, strings or copy."""
        if file_format == "hdf5":
            if not self.disable_external_hdf5:
                return "vds"
        elif self.enable_external_nonhdf5:
            return "external"
        return "copy" if self.copy_non_external else "strings"

    def resolve(self, filename: str) -> str:
        """The absolute, normalized path of a scan_info ``filename``.

        A relative name is joined to :attr:`base_path` and must stay inside it.
        Raises ValueError saying why when it is refused (no ``base_path``, or a name
        that leaves it with ``..``).
        """
        if os.path.isabs(filename):
            return os.path.normpath(filename)
        if not self.base_path:
            raise ValueError(
                f"relative filename {filename!r}: the writer does not guess a directory; "
                "the producer must give an absolute path, or the writer a base "
                "(--base-path DIR) to resolve relative names against")
        base = os.path.normpath(self.base_path)
        path = os.path.normpath(os.path.join(base, filename))
        if os.path.commonpath([base, path]) != base:
            raise ValueError(f"relative filename {filename!r} leaves the base path {base} "
                             "(..): refused")
        return path

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
