"""Moving-average crossover backtest on one symbol's OHLCV bars.

Long when the fast simple moving average of the close is above the slow one, flat
otherwise; the position is taken on the bar after the signal (no look-ahead) and every
change of position pays ``fee_bps`` basis points. Writes ``metrics.json`` (total_return,
sharpe, max_drawdown, n_trades, ...) and ``equity.csv`` in the working directory.

    python backtest.py --symbol BTCUSDT --fast 10 --slow 50 --data data/BTCUSDT.csv
"""
import argparse
import json
import sys

import numpy as np
import pandas as pd


def load(path: str) -> pd.DataFrame:
    df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df.sort_values("timestamp").reset_index(drop=True)


def backtest(df: pd.DataFrame, fast: int, slow: int, fee_bps: float) -> tuple[dict, pd.DataFrame]:
    close = df["close"]
    if fast >= slow:
        print(f"warning: fast ({fast}) >= slow ({slow}); no crossover signal, staying flat",
              file=sys.stderr)
        signal = pd.Series(0.0, index=close.index)
    else:
        signal = (close.rolling(fast).mean() > close.rolling(slow).mean()).astype(float)
    position = signal.shift(1).fillna(0.0)          # trade on the next bar
    trades = position.diff().abs().fillna(position.abs())
    ret = position * close.pct_change().fillna(0.0) - trades * fee_bps / 1e4
    equity = (1 + ret).cumprod()

    bar_seconds = df["timestamp"].diff().median().total_seconds()
    bars_per_year = 365 * 24 * 3600 / bar_seconds     # crypto trades around the clock
    std = ret.std()
    sharpe = float(ret.mean() / std * np.sqrt(bars_per_year)) if std > 0 else 0.0
    # max_drawdown is reported as a negative fraction: -0.25 means a 25% fall from the peak.
    max_drawdown = float((equity / equity.cummax() - 1).min())
    metrics = {
        "total_return": round(float(equity.iloc[-1] - 1), 6),
        "sharpe": round(sharpe, 4),
        "max_drawdown": round(max_drawdown, 6),
        "n_trades": int((trades > 0).sum()),         # entries + exits
        "exposure": round(float(position.mean()), 4),  # fraction of bars in the market
        "buy_hold_return": round(float(close.iloc[-1] / close.iloc[0] - 1), 6),
    }
    curve = pd.DataFrame({"timestamp": df["timestamp"], "close": close,
                          "position": position, "equity": equity})
    return metrics, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", required=True, help="e.g. BTCUSDT (reported in the log)")
    parser.add_argument("--fast", type=int, default=10, help="fast SMA window in bars")
    parser.add_argument("--slow", type=int, default=50, help="slow SMA window in bars")
    parser.add_argument("--fee_bps", type=float, default=10.0, help="fee per position change, bps")
    parser.add_argument("--data", default="ohlcv.csv", help="OHLCV file (.csv or .parquet)")
    args = parser.parse_args()

    metrics, curve = backtest(load(args.data), args.fast, args.slow, args.fee_bps)
    curve.to_csv("equity.csv", index=False, float_format="%.6g")
    with open("metrics.json", "w") as f:
        json.dump(metrics, f)
    print(f"{args.symbol} fast={args.fast} slow={args.slow}: {json.dumps(metrics)}")


if __name__ == "__main__":
    main()
