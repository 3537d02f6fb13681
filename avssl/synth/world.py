"""The generated world's vocabulary and its per-clip random plan.

A clip holds one *sounding* object (class = the clip's source class) moving with one
*action* (motion pattern), 0-2 silent distractors of other classes, and a textured
background. Motion is analytic in continuous time, so visual events (bounces, wall
hits, pulse starts, shake bursts) have exact times; the sound synthesiser triggers its
notes at those same times, which is what ties sound to picture.

Generator v3 adds two things that make synchronization, not only the class, matter:
  * tempo wobble (``WorldPreset.tempo_wobble``): a motion's phase runs at a rate that swings
    by +/- wobble around its mean, so events are not periodic and a window of sound shifted by
    1 s no longer repeats the same onsets (with a fixed rate, 28 % of 1 s shifts left the onset
    pattern unchanged to 0.125 s; with wobble 0.5, under 1 %: benchmarks/instance_sync.md);
  * same-class twins (``WorldPreset.twin_share``): in that share of clips with a visible
    sounding object, a silent object of the SAME class and size moves on its own; only the
    sounding twin's motion matches the sound (ground truth: ``objects[k]["twin"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class SourceClass:
    """Look (shape, colour, texture) and sound (timbre kind, pitch range Hz, envelope s)."""

    name: str
    shape: str
    colour: tuple[int, int, int]
    texture: str
    timbre: str
    pitch: tuple[float, float]
    attack: float
    decay: float


SOURCE_CLASSES: tuple[SourceClass, ...] = (
    SourceClass("bell", "circle", (235, 195, 40), "solid", "fm_bell", (600.0, 1000.0), 0.004, 0.35),
    SourceClass("drum", "square", (220, 40, 40), "checker", "noise_low", (90.0, 180.0), 0.002, 0.12),
    SourceClass("flute", "triangle", (40, 205, 225), "hstripes", "soft_harmonic", (500.0, 900.0), 0.04, 0.25),
    SourceClass("guitar", "diamond", (245, 135, 30), "vstripes", "pluck", (140.0, 280.0), 0.003, 0.45),
    SourceClass("buzzer", "cross", (215, 50, 205), "solid", "square", (200.0, 350.0), 0.01, 0.2),
    SourceClass("shaker", "star", (50, 200, 60), "dots", "noise_high", (4000.0, 7000.0), 0.002, 0.08),
    SourceClass("horn", "ring", (50, 85, 235), "solid", "saw", (100.0, 200.0), 0.05, 0.3),
    SourceClass("chime", "wide_ellipse", (240, 240, 240), "dstripes", "fm_chime", (1500.0, 2500.0), 0.002, 0.5),
    SourceClass("whistle", "tall_ellipse", (250, 150, 175), "checker", "chirp", (900.0, 1500.0), 0.02, 0.18),
    SourceClass("gong", "hexagon", (140, 80, 30), "rings", "fm_gong", (70.0, 140.0), 0.003, 0.6),
)
SOURCE_NAMES: tuple[str, ...] = tuple(c.name for c in SOURCE_CLASSES)

# Action (motion-pattern) classes, independent of the source class.
ACTIONS: tuple[str, ...] = ("bounce", "slide", "circle", "pulse", "zigzag", "shake")
# UCF101-style CamelCase names and HMDB51-style snake names of the same actions.
ACTION_UCF_NAMES: tuple[str, ...] = ("BounceVertical", "SlideHorizontal", "CircleAround", "PulseZoom", "ZigZag", "ShakeInPlace")
ACTION_HMDB_NAMES: tuple[str, ...] = ("bounce_vertical", "slide_horizontal", "circle_around", "pulse_zoom", "zig_zag", "shake_in_place")

NUM_GROUPS = 25  # UCF101-style groups g01..g25 (clips of one group share a background)


# ---------------------------------------------------------------- motion


@dataclass
class Motion:
    """Analytic motion of one object in pixels. `rate` events/s, `phase` in [0,1)."""

    action: int
    radius: float
    width: int
    height: int
    rate: float
    phase: float
    anchor: tuple[float, float]  # free coordinate(s) drawn at random, in [0,1]
    burst_times: tuple[float, ...] = ()
    direction: int = 1
    # tempo wobble: u(t) = rate * (t + wobble * (sin(2 pi f t + p) - sin p) / (2 pi f)) + phase, so the
    # instantaneous event rate is rate * (1 + wobble * cos(2 pi f t + p)) (monotone for wobble < 1)
    wobble: float = 0.0
    wobble_freq: float = 0.4
    wobble_phase: float = 0.0

    def progress(self, t: np.ndarray) -> np.ndarray:
        """The motion's phase u(t) (cycles); events sit at integer (and for slide/zigzag half-integer) u."""
        t = np.asarray(t, dtype=np.float64)
        if self.wobble == 0.0:
            return self.rate * t + self.phase
        w = 2 * np.pi * self.wobble_freq
        warp = self.wobble * (np.sin(w * t + self.wobble_phase) - np.sin(self.wobble_phase)) / w
        return self.rate * (t + warp) + self.phase

    def _bounds(self):
        m = self.radius * 1.45 + 1.0  # keeps pulsing/shaken objects fully inside the frame
        return m, self.width - 1 - m, m, self.height - 1 - m

    def state(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre x, centre y (pixels) and scale factor at times `t` (s)."""
        t = np.asarray(t, dtype=np.float64)
        x_lo, x_hi, y_lo, y_hi = self._bounds()
        ax, ay = self.anchor
        x = np.full_like(t, x_lo + ax * (x_hi - x_lo))
        y = np.full_like(t, y_lo + ay * (y_hi - y_lo))
        s = np.ones_like(t)
        u = self.progress(t)
        a = self.action
        if a == 0:  # bounce: ground contact once per 1/rate s
            top = y_lo + 0.15 * ay * (y_hi - y_lo)
            y = y_hi - (y_hi - top) * np.abs(np.sin(np.pi * u))
        elif a == 1:  # slide: wall hit once per 1/rate s
            x = x_lo + (x_hi - x_lo) * _tri(u)
        elif a == 2:  # circle: passes the top once per 1/rate s
            cx, cy = 0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi)
            r = (0.55 + 0.4 * ax) * 0.5 * min(x_hi - x_lo, y_hi - y_lo)
            ang = 2 * np.pi * u * self.direction - np.pi / 2
            x, y = cx + r * np.cos(ang), cy + r * np.sin(ang)
        elif a == 3:  # pulse: grows then shrinks during the first 40% of each period
            w = np.mod(u, 1.0)
            s = 1.0 + 0.45 * np.where(w < 0.4, np.sin(np.pi * w / 0.4), 0.0)
        elif a == 4:  # zigzag: fast horizontal turns, slow vertical drift
            x = x_lo + (x_hi - x_lo) * _tri(u)
            frac = np.clip(t / max(self._duration_hint, 1e-6), 0.0, 1.0)
            y = y_lo + (y_hi - y_lo) * (frac if self.direction > 0 else 1.0 - frac)
        elif a == 5:  # shake: still, with short horizontal shaking bursts
            dx = np.zeros_like(t)
            for b in self.burst_times:
                k = (t >= b) & (t < b + SHAKE_LEN)
                dx = dx + np.where(k, 0.4 * self.radius * np.sin(2 * np.pi * 12.0 * (t - b)), 0.0)
            x = x + dx
        return x, y, s

    _duration_hint: float = 1.0

    def events(self, duration: float) -> np.ndarray:
        """Exact visual event times in [0, duration)."""
        if self.action == 5:
            ev = np.asarray(self.burst_times, dtype=np.float64)
        elif self.wobble != 0.0:
            # u is strictly increasing: invert it on a 0.1 ms grid (linear between grid points)
            tt = np.linspace(0.0, duration, int(round(duration * 10_000)) + 1)
            uu = self.progress(tt)
            step = 0.5 if self.action in (1, 4) else 1.0
            ks = np.arange(np.ceil(uu[0] / step), np.floor(uu[-1] / step) + 1) * step
            ev = np.interp(ks, uu, tt)
        else:
            # bounce/slide/zigzag: integer u (|sin(pi u)|=0 resp. tri turn at integer u);
            # circle: top at integer u; pulse: growth starts at integer u.
            k0 = int(np.ceil(self.phase))
            k1 = int(np.floor(self.rate * duration + self.phase)) + 1
            ev = (np.arange(k0, k1 + 1) - self.phase) / self.rate
            if self.action in (1, 4):  # tri(u) turns at half-integers too
                ev = np.sort(np.concatenate([ev, (np.arange(k0 - 1, k1 + 1) + 0.5 - self.phase) / self.rate]))
        ev = ev[(ev >= 0) & (ev < duration)]
        return np.unique(np.round(ev, 6))


SHAKE_LEN = 0.25


def _tri(u: np.ndarray) -> np.ndarray:
    """Triangle wave in [0,1]: 0 at integer u, 1 at half-integers."""
    w = np.mod(u, 1.0)
    return 1.0 - np.abs(1.0 - 2.0 * w)


# ---------------------------------------------------------------- per-clip plan


@dataclass
class ObjectPlan:
    class_index: int
    motion: Motion
    texture_phase: float
    sounding: bool
    twin: bool = False  # a silent object of the sounding object's class and size (generator v3)


@dataclass
class ClipPlan:
    """Everything random about one clip, drawn from (world seed, clip index) only."""

    index: int
    clip_id: str
    seed: int
    split: str
    group: int
    source_class: int
    action: int
    offscreen: bool
    silent: bool
    container: str
    objects: list[ObjectPlan]  # draw order; the sounding object (if on screen) is last
    sound_object: ObjectPlan | None  # the object that makes the sound (may be off screen)
    pitch_factor: float
    loudness: float
    snr_db: float
    width: int
    height: int
    fps: float
    duration: float
    audio_rate: int
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps))

    @property
    def num_samples(self) -> int:
        return int(round(self.duration * self.audio_rate))


def ucf_test_groups(fold: int) -> set[int]:
    """UCF101 convention: fold k (1..3) tests on groups 7(k-1)+1 .. 7k."""
    return set(range(7 * (fold - 1) + 1, 7 * fold + 1))


def world_assignments(num_clips: int, seed: int, preset) -> dict[str, np.ndarray]:
    """Balanced class/action/group labels and exact-count flags for the whole world."""
    rng = np.random.default_rng([seed, 0xA55])
    n = num_clips

    def balanced(k):
        return rng.permutation(np.arange(n) % k)

    def share(p):
        flag = np.zeros(n, dtype=bool)
        flag[rng.permutation(n)[: int(round(p * n))]] = True
        return flag

    source = balanced(len(SOURCE_CLASSES))
    action = balanced(len(ACTIONS))
    group = balanced(NUM_GROUPS) + 1
    # offscreen and silent are disjoint: draw from one permutation
    order = rng.permutation(n)
    n_off, n_sil = int(round(preset.offscreen_share * n)), int(round(preset.silent_share * n))
    offscreen = np.zeros(n, dtype=bool)
    silent = np.zeros(n, dtype=bool)
    offscreen[order[:n_off]] = True
    silent[order[n_off : n_off + n_sil]] = True
    webm = share(preset.webm_share)
    # twins: drawn last (earlier draws unchanged), among clips whose sounding object is on screen
    twin = np.zeros(n, dtype=bool)
    n_twin = int(round(getattr(preset, "twin_share", 0.0) * n))
    if n_twin:
        pool = np.flatnonzero(~offscreen & ~silent)
        twin[rng.permutation(pool)[: min(n_twin, len(pool))]] = True
    return {"source": source, "action": action, "group": group, "offscreen": offscreen, "silent": silent, "webm": webm,
            "twin": twin}


def _motion(rng: np.random.Generator, action: int, radius: float, preset, duration: float) -> Motion:
    rate = float(rng.uniform(*preset.event_rate))
    m = Motion(
        action=action,
        radius=radius,
        width=preset.width,
        height=preset.height,
        rate=rate,
        phase=float(rng.uniform(0, 1)),
        anchor=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1))),
        direction=int(rng.choice([-1, 1])),
    )
    if action == 4:
        m.rate = rate * 1.0
    if action == 5:  # bursts: random onsets, at least 0.3 s apart
        times, t = [], float(rng.uniform(0.0, 0.5))
        while t < duration - 0.1:
            times.append(round(t, 4))
            t += SHAKE_LEN + float(rng.exponential(1.0 / rate)) + 0.05
        m.burst_times = tuple(times)
    m._duration_hint = duration
    return m


def _wobble(motion: Motion, rng: np.random.Generator, amount: float) -> Motion:
    """Set the tempo wobble of ``motion`` (amplitude ``amount``, frequency 0.25-0.6 Hz, random phase)
    from its own stream ``rng`` (so a world without wobble keeps every other draw)."""
    if amount > 0 and motion.action != 5:  # shake bursts are already irregular
        motion.wobble = float(amount)
        motion.wobble_freq = float(rng.uniform(0.25, 0.6))
        motion.wobble_phase = float(rng.uniform(0.0, 2 * np.pi))
    return motion


def _apart(motion: Motion, other: Motion, rng: np.random.Generator, duration: float, tries: int = 8
           ) -> tuple[float, float]:
    """Of ``tries`` random anchors for ``motion``, the one whose path keeps farthest from ``other``'s
    (largest mean centre distance over the clip, 0.1 s steps): twins overlap as little as the
    frame allows, so a heatmap can prefer one of them."""
    t = np.arange(0.0, duration, 0.1)
    ox, oy, _ = other.state(t)
    best, best_d = motion.anchor, -1.0
    for _ in range(tries):
        motion.anchor = (float(rng.uniform(0, 1)), float(rng.uniform(0, 1)))
        x, y, _ = motion.state(t)
        d = float(np.mean(np.hypot(x - ox, y - oy)))
        if d > best_d:
            best, best_d = motion.anchor, d
    return best


def make_plan(index: int, seed: int, preset, labels: dict[str, np.ndarray]) -> ClipPlan:
    """Draw one clip's plan from (seed, index) and the world-level labels."""
    rng = np.random.default_rng([seed, index])
    side = min(preset.width, preset.height)
    src, act = int(labels["source"][index]), int(labels["action"][index])
    grp = int(labels["group"][index])
    offscreen, silent = bool(labels["offscreen"][index]), bool(labels["silent"][index])
    n_dis = int(rng.integers(0, preset.max_distractors + 1))
    others = [c for c in range(len(SOURCE_CLASSES)) if c != src]
    dis_classes = rng.choice(others, size=n_dis, replace=False) if n_dis else []

    def obj(cls, action, sounding):
        radius = float(rng.uniform(*preset.radius)) * side
        return ObjectPlan(int(cls), _motion(rng, action, radius, preset, preset.duration), float(rng.uniform(0, 1)), sounding)

    main = obj(src, act, not silent)
    distractors = [obj(c, int(rng.integers(0, len(ACTIONS))), False) for c in dis_classes]
    wobble = float(getattr(preset, "tempo_wobble", 0.0))
    if wobble > 0:  # own streams per object: the draws above stay those of a world without wobble
        for k, ob in enumerate([main] + distractors):
            _wobble(ob.motion, np.random.default_rng([seed, index, 0x70B, k]), wobble)
    if "twin" in labels and bool(labels["twin"][index]):
        # a silent twin: same class and size as the sounding object, its own motion on the other side
        trng = np.random.default_rng([seed, index, 0x7717])
        ax, ay = main.motion.anchor
        tm = _motion(trng, int(trng.integers(0, len(ACTIONS))), main.motion.radius, preset, preset.duration)
        _wobble(tm, trng, wobble)
        tm.anchor = _apart(tm, main.motion, trng, preset.duration)
        if trng.random() < 0.5:
            # which of the two places the sounding twin gets is a coin flip: the twin is placed away from
            # the sounding object, i.e. often nearer the edges, and a centre-biased map would otherwise
            # "prefer" the sounding twin without listening (measured: the centre prior at 0.82 before)
            tm.anchor, main.motion.anchor = main.motion.anchor, tm.anchor
        twin = ObjectPlan(src, tm, float(trng.uniform(0, 1)), False, twin=True)
        distractors = [twin] + distractors[: max(preset.max_distractors - 1, 0)]
    objects = distractors + ([] if offscreen else [main])
    lo, hi = SOURCE_CLASSES[src].pitch
    # bigger objects sound lower (as drums, bells and pipes do): the base pitch falls across the
    # class range as the sounding object's radius grows, with a little jitter, so that one look at
    # the picture says something about this clip's sound beyond its class (an instance-level cue)
    r_lo, r_hi = preset.radius
    size = (main.motion.radius / side - r_lo) / max(r_hi - r_lo, 1e-9)
    pitch_pos = float(np.clip(1.0 - size + rng.normal(0.0, 0.08), 0.0, 1.0))
    return ClipPlan(
        index=index,
        clip_id=f"clip_{index:06d}",
        seed=seed,
        split="test" if grp in ucf_test_groups(1) else "train",
        group=grp,
        source_class=src,
        action=act,
        offscreen=offscreen,
        silent=silent,
        container=".webm" if labels["webm"][index] else ".mp4",
        objects=objects,
        sound_object=None if silent else main,
        pitch_factor=float(lo * (hi / lo) ** pitch_pos),
        loudness=float(rng.uniform(0.45, 0.9)),
        snr_db=float(rng.uniform(*preset.snr_db)),
        width=preset.width,
        height=preset.height,
        fps=float(preset.fps),
        duration=float(preset.duration),
        audio_rate=int(preset.audio_rate),
        extra={"bg_seed": int(rng.integers(0, 2**31 - 1)), "noise_seed": int(rng.integers(0, 2**31 - 1))},
    )
