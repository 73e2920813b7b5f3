"""Serving: a saved model behind HTTP, every decision logged with its propensity.

The top floor, beside the CLI: nothing below this package knows about HTTP.

- :mod:`offrec.serve.wal`: the write-ahead log (append-only segments, group commit,
  torn-tail recovery);
- :mod:`offrec.serve.model`: loading the model to serve, its version, drawing ``k`` items
  with exact propensities;
- :mod:`offrec.serve.compact`: sealed segments into Parquet part files of the log schema,
  rewards joined by decision id within the attribution window;
- :mod:`offrec.serve.service`: the serving core (decide, make durable, feedback, deploy);
- :mod:`offrec.serve.app`: the HTTP API (Starlette); :mod:`offrec.serve.server`: uvicorn,
  signals;
- :mod:`offrec.serve.loop`: the closed loop (simulated users over HTTP, train, estimate,
  deploy only when the lower bound of the lift is above zero).
"""
