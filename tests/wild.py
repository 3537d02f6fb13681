"""A "wild collection": a few dozen short real media files that look like what datasets in the wild hold.

Use it to test any stage that reads videos (reader, probe/index, dataset, end-to-end runs) against the
shapes, codecs, containers, timestamps and damage real collections have, with known content:

    from wild import write_wild_collection
    entries = write_wild_collection(tmp_dir, seed=0)      # list[WildEntry], ~40 files, a few seconds
    for e in entries:
        e.path, e.what, e.probe_reason, e.readable, e.has_audio, e.media ...

or in pytest, through a session fixture around `wild_collection_cached` (written once per session).

Every video frame carries tests/media.py's bar code (frame k shows k), so a read frame can be checked
against `e.media.expected_index(t)`; audio carries media.py's per-second tone code plus noise.

Dataset-style README
--------------------
Layout: one flat folder, file name = `<name><ext>` (the entry's `name`), nothing else in it (the
ffmpeg-side temporaries are removed). What it covers:

* shapes: 16:9, 4:3, 9:16 (portrait via rotation metadata), 1:1, odd sizes (202x360, 853x480, 75x133),
  854x480; rotation 90/180/270;
* rates: 8, 15, 23.976, 25, 29.97, 30, 60 fps and variable frame rate (mp4, mkv);
* video codecs: H.264, HEVC, VP9, MPEG-4 part 2 (AVI, B-frames without per-frame pts, and the
  UCF101-style Xvid "packed B-frames" bitstream), MJPEG;
* containers: mp4, mkv, webm, mov, avi;
* audio: AAC, MP3, AC-3, Opus, FLAC, PCM; mono, stereo, 5.1; 8 to 48 kHz; audio starting late; a
  digitally silent track; no audio; an audio track no decoder can read;
* damage: one corrupted audio packet mid-file (MPEG-4 + AC-3 AVI, the issue #16 file), one corrupted
  video packet mid-file (H.264 mp4, MPEG-4 AVI), a truncated tail (mkv);
* bad files the index reports: zero-byte, not-a-video (text, random bytes, a still JPEG), missing
  moov, truncated fast-start mp4, audio-only.

`WildEntry` fields (ground truth, what a correct reader/prober gives):
  name, path, what            id, file, one line saying which real-world case it stands for
  probe_reason                MediaError.reason probe()/build_index report, None when indexed
  readable                    read_clip returns frames (inside `readable_until` when set)
  read_reason                 MediaError.reason read_clip raises when not readable
  has_audio                   probe's has_audio (False also for an undecodable audio track)
  audio_undecodable           the file has an audio stream that does not decode at all
  media                       tests/media.Media: frame k's code is k, shown from media.frame_times[k]
                              (media timeline, t = 0 at the first frame), audio source and its start
  pts                         "valid", or "none" (AVI without per-frame pts: frame times follow
                              from the frame order and the rate; FFmpeg's own guess is off by
                              up to `ffmpeg_tolerance` frames)
  audio_delay                 s the audio plays late by in every player: the encoder's priming that
                              AVI cannot signal (AC-3 256 samples, LAME MP3 1105 samples)
  damage                      (stream, media time) of the corrupted packet, or None
  garbled                     (t0, t1): frames shown in this span may be concealed/garbled (damage)
  readable_until              truncated files: data ends here (s)
  tags                        coarse labels for selection: "avi", "vfr", "rotated", "5.1", ...

Cost: about 4-7 s on one core, 2 MB (benchmarks/wild_reading.py prints the time; the coverage is
checked by tests/test_wild_io.py::test_collection_covers_the_wild).

Helpers for checking reads: `ffmpeg_shown(path)` (every frame the ffmpeg CLI decodes, with its time),
`allowed_codes` / `frame_errors` (what a correct reader may return at a time), `clip_plan` (the same
start times for every backend), `wild_collection_cached(tmp_path_factory)` (one copy per pytest
session: wrap it in a session fixture, as tests/test_wild_io.py does).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

import media as M
from avssl.io.writer import write_av

__all__ = ["WildEntry", "write_wild_collection", "skipped_cases", "wild_collection_cached", "ffmpeg_shown",
           "ffmpeg_encoders", "allowed_codes", "frame_errors", "clip_plan", "FFMPEG"]

FFMPEG = shutil.which("ffmpeg")


@dataclass
class WildEntry:
    name: str
    path: Path
    what: str
    probe_reason: str | None = None
    readable: bool = True
    read_reason: str | None = None
    has_audio: bool = False
    audio_undecodable: bool = False
    media: M.Media | None = None
    pts: str = "valid"
    ffmpeg_tolerance: int = 0
    audio_delay: float = 0.0
    damage: tuple[str, float] | None = None
    garbled: tuple[float, float] | None = None
    readable_until: float | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def indexed(self) -> bool:
        return self.probe_reason is None


def ffmpeg_encoders() -> set[str]:
    """Encoder names of the system ffmpeg CLI (empty without it)."""
    if FFMPEG is None:
        return set()
    out = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return names


# ------------------------------------------------------------------ writers
def _media(path, n, fps, h, w, wav=None, rate=0, audio_start=0.0, frame_times=None) -> M.Media:
    ft = np.arange(n) / fps if frame_times is None else np.asarray(frame_times, dtype=np.float64)
    return M.Media(Path(path), ft, wav, rate, audio_start, (h, w))


def _pyav(path, seconds, fps, size, audio_rate=None, gains=(1.0,), *, rotation=0, audio_start=0.0,
          silent=False, frame_times=None, **kw) -> M.Media:
    """Coded frames (+ coded audio) through avssl.io.writer.write_av. size = displayed (H, W)."""
    h, w = size
    n = int(round(seconds * fps)) if frame_times is None else len(frame_times)
    frames = M.coded_video(n, h, w)
    if rotation:  # the player turns stored frames clockwise by `rotation`: store them turned back
        frames = np.ascontiguousarray(np.rot90(frames, k=rotation // 90, axes=(1, 2)))
    wav = None
    if audio_rate:
        wav = M.coded_audio(seconds, audio_rate, gains)
        if silent:
            wav = np.zeros_like(wav)
    write_av(path, frames, fps, wav, audio_rate or 48000, audio_start=audio_start, rotation=rotation or None,
             frame_times=frame_times, **kw)
    return _media(path, n, fps, h, w, wav, audio_rate or 0, audio_start, frame_times)


def _ffmpeg_avi(path, seconds, fps, size, audio_rate, gains, vcodec, acodec, vopts=(), aopts=()) -> M.Media:
    """AVI written by the ffmpeg CLI from raw frames on stdin and a WAV (what PyAV cannot write:
    MPEG-4 part 2 with B-frames, stored without per-frame pts, and Xvid's packed B-frames)."""
    import soundfile as sf

    h, w = size
    n = int(round(seconds * fps))
    frames = M.coded_video(n, h, w)
    wav = M.coded_audio(seconds, audio_rate, gains)
    tmp_wav = Path(path).with_suffix(".src.wav")
    sf.write(str(tmp_wav), wav.T, audio_rate, subtype="PCM_16")
    cmd = [FFMPEG, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
           "-i", "-", "-i", str(tmp_wav), "-map", "0:v", "-map", "1:a", "-c:v", vcodec, *vopts,
           "-c:a", acodec, *aopts, str(path)]
    try:
        subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)
    finally:
        tmp_wav.unlink(missing_ok=True)
    # The encoder may hold back the last frames (Xvid's packed B-frames drop them): the truth is the
    # frames that decode, which must be the codes 0..m-1 in order.
    codes = _decoded_codes(path)
    if codes != list(range(len(codes))):
        raise AssertionError(f"{path}: decoded codes {codes} are not 0..{len(codes) - 1}")
    return _media(path, len(codes), fps, h, w, wav, audio_rate)


