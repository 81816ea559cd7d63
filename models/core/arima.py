"""Incremental ARIMA(p, d, q) in state-space form: a cheap refit, a one-step Kalman update, h-step means.

The model is statsmodels' ``ARIMA(order=(p, d, q))`` (no trend term, ``d >= 1`` in practice), in the
same state-space form: the ARMA part of the ``d``-times differenced series ``w`` is a state vector
of length ``r = max(p, q + 1)`` with transition ``T`` (``phi`` down the first column, ones above the
diagonal), selection ``R = (1, theta_1, ..., theta_q)`` and design ``Z = (1, 0, ..., 0)``; the
``d`` differencing levels are known once ``d`` observations are seen, exactly as statsmodels' diffuse
initialisation makes them. With fixed parameters the one-step forecasts and innovations therefore
equal statsmodels' ``results.extend(...)``; ``tests/core/test_arima.py`` shows it on real data.

Fitting never runs a numerical optimiser, so a refit costs tens of microseconds and can stay on the
per-bar path:

- pure AR (``q == 0``): exact conditional least squares on the window, and the filter state at the
  end of the window in closed form (after ``p`` observations an AR state is known exactly);
- ``q > 0``: the Hannan-Rissanen two-stage regression (a long autoregression estimates the
  innovations, then ``w`` is regressed on its lags and the lagged innovations), and the state is
  obtained by running the Kalman filter over the window from the stationary initialisation, which
  costs a few milliseconds per refit.

A fit that gives non-finite values, no variance, a non-stationary AR or a non-invertible MA part
raises :class:`ArimaFitError`; the caller keeps its previous parameters.

Parameters are a flat array ``(phi_1..phi_p, theta_1..theta_q, sigma2)``, statsmodels' order. The
update works on a batch of series at once (leading axis = series), using only element-wise numpy
operations so that one series alone and the same series inside a batch give identical numbers.

Examples
--------
>>> import numpy as np
>>> arima = Arima((1, 1, 0))
>>> levels = np.cumsum(np.r_[0.0, 0.5 * np.sin(np.arange(60.0))])
>>> params = arima.fit(levels)
>>> a, p = arima.initial_state(params, levels)
>>> mean = arima.forecast(params[None], a[None], levels[None, -1:], steps=2)
>>> step = params[0] * (levels[-1] - levels[-2])
>>> bool(np.allclose(mean[0], [levels[-1] + step, levels[-1] + step + params[0] * step]))
True
"""

from __future__ import annotations

import math

import numpy as np


class ArimaFitError(ValueError):
    """A fit that cannot be used: the previous parameters stay."""


