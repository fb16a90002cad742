"""Classical synthesis baselines that the network is compared against."""

from .replica import ReplicaRegressor, features

__all__ = ["ReplicaRegressor", "features"]
