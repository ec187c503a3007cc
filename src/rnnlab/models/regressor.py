"""The forecast module's name before 2026-12 (`_target_: rnnlab.models.regressor.SequenceRegressor` in the
`.hydra/config.yaml` of older runs, which eval.py reads): kept so those runs still evaluate."""

from rnnlab.models.forecast_model import ForecastModel as SequenceRegressor

__all__ = ["SequenceRegressor"]
