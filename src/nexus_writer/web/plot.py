"""What a scan's plot shows, read from its file the way any NeXus reader does: the
entry's ``@default`` NXdata (or another NXdata of the entry), its ``@signal``,
``@auxiliary_signals``, ``@axes`` and the signal's ``@interpretation``.

Kinds of plot:

- ``curves``: 1D signals (0D channels over the scan points) against the first axis;
- ``spectrum``: the last complete spectrum of a 1D channel (``interpretation=spectrum``);
- ``image``: the mesh of a 2D scan (a 2D signal with no interpretation), or the last
  camera frame (``interpretation=image``).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

#: Points sent for a curve at most (longer curves are decimated by a stride).
MAX_POINTS = 20000
#: Pixels sent for an image at most (larger images are binned by a stride).
MAX_PIXELS = 512 * 512


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [_text(value)]
    return [_text(v) for v in np.asarray(value).ravel()]


def _floats(data: np.ndarray) -> list[float | None]:
    """JSON numbers; NaN and infinities become null (gaps in the plot)."""
    values = np.asarray(data, dtype=float)
    return [None if not np.isfinite(v) else float(v) for v in values.ravel()]


def nxdata_groups(entry: h5py.Group) -> list[str]:
    """Names of the NXdata groups directly in ``entry``, the default one first."""
    names = []
    for name in entry:
        try:
            obj = entry.get(name)
        except (KeyError, OSError):  # a dangling link
            continue
        if isinstance(obj, h5py.Group) and _text(obj.attrs.get("NX_class", "")) == "NXdata":
            names.append(name)
    default = _text(entry.attrs.get("default", ""))
    if default in names:
        names.remove(default)
        names.insert(0, default)
    return names


def read_plot(f: h5py.File, entry: str, nxdata: str | None = None) -> dict[str, Any]:
    """The plot of ``entry``'s NXdata ``nxdata`` (default: the entry's ``@default``).

    Raises KeyError when the entry or the NXdata does not exist (yet).
    """
    group = f.get(entry)
    if not isinstance(group, h5py.Group):
        raise KeyError(f"no entry {entry!r} in the file (yet)")
    choices = nxdata_groups(group)
    name = nxdata or _text(group.attrs.get("default", "")) or (choices[0] if choices else "")
    data = group.get(name) if name else None
    if not isinstance(data, h5py.Group):
        raise KeyError(f"entry {entry!r} has no NXdata {name!r} (yet)")
    signal_name = _text(data.attrs.get("signal", ""))
    signal = data.get(signal_name)
    if not isinstance(signal, h5py.Dataset):
        raise KeyError(f"{entry}/{name}: no signal dataset {signal_name!r}")
    axes = _names(data.attrs.get("axes"))
    out: dict[str, Any] = {"entry": entry, "nxdata": name, "choices": choices,
                           "signal": signal_name, "shape": list(signal.shape)}
    interpretation = _text(signal.attrs.get("interpretation", ""))
    if signal.ndim <= 1:
        out.update(_curves(data, signal_name, axes))
    elif interpretation == "spectrum" and signal.ndim == 2:
        n = signal.shape[0]
        out.update(kind="spectrum", point=n - 1, x=list(range(signal.shape[1])),
                   series={signal_name: _floats(signal[n - 1]) if n else []})
    elif interpretation == "image" and signal.ndim == 3:
        n = signal.shape[0]
        out.update(kind="image", point=n - 1, title=f"{signal_name}, frame {n - 1}",
                   **_image(signal[n - 1] if n else np.zeros((0, 0))))
    elif signal.ndim == 2:
        out.update(kind="image", title=f"{signal_name} (mesh: {' x '.join(axes)})",
                   axes=axes, **_image(signal[()]))
    else:
        raise KeyError(f"{entry}/{name}: a {signal.ndim}D signal is not plotted")
    return out


def _curves(data: h5py.Group, signal: str, axes: list[str]) -> dict[str, Any]:
    names = [signal] + [n for n in _names(data.attrs.get("auxiliary_signals"))
                        if isinstance(data.get(n), h5py.Dataset)]
    series = {}
    lengths = []
    for name in names:
        series[name] = np.atleast_1d(data[name][()])
        lengths.append(len(series[name]))
    axis = axes[0] if axes and axes[0] != "." else None
    x = None
    if axis is not None and isinstance(data.get(axis), h5py.Dataset):
        x = np.atleast_1d(data[axis][()])
        lengths.append(len(x))
    n = min(lengths) if lengths else 0  # channels of a running scan differ by a point or two
    stride = max(1, -(-n // MAX_POINTS))
    xs = x[:n:stride] if x is not None else np.arange(0, n, stride)
    return {"kind": "curves", "x_label": axis or "point", "points": n,
            "x": _floats(xs), "series": {k: _floats(v[:n:stride]) for k, v in series.items()}}


def _image(frame: np.ndarray) -> dict[str, Any]:
    frame = np.asarray(frame)
    if frame.ndim != 2:
        frame = np.atleast_2d(frame)
    stride = 1
    while frame.size and frame[::stride, ::stride].size > MAX_PIXELS:
        stride += 1
    frame = frame[::stride, ::stride].astype(float)
    finite = frame[np.isfinite(frame)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    return {"height": int(frame.shape[0]), "width": int(frame.shape[1]), "stride": stride,
            "min": low, "max": high, "pixels": _floats(frame)}
