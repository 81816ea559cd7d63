"""The HTTP API and its web page: on-demand forecasts and the latest streaming predictions.

``forecaster serve`` runs :func:`api.app.create_app` under uvicorn. The app is a thin shell: a
forecast request goes through the same readers (:mod:`producers.readers`) and the same backtest
(:mod:`models.backtest`) as ``forecaster backtest``; the latest predictions come from the
``predictions`` topic that the stream worker writes (:mod:`api.latest`).
"""