def _decoded_codes(path) -> list[int]:
    """Bar codes of every frame PyAV decodes from `path`, in output order (up to a cut, if any)."""
    out = []
    with av.open(str(path)) as c:
        try:
            for f in c.decode(c.streams.video[0]):
                out.append(M.decode_frame(f.to_ndarray(format="rgb24")))
        except av.error.FFmpegError:
            pass
    return out


def _packets(path, kind: str) -> list[tuple[int, int, float, bool]]:
    """(byte position, size, media time, keyframe) of every packet with data of the first `kind` stream."""
    with av.open(str(path)) as c:
        s = (c.streams.audio if kind == "audio" else c.streams.video)[0]
        v = c.streams.video[0]
        origin = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
        out = []
        for p in c.demux(s):
            if p.size and p.pos is not None and p.pos >= 0:
                t = p.pts if p.pts is not None else p.dts
                out.append((int(p.pos), int(p.size), float(t * s.time_base) - origin if t is not None else -1.0,
                            bool(p.is_keyframe)))
    return out


def _corrupt(src: Path, dst: Path, spans, rng, keep: int = 0, lead: bytes = b"") -> None:
    """Copy `src` to `dst` with the bytes of each (pos, size) span replaced by random ones (the first
    `keep` bytes of each kept, e.g. an AC-3 sync word, so the parser still frames the packet), then
    the first bytes of each span set to `lead` (the random draws are the same with or without it)."""
    b = bytearray(src.read_bytes())
    for pos, size in spans:
        b[pos + keep : pos + size] = rng.integers(0, 256, size - keep, dtype=np.uint8).tobytes()
        b[pos : pos + len(lead)] = lead
    dst.write_bytes(bytes(b))


