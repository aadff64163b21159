"""``truthsteer quickstart``: the whole pipeline on the embedded model, ending in a report."""

from __future__ import annotations

import argparse

from harness.cli.options import add_data_args, add_progress_arg


def _numbers(kind):
    def parse(text: str):
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers") from None
    return parse


def register(sub) -> None:
    from harness.quickstart.config import QuickstartConfig

    d = QuickstartConfig()
    p = sub.add_parser(
        "quickstart", help="run the whole pipeline on a small subset and write a report",
        description="On the embedded model: a small TruthfulQA subset, a mean-difference "
        "direction and a dictionary feature (a small dictionary is trained unless --dictionary "
        "is given) at a few layers x magnitudes, MC1/MC2 + CE/KL, the offline judge, a "
        "spot-check sample and the report. Resumable: rerun the same command to continue.")
    p.add_argument("--out", default=d.out, metavar="DIR", help=f"output folder (default {d.out})")
    add_data_args(p)
    p.add_argument("--human-labels", default=None, metavar="DIR",
                   help="folder with TruthfulQA's human label files (human_truth_dev.jsonl, "
                   "human_info_dev.jsonl) to build the default judge from (default: "
                   "$TRUTHSTEER_HUMAN_LABELS, else downloaded)")
    p.add_argument("--dictionary", default=None, metavar="DIR",
                   help="use this dictionary (a folder, or a hub REF such as "
                   "saelens://RELEASE/SAE_ID) instead of training a small one")
    p.add_argument("--judge", default=d.judge, metavar="J",
                   help="auto (default): the offline default judge if it is built on this "
                   "machine, else the quick judge (its recipe without the LLM probe, built in a "
                   "minute or two); quick; default (built on first use: slow); or any "
                   "`truthsteer judge` spec")
    p.add_argument("--model", default=d.model, help="model (default: the embedded one)")
    p.add_argument("--device", default=d.device)
    p.add_argument("--questions", type=int, default=d.questions, metavar="N",
                   help=f"questions to answer (default {d.questions})")
    p.add_argument("--layers", type=_numbers(int), default=d.layers, metavar="L,L,...",
                   help=f"mean-difference layers (default {','.join(map(str, d.layers))})")
    p.add_argument("--dictionary-layer", type=int, default=d.dictionary_layer, metavar="L",
                   help=f"layer of the trained dictionary (default {d.dictionary_layer})")
    p.add_argument("--magnitudes", type=_numbers(float), default=d.magnitudes, metavar="M,M,...",
                   help="magnitudes in std units, 0 included (default "
                   f"{','.join(format(m, 'g') for m in d.magnitudes)})")
    p.add_argument("--spotcheck", type=int, default=d.spotcheck, metavar="N",
                   help=f"answers in the spot-check sample (default {d.spotcheck})")
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.quickstart.config import QuickstartConfig
    from harness.quickstart.stages import run_quickstart

    cfg = QuickstartConfig(out=args.out, truthfulqa=args.truthfulqa,
                           human_labels=args.human_labels, dictionary=args.dictionary,
                           judge=args.judge, model=args.model, device=args.device,
                           questions=args.questions, layers=args.layers,
                           dictionary_layer=args.dictionary_layer, magnitudes=args.magnitudes,
                           spotcheck=args.spotcheck)
    html = run_quickstart(cfg, progress=not args.no_progress)
    print(f"\nReport: {html}\n(open it in a browser; the Markdown twin is beside it)")
    return 0
