"""Events -> frames by the definitions of Tonic's transforms, in NumPy and Numba (tested equal to Tonic's).

Denoise(filter_time=frames.denoise), Downsample(spatial_factor=frames.downsample), ToFrame
(n_time_bins=T; with frames.time_window: windows from the first event, exactly T, a longer
recording cropped, a shorter one zero-padded). Tonic's Denoise is a Python loop over events;
these run compiled. Counts are clipped at the int16 maximum where Tonic's int16 frames wrap.
"""
from typing import List

import numpy as np
from numba import njit


@njit(cache=True)
def _denoise_keep(x, y, t, filter_time):  # tonic.functional.denoise_numpy, its loop compiled
    keep = np.zeros(len(x), np.bool_)
    width, height = x.max() + 1, y.max() + 1
    memory = np.full((width, height), filter_time)
    for i in range(len(x)):
        xi, yi, ti = x[i], y[i], t[i]
        memory[xi, yi] = ti + filter_time
        keep[i] = ((xi > 0 and memory[xi - 1, yi] > ti)
                   or (xi < width - 1 and memory[xi + 1, yi] > ti)
                   or (yi > 0 and memory[xi, yi - 1] > ti)
                   or (yi < height - 1 and memory[xi, yi + 1] > ti))
    return keep


@njit(cache=True)
def _accumulate(lo, hi, c, y, x, out):  # frame k counts events lo[k]:hi[k], as ToFrame's slices
    for k in range(len(lo)):
        for i in range(lo[k], hi[k]):
            out[k, c[i], y[i], x[i]] += 1


def to_frames(x, y, p, t, shape: List[int], frames, n_frames: int) -> np.ndarray:
    """One recording's events (int64 arrays, t in us, in the file's order) -> int16 counts
    [n_frames, *shape] (see the module's docstring; shape: frame_shape)."""
    out = np.zeros((n_frames, *shape), np.int32)
    if len(t) and min(x.min(), y.min(), p.min()) < 0:
        raise ValueError("an event with a negative coordinate or polarity")
    if frames.denoise is not None and len(t):
        keep = _denoise_keep(x, y, t.astype(np.float64), float(frames.denoise))
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    if len(t) == 0:
        return out.astype(np.int16)
    f = float(frames.downsample)
    x, y = (x * f).astype(np.int64), (y * f).astype(np.int64)
    c = p if shape[0] == 2 else np.zeros_like(p)  # one channel: polarities summed
    for name, v, size in (("x", x, shape[2]), ("y", y, shape[1]), ("polarity", c, shape[0])):
        if v.max() >= size:
            raise ValueError(f"an event's {name} is {v.max()}: outside the sensor (0..{size - 1}"
                             " after downsampling)")
    if frames.time_window is None:  # ToFrame(n_time_bins): SliceByTimeBins' windows
        width = (t[-1] - t[0]) // n_frames
    else:  # ToFrame(time_window, start_time=t[0]): SliceByTime's windows, the first n_frames
        width = float(frames.time_window)
    starts = np.arange(n_frames) * width + t[0]
    _accumulate(np.searchsorted(t, starts), np.searchsorted(t, starts + width), c, y, x, out)
    return np.minimum(out, np.iinfo(np.int16).max).astype(np.int16)
