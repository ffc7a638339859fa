"""``raymix score MODEL DATA... --out OUT``: the command line of :mod:`raymix.scoring`.

``MODEL`` is a fit's output directory (its ``run.json`` names the coordinates and their
data, the fit's validation data by default), or a Photon ML GAME model directory
(:mod:`raymix.photon_scoring`), whose feature shards ``--feature-shard SHARD=BAG[,BAG...]``
maps to the input's bags, as Photon ML's ``--feature-shard-configurations`` does.
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    """The ``score`` subcommand on the ``raymix`` parser's subparsers ``sub``."""
    score = sub.add_parser("score", help="apply a trained model to new data in batch")
    score.add_argument(
        "model_dir", help="the output directory of a fit (holds run.json), or a Photon ML model"
    )
    score.add_argument(
        "data",
        nargs="*",
        help="data files or directories per coordinate (default: the fit's validation data)",
    )
    score.add_argument("--out", required=True, help="directory for the score files")
    score.add_argument("--overwrite", action="store_true")
    score.add_argument("--address", default=None)
    score.add_argument(
        "--feature-shard",
        action="append",
        default=[],
        metavar="SHARD=BAG[,BAG...]",
        help="a Photon ML model's feature shard and the input bags it combines, e.g. "
        "globalShard=features,userFeatures (repeatable)",
    )
    score.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    score.set_defaults(handler=run_command)


def run_command(args) -> int:
    from raymix.console import Progress
    from raymix.scoring import score_command

    with Progress(quiet=False) as say:
        score_command(
            args.model_dir,
            args.data,
            args.out,
            overwrite=args.overwrite,
            address=args.address,
            progress=say,
            feature_shards=args.feature_shard,
        )
    return 0
