"""Dataset lists as people have them: every source kind resolved and indexed on real encoded media.

Each format is written in its published layout (Kinetics CSV with label / split folders, AudioSet
segment CSV with its comment lines and quoted label lists, VGGSound CSV without a header) next to
tiny real videos named the way the field's downloaders name them, plus rows whose video is absent.
Every listed row must end up indexed or reported: rows = indexed + reported.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from avssl.data.index import Manifest, build_index
from avssl.data.sources import MediaIndex, annotation_stems, detect_format, resolve_source
from tests.media import write_coded


def _video(path: Path, seconds: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_coded(path, seconds=seconds, fps=8.0, size=(32, 48), audio_rate=16000)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """One real encoded clip; the layouts below copy it under the names each dataset uses."""
    return _video(tmp_path_factory.mktemp("src") / "clip.mp4")


def _place(clip: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, dst)
    return dst


def _adds_up(report) -> None:
    assert report.total == report.indexed + len(report.bad), report.summary()


# ------------------------------------------------------------------------------ Kinetics


def _kinetics(tmp_path: Path, clip: Path) -> tuple[Path, Path]:
    root = tmp_path / "k400"
    rows = [  # label, id, start, end, split, where the file is
        ("playing guitar", "aaaaaaaaaaa", 0, 10, "train", "train/playing guitar"),  # <root>/<split>/<label>/
        ("playing guitar", "bbbbbbbbbbb", 30, 40, "train", "playing guitar"),         # <root>/<label>/
        ("drumming fingers", "ccccccccccc", 5, 15, "train", ""),                      # flat
        ("drumming fingers", "ddddddddddd", 0, 10, "train", None),                    # never downloaded
        ("drumming fingers", "eeeeeeeeeee", 12, 22, "val", "val/drumming_fingers"),   # label folder with _
        ("playing guitar", "fffffffffff", 0, 10, "val", None),
    ]
    lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
    for label, yid, s, e, split, where in rows:
        lines.append(f"{label},{yid},{s},{e},{split},0")
        if where is not None:
            _place(clip, root / where / f"{yid}_{s:06d}_{e:06d}.mp4")
    csv_path = root / "annotations" / "all.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, root


def test_kinetics_csv_with_media_root_split_and_labels(tmp_path, clip):
    csv_path, root = _kinetics(tmp_path, clip)
    assert detect_format(csv_path) == "kinetics"
    res = resolve_source(csv_path, media_root=root, split="train")
    assert res.format == "kinetics" and res.rows == 4 and len(res.paths) == 3 and len(res.missing) == 1
    assert res.notes["other_split_rows"] == 2
    miss = res.missing[0]
    assert miss.reason == "missing" and "ddddddddddd_000000_000010" in miss.detail and "ddddddddddd" in miss.path

    m, rep = build_index(csv_path, root=root, split="train", workers=1, progress=False)
    _adds_up(rep)
    assert (rep.total, rep.indexed, rep.counts()) == (4, 3, {"missing": 1})
    assert m.root == str(root)
    assert sorted(m.paths) == sorted(["train/playing guitar/aaaaaaaaaaa_000000_000010.mp4",
                                      "playing guitar/bbbbbbbbbbb_000030_000040.mp4", "ccccccccccc_000005_000015.mp4"])
    labels = {Path(m.path(i)).name[:11]: m.label_of(i) for i in range(len(m))}
    assert labels == {"aaaaaaaaaaa": "playing guitar", "bbbbbbbbbbb": "playing guitar", "ccccccccccc": "drumming fingers"}
    assert all(os.path.isfile(m.resolve(i)) for i in range(len(m)))
    assert "kinetics source" in rep.summary() and "missing: 1" in rep.summary()

    # 'validate' selects the rows whose split column says 'val'
    m_val, rep_val = build_index(csv_path, root=root, split="validate", workers=1, progress=False)
    _adds_up(rep_val)
    assert (rep_val.total, rep_val.indexed) == (2, 1) and m_val.label_of(0) == "drumming fingers"
    with pytest.raises(ValueError, match="no row has split 'tset'.*train, val"):
        resolve_source(csv_path, media_root=root, split="tset")


def test_labels_travel_with_saved_and_selected_manifests(tmp_path, clip):
    csv_path, root = _kinetics(tmp_path, clip)
    m, _ = build_index(csv_path, root=root, workers=1, progress=False)
    assert m.label_names == ["drumming fingers", "playing guitar"] and m.label.dtype == np.int32
    back = Manifest.load(m.save(tmp_path / "m.npz"))
    assert back == m and [back.label_of(i) for i in range(len(back))] == [m.label_of(i) for i in range(len(m))]
    sub = m.select([len(m) - 1, 0])
    assert sub.label_of(0) == m.label_of(len(m) - 1) and sub.label_of(1) == m.label_of(0)
    assert m.row(0)["label"] == m.label_of(0)
    # a manifest without labels is unchanged by the new column (same fingerprint, no label key)
    plain, _ = build_index([m.resolve(i) for i in range(len(m))], workers=1, progress=False)
    assert plain.label is None and "label" not in plain.row(0)


# ------------------------------------------------------------------------------ AudioSet


AUDIOSET_HEAD = """# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5
# YTID, start_seconds, end_seconds, positive_labels
"""


def test_audioset_segments_csv_by_downloader_names(tmp_path, clip):
    root = tmp_path / "audioset"
    segs = [("--PJHxphWEs", "30.000", "40.000", "/m/09x0r,/t/dd00088"),
            ("-0RWZT-miFs", "420.000", "430.000", "/m/03v3yw"),
            ("-1nilez17Dg", "0.000", "10.000", "/m/09x0r"),
            ("-3UBJIEYKVg", "3.000", "13.000", "/m/03v3yw,/m/09x0r"),
            ("-5xOcMJpT_w", "70.000", "80.000", "/m/09x0r")]
    _place(clip, root / "balanced_train_segments" / "video" / "--PJHxphWEs_30000_40000.mp4")  # audiosetdl (ms)
    _place(clip, root / "Y-0RWZT-miFs.mp4")                                                    # PANNs-style Y<id>
    _place(clip, root / "more" / "-1nilez17Dg_0.000_10.000.mkv")                              # the CSV's own text
    _place(clip, root / "[-3UBJIEYKVg]-[3-13].webm")                                           # [id]-[s-e]
    csv_path = root / "balanced_train_segments.csv"
    csv_path.write_text(AUDIOSET_HEAD + "".join(f'{y}, {s}, {e}, "{lab}"\n' for y, s, e, lab in segs))

    assert detect_format(csv_path) == "audioset"
    m, rep = build_index(csv_path, workers=1, progress=False)  # media root: the CSV's folder
    _adds_up(rep)
    assert (rep.total, rep.indexed, rep.counts()) == (5, 4, {"missing": 1})
    assert rep.bad[0].path.startswith("-5xOcMJpT_w") and "Y-5xOcMJpT_w" in rep.bad[0].detail
    by_id = {Path(m.path(i)).stem.lstrip("Y[").split("_")[0].split("]")[0]: m.label_of(i) for i in range(len(m))}
    assert by_id["--PJHxphWEs"] == "/m/09x0r,/t/dd00088" and by_id["-3UBJIEYKVg"] == "/m/03v3yw,/m/09x0r"
    with pytest.raises(ValueError, match="no split column"):
        resolve_source(csv_path, split="train")


# ------------------------------------------------------------------------------ VGGSound


def test_vggsound_csv_without_header(tmp_path, clip):
    root = tmp_path / "vggsound"
    rows = [("---g-f_I2yQ", 1, "people marching", "test"), ("--0PQM4-hqg", 30, "waterfall burbling", "train"),
            ("--56QUhyDQM", 185, "playing tennis", "train"), ("--5OkAjCI7g", 40, "people, crowd", "train")]
    _place(clip, root / "video" / "---g-f_I2yQ_000001.mp4")              # published name
    _place(clip, root / "video" / "--0PQM4-hqg_000030_000040.mp4")       # re-download with the end
    _place(clip, root / "video" / "--5OkAjCI7g_000040.mp4")
    csv_path = root / "vggsound.csv"
    csv_path.write_text("".join(f'{y},{s},"{lab}",{sp}\n' for y, s, lab, sp in rows))
    assert detect_format(csv_path) == "vggsound"
    m, rep = build_index(csv_path, split="train", workers=1, progress=False)
    _adds_up(rep)
    assert (rep.total, rep.indexed, rep.counts()) == (3, 2, {"missing": 1})
    assert "--56QUhyDQM_000185" in rep.bad[0].detail
    assert sorted(m.label_names) == ["people, crowd", "waterfall burbling"]
    m_test, rep_test = build_index(csv_path, split="test", workers=1, progress=False)
    assert rep_test.indexed == 1 and m_test.label_of(0) == "people marching"


def test_finetune_splits_from_vggsound_and_kinetics_lists(tmp_path, clip):
    from avssl.downstream.data import load_split

    csv_path, root = _kinetics(tmp_path, clip)
    k_csv = root / "train.csv"
    lines = csv_path.read_text().splitlines()
    k_csv.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ",train," in ln]) + "\n")
    (root / "validate.csv").write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ",val," in ln]) + "\n")
    train, test = load_split("kinetics", root)
    assert len(train) == 3 and len(test) == 1 and len(train.notes["missing"]) == 1 and len(test.notes["missing"]) == 1
    assert train.classes == ["drumming fingers", "playing guitar"]
    assert all((root / p).is_file() for p in train.paths + test.paths)

    vroot = tmp_path / "vgg"
    rows = [("aaaaaaaaaaa", 0, "dog barking", "train"), ("bbbbbbbbbbb", 10, "cat purring", "train"),
            ("ccccccccccc", 20, "dog barking", "test"), ("ddddddddddd", 30, "cat purring", "test")]
    for y, s, _, _ in rows[:3]:
        _place(clip, vroot / "video" / f"{y}_{s:06d}.mp4")
    (vroot / "vggsound.csv").write_text("".join(f"{y},{s},{lab},{sp}\n" for y, s, lab, sp in rows))
    vtrain, vtest = load_split("vggsound", vroot)
    assert (len(vtrain), len(vtest), len(vtest.notes["missing"])) == (2, 1, 1)
    assert vtrain.classes == ["cat purring", "dog barking"] and vtest.labels.tolist() == [1]


# ------------------------------------------------------------------------------ files, lists, folders


def test_single_media_file_is_a_source_not_a_text_list(tmp_path, clip):
    m, rep = build_index(clip, workers=1, progress=False)
    assert rep.indexed == 1 and rep.total == 1 and m.path(0) == str(clip)
    # binary content without a media extension is never read as text: it is one file for the prober
    odd = _place(clip, tmp_path / "clip.bin")
    assert detect_format(odd) == "file"
    m, rep = build_index(odd, workers=1, progress=False)
    assert rep.indexed == 1
    junk = tmp_path / "junk.dat"
    junk.write_bytes(np.random.default_rng(0).bytes(3000) + b"\0")
    m, rep = build_index(junk, workers=1, progress=False)
    _adds_up(rep)
    assert rep.indexed == 0 and rep.counts() == {"not-a-video": 1}


def test_extract_tool_takes_one_video_file(tmp_path, clip):
    from omegaconf import OmegaConf

    from avssl.embed.job import collection_source

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "extract.yaml")
    cfg.input, cfg.progress = str(clip), False
    src = collection_source(cfg)
    assert src.format == "file" and src.paths == [str(clip)]
    m, rep = build_index(src, workers=1, progress=False)
    assert rep.indexed == 1


def test_text_list_with_header_blank_lines_comments_and_duplicates(tmp_path, clip):
    a = _place(clip, tmp_path / "v" / "a.mp4")
    b = _place(clip, tmp_path / "v" / "b.mp4")
    listing = tmp_path / "videos.txt"
    listing.write_text(f"path\n\n# a comment\n  {a}  \n\n{b}\n{a}\n{tmp_path / 'v' / 'gone.mp4'}\n\n")
    res = resolve_source(listing)
    assert res.format == "list" and res.notes["header"] == "path" and res.rows == 4
    m, rep = build_index(listing, workers=1, progress=False)
    _adds_up(rep)
    assert (rep.total, rep.indexed) == (4, 2) and rep.counts() == {"duplicate": 1, "missing": 1}
    # relative entries are joined with the media root
    rel = tmp_path / "rel.txt"
    rel.write_text("a.mp4\nb.mp4\n")
    m, rep = build_index(rel, root=tmp_path / "v", workers=1, progress=False)
    assert rep.indexed == 2 and m.paths == ["a.mp4", "b.mp4"]


def test_unknown_csv_is_refused_in_one_line(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("clip,score\nx.mp4,3\n")
    with pytest.raises(ValueError, match="not a recognised dataset list"):
        resolve_source(p)


def test_dangling_symlink_in_a_folder_is_reported(tmp_path, clip):
    d = tmp_path / "videos"
    _place(clip, d / "ok.mp4")
    (d / "sub").mkdir()
    os.symlink(tmp_path / "nowhere" / "gone.mp4", d / "sub" / "link.mp4")
    m, rep = build_index(d, workers=1, progress=False)
    _adds_up(rep)
    assert rep.indexed == 1 and rep.counts() == {"dangling-symlink": 1}
    assert rep.bad[0].path.endswith("link.mp4") and "gone.mp4" in rep.bad[0].detail
    data = json.loads(rep.write_json(tmp_path / "r.json").read_text())
    assert data["counts"] == {"dangling-symlink": 1} and data["source"]["format"] == "folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_reported(tmp_path, clip):
    d = tmp_path / "videos"
    _place(clip, d / "ok.mp4")
    locked = _place(clip, d / "locked.mp4")
    locked.chmod(0)
    try:
        m, rep = build_index(d, workers=1, progress=False)
    finally:
        locked.chmod(0o644)
    _adds_up(rep)
    assert rep.counts() == {"unreadable": 1}


# ------------------------------------------------------------------------------ annotation names


def test_annotation_names_match_the_datasets_file_names(tmp_path, clip):
    root = tmp_path / "media"
    _place(clip, root / "a" / "abc_000000_000010.mp4")
    _place(clip, root / "xyz_000030.mkv")
    _place(clip, root / "qqq.mp4")
    _place(clip, root / "b" / "pre_000040_000048.mp4")
    idx = MediaIndex(root)
    assert "abc_000000_000010" in annotation_stems("abc_000000")
    assert idx.find(annotation_stems("abc_000000")) == "a/abc_000000_000010.mp4"
    assert idx.find(annotation_stems("xyz_000030")) == "xyz_000030.mkv"
    assert idx.find(annotation_stems("qqq_000000")) == "qqq.mp4"
    assert idx.find(annotation_stems("pre_000040")) is None and idx.find_prefix("pre_000040") == ["b/pre_000040_000048.mp4"]


# ------------------------------------------------------------------------------ pretraining from a CSV


def test_pretraining_indexes_a_kinetics_csv_and_ends_with_its_evaluation(tmp_path, clip):
    """experiment=tiny on files named by a Kinetics CSV + media root: train split indexed (missing
    rows reported in the run's index report), eval split from the same CSV, a few steps under
    trainer.max_steps, and the run still ends with its held-out evaluation and final checkpoint."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from avssl.utils.checkpoint import CheckpointManager
    from avssl.engine.pretrain import train

    root = tmp_path / "k"
    lines = ["label,youtube_id,time_start,time_end,split"]
    for i in range(9):
        split = "train" if i < 6 else "val"
        label = ["a", "b"][i % 2]
        yid = f"vid{i:08d}"
        lines.append(f"{label},{yid},0,2,{split}")
        if i != 5:  # one training row without its video
            _video(root / split / label / f"{yid}_000000_000002.mp4", seconds=2.0)
    csv_path = root / "kinetics.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        cfg = compose("pretrain", overrides=["experiment=tiny", f"run_dir={run}", "data.source=files",
                                             f"data.train_source={csv_path}", f"data.media_root={root}",
                                             "data.train_split=train", f"data.eval_source={csv_path}",
                                             "data.eval_split=val", "trainer.epochs=5", "trainer.max_steps=2"])
    out = train(OmegaConf.to_container(cfg, resolve=True))
    assert out["global_step"] == 2 and out["stopped_early"]
    assert out["index"] == {"total": 6, "indexed": 5, "left_out": {"missing": 1}}
    assert out["retrieval"] is not None and out["retrieval"]["num_clips"] == 3 and out["retrieval"]["global_step"] == 2
    rep = json.loads((run / "index_report.json").read_text())
    assert rep["counts"] == {"missing": 1} and rep["source"]["format"] == "kinetics"
    assert CheckpointManager(run).load()["progress"]["global_step"] == 2