class Arima:
    """ARIMA(p, d, q) without trend: fitting, initial filter state, one-step updates, mean forecasts.

    Parameters
    ----------
    order
        ``(p, d, q)``; ``p + q >= 1``.
    """

    def __init__(self, order: tuple[int, int, int]) -> None:
        p, d, q = order
        if min(order) < 0 or p + q == 0:
            raise ValueError(f"order must be non-negative with p + q >= 1; got {order!r}")
        self.order = (p, d, q)
        self.p, self.d, self.q = p, d, q
        self.r = max(p, q + 1)
        # y_t = w_t + sum_k lag_coefs[k] * y_{t-1-k}: undoing d differences.
        self.lag_coefs = np.array([(-1.0) ** k * math.comb(d, k + 1) for k in range(d)])

    def difference(self, levels: np.ndarray) -> np.ndarray:
        """``w``: the series differenced ``d`` times."""
        return np.diff(levels, n=self.d) if self.d else np.asarray(levels, dtype=float)

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, levels: np.ndarray) -> np.ndarray:
        """Parameters ``(phi, theta, sigma2)`` fitted on a window of levels (oldest first).

        Raises
        ------
        ArimaFitError
            When the window gives no usable parameters (constant series, explosive AR, ...).
        """
        w = self.difference(np.asarray(levels, dtype=float))
        if self.q == 0:
            coefs, resid = _regress(w, self.p, np.empty(0), 0, start=self.p)
        else:
            long_order = max(2 * (self.p + self.q), 10)
            _, long_resid = _regress(w, long_order, np.empty(0), 0, start=long_order)
            # innovations estimated for t >= long_order; regress from there on (q more lags).
            innovations = np.concatenate((np.zeros(long_order), long_resid))
            coefs, resid = _regress(w, self.p, innovations, self.q, start=long_order + self.q)
        sigma2 = float(resid @ resid) / resid.size
        params = np.append(coefs, sigma2)
        if not np.all(np.isfinite(params)) or sigma2 <= 0:
            raise ArimaFitError(f"fit gave no usable variance or non-finite parameters: {params}")
        if not _stationary(coefs[: self.p].tolist()):
            raise ArimaFitError(f"AR part is not stationary: phi={coefs[: self.p]}")
        if not _stationary([-theta for theta in coefs[self.p:].tolist()]):
            raise ArimaFitError(f"MA part is not invertible: theta={coefs[self.p:]}")
        return params

    # -- state -----------------------------------------------------------------------------------

    def system(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batched ``(phi, selection, sigma2)`` of shapes ``[n, r]``, ``[n, r]``, ``[n]``."""
        params = np.atleast_2d(params)
        phi = np.zeros((params.shape[0], self.r))
        phi[:, : self.p] = params[:, : self.p]
        selection = np.zeros((params.shape[0], self.r))
        selection[:, 0] = 1.0
        selection[:, 1 : self.q + 1] = params[:, self.p : self.p + self.q]
        return phi, selection, params[:, -1]

    def initial_state(self, params: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ARMA state ``a`` ``[r]`` and covariance ``P`` ``[r, r]`` after filtering ``levels``.

        This is statsmodels' ``predicted_state[d:, -1]`` and ``predicted_state_cov[d:, d:, -1]``.
        """
        w = self.difference(np.asarray(levels, dtype=float))
        phi, selection, sigma2 = self.system(params)
        if self.q == 0 and w.size >= self.p:
            # After p observations the AR state is known: a[j] = sum_{k>j} phi_k w[N + j - k].
            coefs = params[: self.p]
            a = np.array([coefs[j:] @ w[w.size - 1 : w.size - 1 - (self.p - j) : -1]
                          if j < self.p else 0.0 for j in range(self.r)])
            cov = np.zeros((self.r, self.r))
            cov[0, 0] = params[-1]
            return a, cov
        a = np.zeros((1, self.r))
        cov = _stationary_cov(phi[0], selection[0], float(sigma2[0]))[None]
        for value in w:
            a, cov, _, _ = kalman_update(a, cov, phi, selection, sigma2, np.array([value]))
        return a[0], cov[0]

    def differenced(self, level: np.ndarray, lags: np.ndarray) -> np.ndarray:
        """``w_t`` of a batch from ``y_t`` ``[n]`` and the previous ``d`` levels ``[n, d]`` (oldest first)."""
        return level - self._undo(lags)

    def forecast(self, params: np.ndarray, a: np.ndarray, lags: np.ndarray, steps: int = 1) -> np.ndarray:
        """Mean forecasts ``[n, steps]`` of the next ``steps`` levels of a batch, 1 to ``steps`` ahead.

        ``params`` ``[n, p + q + 1]``, the predicted states ``a`` ``[n, r]`` and the last ``d`` levels
        ``lags`` ``[n, d]`` (oldest first). Each step ahead is the previous state through the
        transition (the innovations' mean is 0) and the differences undone on the levels forecast so far.
        """
        means = np.empty((a.shape[0], steps))
        for j in range(steps):
            level = self._undo(lags) + a[:, 0]
            means[:, j] = level
            if j + 1 < steps:
                if j == 0:  # one step ahead (the default's only) needs no transition
                    phi, _, _ = self.system(params)
                a_next = phi * a[:, :1]
                a_next[:, :-1] += a[:, 1:]
                a = a_next
                lags = np.concatenate((lags[:, 1:], level[:, None]), axis=1)
        return means

    def _undo(self, lags: np.ndarray) -> np.ndarray:
        total = np.zeros(lags.shape[0])
        for k in range(self.d):
            # newest lag first: y_{t-1} has coefficient lag_coefs[0]
            total = total + self.lag_coefs[k] * lags[:, self.d - 1 - k]
        return total


def kalman_update(a: np.ndarray, cov: np.ndarray, phi: np.ndarray, selection: np.ndarray,
                  sigma2: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One Kalman step of a batch: observe ``w`` ``[n]``, return the next predicted state.

    Returns ``(a_next [n, r], cov_next [n, r, r], innovation [n], innovation_variance [n])``.
    Only element-wise operations (no BLAS), so a batch row equals the same series alone.
    """
    variance = cov[:, 0, 0]
    innovation = w - a[:, 0]
    gain_col = cov[:, :, 0]
    a_filt = a + gain_col * (innovation / variance)[:, None]
    cov_filt = cov - gain_col[:, :, None] * cov[:, None, 0, :] / variance[:, None, None]
    # T x: row i is phi_i * x_0 + x_{i+1} (companion form)
    a_next = phi * a_filt[:, :1]
    a_next[:, :-1] += a_filt[:, 1:]
    t_cov = phi[:, :, None] * cov_filt[:, None, 0, :]
    t_cov[:, :-1, :] += cov_filt[:, 1:, :]
    cov_next = t_cov[:, :, :1] * phi[:, None, :]
    cov_next[:, :, :-1] += t_cov[:, :, 1:]
    cov_next += sigma2[:, None, None] * (selection[:, :, None] * selection[:, None, :])
    return a_next, cov_next, innovation, variance


def _regress(w: np.ndarray, p: int, extra: np.ndarray, q: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``w[t]`` on ``w[t-1..t-p]`` and ``extra[t-1..t-q]`` for ``t >= start``."""
    rows = w.size - start
    if rows <= p + q:
        raise ArimaFitError(f"{rows} observations cannot fit {p + q} coefficients")
    columns = [w[start - k : w.size - k] for k in range(1, p + 1)]
    columns += [extra[start - k : w.size - k] for k in range(1, q + 1)]
    design = np.column_stack(columns)
    target = w[start:]
    # Normal equations: a k x k solve is several times cheaper than an SVD, and the refit
    # rejects what they cannot handle (a singular design: a constant window).
    try:
        coefs = np.linalg.solve(design.T @ design, design.T @ target)
    except np.linalg.LinAlgError as exc:
        raise ArimaFitError(f"singular regression ({exc}): the window does not move") from None
    return coefs, target - design @ coefs


def _stationary(coefs: list[float]) -> bool:
    """Whether ``1 - sum_k coefs[k] z^(k+1)`` has all its roots outside the unit circle.

    The Durbin-Levinson recursion run backwards: the polynomial is stationary exactly when every
    partial autocorrelation it implies lies strictly inside (-1, 1). O(p^2) float operations, no
    eigenvalues.
    """
    while coefs:
        last = coefs[-1]
        if not -1.0 < last < 1.0:
            return False
        k = len(coefs) - 1
        coefs = [(coefs[j] + last * coefs[k - 1 - j]) / (1.0 - last * last) for j in range(k)]
    return True


def _stationary_cov(phi: np.ndarray, selection: np.ndarray, sigma2: float) -> np.ndarray:
    """Unconditional state covariance: the solution of ``P = T P T' + sigma2 R R'``."""
    r = phi.size
    transition = np.eye(r, k=1)
    transition[:, 0] = phi
    noise = sigma2 * np.outer(selection, selection)
    vec = np.linalg.solve(np.eye(r * r) - np.kron(transition, transition), noise.ravel())
    return vec.reshape(r, r)
