"""The ``fld-train`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fld-train",
        description="Find and fix mislabeled training samples while a Lightning model trains.",
        epilog="examples:\n"
               "  fld-train demo                                   # digits, 20% wrong labels, no download\n"
               "  fld-train fit --data-dir data/train --epochs 30  # clean an ImageFolder dataset\n"
               "  fld-train report fld_runs/fit/label_report.csv   # summarise a saved report\n"
               "\n'fld-train COMMAND --help' lists a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="digits with injected label noise: detect, relabel, compare")
    demo.add_argument("--out", default="fld_runs/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--noise-rate", type=_rate, default=0.2, help="share of labels flipped (default: 0.2)")
    demo.add_argument("--epochs", type=_positive_int, default=40, help="training epochs (default: 40)")
    demo.add_argument("--check-every", type=_positive_int, default=2,
                      help="epochs between checks (default: 2)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="torch CPU threads (default: torch's choice)")
    fit = sub.add_parser(
        "fit", help="train on an ImageFolder and clean its labels: report, review queue, TensorBoard",
        description="Train a model on an ImageFolder dataset (DATA_DIR/<class>/<image>) with "
                    "FakeLabelDiscovery, and write label_report.csv, audit_log.csv, "
                    "review/review_queue.csv and a TensorBoard run to --out.",
    )
    fit.add_argument("--data-dir", required=True, help="ImageFolder root: one sub-folder of images per class")
    fit.add_argument("--out", default="fld_runs/fit", help="output folder (default: %(default)s)")
    fit.add_argument("--model", choices=["small-cnn", "small-cnn-aug", "resnet18"], default="small-cnn",
                     help="network to train; small-cnn-aug: the small CNN on flipped and shifted images "
                          "with a one-cycle learning-rate schedule (default: %(default)s)")
    fit.add_argument("--epochs", type=_positive_int, default=30, help="training epochs (default: 30)")
    fit.add_argument("--action", choices=["flag", "relabel", "downweight"], default="flag",
                     help="what to do with flagged samples (default: flag, which changes nothing)")
    fit.add_argument("--check-every", type=_positive_int, default=2, help="epochs between checks (default: 2)")
    fit.add_argument("--batch-size", type=_positive_int, default=128, help="batch size (default: 128)")
    fit.add_argument("--image-size", type=_positive_int, default=None,
                     help="resize images to this square size (default: 32 for the small CNNs, 224 for resnet18)")
    fit.add_argument("--limit-batches", type=_positive_int, default=None,
                     help="train on at most this many batches per epoch (a quick try-out)")
    fit.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    fit.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")
    fit.add_argument("--threads", type=_positive_int, default=None,
                     help="torch CPU threads (default: torch's choice)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    report = sub.add_parser("report", help="summarise a saved label report (label_report.csv)")
    report.add_argument("path", help="a label_report.csv written by LabelReport.to_csv or report_dir")
    report.add_argument("--top", type=_positive_int, default=10, help="flagged samples to list (default: 10)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        import torch

        from fld_train.demo import format_result, run_demo

        if args.threads:
            torch.set_num_threads(args.threads)
        result = run_demo(args.out, noise_rate=args.noise_rate, epochs=args.epochs,
                          check_every_n_epochs=args.check_every, seed=args.seed)
        print(format_result(result, args.noise_rate))
    elif args.command == "fit":
        import torch

        from fld_train.fit import fit_image_folder

        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            result = fit_image_folder(
                args.data_dir, args.out, model=args.model, epochs=args.epochs, action=args.action,
                check_every=args.check_every, batch_size=args.batch_size, image_size=args.image_size,
                limit_batches=args.limit_batches, workers=args.workers, accelerator=args.accelerator,
                seed=args.seed,
            )
        except ValueError as err:
            print(f"fld-train fit: {err}", file=sys.stderr)
            return 2
        print(result.report.format_summary(top=10))
        print(f"\nreport CSV   {result.report_csv}\naudit log    {result.audit_csv}\n"
              f"review queue {result.review_queue}\nTensorBoard  {result.tensorboard_dir}\n"
              f"             open with: tensorboard --logdir {result.tensorboard_dir.parent}")
    elif args.command == "report":
        from fld_train.report import LabelReport

        try:
            report = LabelReport.from_csv(args.path)
        except (OSError, ValueError) as err:
            print(f"fld-train report: {err}", file=sys.stderr)
            return 2
        print(f"label report {args.path}")
        print(report.format_summary(top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