# ------------------------------------------------------------------ the collection
def write_wild_collection(d, seed: int = 0) -> list[WildEntry]:
    """Write the wild collection into folder `d` (created) and return its entries (see the module doc).

    Deterministic for a given `seed` (the random bytes of damaged/garbage files; content codes are
    fixed). Cases whose encoder is missing from this PyAV build / the ffmpeg CLI are left out
    (`skipped_cases(entries)` says which), never faked with another codec."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    have = set(av.codecs_available)
    cli = ffmpeg_encoders()
    E: list[WildEntry] = []
    skipped: list[str] = []

    def add(name, ext, what, make, *, need=(), need_cli=(), tags=(), **kw) -> WildEntry | None:
        missing = [c for c in need if c not in have] + [c for c in need_cli if c not in cli]
        if missing:
            skipped.append(f"{name}: encoder(s) {missing} not available")
            return None
        path = d / f"{name}{ext}"
        media = make(path)
        e = WildEntry(name=name, path=path, what=what, media=media, tags=tuple(tags), **kw)
        E.append(e)
        return e

    # --- shapes and codecs (PyAV writes) ------------------------------------------------------
    add("h264_aac_16x9", ".mp4", "H.264 (B-frames) + AAC stereo 48 kHz, 256x144 16:9, 30 fps",
        lambda p: _pyav(p, 2.0, 30, (144, 256), 48000, (1.0, 0.6), gop=30),
        need=("libx264", "aac"), has_audio=True, tags=("mp4", "h264", "aac", "stereo"))
    add("h264_aac_4x3_mono", ".mkv", "H.264 + AAC mono 44.1 kHz in Matroska, 160x120 4:3, 25 fps",
        lambda p: _pyav(p, 2.0, 25, (120, 160), 44100), need=("libx264", "aac"), has_audio=True, tags=("mkv",))
    add("phone_9x16_rot90", ".mp4", "phone portrait: stored 256x144, display matrix 90 -> 144x256 (9:16), AAC 44.1k",
        lambda p: _pyav(p, 2.0, 30, (256, 144), 44100, rotation=90, gop=15),
        need=("libx264", "aac"), has_audio=True, tags=("rotated", "portrait"))
    add("square_rot180_pcm16k", ".mov", "1:1 128x128 upside down (rotation 180), QuickTime, PCM 16 kHz mono",
        lambda p: _pyav(p, 1.5, 24, (128, 128), 16000, rotation=180, audio_codec="pcm_s16le"),
        need=("libx264",), has_audio=True, tags=("rotated", "mov", "pcm"))
    add("rot270_mp3_22k", ".mkv", "landscape stored portrait (rotation 270), MP3 22.05 kHz stereo",
        lambda p: _pyav(p, 1.5, 20, (96, 176), 22050, (1.0, 1.0), rotation=270, audio_codec="libmp3lame"),
        need=("libx264", "libmp3lame"), has_audio=True, tags=("rotated", "mp3"))
    add("vp9_opus_1x1", ".webm", "VP9 + Opus stereo 48 kHz, 128x128 1:1, 24 fps",
        lambda p: _pyav(p, 2.0, 24, (128, 128), 48000, (0.8, 0.8)),
        need=("libvpx-vp9", "libopus"), has_audio=True, tags=("webm", "vp9", "opus"))
    add("vp9_202x360_opus16k", ".webm", "VP9 202x360 (9:16 stored, odd ratio), Opus from 16 kHz mono, 30 fps",
        lambda p: _pyav(p, 1.0, 30, (360, 202), 16000), need=("libvpx-vp9", "libopus"), has_audio=True,
        tags=("webm", "portrait"))
    add("vp9_853x480_odd", ".webm", "VP9 853x480 (odd width), 1 s, no audio",
        lambda p: _pyav(p, 1.0, 12, (480, 853), None), need=("libvpx-vp9",), tags=("webm", "odd"))
    add("vp9_75x133_flac", ".mkv", "VP9 75x133 (odd both), FLAC 48 kHz mono in Matroska",
        lambda p: _pyav(p, 1.5, 20, (75, 133), 48000, video_codec="libvpx-vp9", audio_codec="flac"),
        need=("libvpx-vp9", "flac"), has_audio=True, tags=("odd", "flac"))
    add("h264_854x480", ".mp4", "H.264 854x480 (FWVGA), 1 s, AAC 48 kHz stereo",
        lambda p: _pyav(p, 1.0, 30, (480, 854), 48000, (1.0, 1.0), preset="ultrafast"),
        need=("libx264", "aac"), has_audio=True)
    add("hevc_mp3", ".mp4", "HEVC (x265) + MP3 44.1 kHz stereo in mp4, 192x108, 25 fps",
        lambda p: _pyav(p, 2.0, 25, (108, 192), 44100, (1.0, 0.7), video_codec="libx265",
                        audio_codec="libmp3lame", gop=25, preset="ultrafast"),
        need=("libx265", "libmp3lame"), has_audio=True, tags=("hevc", "mp3"))
    add("mjpeg_pcm8k", ".avi", "MJPEG + PCM 8 kHz mono in AVI (webcam style), 160x120, 15 fps",
        lambda p: _pyav(p, 2.0, 15, (120, 160), 8000, video_codec="mjpeg"),
        need=("mjpeg", "pcm_s16le"), has_audio=True, tags=("avi", "mjpeg", "pcm"))
    add("mjpeg_qcif", ".mov", "MJPEG 176x144 (11:9 QCIF) QuickTime, 10 fps, no audio",
        lambda p: _pyav(p, 2.0, 10, (144, 176), None, video_codec="mjpeg"), need=("mjpeg",), tags=("mov", "mjpeg"))
    add("mpeg4_pcm_avi", ".avi", "MPEG-4 part 2 without B-frames + PCM 44.1 kHz in AVI (PyAV written)",
        lambda p: _pyav(p, 2.0, 25, (120, 160), 44100), need=("mpeg4",), has_audio=True, tags=("avi",))

    # --- rates -----------------------------------------------------------------------------------
    add("fps8_flac", ".mkv", "8 fps H.264, FLAC 48 kHz stereo", lambda p: _pyav(p, 3.0, 8, (72, 128), 48000, (1, 1),
        audio_codec="flac"), need=("libx264", "flac"), has_audio=True, tags=("lowfps",))
    add("fps60_aac24k", ".mp4", "60 fps H.264, AAC 24 kHz mono", lambda p: _pyav(p, 1.0, 60, (72, 128), 24000),
        need=("libx264", "aac"), has_audio=True, tags=("highfps",))
    add("ntsc_23976_aac32k", ".mp4", "23.976 fps (24000/1001) H.264, AAC 32 kHz",
        lambda p: _pyav(p, 2.0, 24000 / 1001, (90, 160), 32000), need=("libx264", "aac"), has_audio=True)
    add("ntsc_2997_vp9", ".webm", "29.97 fps (30000/1001) VP9 + Opus", lambda p: _pyav(p, 2.0, 30000 / 1001, (90, 160),
        48000), need=("libvpx-vp9", "libopus"), has_audio=True, tags=("webm",))
    vfr_ms = np.cumsum([0] + [20, 50, 33, 80, 40, 17, 66] * 8)[:40] / 1000.0
    add("vfr_aac", ".mp4", "variable frame rate H.264 (17-80 ms frames) + AAC 48 kHz",
        lambda p: _pyav(p, 2.2, 30, (96, 160), 48000, frame_times=vfr_ms, bframes=0),
        need=("libx264", "aac"), has_audio=True, tags=("vfr",))
    add("vfr_mkv", ".mkv", "variable frame rate H.264 with B-frames in Matroska (ms timestamps), no audio",
        lambda p: _pyav(p, 2.2, 30, (96, 160), None, frame_times=vfr_ms), need=("libx264",), tags=("vfr", "mkv"))

    # --- audio layouts and timing -----------------------------------------------------------------
    add("surround_aac51", ".mp4", "5.1 AAC 48 kHz", lambda p: _pyav(p, 2.0, 24, (72, 128), 48000,
        (1.0, 0.9, 0.8, 0.0, 0.6, 0.5)), need=("libx264", "aac"), has_audio=True, tags=("5.1",))
    add("surround_ac3_51", ".mkv", "5.1 AC-3 48 kHz in Matroska", lambda p: _pyav(p, 2.0, 25, (72, 128), 48000,
        (1.0, 0.9, 0.8, 0.0, 0.6, 0.5), audio_codec="ac3"), need=("libx264", "ac3"), has_audio=True,
        tags=("5.1", "ac3"))
    add("late_audio_mp4", ".mp4", "audio stream starting 0.6 s after the video (AAC 44.1 kHz)",
        lambda p: _pyav(p, 2.0, 25, (72, 128), 44100, audio_start=0.6), need=("libx264", "aac"), has_audio=True,
        tags=("late-audio",))
    add("late_audio_mkv", ".mkv", "audio stream starting 0.4 s late (Opus) in Matroska",
        lambda p: _pyav(p, 2.0, 25, (72, 128), 48000, audio_start=0.4, audio_codec="libopus"),
        need=("libx264", "libopus"), has_audio=True, tags=("late-audio",))
    add("silent_track", ".mp4", "a digitally silent AAC track (all zeros)",
        lambda p: _pyav(p, 2.0, 25, (72, 128), 48000, silent=True), need=("libx264", "aac"), has_audio=True,
        tags=("silent",))
    add("no_audio", ".mp4", "no audio stream", lambda p: _pyav(p, 2.0, 25, (72, 128), None), need=("libx264",),
        tags=("no-audio",))

    # --- AVI the way UCF101 / HMDB51 store it (ffmpeg CLI) -----------------------------------
    if FFMPEG is None:
        skipped.append("mpeg4 B-frame AVIs: no ffmpeg CLI")
    else:
        bf = add("mpeg4_bframes_ac3", ".avi", "HMDB51-style: MPEG-4 part 2 with 2 B-frames, no per-frame pts, AC-3 48k",
                 lambda p: _ffmpeg_avi(p, 3.0, 25, (120, 160), 48000, (1.0, 0.8), "mpeg4", "ac3",
                                       ("-bf", "2", "-g", "12", "-q:v", "3"), ("-b:a", "128k")),
                 need_cli=("mpeg4", "ac3"), has_audio=True, pts="none", ffmpeg_tolerance=1, audio_delay=256 / 48000,
                 tags=("avi", "no-pts", "ac3"))
        add("xvid_packed_mp3", ".avi", "UCF101-style: Xvid with packed B-frames (no pts, N-VOP chunks), MP3 44.1k",
            lambda p: _ffmpeg_avi(p, 3.0, 25, (120, 160), 44100, (1.0, 1.0), "libxvid", "libmp3lame",
                                  ("-bf", "2", "-g", "12", "-q:v", "3"), ("-b:a", "96k")),
            need_cli=("libxvid", "libmp3lame"), has_audio=True, pts="none", ffmpeg_tolerance=2, audio_delay=1105 / 44100,
            tags=("avi", "no-pts", "packed", "mp3"))
        if bf is not None:
            # The issue #16 file: one AC-3 packet mid-file is garbage (its sync word kept, so the
            # demuxer still delivers it and the decoder fails on it).
            dst = d / "mpeg4_ac3_bad_packet.avi"
            pk = _packets(bf.path, "audio")
            pos, size, t, _ = pk[len(pk) // 2]
            assert bf.path.read_bytes()[pos : pos + 2] == b"\x0b\x77", "AVI packet.pos does not point at the AC-3 frame"
            _corrupt(bf.path, dst, [(pos, size)], rng, keep=2)
            m = bf.media
            E.append(WildEntry("mpeg4_ac3_bad_packet", dst, "issue #16: one undecodable AC-3 packet among ~90 in an "
                               "MPEG-4/AC-3 AVI", has_audio=True, media=M.Media(dst, m.frame_times, m.audio, m.audio_rate,
                                                                                 m.audio_start, m.display_hw),
                               pts="none", ffmpeg_tolerance=1, audio_delay=bf.audio_delay, damage=("audio", t),
                               tags=("avi", "no-pts", "damaged")))

    # --- damaged video packets ------------------------------------------------------------------
    def damaged_video(name, ext, what, **kw):
        src = d / f".{name}_src{ext}"
        try:
            m = _pyav(src, 2.0, 25, (96, 160), None, gop=25, **kw)
            pk = _packets(src, "video")
            k = 10  # a non-key frame mid-GOP
            assert not pk[k][3]
            _corrupt(src, d / f"{name}{ext}", [pk[k][:2]], rng)
        finally:
            src.unlink(missing_ok=True)
        path = d / f"{name}{ext}"
        E.append(WildEntry(name, path, what, media=M.Media(path, m.frame_times, None, 0, 0.0, m.display_hw),
                           damage=("video", 10 / 25), garbled=(10 / 25, 25 / 25), tags=("damaged",)))

    if "libx264" in have:
        damaged_video("h264_bad_video_packet", ".mp4", "H.264 mp4, frame 10's packet is random bytes", bframes=0)
    if "mpeg4" in have:
        damaged_video("mpeg4_bad_video_packet", ".avi", "MPEG-4 AVI, frame 10's packet is random bytes")

    # --- truncated / bad files --------------------------------------------------------------------
    def truncated(name, path, what, m):
        codes = _decoded_codes(path)  # what still decodes: the frames before the cut
        last = max(codes)
        E.append(WildEntry(name, path, what, probe_reason="truncated", has_audio=m.audio is not None,
                           media=M.Media(path, m.frame_times, m.audio, m.audio_rate, 0.0, m.display_hw),
                           readable_until=float(m.frame_times[last]), tags=("truncated",)))

    if "libx264" in have and "aac" in have:
        src = d / ".trunc_src.mkv"
        m = _pyav(src, 3.0, 25, (72, 128), 48000, gop=25)
        b = src.read_bytes()
        (d / "truncated_tail.mkv").write_bytes(b[: int(len(b) * 0.6)])
        src.unlink()
        truncated("truncated_tail", d / "truncated_tail.mkv", "Matroska cut at 60% of its bytes (download stopped)", m)
        # moov (written last by the mp4 muxer) cut off: no index at all
        src = d / ".moov_src.mp4"
        _pyav(src, 2.0, 25, (72, 128), 48000)
        b = src.read_bytes()
        (d / "missing_moov.mp4").write_bytes(b[: len(b) // 2])
        src.unlink()
        E.append(WildEntry("missing_moov", d / "missing_moov.mp4", "mp4 cut before its moov atom",
                           probe_reason="truncated", readable=False, read_reason="corrupt", tags=("bad",)))
        if FFMPEG is not None:
            src, fs = d / ".fs_src.mp4", d / ".fs.mp4"
            m = _pyav(src, 3.0, 25, (72, 128), 48000)
            subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart",
                            str(fs)], check=True)
            b = fs.read_bytes()
            (d / "truncated_faststart.mp4").write_bytes(b[: len(b) // 2])
            src.unlink()
            fs.unlink()
            truncated("truncated_faststart", d / "truncated_faststart.mp4", "fast-start mp4 (index first) with its "
                      "media data cut in half", m)
        # every audio packet is garbage: the video is fine, the audio never decodes
        src = d / ".undec_src.mp4"
        m = _pyav(src, 2.0, 25, (72, 128), 48000)
        pk = _packets(src, "audio")
        # random bytes alone sometimes decode into a frame (which ones depends on the rng's state); a packet
        # opening with a channel-pair element (0x20: CPE, id 0), which a mono stream has no slot for, never does
        _corrupt(src, d / "audio_undecodable.mp4", [(p, s) for p, s, _, _ in pk], rng, lead=b"\x20")
        src.unlink()
        E.append(WildEntry("audio_undecodable", d / "audio_undecodable.mp4", "AAC track whose every packet is "
                           "garbage (video fine)", has_audio=False, audio_undecodable=True,
                           media=M.Media(d / "audio_undecodable.mp4", m.frame_times, None, 0, 0.0, m.display_hw),
                           tags=("damaged", "no-audio")))
        write_av(d / "audio_only.mp4", None, 25, M.coded_audio(1.0, 48000), 48000)
        E.append(WildEntry("audio_only", d / "audio_only.mp4", "an m4a saved as .mp4: audio, no video",
                           probe_reason="no-video-stream", readable=False, read_reason="no-video-stream", tags=("bad",)))

    (d / "zero_byte.mp4").write_bytes(b"")
    E.append(WildEntry("zero_byte", d / "zero_byte.mp4", "an empty file (failed download)", probe_reason="zero-byte",
                       readable=False, read_reason="zero-byte", tags=("bad",)))
    (d / "text_file.mp4").write_text("<html><body>404 Not Found</body></html>\n" * 10)
    E.append(WildEntry("text_file", d / "text_file.mp4", "an HTML error page saved as .mp4", probe_reason="not-a-video",
                       readable=False, read_reason="corrupt", tags=("bad",)))
    (d / "random_bytes.avi").write_bytes(rng.bytes(6000))
    E.append(WildEntry("random_bytes", d / "random_bytes.avi", "random bytes named .avi", probe_reason="not-a-video",
                       readable=False, read_reason="corrupt", tags=("bad",)))
    if "mjpeg" in have:
        with av.open(str(d / "still.jpg"), "w", format="image2") as o:
            s = o.add_stream("mjpeg", rate=1)
            s.width, s.height, s.pix_fmt = 64, 48, "yuvj420p"
            f = av.VideoFrame.from_ndarray(M.code_frame(1, 48, 64), format="rgb24")
            for pkt in [*s.encode(f), *s.encode()]:
                o.mux(pkt)
        (d / "still.jpg").rename(d / "still_image.mp4")
        E.append(WildEntry("still_image", d / "still_image.mp4", "a JPEG picture named .mp4", probe_reason="not-a-video",
                           readable=False, tags=("bad",)))
    write_wild_collection.skipped = skipped  # what this machine could not write, for the test to report
    return E


def skipped_cases() -> list[str]:
    """Cases the last `write_wild_collection` call left out (encoder missing), with the reason."""
    return list(getattr(write_wild_collection, "skipped", []))


# ------------------------------------------------------------------ what ffmpeg shows
def ffmpeg_shown(path) -> tuple[np.ndarray, np.ndarray]:
    """(times, codes): every frame the ffmpeg CLI decodes from `path`, in output order, with its
    presentation time relative to ffmpeg's first frame (s) and its bar code (-1 when unreadable).

    Decoded by the system ffmpeg (its own demuxer/decoder/timestamp logic, autorotated, scaled to
    96x48 for the bar code), `-vsync passthrough` so no frame is duplicated or dropped."""
    cmd = [FFMPEG, "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0", "-vsync", "passthrough",
           "-vf", "showinfo,scale=96:48:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    r = subprocess.run(cmd, capture_output=True)
    frames = np.frombuffer(r.stdout, np.uint8)
    frames = frames[: len(frames) // (96 * 48 * 3) * (96 * 48 * 3)].reshape(-1, 48, 96, 3)
    times = []
    for line in r.stderr.decode(errors="replace").splitlines():
        if "Parsed_showinfo" in line and " pts_time:" in line:
            times.append(float(line.split(" pts_time:")[1].split()[0]))
    n = min(len(times), len(frames))
    t = np.asarray(times[:n], dtype=np.float64)
    return t - (t[0] if n else 0.0), np.array([M.decode_frame(f) for f in frames[:n]], dtype=np.int64)


def allowed_codes(entry: WildEntry, t: float, shown=None, eps: float = 0.0015) -> set[int] | None:
    """The frame codes a correct reader may return at media time `t` of `entry` (None: any, i.e. the
    time lies in a damaged span whose frames are concealed/garbled by the decoder).

    Files with valid pts: the frame ffmpeg shows at t (`shown` = ffmpeg_shown(path)): the last frame
    whose time is <= t, the first one before its first frame, the last one after its end; both
    neighbours when t is within `eps` of a frame time (millisecond-rounded container clocks).
    Files without pts (entry.pts == "none"): the frame at position floor(t * fps) in output order, i.e.
    the bar code's own truth (ffmpeg's guessed times are off by up to entry.ffmpeg_tolerance)."""
    if entry.garbled is not None and entry.garbled[0] - eps <= t < entry.garbled[1] + eps:
        return None
    if entry.pts == "none" or shown is None:
        ft = entry.media.frame_times
        codes = np.arange(len(ft))
    else:
        ft, codes = shown
    i = int(np.clip(np.searchsorted(ft, t, side="right") - 1, 0, len(ft) - 1))
    out = {int(codes[i])}
    if i + 1 < len(ft) and ft[i + 1] - t <= eps:
        out.add(int(codes[i + 1]))
    if i > 0 and t - ft[i] <= eps:
        out.add(int(codes[i - 1]))
    return out


def frame_errors(entry: WildEntry, times, got_codes, shown=None) -> list[tuple[float, int, set[int]]]:
    """(time, got, allowed) for every frame of a read that is not one `allowed_codes` permits."""
    bad = []
    for t, g in zip(np.asarray(times, dtype=np.float64).tolist(), list(got_codes)):
        ok = allowed_codes(entry, t, shown)
        if ok is not None and int(g) not in ok:
            bad.append((t, int(g), ok))
    return bad


def clip_plan(entries, clips_per_file: int = 4, num_frames: int = 6, fps: float = 9.7):
    """[(entry, start)]: `clips_per_file` starts spread over each readable, indexed file (first at 0,
    last reaching its end), the same plan for every backend. Off-grid clip rate so requested times
    rarely fall on frame boundaries."""
    plan = []
    span = (num_frames - 1) / fps
    for e in entries:
        if not (e.readable and e.indexed and e.media is not None):
            continue
        dur = float(e.media.frame_times[-1])
        starts = np.linspace(0.0, max(dur - span, 0.0), clips_per_file) + np.array([0.0] + [0.0123] * (clips_per_file - 1))
        plan += [(e, float(s)) for s in starts]
    return plan


_SESSION: dict = {}


def wild_collection_cached(tmp_path_factory, seed: int = 0) -> list[WildEntry]:
    """The collection written once per process (pytest session) under pytest's temporary root."""
    if seed not in _SESSION:
        _SESSION[seed] = write_wild_collection(tmp_path_factory.mktemp(f"wild{seed}"), seed=seed)
    return _SESSION[seed]
