"""The console commands. Each ``avssl/cli/<verb>.py`` has a ``main()`` (installed as
``avssl-<verb>``); ``avssl <verb> ...`` (also ``python -m avssl <verb> ...``) runs the same one.

Commands are thin: they parse the command line (Hydra ``key=value`` overrides of the packaged
configs, or argparse flags), call one library function, and print. Every one runs behind
`avssl.utils.cli.run_main`: a user mistake is one line ``<command>: error: ...`` and exit status 2.
"""

from __future__ import annotations

import importlib
import sys

# verb -> (module under avssl.cli, what it does). `avssl-<verb>` is the console script of each.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: world -> AVID -> CMA -> fine-tune -> localize -> embeddings (Hydra)"),
    "pretrain": ("pretrain", "audio-visual pretraining: AVID, CMA, CLIP-style (Hydra; torchrun for several processes)"),
    "finetune": ("finetune", "action-recognition fine-tuning: UCF101 / HMDB51 / Kinetics-style / the world (Hydra)"),
    "localize": ("localize", "sound-source heatmaps, overlays and MP4s; cIoU / AUC on annotated sets (Hydra)"),
    "extract": ("extract", "embeddings of a collection into resumable shards (Hydra; torchrun)"),
    "retrieve": ("retrieve", "cross-modal retrieval tables and queries over extracted collections"),
    "index": ("index", "index videos / dataset lists; report every entry left out, with its reason"),
    "prepare": ("prepare", "transcode an indexed collection into a training cache (same ids)"),
    "make-data": ("make_data", "generate the embedded audio-visual world and its benchmark-format exports"),
    "make-real-world": ("make_real_world", "the recorded-sound world (Tux Paint stamps), or localize real footage"),
    "probe-audio": ("probe_audio", "ESC-50 linear probe on the frozen audio encoder (5-fold)"),
    "score-heatmaps": ("score_heatmaps", "score saved heatmaps of any method on VGG-SS / Flickr (Hydra)"),
}


def script_name(verb: str) -> str:
    """The console script of ``verb``: ``avssl-<verb>``."""
    return f"avssl-{verb}"


def command_main(verb: str):
    """The ``main()`` of ``verb`` (underscores accepted for dashes)."""
    module, _ = COMMANDS[verb.replace("_", "-")]
    return importlib.import_module(f"avssl.cli.{module}").main


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: avssl <command> [options]      (also: avssl-<command> [options])", "",
             "Audio-visual self-supervised learning: AVID / CMA pretraining, fine-tuning, localization,",
             "embeddings. Every command has --help; Hydra commands take key=value options of the configs",
             "shipped in the package (`avssl-<command> --cfg job` prints the composed config).", "",
             "commands:"]
    lines += [f"  {verb:<{width}}  {what}" for verb, (_, what) in COMMANDS.items()]
    lines += ["", "example:  avssl demo demo=tiny      (the main job on the tiny world, about a minute)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``avssl <command> [options]``: run ``avssl-<command>`` with the options."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb = args[0].replace("_", "-")
    if verb in ("-V", "--version"):
        from avssl import __version__

        print(f"avssl {__version__}")
        return 0
    if verb not in COMMANDS:
        print(f"avssl: error: unknown command {args[0]!r}; commands: {', '.join(COMMANDS)} (avssl --help)",
              file=sys.stderr)
        return 2
    # the command reads sys.argv (Hydra and argparse do); its name shows in --help and error lines
    sys.argv = [f"avssl {verb}", *args[1:]]
    command_main(verb)()
    return 0


__all__ = ["COMMANDS", "command_main", "main", "script_name", "usage"]