# ------------------------------------------------------------------------------ the tools


def _tool(name: str):
    """The command module avssl.cli.<name> (its ``run(argv)`` is ``avssl-<name> argv``)."""
    import importlib

    return importlib.import_module(f"avssl.cli.{name}")


def test_index_and_prepare_tools_take_a_kinetics_csv(tmp_path, clip, capsys):
    csv_path, root = _kinetics(tmp_path, clip)
    rc = _tool("index").run([str(csv_path), "--media-root", str(root), "--split", "train", "--workers", "1",
                              "--out", str(tmp_path / "m.npz"), "--report", str(tmp_path / "rep.json"), "--show", "0"])
    out = capsys.readouterr().out
    assert rc == 0 and "indexed 3/4 entries" in out and "... and 1 more" in out
    assert json.loads((tmp_path / "rep.json").read_text())["counts"] == {"missing": 1}
    assert Manifest.load(tmp_path / "m.npz").label_names == ["drumming fingers", "playing guitar"]

    rc = _tool("prepare").run([str(csv_path), str(tmp_path / "cache"), "--media-root", str(root), "--split", "train",
                                "--workers", "1", "--short-side", "32"])
    cache = Manifest.load(tmp_path / "cache" / "manifest.npz")
    src = Manifest.load(tmp_path / "m.npz")
    assert rc == 0 and len(cache) == 3
    assert {int(i): cache.label_of(k) for k, i in enumerate(cache.id)} == \
        {int(i): src.label_of(k) for k, i in enumerate(src.id)}  # labels follow the ids into the cache
