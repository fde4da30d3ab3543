"""Which model serves searches, and moving to another without downtime."""

from clipseek.switching.switch import active_model, drop_model, ensure_active_model, use_model

__all__ = ["active_model", "drop_model", "ensure_active_model", "use_model"]
