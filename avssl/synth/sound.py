"""Sound of a clip, driven by the sounding object's motion.

Each visual event (bounce, wall hit, top of circle, pulse start, shake burst) triggers
one note of the class timbre at that exact time; the note's base pitch is set by the
object's size (bigger = lower, `world.make_plan`), moves with its height on screen
(+/- 0.15 octave) and its loudness follows the size too. A quiet sustained layer follows the object's speed/scale continuously.
Background noise is added at the clip's SNR; silent clips hold only that noise.
"""

from __future__ import annotations

import numpy as np

from .world import SOURCE_CLASSES, ClipPlan


def _tone(timbre: str, f0: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Class timbre with instantaneous fundamental `f0` (Hz, per sample)."""
    n = len(f0)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    if timbre == "fm_bell":
        return np.sin(phase + 2.0 * np.sin(1.4 * phase))
    if timbre == "fm_chime":
        return np.sin(phase + 1.2 * np.sin(3.5 * phase))
    if timbre == "fm_gong":
        return np.sin(phase + 3.0 * np.sin(0.71 * phase)) + 0.3 * np.sin(2.76 * phase)
    if timbre == "soft_harmonic":
        return np.sin(phase) + 0.35 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase)
    if timbre == "square":
        return sum(np.sin(k * phase) / k for k in (1, 3, 5, 7, 9, 11))
    if timbre == "saw":
        return sum(np.sin(k * phase) / k for k in range(1, 13))
    if timbre == "pluck":  # upper harmonics die faster, as on a plucked string
        tt = np.arange(n) / rate
        return sum(np.exp(-tt * 6.0 * k) * np.sin(k * phase) / k for k in range(1, 9))
    if timbre == "chirp":
        tt = np.arange(n) / rate
        return np.sin(2 * np.pi * np.cumsum(f0 * (1.0 + 2.5 * tt)) / rate)
    if timbre in ("noise_low", "noise_high"):
        # band of noise centred on f0 (one FFT mask: no per-sample filter loop)
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1.0 / rate)
        centre = float(np.mean(f0))
        width = 0.6 * centre if timbre == "noise_low" else 0.35 * centre
        spec *= np.exp(-0.5 * ((freqs - centre) / width) ** 2)
        out = np.fft.irfft(spec, n)
        return out / (np.abs(out).max() + 1e-9)
    raise ValueError(f"unknown timbre {timbre!r}")


HEIGHT_OCTAVES = 0.3  # pitch span (octaves) from the bottom of the frame to the top


def pitch_of_height(y: np.ndarray, height: int) -> np.ndarray:
    """Pitch multiplier from vertical position: top of frame 2^0.15, bottom 2^-0.15. Kept smaller
    than a class's pitch range, so that the object's size (which sets the base pitch, see
    `world.make_plan`) stays audible under the movement."""
    return 2.0 ** (HEIGHT_OCTAVES * (0.5 - np.clip(y / max(height - 1, 1), 0.0, 1.0)))


def synth_audio(plan: ClipPlan) -> tuple[np.ndarray, list[dict]]:
    """Mono float32 [1,S] waveform in [-1,1] and the list of notes (audio events)."""
    rate, n = plan.audio_rate, plan.num_samples
    rng = np.random.default_rng(plan.extra["noise_seed"])
    out = np.zeros(n)
    notes: list[dict] = []
    ob = plan.sound_object
    if ob is not None:
        cls = SOURCE_CLASSES[ob.class_index]
        mo = ob.motion
        ref_r = mo.radius
        for te in mo.events(plan.duration):
            x, y, s = mo.state(np.array([te]))
            mult = float(pitch_of_height(y, plan.height)[0])
            size = float(np.clip((ref_r * s[0]) / (0.18 * min(plan.width, plan.height)), 0.5, 1.6))
            amp = plan.loudness * size
            i0 = int(round(te * rate))
            length = min(n - i0, int(rate * (cls.attack + 5 * cls.decay)))
            if length <= 0:
                continue
            tt = np.arange(length) / rate
            env = np.minimum(tt / cls.attack, 1.0) * np.exp(-np.maximum(tt - cls.attack, 0) / cls.decay)
            f0 = np.full(length, plan.pitch_factor * mult)
            out[i0 : i0 + length] += amp * env * _tone(cls.timbre, f0, rate, rng)
            notes.append({"t": round(float(te), 6), "pitch_hz": round(plan.pitch_factor * mult, 3), "amplitude": round(amp, 4)})
        # sustained layer: pitch follows height, loudness follows motion energy
        ts = np.arange(n) / rate
        tc = np.linspace(0, plan.duration, int(plan.duration * 200) + 1)
        cx, cy, sc = mo.state(tc)
        speed = np.hypot(np.gradient(cx, tc), np.gradient(cy, tc)) / max(plan.width, plan.height)
        energy = np.clip(speed / 1.5 + 3.0 * np.abs(np.gradient(sc, tc)) / 4.0, 0.0, 1.0)
        env = np.interp(ts, tc, energy)
        f0 = plan.pitch_factor * np.interp(ts, tc, pitch_of_height(cy, plan.height))
        out += 0.12 * plan.loudness * env * _tone(cls.timbre, f0, rate, rng)
    # background noise: brown-ish rumble + hiss, at the clip's SNR w.r.t. the source
    noise = np.cumsum(rng.standard_normal(n)) * 0.02
    noise -= np.convolve(noise, np.ones(256) / 256, mode="same")
    noise += 0.3 * rng.standard_normal(n)
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    sig_rms = np.sqrt(np.mean(out**2)) if ob is not None else 0.0
    noise_rms = sig_rms / (10 ** (plan.snr_db / 20)) if sig_rms > 0 else 0.003
    out = out + noise_rms * noise
    peak = np.abs(out).max()
    if peak > 0.95:
        out *= 0.95 / peak
    return out[None].astype(np.float32), notes
