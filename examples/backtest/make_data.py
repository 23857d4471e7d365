"""Generate deterministic synthetic OHLCV data for the backtest example (no downloads).

Each symbol gets ~2 years of 4-hourly bars from a regime-switching geometric Brownian
motion seeded by a stable hash of the symbol (zlib.crc32), so every machine produces the
same files and every symbol behaves differently (its own drift, volatility and trends).

    python make_data.py                 # writes data/{SYMBOL}.csv next to this script
    python make_data.py --out /tmp/d --symbols BTCUSDT ETHUSDT
"""
import argparse
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

# symbol: (start price, annual drift, annual volatility)
SYMBOLS = {
    "BTCUSDT": (42000.0, 0.35, 0.55),
    "ETHUSDT": (2500.0, 0.15, 0.70),
    "SOLUSDT": (95.0, 0.60, 1.00),
    "BNBUSDT": (310.0, 0.05, 0.50),
    "XRPUSDT": (0.60, -0.20, 0.80),
    "ADAUSDT": (0.45, -0.35, 0.85),
    "DOGEUSDT": (0.08, 0.10, 1.10),
}
BAR_HOURS = 4
N_BARS = 2 * 365 * 24 // BAR_HOURS  # two years
START = "2022-01-01"


def make_ohlcv(symbol: str) -> pd.DataFrame:
    price0, mu, sigma = SYMBOLS[symbol]
    rng = np.random.default_rng(zlib.crc32(symbol.encode()))
    dt = BAR_HOURS / (24 * 365)
    # Regimes: the drift switches between trending up, trending down and flat every ~2 weeks
    # on average, which gives moving-average crossovers something to find.
    regime_len = rng.geometric(1 / 90, size=N_BARS)
    trend = np.repeat(rng.choice([-1.5, 0.0, 1.5], size=N_BARS), regime_len)[:N_BARS]
    drift = (mu + trend * sigma) * dt - 0.5 * sigma**2 * dt
    log_ret = drift + sigma * np.sqrt(dt) * rng.standard_normal(N_BARS)
    close = price0 * np.exp(np.cumsum(log_ret))
    open_ = np.concatenate([[price0], close[:-1]])
    wiggle = sigma * np.sqrt(dt) * np.abs(rng.standard_normal((2, N_BARS))) * 0.5
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    volume = rng.lognormal(mean=10, sigma=0.5, size=N_BARS)
    ts = pd.date_range(START, periods=N_BARS, freq=f"{BAR_HOURS}h")
    return pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low,
                         "close": close, "volume": volume})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "data"))
    parser.add_argument("--symbols", nargs="+", default=list(SYMBOLS), choices=list(SYMBOLS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for symbol in args.symbols:
        path = out / f"{symbol}.csv"
        make_ohlcv(symbol).to_csv(path, index=False, float_format="%.6g",
                                  date_format="%Y-%m-%dT%H:%M")
        print(f"{path}: {N_BARS} bars, {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
