"""``forecaster backtest PATH...``: the stream's forecasting core over CSV files, without Kafka.

The bars are read and validated exactly as ``forecaster replay`` reads them, then run through the
same per-bar core as the stream worker (:func:`models.backtest.run_backtest`), so the predictions are
the ones the worker would publish. Prints the model's errors next to the naive forecast's on the same
days, and the intervals' coverage, width and Winkler score.
"""

from __future__ import annotations

import argparse
import csv
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from forecaster.cli_options import add_csv_selection, add_format, output_file, print_summary, report_file
from forecaster.report import metrics_table, panel_line, render
from forecaster.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "backtest", help="run the forecasting core over CSV files and compare it with naive",
        description="Read CSV files as `replay` does, run the per-bar forecasting core over the bars in "
        "date order, and print MAE, RMSE, MAPE, R², relative MAE (MAE / naive MAE) and directional accuracy "
        "of the model and of the naive forecast on the same days, with interval coverage, mean width and "
        "Winkler score; over several tickers also the geometric mean of the per-ticker relative MAEs and "
        "the number of tickers where the model beats naive (MAE and RMSE pooled in dollars let the "
        "highest-priced tickers decide).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="CSV file, .csv.gz file or folder")
    parser.add_argument("--model", default=None, metavar="naive|arima|URI",
                        help="naive, arima, or a registered model models:/NAME@ALIAS or models:/NAME/VERSION "
                        "(default: FORECASTER_MODEL)")
    parser.add_argument("--out", type=output_file, default=None, metavar="PREDS.csv",
                        help="write one row per prediction with its outcome")
    parser.add_argument("--report", type=report_file, default=None, metavar="FILE.html|.png",
                        help="draw predicted vs actual with the interval band and the rolling error")
    parser.add_argument("--report-ticker", default=None, metavar="TICKER",
                        help="ticker drawn by --report (default: the one with most predictions)")
    add_csv_selection(parser, "read")
    add_format(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.startup import core_config
    from models.backtest import run_backtest
    from producers.layouts import parse_columns
    from producers.readers import read_csv_bars

    choice = args.model or settings.model
    model = None
    if choice.startswith("models:/"):
        from models.registry import load_model

        model = load_model(choice, settings)
        config = core_config(settings, model="external")
    elif choice in ("naive", "arima"):
        config = core_config(settings, model=choice)
    else:
        raise ValueError(f"--model must be naive, arima or models:/NAME@ALIAS or models:/NAME/VERSION; "
                         f"got {choice!r}")
    _check_outputs(args)
    # Only the counts of the rejected rows are shown: a file of a million bad rows holds no more.
    read = read_csv_bars(args.paths, ticker=args.ticker,
                         columns=parse_columns(args.columns) if args.columns else None,
                         tickers=args.tickers, start=args.start, end=args.end, keep_dead_letters=0)
    if not read.bars:
        raise ValueError(f"no valid bars in {', '.join(map(str, args.paths))} ({read.rows_read} rows read, "
                         f"{read.dead_letters_total} rejected, {read.filtered} filtered)")
    result = run_backtest(read.bars, config, model)

    rejected = read.rejected_by_reason()
    for _, reason in result.rejected:
        rejected[reason] = rejected.get(reason, 0) + 1
    name = model.name if model is not None else config.model
    summary: dict[str, Any] = {
        "rows_read": read.rows_read, "bars": len(read.bars), "tickers": len({b.ticker for b in read.bars}),
        "rejected": rejected, "filtered": read.filtered, "model": name,
        "predictions": len(result.predictions), "scored": len(result.scores), "pooled": result.pooled,
        "per_ticker": result.per_ticker, "panel": result.panel, "out": args.out, "report": args.report,
        "by_horizon": {str(h): {"pooled": s.pooled, "panel": s.panel} for h, s in result.by_horizon.items()},
    }
    lines = [f"read {read.rows_read} rows: {summary['bars']} bars of {summary['tickers']} tickers, "
             f"{sum(rejected.values())} rejected{_reasons(rejected)}, {read.filtered} filtered",
             f"model {name}: {len(result.predictions)} predictions, {len(result.scores)} scored, "
             f"{int(result.pooled['n'])} after warm-up (compared with naive on those days)",
             *metrics_table(result.pooled, name), panel_line(result.panel)]
    if len(result.by_horizon) > 1:  # the lines above are the shortest horizon's
        lines[1] += f" (horizon {config.horizons[0]})"
        for horizon, summary_h in list(result.by_horizon.items())[1:]:
            lines += [f"horizon {horizon}: {int(summary_h.pooled['n'])} scored after warm-up",
                      *metrics_table(summary_h.pooled, name), panel_line(summary_h.panel)]
    if args.out is not None:
        write_rows(result.rows(), args.out)
        lines.append(f"wrote {len(result.predictions)} predictions to {args.out}")
    if args.report is not None:
        summary["report_ticker"] = render(result.rows(), args.report, ticker=args.report_ticker)
        lines.append(f"wrote report of {summary['report_ticker']} to {args.report}")
    print_summary(args, "\n".join(lines), summary)
    return 0


def _reasons(counts: dict[str, int]) -> str:
    return f" ({', '.join(f'{reason} {n}' for reason, n in counts.items())})" if counts else ""


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, outputs that would overwrite an input (a file given, or one of a folder
    given) or each other."""
    from producers.readers import csv_files

    inputs = [path for path, _ in csv_files(args.paths)]
    for option, path in (("--out", args.out), ("--report", args.report)):
        if path is not None and any(_same_file(path, given) for given in inputs):
            raise ValueError(f"{option} {path} is also an input: its bars would be overwritten; write "
                             "elsewhere")
    if args.out is not None and args.report is not None and _same_file(args.out, args.report):
        raise ValueError(f"--out and --report are both {args.out}: the report would overwrite the "
                         "predictions")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same on disk, or the same path where one is not written yet."""
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """One CSV row per prediction (``BacktestResult.rows``); unscored outcomes are empty cells.

    Written beside ``path`` (through a link, to its target) and renamed into place: an interrupted
    write leaves the file that was there, not a part of the new one that reads as a whole. The file
    keeps the mode of the one it replaces, or gets the one a new file gets.
    """
    target = path.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
    with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=f".{target.name}.", suffix=".part",
                                     newline="", encoding="utf-8", delete=False) as handle:
        try:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            os.chmod(handle.name, mode)  # a temporary file is the owner's alone
        except BaseException:  # Ctrl-C included
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, target)


def _umask() -> int:
    mask = os.umask(0)  # read by setting it: there is no other way
    os.umask(mask)
    return mask
